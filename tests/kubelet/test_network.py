"""Pod networking against the real kernel: real bridges, veths, iptables and Docker sandboxes.

Every name is unique to this module (bridge `mkt<hex>`, sink `mks<hex>`, a /24 of 10.244.200-249.0/24 that
no route uses yet), so it can run beside other engineers' tests on the same host; fixtures tear down
containers, links, routes and chains even when a test fails.

Network safety (DESIGN §6): traffic goes only host → our pods and pod → pod, plus one ping from a pod to
an address of 198.51.100.0/24 (TEST-NET-2) that the egress rule must drop — and which this module routes into a port-less
bridge of its own first, so it could not leave the machine even if the rule were broken. (192.0.2.0/24,
TEST-NET-1, is this machine's real uplink here, so it is not used.)
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import random
import secrets
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from kubelet.network import PodNetwork

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for netlink and iptables")

docker = pytest.importorskip("docker")
IMAGE = "minik8s/busybox:1.36"
OUTSIDE = f"198.51.100.{random.randrange(1, 255)}"   # TEST-NET-2, one address per run
LABEL = "io.minik8s.test"


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


def in_netns(pid: int, *cmd: str) -> None:
    """Run a command in a sandbox's netns from the host (the container lacks CAP_NET_ADMIN)."""
    sh("nsenter", f"--net=/proc/{pid}/ns/net", *cmd)


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def host_ping(ip: str) -> bool:
    return sh("busybox", "ping", "-c1", "-W2", ip, check=False).returncode == 0


def pod_ping(container, ip: str) -> bool:
    return container.exec_run(["ping", "-c1", "-W2", ip]).exit_code == 0


def free_pod_cidr() -> str:
    """A /24 in 10.244.200-249 that no route on this host covers more specifically than a /16."""
    routes = json.loads(sh("ip", "-j", "-4", "route", "show", "table", "all").stdout)
    used = [ipaddress.ip_network(r["dst"]) for r in routes if r.get("dst", "default") != "default"
            and "/" in r["dst"] and int(r["dst"].split("/")[1]) > 16]
    candidates = [ipaddress.ip_network(f"10.244.{o}.0/24") for o in range(200, 250)]
    free = [c for c in candidates if not any(c.overlaps(u) for u in used)]
    return str(random.choice(free))


def forward_drop_packets(chain: str) -> int:
    out = sh("iptables", "-w", "-L", chain, "-v", "-x", "-n").stdout
    drops = [line for line in out.splitlines() if line.split()[2:3] == ["DROP"]]
    assert len(drops) == 1, out
    return int(drops[0].split()[0])


def new_network(tmp_path_factory, **kw) -> PodNetwork:
    tag = secrets.token_hex(3)
    return PodNetwork(bridge=f"mkt{tag}", service_sink=f"mks{tag}",
                      state_dir=tmp_path_factory.mktemp("kubelet"), **kw)


@pytest.fixture(scope="module")
def docker_client():
    client = docker.from_env()
    try:
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        pytest.skip(f"{IMAGE} missing: run deploy/images/build.sh")
    yield client
    client.close()


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    network = new_network(tmp_path_factory)
    try:
        network.configure(free_pod_cidr())
        yield network
    finally:
        network.teardown()


@pytest.fixture
def sandbox(docker_client):
    """Start busybox sandboxes with no Docker network (like the kubelet's pause container)."""
    started = []

    def start():
        container = docker_client.containers.run(IMAGE, ["sleep", "3600"], detach=True, network_mode="none",
                                                 labels={LABEL: "network"}, name=f"mktest-{uuid.uuid4().hex[:12]}")
        started.append(container)
        container.reload()
        return container, container.attrs["State"]["Pid"]

    yield start
    for container in started:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass


@pytest.fixture
def pod(net, sandbox):
    """A sandbox attached to `net`: (uid, container, ip)."""
    def make():
        container, pid = sandbox()
        uid = str(uuid.uuid4())
        return uid, container, net.attach(uid, pid)
    return make


# ---- node setup ---------------------------------------------------------------------------------

def test_configure_sets_up_bridge_and_forwarding(net):
    gateway = str(next(net.pod_cidr.hosts()))
    addrs = json.loads(sh("ip", "-j", "-4", "addr", "show", "dev", net.bridge).stdout)[0]["addr_info"]
    assert [(a["local"], a["prefixlen"]) for a in addrs] == [(gateway, net.pod_cidr.prefixlen)]
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1"
    assert Path(f"/sys/class/net/{net.bridge}/addr_assign_type").read_text().strip() == "3"   # MAC pinned


def test_bridge_mac_does_not_follow_its_ports(net, pod):
    mac = Path(f"/sys/class/net/{net.bridge}/address").read_text()
    uid, _, _ = pod()
    net.detach(uid)
    assert Path(f"/sys/class/net/{net.bridge}/address").read_text() == mac


def test_configure_is_idempotent(net):
    net.configure(str(net.pod_cidr))
    net.configure(str(net.pod_cidr))
    forward = sh("iptables", "-w", "-S", "FORWARD").stdout.split("\n")
    postrouting = sh("iptables", "-w", "-t", "nat", "-S", "POSTROUTING").stdout.split("\n")
    assert forward.count(f"-A FORWARD -j {net.forward_chain}") == 1
    assert postrouting.count(f"-A POSTROUTING -j {net.nat_chain}") == 1
    assert len(sh("ip", "-4", "addr", "show", "dev", net.bridge).stdout.split("inet ")) == 2
    assert len(sh("iptables", "-w", "-S", net.forward_chain).stdout.splitlines()) == 7  # chain + 6 rules: configured twice, nothing doubled
    sink_routes = sh("ip", "-4", "route", "show", "dev", net.service_sink).stdout.splitlines()
    assert len(sink_routes) == 2


def sink_of(route_get: str) -> str:
    """The device of an `ip route get` answer, asserted to be a port-less bridge (a local sink)."""
    dev = route_get.split(" dev ")[1].split()[0]
    assert Path("/sys/class/net", dev, "bridge").exists(), route_get
    assert not os.listdir(f"/sys/class/net/{dev}/brif"), f"{dev} has ports: not a sink"
    return dev


def test_service_range_is_routed_to_the_local_sink(net, pod):
    routes = sh("ip", "-4", "route", "show", "dev", net.service_sink).stdout
    assert f"{net.service_cidr} " in routes and f"{net.cluster_cidr} " in routes
    # another module's sink may hold the same prefix first; either way it must stay on the node
    sink_of(sh("ip", "route", "get", "10.96.0.99").stdout)
    _, _, ip = pod()
    sink_of(sh("ip", "route", "get", "10.96.0.99", "from", ip, "iif", net.bridge).stdout)
    # cluster addresses of no node stay local too; this node's pods are on the bridge
    sink_of(sh("ip", "route", "get", "10.244.199.9", "from", ip, "iif", net.bridge).stdout)
    assert f" dev {net.bridge} " in sh("ip", "route", "get", ip).stdout


# ---- pods ---------------------------------------------------------------------------------------

def test_pod_gets_eth0_with_its_ip_and_default_route(net, pod):
    _, container, ip = pod()
    assert ipaddress.ip_address(ip) in net.pod_cidr
    addr = container.exec_run(["ip", "-o", "-4", "addr", "show", "eth0"]).output.decode()
    assert f"inet {ip}/{net.pod_cidr.prefixlen}" in addr
    assert "mtu 1500" in container.exec_run(["ip", "link", "show", "eth0"]).output.decode()
    route = container.exec_run(["ip", "route"]).output.decode()
    assert f"default via {next(net.pod_cidr.hosts())} dev eth0" in route
    assert "UP" in container.exec_run(["ip", "link", "show", "lo"]).output.decode()


def test_host_veth_is_a_hairpin_port_of_the_bridge(net, pod):
    uid, _, _ = pod()
    port = Path("/sys/class/net", net.host_ifname(uid))
    assert (port / "master").resolve().name == net.bridge
    assert (port / "brport/hairpin_mode").read_text().strip() == "1"
    assert int((port / "flags").read_text(), 16) & 1      # IFF_UP (operstate follows asynchronously)


def test_host_reaches_pod_and_pods_reach_each_other(pod):
    _, a, ip_a = pod()
    _, b, ip_b = pod()
    assert host_ping(ip_a) and host_ping(ip_b)
    assert pod_ping(a, ip_b) and pod_ping(b, ip_a)


def test_attach_twice_returns_the_same_ip_and_keeps_the_veth(net, sandbox):
    container, pid = sandbox()
    uid = str(uuid.uuid4())
    ip = net.attach(uid, pid)
    index = Path(f"/sys/class/net/{net.host_ifname(uid)}/ifindex").read_text()
    assert net.attach(uid, pid) == ip == net.ip_of(uid)
    assert Path(f"/sys/class/net/{net.host_ifname(uid)}/ifindex").read_text() == index
    assert host_ping(ip)


def test_attach_rewires_a_half_wired_pod(net, sandbox):
    container, pid = sandbox()
    uid = str(uuid.uuid4())
    ip = net.attach(uid, pid)
    in_netns(pid, "ip", "route", "del", "default")
    assert net.attach(uid, pid) == ip
    assert "default via" in container.exec_run(["ip", "route"]).output.decode()
    assert host_ping(ip)


def test_is_attached_follows_the_wiring(net, sandbox):
    container, pid = sandbox()
    uid = str(uuid.uuid4())
    assert not net.is_attached(uid, pid)
    net.attach(uid, pid)
    assert net.is_attached(uid, pid)
    in_netns(pid, "ip", "link", "del", "eth0")
    assert not net.is_attached(uid, pid)
    net.attach(uid, pid)
    container.remove(force=True)
    assert not net.is_attached(uid, pid)


def test_attach_to_a_dead_sandbox_fails_without_leftovers(net):
    uid = str(uuid.uuid4())
    with pytest.raises(FileNotFoundError):
        net.attach(uid, 2 ** 22 + 1)      # above pid_max: never a live process
    assert net.ip_of(uid) is None
    assert not link_exists(net.host_ifname(uid))


def test_detach_removes_the_veth_and_frees_the_ip(net, pod):
    uid, container, ip = pod()
    host = net.host_ifname(uid)
    assert link_exists(host)
    net.detach(uid)
    assert not link_exists(host)
    assert net.ip_of(uid) is None
    assert ip not in net.ipam.all().values()
    assert container.exec_run(["ip", "link", "show", "eth0"]).exit_code != 0
    net.detach(uid)


def test_concurrent_attaches(net, sandbox):
    sandboxes = [sandbox() for _ in range(4)]
    uids = [str(uuid.uuid4()) for _ in sandboxes]
    with ThreadPoolExecutor(4) as pool:
        ips = list(pool.map(lambda i: net.attach(uids[i], sandboxes[i][1]), range(4)))
    assert len(set(ips)) == 4
    assert all(host_ping(ip) for ip in ips)


def test_restart_keeps_ips_and_gc_removes_stale_pods(net, pod):
    live_uid, live, live_ip = pod()
    stale_uid, _, stale_ip = pod()
    orphan = "veth" + secrets.token_hex(4)
    sh("ip", "link", "add", orphan, "type", "veth", "peer", "name", "mkp" + secrets.token_hex(4))
    sh("ip", "link", "set", orphan, "master", net.bridge)

    restarted = PodNetwork(bridge=net.bridge, service_sink=net.service_sink, state_dir=net.state_dir)
    assert restarted.ip_of(live_uid) == live_ip and restarted.ip_of(stale_uid) == stale_ip
    restarted.configure(str(net.pod_cidr))
    restarted.gc({live_uid} | (set(net.ipam.all()) - {stale_uid}))

    assert restarted.ip_of(stale_uid) is None
    assert not link_exists(net.host_ifname(stale_uid))
    assert not link_exists(orphan)
    assert restarted.ip_of(live_uid) == live_ip
    assert restarted.attach(live_uid, live.attrs["State"]["Pid"]) == live_ip
    assert host_ping(live_ip)
    net.ipam = restarted.ipam            # one writer of ipam.json from here on


def test_blocking_api_refuses_the_event_loop(net):
    async def call():
        net.detach("nobody")
    with pytest.raises(RuntimeError, match="to_thread"):
        asyncio.run(call())


# ---- egress policy ------------------------------------------------------------------------------

@pytest.fixture
def outside_route():
    """Route OUTSIDE into a port-less bridge of ours: a packet that got past the rule would die here."""
    sink = "mko" + secrets.token_hex(3)
    sh("ip", "link", "add", sink, "type", "bridge")
    try:
        sh("ip", "link", "set", sink, "up")
        sh("ip", "route", "append", f"{OUTSIDE}/32", "dev", sink)
        sink_of(sh("ip", "route", "get", OUTSIDE).stdout)      # ours, or a concurrent run's: local either way
        yield sink
    finally:
        sh("ip", "link", "del", sink, check=False)


def test_egress_outside_the_cluster_is_dropped(net, pod, outside_route):
    _, container, _ = pod()
    sh("iptables", "-w", "-C", net.forward_chain, "-i", net.bridge, "-m", "comment",
       "--comment", "minik8s: pod egress", "-j", "DROP")
    sh("iptables", "-w", "-C", "FORWARD", "-j", net.forward_chain)
    before = forward_drop_packets(net.forward_chain)
    assert not pod_ping(container, OUTSIDE)
    assert forward_drop_packets(net.forward_chain) == before + 1
    assert OUTSIDE not in sh("ip", "neigh", "show", "to", OUTSIDE).stdout   # never resolved: never sent
    assert sh("iptables", "-w", "-t", "nat", "-S", net.nat_chain).stdout.strip() == f"-N {net.nat_chain}"


def test_pod_egress_true_accepts_and_masquerades(tmp_path_factory):
    network = new_network(tmp_path_factory, pod_egress=True)
    try:
        cidr = free_pod_cidr()
        network.configure(cidr)
        sh("iptables", "-w", "-C", network.forward_chain, "-i", network.bridge, "-m", "comment",
           "--comment", "minik8s: pod egress", "-j", "ACCEPT")
        sh("iptables", "-w", "-t", "nat", "-C", network.nat_chain, "-s", cidr, "-j", "MASQUERADE")
        rules = sh("iptables", "-w", "-t", "nat", "-S", network.nat_chain).stdout
        assert f"-A {network.nat_chain} -s {cidr} -d {network.cluster_cidr} -j RETURN" in rules
    finally:
        network.teardown()


# ---- teardown -----------------------------------------------------------------------------------

def test_teardown_leaves_nothing_behind(tmp_path_factory, sandbox):
    network = new_network(tmp_path_factory)
    try:
        network.configure(free_pod_cidr())
        container, pid = sandbox()
        uid = str(uuid.uuid4())
        network.attach(uid, pid)
    finally:
        network.teardown()
    network.teardown()
    for link in (network.bridge, network.service_sink, network.host_ifname(uid)):
        assert not link_exists(link)
    assert container.exec_run(["ip", "link", "show", "eth0"]).exit_code != 0
    for table in ("filter", "nat"):
        rules = sh("iptables", "-w", "-t", table, "-S").stdout
        assert network.forward_chain not in rules and network.nat_chain not in rules
    assert network.service_sink not in sh("ip", "route", "show", "table", "all").stdout
