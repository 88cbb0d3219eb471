"""Wiring of one proxy process: client, backend, proxier, health endpoint, LB allocator.

The LB allocator runs under leader election so that exactly one proxy in the cluster hands out
addresses; losing the lease only stops allocating (the proxy keeps programming rules) and the
candidate tries again. SIGTERM/SIGINT stop the process and leave the rules in place, as kube-proxy
does: connections keep flowing while it restarts.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Sequence

from client.kubeconfig import Config
from client.leaderelection import LeaderElector
from client.rest import AsyncClient

from .lballoc import LEASE_NAME, LEASE_NAMESPACE, LBAllocator
from .proxier import Backend, Proxier

logger = logging.getLogger(__name__)


def make_backend(mode: str) -> Backend:
    if mode == "iptables":
        from .iptables_backend import IptablesBackend
        return IptablesBackend()
    if mode == "nftables":
        from .nftables_backend import NftablesBackend
        return NftablesBackend()
    if mode == "ipvs":
        from .ipvs_backend import IpvsBackend
        return IpvsBackend()
    raise ValueError(f"unknown proxy mode {mode!r}")


async def allocate_while_leader(client: AsyncClient, allocator: LBAllocator, identity: str) -> None:
    while True:
        elector = LeaderElector(client, LEASE_NAMESPACE, LEASE_NAME, identity, 15, 10, 2)
        try:
            await elector.run(allocator.run)
        except Exception:
            logger.exception("LB allocator leader election failed")
        await asyncio.sleep(2)


async def run_proxy(*, kubeconfig: str, node_name: str, mode: str, cluster_cidr: str | None,
                    service_cidr: str | None, nodeport_addresses: Sequence[str] = (), lb_pool: str | None = None,
                    min_sync_period: float = 1.0, sync_period: float = 30.0, masquerade_all: bool = False,
                    healthz_port: int = 10256, healthz_address: str = "0.0.0.0") -> int:
    config = Config.from_kubeconfig(kubeconfig)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with AsyncClient(config) as client:
        proxier = Proxier(client, make_backend(mode), node_name=node_name, cluster_cidr=cluster_cidr,
                          service_cidr=service_cidr, nodeport_addresses=nodeport_addresses,
                          masquerade_all=masquerade_all, min_sync_period=min_sync_period, sync_period=sync_period)
        tasks = [asyncio.create_task(proxier.run(), name="proxier")]
        if lb_pool:
            allocator = LBAllocator(client, proxier.services, lb_pool)
            tasks.append(asyncio.create_task(
                allocate_while_leader(client, allocator, f"{node_name}_{os.getpid()}"), name="lb-allocator"))
        health = await proxier.serve_health(healthz_address, healthz_port) if healthz_port else None
        logger.info("proxy for node %s in %s mode started", node_name, mode)
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({stopper, *tasks}, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks + [stopper]:
            t.cancel()
        await asyncio.gather(*tasks, stopper, return_exceptions=True)
        if health is not None:
            health.close()
        failed = [t for t in done if t is not stopper and not t.cancelled() and t.exception()]
        for t in failed:
            logger.error("%s failed: %r", t.get_name(), t.exception())
        return 1 if failed else 0
