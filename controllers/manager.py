"""The controller-manager: runs the selected controllers while holding the leader Lease.

Several replicas may run; only the holder of `kube-system/kube-controller-manager` works, the others
wait and take over within the lease duration after the leader dies. When leadership is lost the process
exits (as kube-controller-manager does) and its supervisor restarts it as a follower. A small HTTP
endpoint answers `/healthz` for supervisors and load balancers.
"""
from __future__ import annotations

import asyncio
import importlib
import logging
import pkgutil
import os
import signal
import socket

from client.events import EventRecorder
from client.health import serve_health
from client.factory import InformerFactory
from client.kubeconfig import Config
from client.leaderelection import LeaderElector
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
    config = Config.from_kubeconfig(kubeconfig)
    identity = identity or f"{socket.gethostname()}_{os.getpid()}"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async with AsyncClient(config) as client:
        elector = LeaderElector(client, "kube-system", "kube-controller-manager", identity,
                                lease_duration, renew_deadline, retry_period) if leader_elect else None
        health = await serve_health(health_port, elector)

        async def lead() -> None:
            factory = InformerFactory(client, resync_seconds=300)
            recorder = EventRecorder(client, "controller-manager")
            running = [CONTROLLERS[n](client, factory, recorder, **options) for n in names]
            factory.start()
            await factory.wait_for_sync()
            logger.info("caches synced; running controllers: %s", ", ".join(names))
            try:
                await asyncio.gather(*(c.run() for c in running))
            finally:
                await factory.stop()

        if elector is None:
            work = asyncio.create_task(lead())
        else:
            work = asyncio.create_task(elector.run(lead))
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if elector is not None:
            elector.stop()
        if not work.done():
            try:
                await asyncio.wait_for(work, 5)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                work.cancel()
        health.close()
        lost = not stop.is_set()
        if lost:
            logger.warning("leadership lost or work ended; exiting so the supervisor restarts us")
        return 1 if lost else 0
