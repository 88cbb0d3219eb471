"""ClusterIP and NodePort allocation for Services.

Each allocated IP or port is its own etcd key (`/registry/ranges/serviceips/<ip>`,
`/registry/ranges/servicenodeports/<port>`), created in the same transaction as the Service that holds
it and deleted in the same transaction that deletes the Service. Two concurrent creates that pick the
same address both guard on "key absent": one wins, the other sees which side key was taken and picks
again. Nothing can leak, nothing can be handed out twice, and there is no bitmap to contend on.

Dynamic ClusterIPs avoid the lowest 256 addresses of the range, which stay free for requested IPs
(10.96.0.1 for `kubernetes`, 10.96.0.10 for DNS), as Kubernetes' split range allocator does.
"""
from __future__ import annotations

import ipaddress
import random
from typing import Any

from api.errors import Cause
from apiserver.storage import SideEffects, Store

Obj = dict[str, Any]

IP_PREFIX = "/registry/ranges/serviceips/"
PORT_PREFIX = "/registry/ranges/servicenodeports/"
NODE_PORT_TYPES = ("NodePort", "LoadBalancer")


class Exhausted(Exception):
    pass


class ServiceAllocator:
    def __init__(self, store: Store, cidr: str = "10.96.0.0/12", node_ports: tuple[int, int] = (30000, 32767)):
        self.store = store
        self.net = ipaddress.ip_network(cidr)
        self.static_band = min(max(16, self.net.num_addresses // 16), 256)
        self.node_ports = node_ports

    # -- what a service holds ------------------------------------------------------------------------

    @staticmethod
    def held_keys(svc: Obj) -> list[str]:
        spec = svc.get("spec") or {}
        keys = []
        ip = spec.get("clusterIP")
        if ip and ip != "None":
            keys.append(IP_PREFIX + ip)
        for port in {p.get("nodePort") for p in spec.get("ports") or [] if isinstance(p, dict)}:
            if port:
                keys.append(PORT_PREFIX + str(port))
        return keys

    def check_requested(self, svc: Obj) -> list[Cause]:
        """Requested IPs and ports must lie inside the configured ranges."""
        spec = svc.get("spec") or {}
        causes = []
        ip = spec.get("clusterIP")
        if ip and ip != "None":
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                addr = None
            if addr is None or addr not in self.net or addr in (self.net.network_address, self.net.broadcast_address):
                causes.append(Cause("spec.clusterIPs[0]", f'Invalid value: "{ip}": provided IP is not in the valid range. The range of valid IPs is {self.net}'))
        lo, hi = self.node_ports
        for i, p in enumerate(spec.get("ports") or []):
            if isinstance(p, dict) and p.get("nodePort"):
                np = p["nodePort"]
                if not isinstance(np, int) or not lo <= np <= hi:
                    causes.append(Cause(f"spec.ports[{i}].nodePort", f"Invalid value: {np}: provided port is not in the valid range. The range of valid ports is {lo}-{hi}"))
        return causes

    # -- choosing ------------------------------------------------------------------------------------

    def _random_ip(self) -> str:
        first = int(self.net.network_address) + self.static_band
        last = int(self.net.broadcast_address) - 1
        return str(ipaddress.ip_address(random.randint(first, last)))

    async def _free_ports(self, count: int, avoid: set[int]) -> list[int]:
        used = {int(k.rsplit("/", 1)[1]) for k in await self.store.list_keys(PORT_PREFIX)} | avoid
        free = [p for p in range(self.node_ports[0], self.node_ports[1] + 1) if p not in used]
        if len(free) < count:
            raise Exhausted("range of valid NodePorts is full")
        return random.sample(free, count)

    async def fill(self, svc: Obj, old: Obj | None, avoid_ips: set[str], avoid_ports: set[int]) -> None:
        """Assign a ClusterIP and NodePorts where the spec asks for them and has none."""
        spec = svc.setdefault("spec", {})
        stype = spec.get("type", "ClusterIP")
        if stype == "ExternalName":
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
        elif not spec.get("clusterIP"):
            ip = self._random_ip()
            while ip in avoid_ips:
                ip = self._random_ip()
            spec["clusterIP"] = ip
        if spec.get("clusterIP"):
            spec["clusterIPs"] = [spec["clusterIP"]]
        ports = [p for p in spec.get("ports") or [] if isinstance(p, dict)]
        if stype in NODE_PORT_TYPES:
            missing = [p for p in ports if not p.get("nodePort")]
            if missing:
                taken = {p["nodePort"] for p in ports if p.get("nodePort")}
                for p, port in zip(missing, await self._free_ports(len(missing), avoid_ports | taken)):
                    p["nodePort"] = port
        else:
            for p in ports:
                p.pop("nodePort", None)

    def side_effects(self, svc: Obj, old: Obj | None) -> SideEffects:
        new_keys = self.held_keys(svc)
        old_keys = self.held_keys(old) if old else []
        owner = f'{svc["metadata"].get("namespace")}/{svc["metadata"]["name"]}'.encode()
        return SideEffects(create={k: owner for k in new_keys if k not in old_keys},
                           delete=[k for k in old_keys if k not in new_keys])

    def release(self, svc: Obj) -> SideEffects:
        return SideEffects(delete=self.held_keys(svc))


def requested(svc: Obj) -> tuple[str | None, set[int]]:
    spec = svc.get("spec") or {}
    ip = spec.get("clusterIP") or None
    ports = {p["nodePort"] for p in spec.get("ports") or [] if isinstance(p, dict) and p.get("nodePort")}
    return ip, ports
