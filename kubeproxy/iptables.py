"""iptables mode: render the rules (pure), and turn two renderings into one `iptables-restore` input.

The layout is Kubernetes' iptables proxier, chain for chain:

nat table
  PREROUTING, OUTPUT -> KUBE-SERVICES        one rule per (destination IP, protocol, port):
      -d <clusterIP> --dport P  -j KUBE-SVC-x  (or KUBE-SVL-x with internalTrafficPolicy Local)
      -d <externalIP|LB IP>     -j KUBE-EXT-x  (or KUBE-FW-x with loadBalancerSourceRanges)
      last: -d <node IP>        -j KUBE-NODEPORTS
  KUBE-NODEPORTS   --dport <nodePort> -j KUBE-EXT-x
  KUBE-SVC-x       masquerade what comes from outside the cluster CIDR, then pick an endpoint:
                   `-m statistic --mode random --probability 1/(n-i)` per endpoint, the last unconditional;
                   with ClientIP affinity first `-m recent --rcheck --seconds T --reap` per endpoint
  KUBE-SVL-x       the same over this node's endpoints only (Local traffic policy)
  KUBE-EXT-x       external entry: mark for masquerade, then KUBE-SVC-x; with externalTrafficPolicy
                   Local no masquerade (the client IP is kept) and KUBE-SVL-x, except for pods and the
                   node itself, which keep cluster-wide routing
  KUBE-FW-x        allowed source ranges -> KUBE-EXT-x
  KUBE-SEP-x       hairpin (source = this endpoint) -> KUBE-MARK-MASQ; DNAT to ip:port
  KUBE-MARK-MASQ   sets mark 0x4000;   POSTROUTING -> KUBE-POSTROUTING masquerades marked packets
filter table
  OUTPUT, FORWARD (new) -> KUBE-SERVICES; INPUT, FORWARD (new) -> KUBE-EXTERNAL-SERVICES:
      REJECT (icmp port-unreachable, an immediate "connection refused") for ports without endpoints,
      DROP for Local-policy ports whose endpoints are all elsewhere
  KUBE-PROXY-FIREWALL   drops LB traffic that KUBE-FW-x did not accept
  KUBE-FORWARD          accepts marked and established traffic through FORWARD

Partial restores (KEP-3453): the dispatch chains are rewritten every sync, per-service chains only when
their content changed, and chains no longer rendered are flushed and deleted — all in one
`iptables-restore --noflush` transaction that never touches chains that are not ours.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from .model import MASQ_MARK, Endpoint, NodeContext, ServicePort, port_hash

logger = logging.getLogger(__name__)

Chains = dict[str, tuple[str, ...]]

MARK = f"{MASQ_MARK:#x}/{MASQ_MARK:#x}"
# Chains written on every sync: small, and the dispatch chains reference every service.
FIXED = {
    "nat": ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"),
    "filter": ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD", "KUBE-PROXY-FIREWALL"),
}
SERVICE_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-")
# (table, built-in chain, our chain, extra match) — installed once per full sync, idempotently.
JUMPS = (
    ("nat", "PREROUTING", "KUBE-SERVICES", ""),
    ("nat", "OUTPUT", "KUBE-SERVICES", ""),
    ("nat", "POSTROUTING", "KUBE-POSTROUTING", ""),
    ("filter", "INPUT", "KUBE-EXTERNAL-SERVICES", "-m conntrack --ctstate NEW"),
    ("filter", "INPUT", "KUBE-PROXY-FIREWALL", "-m conntrack --ctstate NEW"),
    ("filter", "FORWARD", "KUBE-SERVICES", "-m conntrack --ctstate NEW"),
    ("filter", "FORWARD", "KUBE-EXTERNAL-SERVICES", "-m conntrack --ctstate NEW"),
    ("filter", "FORWARD", "KUBE-PROXY-FIREWALL", "-m conntrack --ctstate NEW"),
    ("filter", "FORWARD", "KUBE-FORWARD", ""),
    ("filter", "OUTPUT", "KUBE-SERVICES", "-m conntrack --ctstate NEW"),
    ("filter", "OUTPUT", "KUBE-PROXY-FIREWALL", "-m conntrack --ctstate NEW"),
)


@dataclass
class Ruleset:
    """`tables[table][chain]` = the chain's rules, each the arguments after `-A <chain>`."""
    tables: dict[str, Chains] = field(default_factory=lambda: {"filter": {}, "nat": {}})

    def chain(self, table: str, name: str) -> tuple[str, ...]:
        return self.tables[table].get(name, ())

    def rule_count(self) -> int:
        return sum(len(rules) for chains in self.tables.values() for rules in chains.values())


def svc_chain(sp: ServicePort) -> str:
    return "KUBE-SVC-" + port_hash(sp.key, sp.proto)


def svl_chain(sp: ServicePort) -> str:
    return "KUBE-SVL-" + port_hash(sp.key, sp.proto)


def ext_chain(sp: ServicePort) -> str:
    return "KUBE-EXT-" + port_hash(sp.key, sp.proto)


def fw_chain(sp: ServicePort) -> str:
    return "KUBE-FW-" + port_hash(sp.key, sp.proto)


def sep_chain(sp: ServicePort, ep: Endpoint) -> str:
    return "KUBE-SEP-" + port_hash(sp.key, sp.proto, f"{ep.ip}:{ep.port}")


def _match(sp: ServicePort, ip: str | None, port: int) -> str:
    dst = f"-d {ip}/32 " if ip else ""
    return f"{dst}-p {sp.proto} -m {sp.proto} --dport {port}"


def _comment(text: str) -> str:
    return f'-m comment --comment "{text}"'


def _balance(sp: ServicePort, eps: tuple[Endpoint, ...]) -> list[str]:
    """Rules picking one endpoint: affinity lookups first, then 1/n, 1/(n-1), ..., 1."""
    rules = []
    if sp.affinity_timeout:
        for ep in eps:
            sep = sep_chain(sp, ep)
            rules.append(f"-m recent --name {sep} --mask 255.255.255.255 --rsource --rcheck "
                         f"--seconds {sp.affinity_timeout} --reap -j {sep}")
    n = len(eps)
    for i, ep in enumerate(eps):
        if i < n - 1:
            rules.append(f"-m statistic --mode random --probability {1.0 / (n - i):0.10f} -j {sep_chain(sp, ep)}")
        else:
            rules.append(f"-j {sep_chain(sp, ep)}")
    return rules


def _render_service(sp: ServicePort, ctx: NodeContext, nat: dict[str, list[str]],
                    filt: dict[str, list[str]]) -> None:
    local = sp.local_endpoints(ctx.node_name)
    internal_eps = sp.internal_endpoints(ctx.node_name)
    external_eps = sp.external_endpoints(ctx.node_name)
    svc, svl, ext = svc_chain(sp), svl_chain(sp), ext_chain(sp)
    uses_svl = sp.internal_local or (sp.external_local and sp.has_external)
    internal_target = svl if sp.internal_local else svc
    external_target = ext

    # Chains of this service port.
    if sp.endpoints:
        rules = []
        if sp.cluster_ip:
            masq_from = "" if ctx.masquerade_all or not ctx.cluster_cidr else f"! -s {ctx.cluster_cidr} "
            if ctx.masquerade_all or ctx.cluster_cidr:
                rules.append(f"{masq_from}{_match(sp, sp.cluster_ip, sp.port)} -j KUBE-MARK-MASQ")
        nat[svc] = rules + _balance(sp, sp.endpoints)
        for ep in sp.endpoints:
            sep = sep_chain(sp, ep)
            recent = f"-m recent --name {sep} --mask 255.255.255.255 --rsource --set " if sp.affinity_timeout else ""
            nat[sep] = [f"-s {ep.ip}/32 -j KUBE-MARK-MASQ",
                        f"-p {sp.proto} {recent}-m {sp.proto} -j DNAT --to-destination {ep.ip}:{ep.port}"]
    if uses_svl and local:
        nat[svl] = _balance(sp, local)
    if sp.has_external and external_eps:
        if sp.external_local:
            rules = []
            if ctx.cluster_cidr:
                rules.append(f"-s {ctx.cluster_cidr} {_comment('pod traffic for ' + sp.key + ' external destinations')} -j {svc}")
            rules += [f"{_comment('masquerade LOCAL traffic for ' + sp.key + ' external destinations')} "
                      f"-m addrtype --src-type LOCAL -j KUBE-MARK-MASQ",
                      f"{_comment('route LOCAL traffic for ' + sp.key + ' external destinations')} "
                      f"-m addrtype --src-type LOCAL -j {svc}",
                      f"-j {svl}"]
            nat[ext] = rules
        else:
            nat[ext] = [f"{_comment('masquerade traffic for ' + sp.key + ' external destinations')} -j KUBE-MARK-MASQ",
                        f"-j {svc}"]

    # Dispatch.
    if sp.cluster_ip:
        match = _match(sp, sp.cluster_ip, sp.port)
        if internal_eps:
            nat["KUBE-SERVICES"].append(f"{_comment(sp.key + ' cluster IP')} {match} -j {internal_target}")
        else:
            verdict, why = ("DROP", "has no local endpoints") if sp.endpoints else ("REJECT", "has no endpoints")
            filt["KUBE-SERVICES"].append(f"{_comment(sp.key + ' ' + why)} {match} -j {verdict}")
    verdict, why = ("DROP", "has no local endpoints") if sp.endpoints else ("REJECT", "has no endpoints")
    for ip in sp.external_ips:
        match = _match(sp, ip, sp.port)
        if external_eps:
            nat["KUBE-SERVICES"].append(f"{_comment(sp.key + ' external IP')} {match} -j {external_target}")
        else:
            filt["KUBE-EXTERNAL-SERVICES"].append(f"{_comment(sp.key + ' ' + why)} {match} -j {verdict}")
    for ip in sp.lb_ips:
        match = _match(sp, ip, sp.port)
        if not external_eps:
            filt["KUBE-EXTERNAL-SERVICES"].append(f"{_comment(sp.key + ' ' + why)} {match} -j {verdict}")
            continue
        if sp.lb_source_ranges:
            fw = fw_chain(sp)
            nat[fw] = [f"{_comment(sp.key + ' loadbalancer IP')} -s {src} -j {ext}" for src in sp.lb_source_ranges]
            nat["KUBE-SERVICES"].append(f"{_comment(sp.key + ' loadbalancer IP')} {match} -j {fw}")
            filt["KUBE-PROXY-FIREWALL"].append(
                f"{_comment(sp.key + ' traffic not accepted by ' + fw)} {match} -j DROP")
        else:
            nat["KUBE-SERVICES"].append(f"{_comment(sp.key + ' loadbalancer IP')} {match} -j {ext}")
    if sp.node_port:
        match = _match(sp, None, sp.node_port)
        if external_eps:
            nat["KUBE-NODEPORTS"].append(f"{_comment(sp.key)} {match} -j {ext}")
        else:
            filt["KUBE-EXTERNAL-SERVICES"].append(
                f"{_comment(sp.key + ' ' + why)} -m addrtype --dst-type LOCAL {match} -j {verdict}")


@functools.lru_cache(maxsize=65536)
def _fragment(sp: ServicePort, ctx: NodeContext) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """One service port's chains and dispatch rules. Cached: a sync re-renders only ports that changed;
    callers copy, never extend, these lists."""
    nat: dict[str, list[str]] = {c: [] for c in FIXED["nat"]}
    filt: dict[str, list[str]] = {c: [] for c in FIXED["filter"]}
    _render_service(sp, ctx, nat, filt)
    return nat, filt


def render(services: Iterable[ServicePort], ctx: NodeContext) -> Ruleset:
    """The whole desired ruleset for this node, as plain data (no I/O)."""
    nat: dict[str, list[str]] = {c: [] for c in FIXED["nat"]}
    filt: dict[str, list[str]] = {c: [] for c in FIXED["filter"]}
    for sp in services:
        part_nat, part_filt = _fragment(sp, ctx)
        for target, part in ((nat, part_nat), (filt, part_filt)):
            for chain, rules in part.items():
                if chain in FIXED["nat"] or chain in FIXED["filter"]:
                    target[chain].extend(rules)
                else:
                    target[chain] = rules
    for ip in ctx.node_ips:
        nat["KUBE-SERVICES"].append(
            f"{_comment('kubernetes service nodeports; NOTE: this must be the last rule in this chain')} "
            f"-d {ip}/32 -j KUBE-NODEPORTS")
    nat["KUBE-MARK-MASQ"] = [f"-j MARK --or-mark {MASQ_MARK:#x}"]
    nat["KUBE-POSTROUTING"] = [f"-m mark ! --mark {MARK} -j RETURN",
                               f"-j MARK --xor-mark {MASQ_MARK:#x}",
                               f"{_comment('kubernetes service traffic requiring SNAT')} -j MASQUERADE --random-fully"]
    filt["KUBE-FORWARD"] = ["-m conntrack --ctstate INVALID -j DROP",
                            f"{_comment('kubernetes forwarding rules')} -m mark --mark {MARK} -j ACCEPT",
                            f"{_comment('kubernetes forwarding conntrack rule')} "
                            "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"]
    return Ruleset({"filter": {k: tuple(v) for k, v in filt.items()}, "nat": {k: tuple(v) for k, v in nat.items()}})


def restore_input(new: Ruleset, old: Ruleset | None, existing: dict[str, set[str]] | None = None) -> str:
    """One `iptables-restore --noflush` input taking the kernel from `old` to `new`.

    `old=None` means the kernel state is unknown (start, periodic full sync, after a failure): every chain
    is written, and our per-service chains listed in `existing` (from iptables-save) that are no longer
    wanted are deleted. Declaring a chain (`:NAME - [0:0]`) in a --noflush restore creates or flushes it;
    chains not named are left as they are — that is how unchanged per-service chains survive untouched.
    """
    lines: list[str] = []
    for table in ("filter", "nat"):
        chains = new.tables.get(table, {})
        if old is None:
            write = list(chains)
            stale = sorted(c for c in (existing or {}).get(table, ())
                           if c.startswith(SERVICE_PREFIXES) and c not in chains)
        else:
            previous = old.tables.get(table, {})
            write = [c for c in chains if c in FIXED[table] or previous.get(c) != chains[c]]
            stale = [c for c in previous if c not in chains]
        lines.append(f"*{table}")
        lines.extend(f":{c} - [0:0]" for c in write + stale)
        for c in write:
            lines.extend(f"-A {c} {rule}" for rule in chains[c])
        lines.extend(f"-X {c}" for c in stale)
        lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def chains_in_save(text: str) -> set[str]:
    """Chain names declared in `iptables-save` output of one table."""
    return {line[1:].split(" ", 1)[0] for line in text.splitlines() if line.startswith(":")}
