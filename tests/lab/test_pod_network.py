"""Pod networking across real nodes, once per backend: pods on different nodes talk by pod IP with their
source IP preserved, nodes reach pods on every node, and nothing in the lab can route outside it.

Each pod runs `myapp` (answers its pod name on :80) and a busybox httpd whose CGI answers the caller's
address (REMOTE_ADDR) on :8080 — that is how the source IP is observed on the receiving side.
"""
from __future__ import annotations

import json
import secrets
import time

import pytest

from kubelet.routes import BACKEND_DATA_ANNOTATION, ROUTE_PROTO, vtep_mac_for

LAB_MATRIX = {"network_backend": ["host-gw", "vxlan"]}

ECHO = ("mkdir -p /tmp/w/cgi-bin && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n' "
        "> /tmp/w/cgi-bin/ip && chmod +x /tmp/w/cgi-bin/ip && exec httpd -f -p 8080 -h /tmp/w")


def wait_for(fn, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def pods(lab):
    """One Running pod per node, in a namespace of its own: {node name: pod}."""
    ns = f"net-{secrets.token_hex(3)}"
    with lab.http() as http:
        assert http.post("/api/v1/namespaces", json={"metadata": {"name": ns}}).status_code == 201
        for node in lab.nodes:
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"web-{node.name}"},
                   "spec": {"nodeName": node.name, "terminationGracePeriodSeconds": 1, "containers": [
                       {"name": "web", "image": "minik8s/myapp:v1"},
                       {"name": "echo", "image": "minik8s/busybox:1.36", "command": ["sh", "-c", ECHO]}]}}
            r = http.post(f"/api/v1/namespaces/{ns}/pods", json=pod)
            assert r.status_code == 201, r.text

        def running():
            items = http.get(f"/api/v1/namespaces/{ns}/pods").json()["items"]
            ok = [p for p in items if p["status"].get("phase") == "Running" and p["status"].get("podIP")]
            return {p["spec"]["nodeName"]: p for p in ok} if len(ok) == len(lab.nodes) else None
        by_node = wait_for(running, 60, "a Running pod on every node")
    yield by_node
    with lab.http() as http:
        http.delete(f"/api/v1/namespaces/{ns}")


def fetch(lab, run, url: str, attempts: int = 10) -> str:
    """`timeout 5 wget` (busybox `wget -T` crashes), retried while the server container starts."""
    for _ in range(attempts):
        done = run(["timeout", "5", "wget", "-qO-", url])
        if done.returncode == 0:
            return done.stdout.strip()
        time.sleep(0.3)
    raise AssertionError(f"{url}: {done.returncode} {done.stderr.strip()}")


def from_pod(lab, pod):
    return lambda cmd: lab.pod_exec(pod, "web", cmd)


def from_node(lab, node):
    return lambda cmd: lab.exec(node, ["busybox", *cmd])


def client_ip(answer: str) -> str:
    return answer.strip("[]").removeprefix("::ffff:")


def test_nodes_are_ready_with_their_own_pod_cidrs(lab):
    with lab.http() as http:
        items = http.get("/api/v1/nodes").json()["items"]
    assert sorted(n["metadata"]["name"] for n in items) == sorted(lab.node_ips)
    cidrs = {n["spec"]["podCIDR"] for n in items}
    assert len(cidrs) == len(items) and all(c.startswith("10.244.") for c in cidrs)
    for n in items:
        ips = [a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP"]
        assert ips == [lab.node_ips[n["metadata"]["name"]]]


def test_pod_to_pod_across_nodes_by_pod_ip_keeps_the_source_ip(lab, pods):
    a, b = pods["node1"], pods["node2"]
    a_ip, b_ip = a["status"]["podIP"], b["status"]["podIP"]
    assert fetch(lab, from_pod(lab, a), f"http://{b_ip}/hostname.html") == b["metadata"]["name"]
    assert client_ip(fetch(lab, from_pod(lab, a), f"http://{b_ip}:8080/cgi-bin/ip")) == a_ip
    assert client_ip(fetch(lab, from_pod(lab, b), f"http://{a_ip}:8080/cgi-bin/ip")) == b_ip


def test_node_reaches_pods_on_every_node(lab, pods):
    for node in lab.nodes:
        for pod in pods.values():
            assert fetch(lab, from_node(lab, node), f"http://{pod['status']['podIP']}/hostname.html") == \
                pod["metadata"]["name"]


def test_backend_programs_what_it_should(lab, pods):
    routes = json.loads(lab.exec("node1", ["ip", "-j", "route", "show", "proto", str(ROUTE_PROTO)], check=True).stdout)
    with lab.http() as http:
        node2 = http.get("/api/v1/nodes/node2").json()
    [route] = routes
    assert route["dst"] == node2["spec"]["podCIDR"]
    if lab.network_backend == "host-gw":
        assert route["gateway"] == lab.node_ips["node2"] and route["dev"] == "eth0"
        return
    assert route["dev"] == "mk.vxlan" and "onlink" in route["flags"]
    assert json.loads(node2["metadata"]["annotations"][BACKEND_DATA_ANNOTATION]) == \
        {"VNI": 1, "VtepMAC": vtep_mac_for(lab.node_ips["node2"])}

    def tx_packets() -> int:
        link = json.loads(lab.exec("node1", ["ip", "-s", "-j", "link", "show", "mk.vxlan"], check=True).stdout)[0]
        return link["stats64"]["tx"]["packets"]
    before = tx_packets()
    fetch(lab, from_pod(lab, pods["node1"]), f"http://{pods['node2']['status']['podIP']}/")
    assert tx_packets() > before          # the packets really went through the overlay


def test_nothing_in_the_lab_routes_outside_it(lab, pods):
    # `ip route get` asks the kernel without sending anything; 203.0.113.0/24 is TEST-NET-3
    for node in lab.nodes:
        done = lab.exec(node, ["ip", "route", "get", "203.0.113.7"])
        assert done.returncode != 0 and "unreachable" in done.stderr.lower()
    assert lab.exec(lab.nodes[0], ["ip", "route", "show", "default"]).stdout.strip() == ""
