"""The scheduler process: leader election on Lease kube-system/kube-scheduler, informers, the loop.

Several replicas may run; only the Lease holder schedules, so two schedulers never race for the same
pods. Leadership lost means exit (as kube-scheduler does) so the supervisor restarts a clean follower
rather than one acting on a stale cache. That process plumbing, with `/healthz` (and `/leader`) on
loopback, is shared with the controller-manager in client/process.py; this module builds the Scheduler.
"""
from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

from client.events import EventRecorder
from client.factory import InformerFactory
from client.kubeconfig import Config
from client.process import run_leader_elected
from client.rest import AsyncClient
from scheduler.scheduler import DEFAULT_BIND_CONCURRENCY, DEFAULT_SCHEDULER_NAME, Scheduler

LEASE_NAMESPACE = "kube-system"
LEASE_NAME = "kube-scheduler"


async def run_scheduler(*, kubeconfig: str, scheduler_name: str = DEFAULT_SCHEDULER_NAME,
                        leader_elect: bool = True, health_port: int = 10259, identity: str | None = None,
                        lease_duration: float = 15, renew_deadline: float = 10, retry_period: float = 2,
                        percentage_of_nodes_to_score: int = 0,
                        bind_concurrency: int = DEFAULT_BIND_CONCURRENCY) -> int:
    def start(client: AsyncClient, factory: InformerFactory, recorder: EventRecorder) -> Callable[[], Awaitable]:
        scheduler = Scheduler(client, factory, recorder, scheduler_name=scheduler_name,
                              percentage_of_nodes_to_score=percentage_of_nodes_to_score,
                              bind_concurrency=bind_concurrency, rng=random.Random())
        return scheduler.run

    async with AsyncClient(Config.from_kubeconfig(kubeconfig)) as client:
        return await run_leader_elected(
            client, start, lease_namespace=LEASE_NAMESPACE, lease_name=LEASE_NAME, event_source=scheduler_name,
            leader_elect=leader_elect, identity=identity, health_port=health_port,
            lease_duration=lease_duration, renew_deadline=renew_deadline, retry_period=retry_period)
