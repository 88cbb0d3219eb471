"""Pod network backends: the plan from Node objects (pure), then the real kernel in scratch namespaces.

The kernel tests build two "nodes" as network namespaces joined by a veth (10.99.N.0/24 underlay, unique
per run), each holding a port-less bridge with its podCIDR gateway — the address a pod would answer on.
Nothing here has a default route or touches the root namespace (DESIGN §6).
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess

import pytest

from kubelet.routes import (BACKEND_DATA_ANNOTATION, ROUTE_PROTO, FdbEntry, HostGwBackend, Neighbour, Route,
                            VxlanBackend, make_backend, vtep_mac_for)


def node(name: str, ip: str | None, cidr: str | None, annotations: dict | None = None) -> dict:
    obj = {"metadata": {"name": name, "annotations": annotations or {}}, "spec": {}, "status": {}}
    if cidr:
        obj["spec"]["podCIDR"] = cidr
    if ip:
        obj["status"]["addresses"] = [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]
    return obj


NODES = [node("a", "10.77.0.11", "10.244.0.0/24"), node("b", "10.77.0.12", "10.244.1.0/24"),
         node("c", "10.77.0.13", "10.244.2.0/24")]


# ---- the plan --------------------------------------------------------------------------------------------

def test_host_gw_routes_every_other_podcidr_via_its_node_ip():
    plan = HostGwBackend(node_name="a").desired(NODES)
    assert plan.routes == {Route("10.244.1.0/24", "10.77.0.12", src="10.244.0.1"),
                           Route("10.244.2.0/24", "10.77.0.13", src="10.244.0.1")}
    assert plan.vtep is None and not plan.fdb and not plan.neighbours


def test_nodes_without_podcidr_or_ip_or_outside_the_cluster_are_skipped():
    nodes = NODES[:1] + [node("b", None, "10.244.1.0/24"), node("c", "10.77.0.13", None),
                         node("d", "10.77.0.14", "10.1.0.0/24"), node("e", "not-an-ip", "10.244.4.0/24")]
    assert HostGwBackend(node_name="a").desired(nodes).routes == set()


def test_host_gw_without_own_podcidr_routes_without_a_source_hint():
    plan = HostGwBackend(node_name="a").desired([node("a", "10.77.0.11", None), *NODES[1:]])
    assert {r.src for r in plan.routes} == {None} and len(plan.routes) == 2


def test_vxlan_plan_routes_onlink_via_vtep_with_neighbour_and_fdb():
    plan = VxlanBackend(node_name="a").desired(NODES)
    assert plan.vtep.address == "10.244.0.0" and plan.vtep.local_ip == "10.77.0.11"
    assert plan.vtep.mac == vtep_mac_for("10.77.0.11") and (plan.vtep.vni, plan.vtep.port) == (1, 8472)
    assert Route("10.244.1.0/24", "10.244.1.0", device="mk.vxlan", onlink=True) in plan.routes
    assert Neighbour("10.244.2.0", vtep_mac_for("10.77.0.13")) in plan.neighbours
    assert plan.fdb == {FdbEntry(vtep_mac_for("10.77.0.12"), "10.77.0.12"),
                        FdbEntry(vtep_mac_for("10.77.0.13"), "10.77.0.13")}


def test_vxlan_prefers_the_published_mac():
    published = {BACKEND_DATA_ANNOTATION: json.dumps({"VNI": 1, "VtepMAC": "0E:00:00:00:00:01"})}
    plan = VxlanBackend(node_name="a").desired([NODES[0], node("b", "10.77.0.12", "10.244.1.0/24", published)])
    assert plan.neighbours == {Neighbour("10.244.1.0", "0e:00:00:00:00:01")}


def test_vxlan_without_own_podcidr_plans_nothing():
    assert VxlanBackend(node_name="x").desired(NODES).routes == set()


def test_vtep_mac_is_stable_local_unicast():
    mac = vtep_mac_for("10.77.0.11")
    assert mac == vtep_mac_for("10.77.0.11") != vtep_mac_for("10.77.0.12")
    assert int(mac[:2], 16) & 0b11 == 0b10


def test_unknown_backend_is_an_error():
    with pytest.raises(ValueError, match="unknown network backend"):
        make_backend("udp", node_name="a")


# ---- the kernel ------------------------------------------------------------------------------------------

kernel = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


@pytest.fixture
def two_nodes():
    """Namespaces `a` and `b` on one veth; each has a bridge `mk0` holding its podCIDR gateway."""
    tag = secrets.token_hex(3)
    third = int(tag[:2], 16)
    names = {"a": f"mkt-rt-{tag}-a", "b": f"mkt-rt-{tag}-b"}
    ips = {"a": f"10.99.{third}.11", "b": f"10.99.{third}.12"}
    cidrs = {"a": "10.244.0.0/24", "b": "10.244.1.0/24"}
    try:
        for ns in names.values():
            sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", "eth0", "netns", names["a"], "type", "veth",
           "peer", "name", "eth0", "netns", names["b"])
        for k, ns in names.items():
            gw = cidrs[k].replace(".0/24", ".1/24")
            for cmd in (["addr", "add", f"{ips[k]}/24", "dev", "eth0"], ["link", "set", "eth0", "up"],
                        ["link", "set", "lo", "up"], ["link", "add", "mk0", "type", "bridge"],
                        ["addr", "add", gw, "dev", "mk0"], ["link", "set", "mk0", "up"]):
                sh("ip", "-n", ns, *cmd)
        nodes = [node(k, ips[k], cidrs[k]) for k in names]
        yield {"ns": names, "ips": ips, "nodes": nodes, "path": {k: f"/run/netns/{v}" for k, v in names.items()}}
    finally:
        for ns in names.values():
            sh("ip", "netns", "del", ns, check=False)


def routes(ns: str) -> list[dict]:
    return json.loads(sh("ip", "-n", ns, "-j", "route", "show", "proto", str(ROUTE_PROTO)).stdout)


def ping(ns: str, ip: str) -> bool:
    return sh("ip", "netns", "exec", ns, "busybox", "ping", "-c1", "-W2", ip, check=False).returncode == 0


@kernel
def test_host_gw_programs_routes_that_carry_traffic_and_removes_stale_ones(two_nodes):
    ns, path, nodes = two_nodes["ns"], two_nodes["path"], two_nodes["nodes"]
    backends = {k: HostGwBackend(node_name=k, netns=path[k]) for k in ns}
    for b in backends.values():
        b.sync(nodes)
    [route] = routes(ns["a"])
    assert (route["dst"], route["gateway"], route["prefsrc"]) == ("10.244.1.0/24", two_nodes["ips"]["b"], "10.244.0.1")
    assert ping(ns["a"], "10.244.1.1")          # node a → b's pod network, sourced from a's gateway
    backends["a"].sync(nodes)                   # idempotent
    assert len(routes(ns["a"])) == 1

    backends["a"].sync(nodes[:1])               # node b is gone
    assert routes(ns["a"]) == []
    assert not ping(ns["a"], "10.244.1.1")

    sh("ip", "-n", ns["a"], "route", "add", "10.244.9.0/24", "via", two_nodes["ips"]["b"])   # not ours
    backends["a"].sync(nodes)
    backends["a"].teardown()
    assert routes(ns["a"]) == []
    assert "10.244.9.0/24" in sh("ip", "-n", ns["a"], "route").stdout


@kernel
def test_vxlan_programs_device_neighbours_fdb_and_routes_then_cleans_up(two_nodes):
    ns, path, nodes, ips = two_nodes["ns"], two_nodes["path"], two_nodes["nodes"], two_nodes["ips"]
    backends = {k: VxlanBackend(node_name=k, netns=path[k]) for k in ns}
    for b in backends.values():
        b.sync(nodes)
    link = json.loads(sh("ip", "-n", ns["a"], "-j", "-d", "link", "show", "mk.vxlan").stdout)[0]
    info = link["linkinfo"]["info_data"]
    assert (info["id"], info["port"], info["local"], link["address"]) == (1, 8472, ips["a"], vtep_mac_for(ips["a"]))
    assert link["mtu"] == 1450
    [route] = routes(ns["a"])
    assert (route["dst"], route["gateway"], route["dev"], "onlink" in route["flags"]) == \
        ("10.244.1.0/24", "10.244.1.0", "mk.vxlan", True)
    fdb = json.loads(sh("bridge", "-n", ns["a"], "-j", "fdb", "show", "dev", "mk.vxlan").stdout)
    assert [(e["mac"], e["dst"]) for e in fdb if e.get("dst")] == [(vtep_mac_for(ips["b"]), ips["b"])]
    neigh = json.loads(sh("ip", "-n", ns["a"], "-j", "neigh", "show", "dev", "mk.vxlan").stdout)
    assert [(n["dst"], n["lladdr"], n["state"]) for n in neigh] == \
        [("10.244.1.0", vtep_mac_for(ips["b"]), ["PERMANENT"])]
    assert ping(ns["a"], "10.244.1.1")          # through the overlay, from a's vtep address

    backends["a"].sync(nodes)                   # idempotent: same device (same ifindex), same entries
    assert json.loads(sh("ip", "-n", ns["a"], "-j", "link", "show", "mk.vxlan").stdout)[0]["ifindex"] == link["ifindex"]

    backends["a"].sync(nodes[:1])               # b is gone: its route, neighbour and FDB entry go
    assert routes(ns["a"]) == []
    assert not [e for e in json.loads(sh("bridge", "-n", ns["a"], "-j", "fdb", "show", "dev", "mk.vxlan").stdout)
                if e.get("dst")]
    assert json.loads(sh("ip", "-n", ns["a"], "-j", "neigh", "show", "dev", "mk.vxlan").stdout) == []

    backends["a"].teardown()
    assert sh("ip", "-n", ns["a"], "link", "show", "mk.vxlan", check=False).returncode != 0
