"""The proxy process: Services + Endpoints + this Node in, rules for one mode out.

    informers (services, endpoints, this node) --any change--> SyncRunner.request()
    SyncRunner (coalesced, >= min-sync-period apart, full every sync-period)
        -> snapshot: model.build(cached services, cached endpoints) + NodeContext   (on the event loop)
        -> backend.sync(snapshot, context, full)   (in a worker thread: render, diff, one restore / nft -f)
        -> UDP conntrack cleanup

The first sync waits until the Service and Endpoints caches (and the node's) hold their first list, so
the proxy never programs a half-known world (an empty Endpoints cache would turn every service into
REJECT). Handlers only mark the rules dirty; each sync renders everything from the caches
(level-triggered: the renderer never knows which event caused it) and the backends make that cheap
by loading only differences.

Node IPs for node ports: local interface addresses inside `--nodeport-addresses` CIDRs when given,
else the Node's InternalIP addresses. A small HTTP server answers `/healthz` with a JSON status (mode, seconds
since the last sync, its duration, counters): 200 while rules are fresh, 503 before the first sync or
when a change has waited longer than twice the sync period.
"""
from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import logging
import socket
import time
from collections.abc import Sequence
from typing import Any, Protocol

from client.factory import InformerFactory
from client.rest import AsyncClient

from . import conntrack, model
from .model import NodeContext, ServicePort
from .syncer import SyncRunner

logger = logging.getLogger(__name__)


class Backend(Protocol):
    mode: str

    def sync(self, services: Sequence[ServicePort], ctx: NodeContext, *, full: bool = False) -> None: ...
    def cleanup(self) -> None: ...


def node_internal_ips(node: dict | None) -> tuple[str, ...]:
    addrs = ((node or {}).get("status") or {}).get("addresses") or []
    return tuple(a["address"] for a in addrs if a.get("type") == "InternalIP" and ":" not in a.get("address", ""))


def local_ips_in(cidrs: Sequence[str]) -> tuple[str, ...]:
    """Addresses of this network namespace's interfaces that fall inside `cidrs`."""
    from pyroute2 import IPRoute
    nets = [ipaddress.ip_network(c, strict=False) for c in cidrs]
    with IPRoute() as ipr:
        ips = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(family=socket.AF_INET)}
    return tuple(sorted(ip for ip in ips if any(ipaddress.ip_address(ip) in n for n in nets)))


class Proxier:
    def __init__(self, client: AsyncClient, backend: Backend, *, node_name: str, cluster_cidr: str | None,
                 service_cidr: str | None = None, nodeport_addresses: Sequence[str] = (),
                 masquerade_all: bool = False, min_sync_period: float = 1.0, sync_period: float = 30.0,
                 factory: InformerFactory | None = None) -> None:
        self.client = client
        self.backend = backend
        self.node_name = node_name
        self.cluster_cidr = cluster_cidr
        self.service_cidr = service_cidr
        self.nodeport_addresses = tuple(nodeport_addresses)
        self.masquerade_all = masquerade_all
        self.sync_period = sync_period
        self.factory = factory or InformerFactory(client)
        self.services = self.factory.informer("services")
        self.endpoints = self.factory.informer("endpoints")
        self.nodes = self.factory.informer("nodes", field_selector=f"metadata.name={node_name}")
        for inf in (self.services, self.endpoints, self.nodes):
            inf.add_handler(on_add=self._changed, on_update=self._updated, on_delete=self._changed)
        self.runner = SyncRunner(self._sync, min_interval=min_sync_period, period=sync_period)
        self._build_cache: dict = {}
        self.applied: tuple[ServicePort, ...] = ()
        self.applied_at: float | None = None
        self.last_sync_seconds: float | None = None
        self.synced = asyncio.Event()

    def _changed(self, obj: dict) -> None:
        self.runner.request()

    def _updated(self, old: dict, new: dict) -> None:
        if old is not new:
            self.runner.request()

    def snapshot(self) -> tuple[tuple[ServicePort, ...], NodeContext]:
        eps = {f"{(e.get('metadata') or {}).get('namespace')}/{(e.get('metadata') or {}).get('name')}": e
               for e in self.endpoints.store.list()}
        services = model.build(self.services.store.list(), eps, self._build_cache)
        ctx = NodeContext(node_name=self.node_name, cluster_cidr=self.cluster_cidr,
                          masquerade_all=self.masquerade_all,
                          node_ips=node_internal_ips(self.nodes.store.get_by_name(self.node_name)),
                          service_cidr=self.service_cidr)
        return services, ctx

    def _sync_blocking(self, services: tuple[ServicePort, ...], ctx: NodeContext, full: bool) -> None:
        if self.nodeport_addresses:
            ctx = dataclasses.replace(ctx, node_ips=local_ips_in(self.nodeport_addresses))
        self.backend.sync(services, ctx, full=full)
        conntrack.clear(conntrack.stale_udp(self.applied, services))

    async def _sync(self, full: bool) -> None:
        started = time.perf_counter()
        services, ctx = self.snapshot()
        await asyncio.to_thread(self._sync_blocking, services, ctx, full)
        self.applied = services
        self.applied_at = time.monotonic()
        self.last_sync_seconds = time.perf_counter() - started
        self.synced.set()
        logger.info("%s sync (%s) of %d service ports took %.3fs", self.backend.mode,
                    "full" if full else "partial", len(services), self.last_sync_seconds)

    async def run(self) -> None:
        self.factory.start()
        sync_task = asyncio.create_task(self.runner.run(), name="proxy-sync")
        try:
            await self.factory.wait_for_sync()
            logger.info("caches synced: %d services, %d endpoints; starting %s syncs",
                        len(self.services.store), len(self.endpoints.store), self.backend.mode)
            self.runner.start()
            await sync_task
        finally:
            sync_task.cancel()
            await asyncio.gather(sync_task, return_exceptions=True)
            await self.factory.stop()

    # -- health ----------------------------------------------------------------------------------

    def health(self) -> tuple[bool, dict[str, Any]]:
        now = time.monotonic()
        pending = self.runner.pending_since
        healthy = self.applied_at is not None and (pending is None or now - pending < 2 * self.sync_period)
        return healthy, {"mode": self.backend.mode, "synced": self.applied_at is not None,
                         "secondsSinceSync": None if self.applied_at is None else round(now - self.applied_at, 3),
                         "lastSyncSeconds": self.last_sync_seconds, "servicePorts": len(self.applied),
                         "syncs": self.runner.syncs, "failures": self.runner.failures}

    async def serve_health(self, address: str, port: int) -> asyncio.AbstractServer:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await reader.readline()
                ok, body = self.health()
                data = json.dumps(body).encode()
                status = b"200 OK" if ok else b"503 Service Unavailable"
                writer.write(b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                             b"Connection: close\r\n\r\n%s" % (status, len(data), data))
                await writer.drain()
            finally:
                writer.close()

        return await asyncio.start_server(handle, address, port)
