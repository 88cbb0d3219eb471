"""The scheduler process: leader election on Lease kube-system/kube-scheduler, informers, the loop.

Several replicas may run; only the Lease holder schedules, so two schedulers never race for the same
pods. Leadership lost means exit (as kube-scheduler does) so the supervisor restarts a clean follower
rather than one acting on a stale cache. A tiny HTTP endpoint answers `/healthz` (and `/leader`) on
loopback for supervisors.
"""
from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import socket

from client.events import EventRecorder
from client.health import serve_health
from client.factory import InformerFactory
from client.kubeconfig import Config
from client.leaderelection import LeaderElector
from client.rest import AsyncClient
from scheduler.scheduler import DEFAULT_BIND_CONCURRENCY, DEFAULT_SCHEDULER_NAME, Scheduler

logger = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-system"
LEASE_NAME = "kube-scheduler"
SHUTDOWN_GRACE = 5.0


async def run_scheduler(*, kubeconfig: str, scheduler_name: str = DEFAULT_SCHEDULER_NAME,
                        leader_elect: bool = True, health_port: int = 10259, identity: str | None = None,
                        lease_duration: float = 15, renew_deadline: float = 10, retry_period: float = 2,
                        percentage_of_nodes_to_score: int = 0,
                        bind_concurrency: int = DEFAULT_BIND_CONCURRENCY) -> int:
    config = Config.from_kubeconfig(kubeconfig)
    identity = identity or f"{socket.gethostname()}_{os.getpid()}"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async with AsyncClient(config) as client:
        elector = LeaderElector(client, LEASE_NAMESPACE, LEASE_NAME, identity, lease_duration, renew_deadline,
                                retry_period) if leader_elect else None
        health = await serve_health(health_port, elector) if health_port else None

        async def lead() -> None:
            factory = InformerFactory(client, resync_seconds=300)
            recorder = EventRecorder(client, scheduler_name)
            scheduler = Scheduler(client, factory, recorder, scheduler_name=scheduler_name,
                                  percentage_of_nodes_to_score=percentage_of_nodes_to_score,
                                  bind_concurrency=bind_concurrency, rng=random.Random())
            factory.start()
            await factory.wait_for_sync()
            logger.info("caches synced; scheduling as %r (identity %s)", scheduler_name, identity)
            try:
                await scheduler.run()
            finally:
                await factory.stop()

        work = asyncio.create_task(lead() if elector is None else elector.run(lead))
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if elector is not None:
            elector.stop()
        if not work.done():
            try:
                await asyncio.wait_for(work, SHUTDOWN_GRACE)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                work.cancel()
        stopper.cancel()
        if health is not None:
            health.close()
        lost = not stop.is_set()
        if lost:
            logger.warning("leadership lost or the loop ended; exiting so the supervisor restarts us")
        return 1 if lost else 0
