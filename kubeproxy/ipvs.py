"""IPVS mode, the pure part: which virtual servers, real servers, bound addresses and iptables rules.

As in Kubernetes' ipvs proxier:
- every cluster IP, external IP and load-balancer IP is bound (/32) to a local interface `kube-ipvs0`,
  so the kernel treats it as local and IPVS takes the connection in LOCAL_IN;
- one virtual server (`rr` scheduler) per (address, protocol, port): the cluster IP with the internal
  endpoints, each node IP at the node port and each external/LB IP with the external endpoints
  (only this node's under externalTrafficPolicy Local); real servers use masquerade forwarding;
  ClientIP affinity becomes IPVS persistence with the affinity timeout; a port without endpoints keeps
  its virtual server with no real servers, and the local stack answers a reset (connection refused);
- IPVS does not masquerade by itself, so a small iptables part remains (ipset-free here: one rule per
  service port instead of Kubernetes' ipsets): KUBE-SERVICES marks traffic to cluster IPs from outside
  the cluster CIDR and all non-Local external traffic, KUBE-NODE-PORT marks node-port traffic,
  KUBE-POSTROUTING masquerades marked packets and hairpin traffic (source = destination = an endpoint).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from . import iptables
from .model import MASQ_MARK, Endpoint, NodeContext, ServicePort

SCHEDULER = "rr"
VSKey = tuple[str, str, int]   # (protocol, address, port)


@dataclass(frozen=True)
class VirtualServer:
    protocol: str
    addr: str
    port: int
    scheduler: str = SCHEDULER
    persistence: int = 0          # seconds; 0 = no session affinity

    @property
    def key(self) -> VSKey:
        return (self.protocol, self.addr, self.port)


@dataclass
class State:
    addresses: frozenset[str] = frozenset()
    services: dict[VSKey, tuple[VirtualServer, frozenset[tuple[str, int]]]] = field(default_factory=dict)
    rules: iptables.Ruleset = field(default_factory=iptables.Ruleset)


def _dests(eps: Iterable[Endpoint]) -> frozenset[tuple[str, int]]:
    return frozenset((e.ip, e.port) for e in eps)


def render(services: Iterable[ServicePort], ctx: NodeContext) -> State:
    addresses: set[str] = set()
    vss: dict[VSKey, tuple[VirtualServer, frozenset[tuple[str, int]]]] = {}
    nat: dict[str, list[str]] = {"KUBE-SERVICES": [], "KUBE-NODE-PORT": []}
    hairpin: set[str] = set()

    def add(sp: ServicePort, addr: str, port: int, eps: tuple[Endpoint, ...]) -> None:
        vs = VirtualServer(sp.protocol, addr, port, persistence=sp.affinity_timeout or 0)
        vss[vs.key] = (vs, _dests(eps))

    for sp in services:
        node = ctx.node_name
        hairpin.update(e.ip for e in sp.endpoints)
        match = f"-p {sp.proto} -m {sp.proto} --dport"
        if sp.cluster_ip:
            addresses.add(sp.cluster_ip)
            add(sp, sp.cluster_ip, sp.port, sp.internal_endpoints(node))
            if ctx.masquerade_all or ctx.cluster_cidr:
                src = "" if ctx.masquerade_all else f"! -s {ctx.cluster_cidr} "
                nat["KUBE-SERVICES"].append(f"{src}-d {sp.cluster_ip}/32 {match} {sp.port} -j KUBE-MARK-MASQ")
        for ip in sp.external_ips + sp.lb_ips:
            addresses.add(ip)
            add(sp, ip, sp.port, sp.external_endpoints(node))
            if not sp.external_local:
                nat["KUBE-SERVICES"].append(f"-d {ip}/32 {match} {sp.port} -j KUBE-MARK-MASQ")
        if sp.node_port:
            for ip in ctx.node_ips:
                add(sp, ip, sp.node_port, sp.external_endpoints(node))
            if not sp.external_local:
                nat["KUBE-NODE-PORT"].append(f"{match} {sp.node_port} -j KUBE-MARK-MASQ")
    nat["KUBE-SERVICES"] += [f"-d {ip}/32 -j KUBE-NODE-PORT" for ip in ctx.node_ips]
    nat["KUBE-MARK-MASQ"] = [f"-j MARK --or-mark {MASQ_MARK:#x}"]
    nat["KUBE-POSTROUTING"] = ([f"-s {ip}/32 -d {ip}/32 -j MASQUERADE" for ip in sorted(hairpin)] +
                               [f"-m mark ! --mark {iptables.MARK} -j RETURN",
                                f"-j MARK --xor-mark {MASQ_MARK:#x}",
                                "-j MASQUERADE --random-fully"])
    filt = {"KUBE-FORWARD": ["-m conntrack --ctstate INVALID -j DROP",
                             f"-m mark --mark {iptables.MARK} -j ACCEPT",
                             "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"]}
    rules = iptables.Ruleset({"filter": {k: tuple(v) for k, v in filt.items()},
                              "nat": {k: tuple(v) for k, v in nat.items()}})
    return State(frozenset(addresses), vss, rules)


JUMPS = (
    ("nat", "PREROUTING", "KUBE-SERVICES", ""),
    ("nat", "OUTPUT", "KUBE-SERVICES", ""),
    ("nat", "POSTROUTING", "KUBE-POSTROUTING", ""),
    ("filter", "FORWARD", "KUBE-FORWARD", ""),
)
