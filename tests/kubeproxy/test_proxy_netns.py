"""The rendered rules in a real kernel: iptables and nftables mode, same behaviours, same scratch network.

Services and Endpoints are plain API dicts; the backend under test applies them with its real tool
(`iptables-restore` / `nft -f`) inside the node namespace of `proxy_net`, and connections are made from
the node itself, from an outside client and from a backend pod.
"""
from __future__ import annotations

import copy
from collections import Counter

import pytest

from kubeproxy import model
from kubeproxy.iptables_backend import IptablesBackend
from kubeproxy.nftables_backend import NftablesBackend
from tests.kubeproxy.conftest import BACKENDS, CLIENT_IP, NODE_IP

NODE = "n1"
CTX = model.NodeContext(NODE, (NODE_IP,), "10.244.0.0/16", service_cidr="10.96.0.0/12")


def svc(name, cluster_ip, ports, **spec):
    return {"metadata": {"name": name, "namespace": "default"},
            "spec": {"clusterIP": cluster_ip, "ports": ports, **spec}}


def eps(name, ports, addresses):
    return {"metadata": {"name": name, "namespace": "default"},
            "subsets": [{"addresses": [{"ip": BACKENDS[b], "nodeName": node} for b, node in addresses],
                         "ports": ports}] if addresses else []}


BOTH = [("b1", NODE), ("b2", "n2")]
SERVICES = [
    svc("web", "10.96.0.20", [{"name": "http", "port": 80, "nodePort": 30080}, {"name": "alt", "port": 81}],
        type="NodePort", externalIPs=["10.77.1.10"]),
    svc("sticky", "10.96.0.21", [{"port": 80}], sessionAffinity="ClientIP",
        sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}}),
    svc("empty", "10.96.0.22", [{"port": 80, "nodePort": 30082}], type="NodePort"),
    svc("dns", "10.96.0.23", [{"name": "dns", "port": 53, "protocol": "UDP"}]),
    svc("local", "10.96.0.24", [{"port": 80, "nodePort": 30083}], type="NodePort", externalTrafficPolicy="Local"),
    {**svc("lb", "10.96.0.25", [{"port": 80, "nodePort": 30084}], type="LoadBalancer"),
     "status": {"loadBalancer": {"ingress": [{"ip": "10.77.1.20", "ipMode": "VIP"}]}}},
    svc("headless", "None", [{"port": 80}]),
]
ENDPOINTS = {
    "default/web": eps("web", [{"name": "http", "port": 8080}, {"name": "alt", "port": 9090}], BOTH),
    "default/sticky": eps("sticky", [{"port": 8080}], BOTH),
    "default/empty": eps("empty", [{"port": 8080}], []),
    "default/dns": eps("dns", [{"name": "dns", "port": 9090, "protocol": "UDP"}], BOTH),
    "default/local": eps("local", [{"port": 8080}], BOTH),
    "default/lb": eps("lb", [{"port": 8080}], BOTH),
    "default/headless": eps("headless", [{"port": 8080}], BOTH),
}


@pytest.fixture(params=["iptables", "nftables"])
def applied(request, proxy_net):
    backend = IptablesBackend(runner=proxy_net.runner) if request.param == "iptables" \
        else NftablesBackend(runner=proxy_net.runner)
    backend.sync(model.build(SERVICES, ENDPOINTS), CTX, full=True)
    return proxy_net, backend


def names(answers):
    return Counter(a.split()[0] for a in answers)


def test_cluster_ip_spreads_over_both_backends(applied):
    net, _ = applied
    answers = net.connect(net.node, "10.96.0.20", 80, count=40)
    assert set(names(answers)) == {"b1", "b2"}, answers
    assert set(names(net.connect(net.node, "10.96.0.20", 81, count=20))) == {"b1", "b2"}  # second named port


def test_node_port_on_the_node_ip_from_outside_is_masqueraded(applied):
    net, _ = applied
    answers = net.connect(net.client, NODE_IP, 30080, count=30)
    assert set(names(answers)) == {"b1", "b2"}, answers
    assert {a.split()[1] for a in answers} == {"10.244.1.1"}    # SNAT to the node's bridge address


def test_service_without_endpoints_is_refused_at_once(applied):
    net, _ = applied
    for ns, ip, port in ((net.node, "10.96.0.22", 80), (net.client, NODE_IP, 30082)):
        [answer] = net.connect(ns, ip, port)
        assert answer.startswith("error ConnectionRefusedError"), answer
        assert float(answer.split()[2]) < 1.0


def test_session_affinity_pins_a_client_to_one_backend(applied):
    net, _ = applied
    answers = net.connect(net.node, "10.96.0.21", 80, count=20)
    assert len(names(answers)) == 1, answers


def test_udp_cluster_ip(applied):
    net, _ = applied
    answers = net.connect(net.node, "10.96.0.23", 53, count=10, proto="udp")
    assert set(names(answers)) <= {"b1", "b2"} and not any(a.startswith("error") for a in answers), answers


def test_external_traffic_policy_local_keeps_client_ip_and_local_endpoints(applied):
    net, _ = applied
    answers = net.connect(net.client, NODE_IP, 30083, count=20)
    assert answers == [f"b1 {CLIENT_IP}"] * 20


def test_external_and_load_balancer_ips(applied):
    net, _ = applied
    assert set(names(net.connect(net.client, "10.77.1.10", 80, count=20))) == {"b1", "b2"}
    assert set(names(net.connect(net.client, "10.77.1.20", 80, count=20))) == {"b1", "b2"}


def test_hairpin_pod_reaching_itself_through_its_service_is_masqueraded(applied):
    net, _ = applied
    answers = net.connect(net.backends["b1"], "10.96.0.20", 80, count=30)
    assert f"b1 10.244.1.1" in answers, answers       # to itself: source rewritten, so the reply returns
    assert set(names(answers)) == {"b1", "b2"}


def test_endpoint_and_service_changes_apply_incrementally(applied):
    net, backend = applied
    endpoints = copy.deepcopy(ENDPOINTS)
    endpoints["default/web"] = eps("web", [{"name": "http", "port": 8080}, {"name": "alt", "port": 9090}],
                                   [("b1", NODE)])
    backend.sync(model.build(SERVICES, endpoints), CTX)
    assert set(names(net.connect(net.node, "10.96.0.20", 80, count=20))) == {"b1"}

    remaining = [s for s in SERVICES if s["metadata"]["name"] != "sticky"]
    backend.sync(model.build(remaining, endpoints), CTX)
    if backend.mode == "iptables":
        assert "KUBE-SVC-" + model.port_hash("default/sticky", "tcp") not in net.exec(net.node, "iptables-save")
    else:
        assert "default/sticky" not in net.exec(net.node, "nft", "list", "table", "ip", "minik8s")
    assert set(names(net.connect(net.node, "10.96.0.20", 80, count=5))) == {"b1"}
    # A full resync over the partially updated kernel state converges to the same rules.
    backend.sync(model.build(remaining, endpoints), CTX, full=True)
    assert set(names(net.connect(net.node, "10.96.0.20", 80, count=5))) == {"b1"}
    if backend.mode == "iptables":     # jumps from built-in chains are installed once, however many syncs
        saved = net.exec(net.node, "iptables-save")
        assert saved.count("-A PREROUTING -m comment --comment \"minik8s service portals\"") == 1


def test_cleanup_removes_everything(applied):
    net, backend = applied
    backend.cleanup()
    if backend.mode == "iptables":
        assert "KUBE-" not in net.exec(net.node, "iptables-save")
    else:
        assert "minik8s" not in net.exec(net.node, "nft", "list", "tables")
