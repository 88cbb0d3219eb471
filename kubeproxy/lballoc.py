"""LoadBalancer IPs from a local pool, like k3s' ServiceLB: one allocator for the whole cluster.

Every proxy may be started with `--lb-pool`, but only the holder of the Lease
`kube-system/minik8s-lb-allocator` writes: for each Service of type LoadBalancer without an ingress IP
(and without a `loadBalancerClass`, which names another implementation) it takes the requested
`spec.loadBalancerIP` when that is free and in the pool, else the lowest free address, and writes
`status.loadBalancer.ingress: [{ip, ipMode: VIP}]` through `services/<name>/status`. A Service that is
no longer of type LoadBalancer gets its pool address removed. The allocator keeps no memory: the
addresses in use are read from the cached Services on every pass, so a new leader simply continues.
The proxies then program the ingress IPs like external IPs.

`plan()` is pure (Service dicts in, decisions out); `LBAllocator.run()` is the leader's loop.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Iterable
from typing import Any

from api.errors import APIError
from client.informer import Informer
from client.rest import AsyncClient

logger = logging.getLogger(__name__)

LEASE_NAMESPACE, LEASE_NAME = "kube-system", "minik8s-lb-allocator"
Obj = dict[str, Any]


def _ingress_ips(svc: Obj) -> list[str]:
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return [i["ip"] for i in ingress if i.get("ip")]


def plan(services: Iterable[Obj], pool: str) -> list[tuple[str, str, str | None]]:
    """[(namespace, name, ip or None to clear)], in a deterministic order (oldest Service first)."""
    net = ipaddress.ip_network(pool, strict=False)
    services = sorted(services, key=lambda s: ((s.get("metadata") or {}).get("creationTimestamp") or "",
                                               (s.get("metadata") or {}).get("namespace") or "",
                                               (s.get("metadata") or {}).get("name") or ""))
    in_pool = lambda ip: ipaddress.ip_address(ip) in net  # noqa: E731
    used = {ip for s in services for ip in _ingress_ips(s) if in_pool(ip)}
    free = (str(h) for h in net.hosts())
    out: list[tuple[str, str, str | None]] = []
    for s in services:
        meta, spec = s.get("metadata") or {}, s.get("spec") or {}
        key = (meta.get("namespace") or "default", meta.get("name") or "")
        is_lb = spec.get("type") == "LoadBalancer" and not spec.get("loadBalancerClass")
        current = _ingress_ips(s)
        if is_lb and not current:
            wanted = spec.get("loadBalancerIP")
            if wanted and in_pool(wanted) and wanted not in used:
                ip = wanted
            else:
                ip = next((h for h in free if h not in used), None)
            if ip is None:
                logger.warning("LB pool %s exhausted; %s/%s stays pending", pool, *key)
                continue
            used.add(ip)
            out.append((*key, ip))
        elif not is_lb and spec.get("type") != "LoadBalancer" and any(in_pool(ip) for ip in current):
            out.append((*key, None))
    return out


class LBAllocator:
    def __init__(self, client: AsyncClient, services: Informer, pool: str) -> None:
        self.client, self.services, self.pool = client, services, pool
        ipaddress.ip_network(pool, strict=False)
        self._dirty = asyncio.Event()
        services.add_handler(on_add=lambda o: self._dirty.set(), on_update=lambda o, n: self._dirty.set(),
                             on_delete=lambda o: self._dirty.set())

    async def write(self, namespace: str, name: str, ip: str | None) -> None:
        ingress = [{"ip": ip, "ipMode": "VIP"}] if ip else None
        await self.client.patch("services", name, {"status": {"loadBalancer": {"ingress": ingress}}},
                                namespace, subresource="status")
        logger.info("%s/%s: load-balancer ingress %s", namespace, name, ip or "cleared")

    async def run(self) -> None:
        await self.services.has_synced.wait()
        self._dirty.set()
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            written = []
            for namespace, name, ip in plan(self.services.store.list(), self.pool):
                try:
                    await self.write(namespace, name, ip)
                    written.append((namespace, name, ip))
                except APIError as e:
                    logger.warning("%s/%s: cannot write load-balancer status: %s", namespace, name, e)
                    self._dirty.set()
            await self._observed(written)

    async def _observed(self, written: list[tuple[str, str, str | None]], timeout: float = 5.0) -> None:
        """Wait until the cache shows our writes, so the next pass never hands out an address twice."""
        deadline = asyncio.get_running_loop().time() + timeout
        while written and asyncio.get_running_loop().time() < deadline:
            written = [(ns, n, ip) for ns, n, ip in written
                       if (svc := self.services.store.get(f"{ns}/{n}")) is not None
                       and (ip in _ingress_ips(svc) if ip else bool(_ingress_ips(svc)))]
            if written:
                await asyncio.sleep(0.02)
