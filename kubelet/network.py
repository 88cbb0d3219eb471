"""Pod networking on one node: a bridge, a veth per pod, an IP from the kubelet's own IPAM.

Docker starts every sandbox with `network_mode="none"`, so a pod's network namespace holds only `lo`;
this module wires it the way a bridge CNI plugin would:

    pod netns: eth0 (10.244.1.7/24, default via 10.244.1.1) ══ veth ══ vethXXXXXXXX ─┐
                                                                                      mk0 (10.244.1.1/24)
    pod netns: eth0 (10.244.1.8/24, default via 10.244.1.1) ══ veth ══ vethYYYYYYYY ─┘

`configure(pod_cidr)` prepares the node, idempotently and in an order chosen for network safety
(DESIGN §6: nothing a pod sends may leave the machine unless egress is switched on):

1. the local sink: a port-less bridge (`kube-svc0`; this kernel has no dummy interface) holding a route
   for the whole service range and one for the whole cluster range, so a service IP that kube-proxy does
   not translate, or a pod IP no node owns, fails locally instead of following the default route out.
   More specific routes (this node's podCIDR on the bridge, other nodes' podCIDRs) still win. The routes
   are appended with the sink as their device, so several instances on one host (tests) each own theirs
   and deleting one sink never removes another's route;
2. the forwarding policy, one iptables chain per bridge jumped to from FORWARD (and one from nat
   POSTROUTING), loaded in a single atomic `iptables-restore --noflush`: traffic into the pods and from
   pods to the cluster and service ranges is accepted (Docker sets the FORWARD policy to DROP, and
   bridge-nf-call-iptables stays on because kube-proxy needs it), and anything else a pod sends is dropped
   — or, with `pod_egress=True`, accepted and masqueraded when it leaves the cluster range;
3. the node bridge, up, with the gateway address (the podCIDR's first host);
4. `net.ipv4.ip_forward=1`, last, once the policy is in place.

`attach(uid, pid)` takes the uid's address from the IPAM (the same one on every call), creates a veth
pair whose peer is born inside `/proc/<pid>/ns/net`, and configures both ends; the host end's name is
derived from the bridge and the uid, so a restarted kubelet finds it again without any state of its own.
Netlink goes through pyroute2; iptables is the only subprocess. Every method blocks (pyroute2's
synchronous API runs its own event loop), so async callers use `asyncio.to_thread`; calls from several
threads are fine, each opens its own netlink sockets.
"""
from __future__ import annotations

import asyncio
import ctypes
import hashlib
import ipaddress
import logging
import os
import subprocess
import threading
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from .ipam import Ipam, gateway_of

logger = logging.getLogger(__name__)

ENOENT, EEXIST, ENODEV = 2, 17, 19
SINK_ROUTE_METRIC = 4096    # a high metric: any route another component adds for the same prefix wins


class PodNetwork:
    def __init__(self, *, bridge: str = "mk0", state_dir: Path, cluster_cidr: str = "10.244.0.0/16",
                 service_cidr: str = "10.96.0.0/12", pod_egress: bool = False, mtu: int = 1500,
                 service_sink: str = "kube-svc0") -> None:
        if len(bridge) > 15 or len(service_sink) > 15:
            raise ValueError("interface names are at most 15 characters")
        self.bridge = bridge
        self.service_sink = service_sink
        self.cluster_cidr = ipaddress.IPv4Network(cluster_cidr)
        self.service_cidr = ipaddress.IPv4Network(service_cidr)
        self.pod_egress = pod_egress
        self.mtu = mtu
        self.forward_chain = f"MINIK8S-FWD-{bridge}"
        self.nat_chain = f"MINIK8S-NAT-{bridge}"
        self.state_dir = Path(state_dir)
        self.ipam = Ipam(self.state_dir / "ipam.json")
        self.pod_cidr: ipaddress.IPv4Network | None = None

    # ---- node setup -------------------------------------------------------------------------------

    def configure(self, pod_cidr: str) -> None:
        """Make the node ready for pods of `pod_cidr`; safe to call again (also with a new podCIDR)."""
        network = ipaddress.IPv4Network(pod_cidr)
        if not network.subnet_of(self.cluster_cidr):
            raise ValueError(f"podCIDR {network} is not inside the cluster range {self.cluster_cidr}")
        with _netlink() as ipr:
            self._ensure_sink(ipr)
            self._apply_policy(network)
            self._ensure_bridge(ipr, network)
        _write_sysctl("net/ipv4/ip_forward", "1")
        self.ipam.set_cidr(str(network))
        self.pod_cidr = network
        logger.info("node network ready: bridge %s %s/%d, egress %s", self.bridge, gateway_of(network),
                    network.prefixlen, "masqueraded" if self.pod_egress else "dropped")

    def _ensure_sink(self, ipr: IPRoute) -> None:
        sink = _ensure_link(ipr, self.service_sink, kind="bridge")
        ipr.link("set", index=sink, state="up")
        for cidr in (self.service_cidr, self.cluster_cidr):
            routes = ipr.route("dump", dst=str(cidr.network_address), dst_len=cidr.prefixlen, oif=sink)
            if not list(routes):
                # append, not add: another sink (a test's, a lab's) may already hold the same prefix
                ipr.route("append", dst=str(cidr), oif=sink, priority=SINK_ROUTE_METRIC)

    def _apply_policy(self, pod_cidr: ipaddress.IPv4Network) -> None:
        """Fill both chains and hook them in, in one atomic restore."""
        cluster, service, br = str(self.cluster_cidr), str(self.service_cidr), self.bridge
        egress = "ACCEPT" if self.pod_egress else "DROP"
        lines = ["*filter", f":{self.forward_chain} - [0:0]",
                 f"-A {self.forward_chain} -o {br} -m comment --comment \"minik8s: into pods\" -j ACCEPT",
                 f"-A {self.forward_chain} -i {br} -d {cluster} -j ACCEPT",
                 # RETURN, not ACCEPT: a packet still addressed to a service IP here was not DNATed (a
                 # Service without endpoints, a port it lacks), and kube-proxy's FORWARD jumps, which may
                 # sit after this chain, must still reject it at once rather than let it die in the sink
                 f"-A {self.forward_chain} -i {br} -d {service} -j RETURN",
                 # Replies to connections made to pods (a NodePort client outside the cluster range), and
                 # traffic to a Service whose endpoint lies outside it (the `kubernetes` Service): both
                 # are allowed by what the connection was, not by where its packets now go.
                 f"-A {self.forward_chain} -i {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
                 f"-A {self.forward_chain} -i {br} -m conntrack --ctstate DNAT -j ACCEPT",
                 f"-A {self.forward_chain} -i {br} -m comment --comment \"minik8s: pod egress\" -j {egress}"]
        if not _iptables_ok("filter", "-C", "FORWARD", "-j", self.forward_chain):
            lines.append(f"-I FORWARD 1 -j {self.forward_chain}")
        lines += ["COMMIT", "*nat", f":{self.nat_chain} - [0:0]"]
        if self.pod_egress:
            lines += [f"-A {self.nat_chain} -s {pod_cidr} -d {cluster} -j RETURN",
                      f"-A {self.nat_chain} -s {pod_cidr} -d {service} -j RETURN",
                      f"-A {self.nat_chain} -s {pod_cidr} -j MASQUERADE"]
        if not _iptables_ok("nat", "-C", "POSTROUTING", "-j", self.nat_chain):
            lines.append(f"-I POSTROUTING 1 -j {self.nat_chain}")
        lines.append("COMMIT")
        done = subprocess.run(["iptables-restore", "-w", "--noflush"], input="\n".join(lines) + "\n",
                              text=True, capture_output=True)
        if done.returncode != 0:
            raise RuntimeError(f"iptables-restore of {self.forward_chain}/{self.nat_chain} failed: "
                               f"{done.stderr.strip()}")

    def _ensure_bridge(self, ipr: IPRoute, pod_cidr: ipaddress.IPv4Network) -> None:
        index = _ensure_link(ipr, self.bridge, kind="bridge")
        gateway = str(gateway_of(pod_cidr))
        for addr in ipr.get_addr(index=index, family=2):
            old = (addr.get_attr("IFA_ADDRESS"), addr["prefixlen"])
            if old != (gateway, pod_cidr.prefixlen):
                logger.info("bridge %s: removing old address %s/%d", self.bridge, *old)
                ipr.addr("del", index=index, address=old[0], prefixlen=old[1])
        if not ipr.get_addr(index=index, address=gateway, prefixlen=pod_cidr.prefixlen):
            ipr.addr("add", index=index, address=gateway, prefixlen=pod_cidr.prefixlen)
        # a bridge takes the lowest MAC of its ports unless given one: pods' ARP entries for the gateway
        # would go stale whenever that port leaves
        ipr.link("set", index=index, address=_stable_mac(self.bridge), mtu=self.mtu, state="up")

    # ---- pods -------------------------------------------------------------------------------------

    def host_ifname(self, pod_uid: str) -> str:
        """The host end of a pod's veth: 'veth' + 8 hex chars of (bridge, uid), stable across restarts."""
        return "veth" + hashlib.sha256(f"{self.bridge}/{pod_uid}".encode()).hexdigest()[:8]

    def attach(self, pod_uid: str, sandbox_pid: int, *, ifname: str = "eth0") -> str:
        """Wire the sandbox's network namespace to the bridge; returns the pod IP (same one every call)."""
        if self.pod_cidr is None:
            raise RuntimeError("PodNetwork.configure(pod_cidr) must run before attach")
        if sandbox_pid <= 0:
            raise ValueError(f"pod {pod_uid}: sandbox pid {sandbox_pid} is not a running process")
        netns = f"/proc/{sandbox_pid}/ns/net"
        host = self.host_ifname(pod_uid)
        with _netlink() as ipr, _netlink(netns) as pod:     # a dead sandbox fails here, before allocating
            ip = self.ipam.allocate(pod_uid)
            if self._is_wired(ipr, pod, host, ifname, ip):
                return ip
            _delete_link(ipr, host)
            _delete_link(pod, ifname)
            try:
                self._wire(ipr, pod, host, netns, ifname, ip)
            except Exception:
                _delete_link(ipr, host)
                raise
        logger.info("pod %s: %s on %s via %s (sandbox pid %d)", pod_uid, ip, self.bridge, host, sandbox_pid)
        return ip

    def is_attached(self, pod_uid: str, sandbox_pid: int, *, ifname: str = "eth0") -> bool:
        """Whether the sandbox still has its IP on `ifname`, a default route, and its veth on the bridge.

        False (not an error) when the sandbox process is gone; the kubelet then makes a new sandbox.
        """
        ip = self.ipam.get(pod_uid)
        if ip is None or self.pod_cidr is None or sandbox_pid <= 0:
            return False
        try:
            with _netlink() as ipr, _netlink(f"/proc/{sandbox_pid}/ns/net") as pod:
                return self._is_wired(ipr, pod, self.host_ifname(pod_uid), ifname, ip)
        except FileNotFoundError:
            return False

    def _is_wired(self, ipr: IPRoute, pod: IPRoute, host: str, ifname: str, ip: str) -> bool:
        bridge, link = _link_index(ipr, self.bridge), _link_index(ipr, host)
        if link is None or bridge is None or ipr.get_links(link)[0].get_attr("IFLA_MASTER") != bridge:
            return False
        inside = _link_index(pod, ifname)
        if inside is None or not pod.get_addr(index=inside, address=ip):
            return False
        gateway = str(gateway_of(self.pod_cidr))
        return any(route.get_attr("RTA_GATEWAY") == gateway for route in pod.get_default_routes(family=2))

    def _wire(self, ipr: IPRoute, pod: IPRoute, host: str, netns: str, ifname: str, ip: str) -> None:
        ipr.link("add", ifname=host, kind="veth", peer={"ifname": ifname, "net_ns_fd": netns})
        index = _link_index(ipr, host)
        ipr.link("set", index=index, master=_link_index(ipr, self.bridge), mtu=self.mtu)
        # hairpin: a pod reaching its own service is DNATed back out of the port it came in by
        ipr.brport("set", index=index, mode=1)
        ipr.link("set", index=index, state="up")
        pod.link("set", index=_link_index(pod, "lo"), state="up")
        inside = _link_index(pod, ifname)
        pod.link("set", index=inside, mtu=self.mtu, state="up")
        pod.addr("add", index=inside, address=ip, prefixlen=self.pod_cidr.prefixlen)
        pod.route("add", dst="0.0.0.0/0", gateway=str(gateway_of(self.pod_cidr)), oif=inside)

    def detach(self, pod_uid: str) -> None:
        """Remove the pod's veth (if the sandbox still holds it) and free its IP; idempotent."""
        with _netlink() as ipr:
            _delete_link(ipr, self.host_ifname(pod_uid))
        self.ipam.release(pod_uid)

    def ip_of(self, pod_uid: str) -> str | None:
        return self.ipam.get(pod_uid)

    def gc(self, live_pod_uids: set[str]) -> None:
        """Free the IPs and veths of every pod not in `live_pod_uids` (after a kubelet restart)."""
        for uid in set(self.ipam.all()) - set(live_pod_uids):
            logger.info("pod %s is gone: releasing its network", uid)
            self.detach(uid)
        keep = {self.host_ifname(uid) for uid in live_pod_uids}
        with _netlink() as ipr:
            for name in self._bridge_ports(ipr):
                if name not in keep and name.startswith("veth"):
                    logger.info("removing orphaned veth %s from %s", name, self.bridge)
                    _delete_link(ipr, name)

    def _bridge_ports(self, ipr: IPRoute) -> list[str]:
        bridge = _link_index(ipr, self.bridge)
        if bridge is None:
            return []
        return [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()
                if link.get_attr("IFLA_MASTER") == bridge]

    # ---- teardown ---------------------------------------------------------------------------------

    def teardown(self) -> None:
        """Remove the veths on the bridge, the bridge, the sink (with its routes) and both chains.

        The IPAM file is left alone: it belongs to the kubelet's state directory.
        """
        with _netlink() as ipr:
            for name in self._bridge_ports(ipr):
                _delete_link(ipr, name)
            _delete_link(ipr, self.bridge)
            _delete_link(ipr, self.service_sink)
        for table, hook, chain in (("filter", "FORWARD", self.forward_chain),
                                   ("nat", "POSTROUTING", self.nat_chain)):
            while _iptables_ok(table, "-D", hook, "-j", chain):
                pass
            _iptables_ok(table, "-F", chain)
            _iptables_ok(table, "-X", chain)
        self.pod_cidr = None
        logger.info("node network torn down: bridge %s, sink %s", self.bridge, self.service_sink)


# ---- helpers ----------------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _netlink(netns: str | None = None) -> IPRoute:
    """A netlink socket in the host namespace, or in the namespace at path `netns` (never created).

    For another namespace the calling thread enters it just long enough to open the socket — a socket
    keeps the namespace it was created in — and comes straight back. Namespaces are per thread, so this
    is safe in a worker thread, and much cheaper than pyroute2's own netns support, which forks a helper
    process per socket (measured as the largest part of a pod's start-up)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("PodNetwork blocks: call it from a thread (asyncio.to_thread), not the event loop")
    if netns is None:
        return IPRoute()
    target = os.open(netns, os.O_RDONLY)   # FileNotFoundError when the sandbox is gone
    home = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
    try:
        _setns(target)
        try:
            return IPRoute()
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


def _link_index(ipr: IPRoute, name: str) -> int | None:
    try:
        return ipr.link("get", ifname=name)[0]["index"]
    except NetlinkError as e:
        if e.code == ENODEV:
            return None
        raise


def _ensure_link(ipr: IPRoute, name: str, *, kind: str) -> int:
    index = _link_index(ipr, name)
    if index is None:
        try:
            ipr.link("add", ifname=name, kind=kind)
        except NetlinkError as e:
            if e.code != EEXIST:
                raise
        index = _link_index(ipr, name)
    return index


def _delete_link(ipr: IPRoute, name: str) -> None:
    index = _link_index(ipr, name)
    if index is None:
        return
    try:
        ipr.link("del", index=index)
    except NetlinkError as e:
        if e.code not in (ENOENT, ENODEV):
            raise


def _stable_mac(name: str) -> str:
    """A locally administered unicast MAC derived from an interface name."""
    digest = hashlib.sha256(name.encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


def _iptables_ok(table: str, *args: str) -> bool:
    return subprocess.run(["iptables", "-w", "-t", table, *args], capture_output=True).returncode == 0


def _write_sysctl(key: str, value: str) -> None:
    path = Path("/proc/sys") / key
    if path.read_text().strip() != value:
        path.write_text(value)
        logger.info("sysctl %s=%s", key.replace("/", "."), value)
