"""UDP has no connection end, so conntrack keeps steering a flow to a dead endpoint (or keeps the
entry that recorded a rejection) until it times out. After each sync, as Kubernetes does, we delete:
- entries NATed to an endpoint that a UDP service port no longer has;
- entries to a UDP service port that just went from no endpoints to some.
`stale_udp` is pure; `clear` runs `conntrack -D` and treats "0 entries deleted" (exit 1) as success.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

from .model import ServicePort
from .runner import Runner, run

logger = logging.getLogger(__name__)


def _udp(services: Sequence[ServicePort]) -> dict[tuple[str, str], ServicePort]:
    return {(sp.key, sp.protocol): sp for sp in services if sp.protocol == "UDP"}


def stale_udp(old: Sequence[ServicePort], new: Sequence[ServicePort]) -> list[list[str]]:
    """conntrack -D argument lists for the UDP flows `new` invalidates."""
    before, after = _udp(old), _udp(new)
    commands: list[list[str]] = []
    for key, sp in after.items():
        prev = before.get(key)
        ips = [ip for ip in (sp.cluster_ip, *sp.external_ips, *sp.lb_ips) if ip]
        if prev is None or (not prev.endpoints and sp.endpoints):
            commands += [["-p", "udp", "--orig-dst", ip, "--orig-port-dst", str(sp.port)] for ip in ips]
            continue
        gone = {e.ip for e in prev.endpoints} - {e.ip for e in sp.endpoints}
        for ep in sorted(gone):
            commands += [["-p", "udp", "--orig-dst", ip, "--dst-nat", ep] for ip in ips]
            if sp.node_port:
                commands.append(["-p", "udp", "--orig-port-dst", str(sp.node_port), "--dst-nat", ep])
    for key, prev in before.items():
        if key not in after:
            commands += [["-p", "udp", "--orig-dst", ip, "--orig-port-dst", str(prev.port)]
                         for ip in (prev.cluster_ip, *prev.external_ips, *prev.lb_ips) if ip]
    return commands


def clear(commands: list[list[str]], runner: Runner = run) -> None:
    for args in commands:
        try:
            runner(["conntrack", "-D", *args], check=False)
        except OSError as e:       # conntrack tool missing: UDP flows then age out on their own
            logger.warning("cannot clear conntrack entries (%s): %s", " ".join(args), e)
            return
