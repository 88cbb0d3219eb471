"""The controller-manager: runs the selected controllers while holding the leader Lease.

Several replicas may run; only the holder of `kube-system/kube-controller-manager` works, the others
wait and take over within the lease duration after the leader dies. When leadership is lost the process
exits (as kube-controller-manager does) and its supervisor restarts it as a follower; that process
plumbing, with `/healthz`, is client/process.py. This module finds and selects the controllers.
"""
from __future__ import annotations

import asyncio
import importlib
import logging
import pkgutil
from collections.abc import Awaitable, Callable

from client.events import EventRecorder
from client.factory import InformerFactory
from client.kubeconfig import Config
from client.process import run_leader_elected
from client.rest import AsyncClient
import controllers
from controllers.base import Controller

logger = logging.getLogger(__name__)


def discover() -> dict[str, type[Controller]]:
    """Every Controller subclass defined in a module of this package, by its `name`: adding a controller
    is adding a module."""
    found: dict[str, type[Controller]] = {}
    for info in pkgutil.iter_modules(controllers.__path__):
        module = importlib.import_module(f"controllers.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Controller) and obj is not Controller \
                    and obj.__module__ == module.__name__:
                found[obj.name] = obj
    return found


CONTROLLERS = discover()


def select(spec: str) -> list[str]:
    """Kubernetes' --controllers syntax: `*` for all, `name` to enable, `-name` to disable."""
    chosen: set[str] = set()
    for item in [s.strip() for s in spec.split(",") if s.strip()]:
        if item == "*":
            chosen |= set(CONTROLLERS)
        elif item.startswith("-"):
            chosen.discard(item[1:])
        elif item in CONTROLLERS:
            chosen.add(item)
        else:
            raise ValueError(f"unknown controller {item!r}; known: {', '.join(sorted(CONTROLLERS))}")
    return sorted(chosen)


async def run_controller_manager(*, kubeconfig: str, controllers: str = "*", leader_elect: bool = True,
                                 health_port: int = 10257, identity: str | None = None,
                                 lease_duration: float = 15, renew_deadline: float = 10, retry_period: float = 2,
                                 **options) -> int:
    names = select(controllers)

    def start(client: AsyncClient, factory: InformerFactory, recorder: EventRecorder) -> Callable[[], Awaitable]:
        running = [CONTROLLERS[n](client, factory, recorder, **options) for n in names]

        async def run() -> None:
            logger.info("running controllers: %s", ", ".join(names))
            await asyncio.gather(*(c.run() for c in running))
        return run

    async with AsyncClient(Config.from_kubeconfig(kubeconfig)) as client:
        return await run_leader_elected(
            client, start, lease_name="kube-controller-manager", event_source="controller-manager",
            leader_elect=leader_elect, identity=identity, health_port=health_port,
            lease_duration=lease_duration, renew_deadline=renew_deadline, retry_period=retry_period)
