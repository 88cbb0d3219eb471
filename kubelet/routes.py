"""Pod network backends: how a node reaches the podCIDRs of the other nodes.

The node bridge (`kubelet.network.PodNetwork`) makes pods reachable on their own node; this module makes
them reachable from every other node, by pod IP and with no NAT, driven only by Node objects
(`spec.podCIDR` and the `InternalIP` address). Two backends, as flannel has them:

- `host-gw`: one route per remote node, `<its podCIDR> via <its InternalIP>`. Nodes must share an L2
  segment (the lab's switch, one rack). Nothing is encapsulated.
- `vxlan`: an overlay device `mk.vxlan` (VNI 1, UDP 8472, learning off) whose address is the node's
  podCIDR network address (10.244.N.0/32, flannel's layout). Per remote node: a route
  `<podCIDR> via <its vtep IP> dev mk.vxlan onlink`, a permanent neighbour entry vtep IP → vtep MAC and an
  FDB entry vtep MAC → remote InternalIP, so the kernel never floods or learns. A node's vtep MAC is read
  from its `minik8s.io/backend-data` annotation (`{"VNI": 1, "VtepMAC": ...}`, what flannel calls
  `flannel.alpha.coreos.com/backend-data`) and otherwise derived from its InternalIP, so two nodes agree
  on it even before either has published anything.

Node → remote pod traffic leaves with an address inside the cluster range (host-gw: the route's `src` is
this node's bridge gateway; vxlan: the vtep address), so the reply passes the kubelet's forwarding policy,
which only lets pods answer cluster and service addresses.

Shape: `desired(nodes) -> Plan` is pure (plain data, unit-tested without a kernel); `apply(plan)` makes the
kernel match it with pyroute2 — adding what is missing, replacing what differs, deleting routes this
module made (marked with protocol `ROUTE_PROTO`) and vxlan neighbour/FDB entries that no Node wants any
more; `sync(nodes)` does both. `await run(client, stop)` is the long-running form the kubelet runs
(`--network-backend`): a Node informer whose every event coalesces into one `sync` of the whole cache
(level-triggered), plus a periodic resync that repairs routes someone deleted by hand. Everything blocks
except `run`, which calls `sync` in a thread. One backend per network namespace: a second one would take
the first one's routes for stale. `netns=<path>` programs another namespace (tests).

Wiring into the kubelet (`--network-backend host-gw|vxlan`): once the pod network is configured,
`asyncio.create_task(make_backend(name, node_name=..., cluster_cidr=...).run(client, stop_event))`.
"""
from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from api.errors import APIError

logger = logging.getLogger(__name__)

Obj = dict[str, Any]

ROUTE_PROTO = 77             # marks our routes, so stale ones can be found and nobody else's are touched
RTNH_F_ONLINK = 4
VXLAN_DEVICE = "mk.vxlan"
VXLAN_VNI = 1
VXLAN_PORT = 8472
VXLAN_OVERHEAD = 50          # outer IPv4 + UDP + VXLAN + inner Ethernet
BACKEND_DATA_ANNOTATION = "minik8s.io/backend-data"
RESYNC_SECONDS = 60.0
ENOENT, ESRCH = 2, 3
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


# ---- what the Node objects say ----------------------------------------------------------------------

@dataclass(frozen=True)
class NodeInfo:
    name: str
    ip: str
    pod_cidr: str
    vtep_mac: str


def node_info(node: Obj) -> NodeInfo | None:
    """The routing facts of one Node, or None while it has no podCIDR or no InternalIP yet."""
    meta, spec = node.get("metadata") or {}, node.get("spec") or {}
    cidr, ip = spec.get("podCIDR"), internal_ip(node)
    if not cidr or not ip:
        return None
    try:
        cidr = str(ipaddress.IPv4Network(cidr))
        ip = str(ipaddress.IPv4Address(ip))
    except ValueError:
        logger.warning("node %s: podCIDR %r or InternalIP %r is not IPv4; skipped", meta.get("name"), cidr, ip)
        return None
    return NodeInfo(meta.get("name", ""), ip, cidr, _published_mac(meta) or vtep_mac_for(ip))


def internal_ip(node: Obj) -> str | None:
    return next((a.get("address") for a in (node.get("status") or {}).get("addresses") or []
                 if a.get("type") == "InternalIP" and a.get("address")), None)


def _published_mac(meta: Obj) -> str | None:
    raw = (meta.get("annotations") or {}).get(BACKEND_DATA_ANNOTATION)
    if not raw:
        return None
    try:
        mac = json.loads(raw).get("VtepMAC")
    except (ValueError, AttributeError):
        return None
    return mac.lower() if isinstance(mac, str) and MAC_RE.match(mac.lower()) else None


def vtep_mac_for(node_ip: str) -> str:
    """A locally administered unicast MAC derived from the node IP: every node computes the same one."""
    digest = hashlib.sha256(f"minik8s-vtep/{node_ip}".encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


def backend_data(node_ip: str) -> str:
    return json.dumps({"VNI": VXLAN_VNI, "VtepMAC": vtep_mac_for(node_ip)}, separators=(",", ":"))


# ---- the plan -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Route:
    dst: str                   # a podCIDR
    gateway: str
    device: str | None = None  # None: the kernel picks the interface that reaches the gateway
    onlink: bool = False
    src: str | None = None     # preferred source for traffic the node itself sends


@dataclass(frozen=True)
class Neighbour:
    ip: str
    mac: str


@dataclass(frozen=True)
class FdbEntry:
    mac: str
    dst: str


@dataclass(frozen=True)
class Vtep:
    device: str
    vni: int
    port: int
    local_ip: str
    address: str               # the podCIDR's network address, as a /32
    mac: str


@dataclass
class Plan:
    routes: set[Route] = field(default_factory=set)
    neighbours: set[Neighbour] = field(default_factory=set)
    fdb: set[FdbEntry] = field(default_factory=set)
    vtep: Vtep | None = None


# ---- backends -----------------------------------------------------------------------------------------

class RouteBackend:
    """Routes to the other nodes' podCIDRs; subclasses say how (`desired`) and what else to program."""

    name = ""

    def __init__(self, *, node_name: str, cluster_cidr: str = "10.244.0.0/16", netns: str | None = None) -> None:
        self.node_name = node_name
        self.cluster_cidr = ipaddress.IPv4Network(cluster_cidr)
        self.netns = netns

    # -- pure --

    def desired(self, nodes: list[Obj]) -> Plan:
        me, peers = self._split(nodes)
        return self._plan(me, peers)

    def _split(self, nodes: list[Obj]) -> tuple[NodeInfo | None, list[NodeInfo]]:
        me, peers = None, []
        for node in nodes:
            info = node_info(node)
            if info is None:
                continue
            if not ipaddress.IPv4Network(info.pod_cidr).subnet_of(self.cluster_cidr):
                logger.warning("node %s: podCIDR %s is outside the cluster range %s; no route",
                               info.name, info.pod_cidr, self.cluster_cidr)
            elif info.name == self.node_name:
                me = info
            else:
                peers.append(info)
        return me, sorted(peers, key=lambda p: p.name)

    def _plan(self, me: NodeInfo | None, peers: list[NodeInfo]) -> Plan:
        raise NotImplementedError

    # -- kernel --

    def sync(self, nodes: list[Obj]) -> Plan:
        plan = self.desired(nodes)
        self.apply(plan)
        return plan

    def apply(self, plan: Plan) -> None:
        with self._netlink() as ipr:
            self._apply_routes(ipr, plan.routes)

    def teardown(self) -> None:
        """Remove every route this backend made (and its device); idempotent."""
        with self._netlink() as ipr:
            self._apply_routes(ipr, set())

    def _netlink(self) -> IPRoute:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return IPRoute() if self.netns is None else IPRoute(netns=self.netns, flags=0)
        raise RuntimeError("RouteBackend blocks: call it from a thread (asyncio.to_thread), not the event loop")

    def _apply_routes(self, ipr: IPRoute, wanted: set[Route]) -> None:
        by_dst = {r.dst: r for r in wanted}
        local = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(family=2)}
        for route in ipr.route("dump", family=2, table=254, proto=ROUTE_PROTO):
            dst = f"{route.get('dst')}/{route['dst_len']}"
            want = by_dst.get(dst)
            if want is None:
                _ignore(ipr.route, "del", dst=dst, table=254, proto=ROUTE_PROTO)
                logger.info("route %s via %s removed: no node owns it any more", dst, route.get("gateway"))
            elif self._matches(ipr, route, want, local):
                del by_dst[dst]
        for route in by_dst.values():
            kwargs: dict[str, Any] = {"dst": route.dst, "gateway": route.gateway, "table": 254,
                                      "proto": ROUTE_PROTO}
            if route.device is not None:
                kwargs["oif"] = _index(ipr, route.device)
            if route.onlink:
                kwargs["flags"] = RTNH_F_ONLINK
            if route.src is not None and route.src in local:
                kwargs["prefsrc"] = route.src
            try:
                ipr.route("replace", **kwargs)
            except NetlinkError as e:
                # one unreachable peer (another subnet for host-gw) must not keep the others unrouted
                logger.error("route %s via %s: %s", route.dst, route.gateway, e)
                continue
            logger.info("route %s via %s%s", route.dst, route.gateway,
                        f" dev {route.device}" if route.device else "")

    def _matches(self, ipr: IPRoute, have: Any, want: Route, local: set[str]) -> bool:
        src = want.src if want.src in local else None
        oif_ok = want.device is None or have.get("oif") == _index(ipr, want.device)
        return (have.get("gateway") == want.gateway and have.get("prefsrc") == src and oif_ok
                and bool(have["flags"] & RTNH_F_ONLINK) == want.onlink)

    # -- long-running --

    async def run(self, client: Any, stop: asyncio.Event | None = None,
                  resync_seconds: float = RESYNC_SECONDS) -> None:
        """Keep the kernel in line with the Nodes until `stop` is set (or the task is cancelled)."""
        from client.factory import InformerFactory

        stop = stop or asyncio.Event()
        wake = asyncio.Event()
        factory = InformerFactory(client)
        nodes = factory.informer("nodes")
        nodes.add_handler(on_add=lambda _: wake.set(), on_update=lambda _o, _n: wake.set(),
                          on_delete=lambda _: wake.set())
        factory.start()
        try:
            await factory.wait_for_sync()
            stopping = asyncio.create_task(stop.wait())
            while not stop.is_set():
                wake.clear()
                current = nodes.store.list()
                try:
                    await self._publish(client, current)
                    await asyncio.to_thread(self.sync, current)
                except Exception:   # the next event or resync retries; the loop must outlive one bad apply
                    logger.exception("%s: route sync failed", self.name)
                waking = asyncio.create_task(wake.wait())
                await asyncio.wait({waking, stopping}, timeout=resync_seconds, return_when=asyncio.FIRST_COMPLETED)
                waking.cancel()
            stopping.cancel()
        finally:
            await factory.stop()

    async def _publish(self, client: Any, nodes: list[Obj]) -> None:
        """Backends that announce something on their Node do it here (vxlan: its vtep MAC); called before
        every sync, so it must be cheap when there is nothing to do."""


class HostGwBackend(RouteBackend):
    """`<remote podCIDR> via <remote InternalIP>`; the remote node must be on this node's L2 segment."""

    name = "host-gw"

    def _plan(self, me: NodeInfo | None, peers: list[NodeInfo]) -> Plan:
        src = str(next(ipaddress.IPv4Network(me.pod_cidr).hosts())) if me else None
        return Plan(routes={Route(p.pod_cidr, p.ip, src=src) for p in peers if me is None or p.ip != me.ip})


class VxlanBackend(RouteBackend):
    """An overlay over the node network: one vxlan device, static neighbour and FDB entries per peer."""

    name = "vxlan"

    def __init__(self, *, device: str = VXLAN_DEVICE, vni: int = VXLAN_VNI, port: int = VXLAN_PORT,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.device, self.vni, self.port = device, vni, port

    def _plan(self, me: NodeInfo | None, peers: list[NodeInfo]) -> Plan:
        if me is None:      # without our own podCIDR there is no vtep address to route from
            return Plan()
        plan = Plan(vtep=Vtep(self.device, self.vni, self.port, me.ip,
                              str(ipaddress.IPv4Network(me.pod_cidr).network_address), me.vtep_mac))
        for p in peers:
            if p.ip == me.ip:
                continue
            vtep_ip = str(ipaddress.IPv4Network(p.pod_cidr).network_address)
            plan.routes.add(Route(p.pod_cidr, vtep_ip, device=self.device, onlink=True))
            plan.neighbours.add(Neighbour(vtep_ip, p.vtep_mac))
            plan.fdb.add(FdbEntry(p.vtep_mac, p.ip))
        return plan

    def apply(self, plan: Plan) -> None:
        with self._netlink() as ipr:
            if plan.vtep is None:
                self._apply_routes(ipr, set())
                return
            index = self._ensure_vtep(ipr, plan.vtep)
            self._apply_neighbours(ipr, index, plan.neighbours)
            self._apply_fdb(ipr, index, plan.fdb)
            self._apply_routes(ipr, plan.routes)

    def teardown(self) -> None:
        super().teardown()
        with self._netlink() as ipr:
            index = _find(ipr, self.device)
            if index is not None:
                _ignore(ipr.link, "del", index=index)
                logger.info("vxlan device %s removed", self.device)

    def _ensure_vtep(self, ipr: IPRoute, vtep: Vtep) -> int:
        underlay = _device_with_address(ipr, vtep.local_ip)
        if underlay is None:
            raise RuntimeError(f"no interface holds the node IP {vtep.local_ip}: cannot anchor {vtep.device}")
        mtu = ipr.get_links(underlay)[0].get("mtu") - VXLAN_OVERHEAD
        index = _find(ipr, vtep.device)
        if index is not None and not self._vtep_matches(ipr, index, vtep, underlay):
            logger.info("vxlan device %s has other parameters: recreating it", vtep.device)
            ipr.link("del", index=index)
            index = None
        if index is None:
            ipr.link("add", ifname=vtep.device, kind="vxlan", vxlan_id=vtep.vni, vxlan_port=vtep.port,
                     vxlan_local=vtep.local_ip, vxlan_link=underlay, vxlan_learning=0, address=vtep.mac, mtu=mtu)
            index = _index(ipr, vtep.device)
            logger.info("vxlan device %s: VNI %d, UDP %d, local %s, MAC %s, MTU %d", vtep.device, vtep.vni,
                        vtep.port, vtep.local_ip, vtep.mac, mtu)
        for addr in ipr.get_addr(index=index, family=2):
            if (addr.get_attr("IFA_ADDRESS"), addr["prefixlen"]) != (vtep.address, 32):
                ipr.addr("del", index=index, address=addr.get_attr("IFA_ADDRESS"), prefixlen=addr["prefixlen"])
        if not ipr.get_addr(index=index, address=vtep.address, prefixlen=32):
            ipr.addr("add", index=index, address=vtep.address, prefixlen=32)
        ipr.link("set", index=index, state="up")
        return index

    @staticmethod
    def _vtep_matches(ipr: IPRoute, index: int, vtep: Vtep, underlay: int) -> bool:
        link = ipr.get_links(index)[0]
        info = link.get("linkinfo")
        data = info.get("data") if info is not None else None
        if info is None or info.get("kind") != "vxlan" or data is None:
            return False
        return (data.get("vxlan_id"), data.get("vxlan_port"), data.get("vxlan_local"), data.get("vxlan_link"),
                link.get("address")) == (vtep.vni, vtep.port, vtep.local_ip, underlay, vtep.mac)

    @staticmethod
    def _apply_neighbours(ipr: IPRoute, index: int, wanted: set[Neighbour]) -> None:
        have = {}
        for n in ipr.neigh("dump", ifindex=index, family=2):
            if n["ifindex"] == index:
                have[n.get("dst")] = (n.get("lladdr"), n["state"])
        for ip, (mac, _state) in have.items():
            if Neighbour(ip, mac) not in wanted:
                _ignore(ipr.neigh, "del", ifindex=index, dst=ip)
        for n in wanted:
            if have.get(n.ip, (None, 0)) != (n.mac, 0x80):     # 0x80: NUD_PERMANENT
                ipr.neigh("replace", ifindex=index, dst=n.ip, lladdr=n.mac, state="permanent")

    @staticmethod
    def _apply_fdb(ipr: IPRoute, index: int, wanted: set[FdbEntry]) -> None:
        have = set()
        for entry in ipr.fdb("dump", ifindex=index):
            if entry["ifindex"] == index and entry.get("dst"):
                have.add(FdbEntry(entry.get("lladdr"), entry.get("dst")))
        for entry in have - wanted:
            _ignore(ipr.fdb, "del", ifindex=index, lladdr=entry.mac, dst=entry.dst)
        for entry in wanted - have:
            ipr.fdb("append", ifindex=index, lladdr=entry.mac, dst=entry.dst)   # permanent by default
        if have != wanted:
            logger.info("vxlan %s: FDB now %s", ipr.get_links(index)[0].get("ifname"),
                        ", ".join(sorted(f"{e.mac}->{e.dst}" for e in wanted)) or "empty")

    async def _publish(self, client: Any, nodes: list[Obj]) -> None:
        mine = next((n for n in nodes if (n.get("metadata") or {}).get("name") == self.node_name), None)
        ip = internal_ip(mine) if mine else None
        if ip is None:
            return
        data = backend_data(ip)
        if ((mine.get("metadata") or {}).get("annotations") or {}).get(BACKEND_DATA_ANNOTATION) == data:
            return
        try:
            await client.patch("nodes", self.node_name,
                               {"metadata": {"annotations": {BACKEND_DATA_ANNOTATION: data}}})
        except APIError as e:   # peers derive the same MAC from our IP: publishing is a courtesy
            logger.warning("node %s: could not publish %s: %s", self.node_name, BACKEND_DATA_ANNOTATION, e)
            return
        logger.info("node %s: published %s=%s", self.node_name, BACKEND_DATA_ANNOTATION, data)


BACKENDS: dict[str, type[RouteBackend]] = {"host-gw": HostGwBackend, "vxlan": VxlanBackend}


def make_backend(name: str, **kwargs: Any) -> RouteBackend:
    """`make_backend("vxlan", node_name=..., cluster_cidr=...)`; the names are the `--network-backend` values."""
    try:
        return BACKENDS[name](**kwargs)
    except KeyError:
        raise ValueError(f"unknown network backend {name!r}; known: {', '.join(BACKENDS)}") from None


# ---- helpers ----------------------------------------------------------------------------------------

def _find(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def _index(ipr: IPRoute, name: str) -> int:
    index = _find(ipr, name)
    if index is None:
        raise RuntimeError(f"interface {name} does not exist")
    return index


def _device_with_address(ipr: IPRoute, ip: str) -> int | None:
    for addr in ipr.get_addr(family=2):
        if addr.get_attr("IFA_ADDRESS") == ip:
            return addr["index"]
    return None


def _ignore(fn: Any, *args: Any, **kwargs: Any) -> None:
    """A delete that lost a race with someone else's delete is fine."""
    try:
        fn(*args, **kwargs)
    except NetlinkError as e:
        if e.code not in (ENOENT, ESRCH):
            raise
