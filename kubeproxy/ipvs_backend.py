"""Applies IPVS renderings through netlink (pyroute2), plus the companion iptables rules.

Two small handles stand between the backend and the kernel, so tests can swap in fakes that record
calls: `NetlinkIpvs` (IPVS virtual and real servers, pyroute2's `IPVS`) and `IpvsLink` (the
`kube-ipvs0` interface and its /32 addresses, pyroute2's `IPRoute`; a dummy interface where the kernel
has one, else a bridge without ports, which works the same as a local sink).

A sync diffs against the last applied state; a full sync (first, periodic, after a failure) reads the
kernel instead, so virtual servers and addresses left by a previous run are found and removed. A
virtual server counts as ours when its address is bound to kube-ipvs0, is a node IP, or was applied by
us: anything else in the IPVS table (another user's) is left alone.
"""
from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from typing import Protocol

from . import ipvs
from .iptables import restore_input
from .iptables_backend import IptablesBackend
from .ipvs import VirtualServer, VSKey
from .model import NodeContext, ServicePort
from .runner import Runner, run, sysctl

logger = logging.getLogger(__name__)

DEVICE = "kube-ipvs0"
PROTOCOLS = {"TCP": socket.IPPROTO_TCP, "UDP": socket.IPPROTO_UDP, "SCTP": 132}
PROTOCOL_NAMES = {v: k for k, v in PROTOCOLS.items()}
FWD_MASQ = 0                   # IP_VS_CONN_F_MASQ; pyroute2's IPVSDest defaults to 3 (direct routing)
SVC_F_PERSISTENT = 0x1
SYSCTLS = {"net.ipv4.vs.conntrack": "1", "net.ipv4.vs.expire_nodest_conn": "1",
           "net.ipv4.vs.expire_quiescent_template": "1", "net.ipv4.vs.conn_reuse_mode": "0"}

Dest = tuple[str, int]


class IpvsHandle(Protocol):
    def list(self) -> dict[VSKey, tuple[VirtualServer, frozenset[Dest]]]: ...
    def add_service(self, vs: VirtualServer) -> None: ...
    def del_service(self, vs: VirtualServer) -> None: ...
    def add_dest(self, vs: VirtualServer, dest: Dest) -> None: ...
    def del_dest(self, vs: VirtualServer, dest: Dest) -> None: ...


class LinkHandle(Protocol):
    def ensure(self) -> None: ...
    def addresses(self) -> set[str]: ...
    def add_address(self, ip: str) -> None: ...
    def del_address(self, ip: str) -> None: ...
    def remove(self) -> None: ...


class NetlinkIpvs:
    def __init__(self) -> None:
        from pyroute2 import IPVS
        self.sock = IPVS()

    @staticmethod
    def _service(vs: VirtualServer):
        from pyroute2 import IPVSService
        flags = SVC_F_PERSISTENT if vs.persistence else 0
        return IPVSService(addr=vs.addr, port=vs.port, protocol=PROTOCOLS[vs.protocol], sched_name=vs.scheduler,
                           timeout=vs.persistence, flags={"flags": flags, "mask": 0xFFFFFFFF})

    @staticmethod
    def _field(obj: dict, name: str, prefix: str):
        # from_message() starts from the class defaults (timeout 0, flags 0): the kernel's own attribute wins.
        raw = obj.get(f"{prefix}{name.upper()}")
        return raw if raw is not None else obj.get(name)

    def list(self) -> dict[VSKey, tuple[VirtualServer, frozenset[Dest]]]:
        from pyroute2 import IPVSDest, IPVSService
        out = {}
        for msg in self.sock.service("dump"):
            s = IPVSService.from_message(msg)
            f = lambda n: self._field(s, n, "IPVS_SVC_ATTR_")  # noqa: E731
            if f("fwmark") or f("addr") is None:
                continue
            flags = f("flags") or 0
            persistent = (flags.get("flags", 0) if isinstance(flags, dict) else int(flags)) & SVC_F_PERSISTENT
            vs = VirtualServer(PROTOCOL_NAMES.get(f("protocol"), str(f("protocol"))), f("addr"), f("port"),
                               f("sched_name") or ipvs.SCHEDULER, f("timeout") if persistent else 0)
            dests = set()
            for dmsg in self.sock.dest("dump", service=s):
                d = IPVSDest.from_message(dmsg)
                dests.add((self._field(d, "addr", "IPVS_DEST_ATTR_"), self._field(d, "port", "IPVS_DEST_ATTR_")))
            out[vs.key] = (vs, frozenset(dests))
        return out

    def add_service(self, vs: VirtualServer) -> None:
        self.sock.service("add", service=self._service(vs))

    def del_service(self, vs: VirtualServer) -> None:
        self.sock.service("del", service=self._service(vs))

    def add_dest(self, vs: VirtualServer, dest: Dest) -> None:
        from pyroute2 import IPVSDest
        self.sock.dest("add", service=self._service(vs), dest=IPVSDest(addr=dest[0], port=dest[1], fwd_method=FWD_MASQ))

    def del_dest(self, vs: VirtualServer, dest: Dest) -> None:
        from pyroute2 import IPVSDest
        self.sock.dest("del", service=self._service(vs), dest=IPVSDest(addr=dest[0], port=dest[1], fwd_method=FWD_MASQ))


class IpvsLink:
    def __init__(self, name: str = DEVICE) -> None:
        self.name = name

    def _index(self, ipr) -> int | None:
        found = ipr.link_lookup(ifname=self.name)
        return found[0] if found else None

    def ensure(self) -> None:
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError
        with IPRoute() as ipr:
            if self._index(ipr) is None:
                try:
                    ipr.link("add", ifname=self.name, kind="dummy")
                except NetlinkError:
                    ipr.link("add", ifname=self.name, kind="bridge")
            ipr.link("set", index=self._index(ipr), state="up")

    def addresses(self) -> set[str]:
        from pyroute2 import IPRoute
        with IPRoute() as ipr:
            idx = self._index(ipr)
            if idx is None:
                return set()
            return {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=idx, family=socket.AF_INET)}

    def add_address(self, ip: str) -> None:
        from pyroute2 import IPRoute
        with IPRoute() as ipr:
            ipr.addr("add", index=self._index(ipr), address=ip, prefixlen=32)

    def del_address(self, ip: str) -> None:
        from pyroute2 import IPRoute
        with IPRoute() as ipr:
            ipr.addr("del", index=self._index(ipr), address=ip, prefixlen=32)

    def remove(self) -> None:
        from pyroute2 import IPRoute
        with IPRoute() as ipr:
            idx = self._index(ipr)
            if idx is not None:
                ipr.link("del", index=idx)


class IpvsBackend:
    mode = "ipvs"

    def __init__(self, *, handle: IpvsHandle | None = None, link: LinkHandle | None = None,
                 runner: Runner = run, set_sysctls: bool = True) -> None:
        self.handle = handle if handle is not None else NetlinkIpvs()
        self.link = link if link is not None else IpvsLink()
        self.rules = IptablesBackend(runner=runner)
        self.run = runner
        self.set_sysctls = set_sysctls
        self.applied: ipvs.State | None = None
        self.programmed: set[str] = set()     # every VS address this process has programmed

    def sync(self, services: Sequence[ServicePort], ctx: NodeContext, *, full: bool = False) -> None:
        new = ipvs.render(services, ctx)
        old = None if full else self.applied
        self.applied = None
        if old is None:
            if self.set_sysctls:
                for key, value in SYSCTLS.items():
                    sysctl(key, value)
            self.link.ensure()
            bound = self.link.addresses()
            current = self.handle.list()
            ours = bound | set(ctx.node_ips) | self.programmed
        else:
            bound = set(old.addresses)
            current = dict(old.services)
            ours = {key[1] for key in current}
        for ip in sorted(new.addresses - bound):
            self.link.add_address(ip)
        self._apply_services(new, current, ours)
        for ip in sorted(bound - new.addresses):
            self.link.del_address(ip)
        text = restore_input(new.rules, None, {})
        if old is None:
            text = self.rules.with_lines(text, self.rules.missing_jumps(self.rules.save(), ipvs.JUMPS))
        self.run(["iptables-restore", *self.rules.wait, "--noflush"], input=text)
        self.applied = new
        self.programmed |= {addr for _, addr, _ in new.services}

    def _apply_services(self, new: ipvs.State, current: dict, ours: set[str]) -> None:
        for key, (vs, dests) in new.services.items():
            have = current.get(key)
            if have is not None and have[0] != vs:
                self.handle.del_service(have[0])
                have = None
            if have is None:
                self.handle.add_service(vs)
                have_dests: frozenset[Dest] = frozenset()
            else:
                have_dests = have[1]
            for d in sorted(dests - have_dests):
                self.handle.add_dest(vs, d)
            for d in sorted(have_dests - dests):
                self.handle.del_dest(vs, d)
        for key, (vs, _) in current.items():
            if key not in new.services and vs.addr in ours:
                self.handle.del_service(vs)

    def cleanup(self) -> None:
        bound = self.link.addresses()
        for vs, _ in self.handle.list().values():
            if vs.addr in bound or vs.addr in self.programmed:
                self.handle.del_service(vs)
        self.link.remove()
        self.rules.cleanup(ipvs.JUMPS, extra_chains=("KUBE-NODE-PORT",))
        self.applied = None
