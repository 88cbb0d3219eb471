"""The main loop of a leader-elected control-plane process (the controller-manager, the scheduler).

Several replicas may run; only the holder of the Lease `<lease_namespace>/<lease_name>` works. Its work
starts with fresh informers: `start(client, factory, recorder)` registers what it needs on the factory
and returns the coroutine function to run once every informer has synced, so nothing acts on a
half-filled cache. SIGINT/SIGTERM stop the process: the leader releases the Lease so a follower takes
over at once, and the work gets `shutdown_grace` seconds to finish. If leadership is lost (or the work
ends by itself) the process exits with 1, as Kubernetes components do, so its supervisor restarts a
clean follower rather than one acting on a stale cache. `/healthz` (and `/leader`) answer on loopback
at `health_port` (0: none).
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from client.events import EventRecorder
from client.factory import InformerFactory
from client.health import serve_health
from client.leaderelection import LeaderElector
from client.rest import AsyncClient

logger = logging.getLogger(__name__)

Start = Callable[[AsyncClient, InformerFactory, EventRecorder], Callable[[], Awaitable[Any]]]

RESYNC_SECONDS = 300
SHUTDOWN_GRACE = 5.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def default_identity() -> str:
    return f"{socket.gethostname()}_{os.getpid()}"


async def run_leader_elected(client: AsyncClient, start: Start, *, lease_name: str, event_source: str,
                             lease_namespace: str = "kube-system", leader_elect: bool = True,
                             identity: str | None = None, health_port: int = 0, lease_duration: float = 15,
                             renew_deadline: float = 10, retry_period: float = 2,
                             shutdown_grace: float = SHUTDOWN_GRACE) -> int:
    """Run `start`'s work while leading; the process exit code (0 when stopped by a signal, 1 otherwise)."""
    identity = identity or default_identity()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    elector = LeaderElector(client, lease_namespace, lease_name, identity, lease_duration, renew_deadline,
                            retry_period) if leader_elect else None
    health = await serve_health(health_port, elector) if health_port else None

    async def lead() -> None:
        factory = InformerFactory(client, resync_seconds=RESYNC_SECONDS)
        run = start(client, factory, EventRecorder(client, event_source))
        factory.start()
        try:
            await factory.wait_for_sync()
            logger.info("%s: caches synced (identity %s)", event_source, identity)
            await run()
        finally:
            await factory.stop()

    task = asyncio.create_task(lead() if elector is None else elector.run(lead))
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if elector is not None:
            elector.stop()
        if not task.done():
            try:
                await asyncio.wait_for(task, shutdown_grace)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                task.cancel()
    finally:
        stopper.cancel()
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
        if health is not None:
            health.close()
    if not stop.is_set():
        logger.warning("%s: leadership lost or the work ended; exiting so the supervisor restarts us",
                       event_source)
        return 1
    return 0
