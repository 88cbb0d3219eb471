"""The three renderers and the model, on plain data: no kernel, no I/O."""
from __future__ import annotations

import re

from kubeproxy import conntrack, ipvs, iptables, model, nftables

NODE = "n1"
CTX = model.NodeContext(NODE, ("10.77.0.1",), "10.244.0.0/16", service_cidr="10.96.0.0/12")
EP1, EP2, EP3 = (model.Endpoint("10.244.1.2", 8080, NODE), model.Endpoint("10.244.2.2", 8080, "n2"),
                 model.Endpoint("10.244.3.2", 8080, "n3"))


def sp(name="web", **kw) -> model.ServicePort:
    base = dict(namespace="default", name=name, port_name="http", protocol="TCP", cluster_ip="10.96.0.20",
                port=80, endpoints=(EP1, EP2, EP3))
    return model.ServicePort(**{**base, **kw})


# -- model --------------------------------------------------------------------------------------------

def test_model_skips_headless_and_external_name_and_matches_named_ports():
    services = [
        {"metadata": {"name": "h", "namespace": "a"}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]}},
        {"metadata": {"name": "x", "namespace": "a"}, "spec": {"type": "ExternalName", "externalName": "e.org"}},
        {"metadata": {"name": "w", "namespace": "a"},
         "spec": {"clusterIP": "10.96.0.5", "ports": [{"name": "http", "port": 80}, {"name": "dns", "port": 53,
                                                                                      "protocol": "UDP"}]}},
    ]
    endpoints = {"a/w": {"subsets": [{"addresses": [{"ip": "10.244.1.9", "nodeName": NODE}],
                                      "notReadyAddresses": [{"ip": "10.244.1.10"}],
                                      "ports": [{"name": "http", "port": 8080},
                                                {"name": "dns", "port": 5353, "protocol": "UDP"}]}]},
                 "a/h": {"subsets": [{"addresses": [{"ip": "10.244.1.11"}], "ports": [{"port": 80}]}]}}
    built = model.build(services, endpoints)
    assert [(s.key, s.protocol, [(e.ip, e.port) for e in s.endpoints]) for s in built] == [
        ("a/w:dns", "UDP", [("10.244.1.9", 5353)]), ("a/w:http", "TCP", [("10.244.1.9", 8080)])]
    assert iptables.render(model.build(services[:2], endpoints), CTX).chain("nat", "KUBE-SERVICES") == \
        iptables.render([], CTX).chain("nat", "KUBE-SERVICES")


def test_model_node_port_only_for_node_port_types_and_lb_ips_from_status():
    svc = {"metadata": {"name": "lb", "namespace": "a"},
           "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.7", "ports": [{"port": 80, "nodePort": 30001}],
                    "sessionAffinity": "ClientIP"},
           "status": {"loadBalancer": {"ingress": [{"ip": "10.77.1.5", "ipMode": "VIP"},
                                                   {"ip": "10.77.1.6", "ipMode": "Proxy"}]}}}
    [p] = model.build([svc], {})
    assert (p.node_port, p.lb_ips, p.affinity_timeout) == (30001, ("10.77.1.5",), 10800)
    svc["spec"]["type"] = "ClusterIP"
    [p] = model.build([svc], {})
    assert (p.node_port, p.lb_ips) == (None, ())


# -- iptables ------------------------------------------------------------------------------------------

def test_iptables_three_endpoints_probabilities_one_third_one_half_one():
    rules = iptables.render([sp()], CTX)
    svc = rules.chain("nat", iptables.svc_chain(sp()))
    assert svc[0].startswith("! -s 10.244.0.0/16 -d 10.96.0.20/32 -p tcp -m tcp --dport 80 -j KUBE-MARK-MASQ")
    probs = [re.search(r"--probability (\S+)", r).group(1) for r in svc if "statistic" in r]
    assert probs == ["0.3333333333", "0.5000000000"]
    assert svc[-1] == f"-j {iptables.sep_chain(sp(), EP3)}"
    sep = rules.chain("nat", iptables.sep_chain(sp(), EP1))
    assert sep == ("-s 10.244.1.2/32 -j KUBE-MARK-MASQ", "-p tcp -m tcp -j DNAT --to-destination 10.244.1.2:8080")
    assert any("-d 10.96.0.20/32" in r and r.endswith(iptables.svc_chain(sp()))
               for r in rules.chain("nat", "KUBE-SERVICES"))


def test_iptables_affinity_uses_recent():
    s = sp(affinity_timeout=60)
    rules = iptables.render([s], CTX)
    svc = rules.chain("nat", iptables.svc_chain(s))
    checks = [r for r in svc if "--rcheck" in r]
    assert len(checks) == 3 and all("--seconds 60 --reap" in r for r in checks)
    assert svc.index(checks[-1]) < min(i for i, r in enumerate(svc) if "statistic" in r)
    assert "--set" in rules.chain("nat", iptables.sep_chain(s, EP2))[1]


def test_iptables_no_endpoints_reject_and_local_policy_drop():
    empty = sp(name="empty", endpoints=(), node_port=30080)
    remote_only = sp(name="remote", cluster_ip="10.96.0.21", endpoints=(EP2,), node_port=30081,
                     external_local=True, internal_local=True)
    rules = iptables.render([empty, remote_only], CTX)
    filt = rules.chain("filter", "KUBE-SERVICES")
    assert any("10.96.0.20/32" in r and r.endswith("-j REJECT") for r in filt)
    assert any("10.96.0.21/32" in r and r.endswith("-j DROP") for r in filt)
    ext = rules.chain("filter", "KUBE-EXTERNAL-SERVICES")
    assert any("--dport 30080 -j REJECT" in r for r in ext) and any("--dport 30081 -j DROP" in r for r in ext)
    assert not any(c.startswith("KUBE-SVC-") for c in rules.tables["nat"] if c == iptables.svc_chain(empty))


def test_iptables_external_traffic_policy_local():
    s = sp(node_port=30080, external_local=True)
    rules = iptables.render([s], CTX)
    ext = rules.chain("nat", iptables.ext_chain(s))
    assert ext[0].startswith("-s 10.244.0.0/16") and ext[-1] == f"-j {iptables.svl_chain(s)}"
    assert not any(r.endswith("KUBE-MARK-MASQ") and "addrtype" not in r for r in ext)   # client IP kept
    assert rules.chain("nat", iptables.svl_chain(s)) == (f"-j {iptables.sep_chain(s, EP1)}",)
    cluster = iptables.render([sp(node_port=30080)], CTX).chain("nat", iptables.ext_chain(sp(node_port=30080)))
    assert cluster[0].endswith("-j KUBE-MARK-MASQ")


def test_iptables_partial_restore_writes_only_changed_chains_and_deletes_stale():
    a, b = sp(name="a"), sp(name="b", cluster_ip="10.96.0.30")
    old = iptables.render([a, b], CTX)
    b2 = sp(name="b", cluster_ip="10.96.0.30", endpoints=(EP1,))
    text = iptables.restore_input(iptables.render([a, b2], CTX), old)
    declared = re.findall(r"^:(\S+)", text, re.M)
    assert iptables.svc_chain(b2) in declared and iptables.svc_chain(a) not in declared
    assert "KUBE-SERVICES" in declared and "KUBE-NODEPORTS" in declared
    assert f"-X {iptables.sep_chain(b, EP2)}" in text and f"-X {iptables.sep_chain(b, EP3)}" in text
    assert not any(iptables.sep_chain(a, e) in text for e in (EP1, EP2, EP3))
    full = iptables.restore_input(iptables.render([a], CTX), None, {"nat": {iptables.svc_chain(b), "OTHER"}})
    assert f"-X {iptables.svc_chain(b)}" in full and "OTHER" not in full


# -- nftables ------------------------------------------------------------------------------------------

def test_nftables_service_chain_dnat_and_probabilities():
    st = nftables.render([sp()], CTX)
    chain = st.chains[nftables.service_chain(sp())]
    assert chain[0] == "ip daddr 10.96.0.20 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade"
    assert chain[1:] == ("numgen random mod 3 == 0 meta l4proto tcp dnat to 10.244.1.2:8080",
                         "numgen random mod 2 == 0 meta l4proto tcp dnat to 10.244.2.2:8080",
                         "meta l4proto tcp dnat to 10.244.3.2:8080")
    assert st.maps["service-ips"]["10.96.0.20 . tcp . 80"] == f"goto {nftables.service_chain(sp())}"
    assert "10.244.1.2 . 10.244.1.2" in st.sets["hairpin-endpoints"]


def test_nftables_affinity_sets_and_no_endpoints_and_local():
    s = sp(affinity_timeout=60)
    st = nftables.render([s, sp(name="e", cluster_ip="10.96.0.9", endpoints=(), node_port=30009)], CTX)
    assert set(st.affinity.values()) == {60} and len(st.affinity) == 3
    chain = st.chains[nftables.service_chain(s)]
    assert chain[1].startswith("ip saddr @affinity-") and "update @affinity-" in chain[1]
    assert st.maps["no-endpoint-services"] == {"10.96.0.9 . tcp . 80": "goto reject-chain"}
    assert st.maps["no-endpoint-nodeports"] == {"tcp . 30009": "goto reject-chain"}
    local = sp(name="l", node_port=30010, external_local=True)
    st = nftables.render([local], CTX)
    assert st.chains[nftables.local_chain(local)] == ("meta l4proto tcp dnat to 10.244.1.2:8080",)
    assert st.chains[nftables.external_chain(local)][-1] == f"goto {nftables.local_chain(local)}"
    assert "jump mark-for-masquerade" not in st.chains[nftables.external_chain(local)]


def _touched(script: str) -> set[str]:
    return set(re.findall(r"(?:service|local|external|firewall|affinity)-\w+-default/(\w+)/", script))


def test_nftables_diff_touches_only_the_changed_service():
    many = [sp(name=f"s{i}", cluster_ip=f"10.96.1.{i}") for i in range(50)]
    old = nftables.render(many, CTX)
    assert nftables.script(nftables.render(many, CTX), old, CTX) == ""
    added = many + [sp(name="new", cluster_ip="10.96.2.1")]
    text = nftables.script(nftables.render(added, CTX), old, CTX)
    assert _touched(text) == {"new"} and "10.96.2.1 . tcp . 80" in text and "delete" not in text
    changed = list(many)
    changed[7] = sp(name="s7", cluster_ip="10.96.1.7", endpoints=(EP1,))
    text = nftables.script(nftables.render(changed, CTX), old, CTX)
    assert _touched(text) == {"s7"} and "flush chain" in text and "add element" not in text
    text = nftables.script(nftables.render(many[:3] + many[4:], CTX), old, CTX)
    assert _touched(text) == {"s3"}
    assert text.index("delete element ip minik8s service-ips { 10.96.1.3") < text.index("delete chain")


def test_nftables_full_script_rebuilds_table_in_one_transaction():
    text = nftables.script(nftables.render([sp()], CTX), None, CTX)
    lines = text.splitlines()
    assert lines[:2] == ["add table ip minik8s", "delete table ip minik8s"]
    assert any("type nat hook prerouting" in line for line in lines)


# -- ipvs ----------------------------------------------------------------------------------------------

def test_ipvs_virtual_servers_addresses_and_masquerade_rules():
    s = sp(node_port=30080, external_ips=("10.77.1.10",), affinity_timeout=100)
    st = ipvs.render([s, sp(name="local", cluster_ip="10.96.0.21", internal_local=True, endpoints=(EP1, EP2))],
                     CTX)
    assert st.addresses == {"10.96.0.20", "10.96.0.21", "10.77.1.10"}
    vs, dests = st.services[("TCP", "10.96.0.20", 80)]
    assert vs.persistence == 100 and dests == {("10.244.1.2", 8080), ("10.244.2.2", 8080), ("10.244.3.2", 8080)}
    assert ("TCP", "10.77.0.1", 30080) in st.services and ("TCP", "10.77.1.10", 80) in st.services
    assert st.services[("TCP", "10.96.0.21", 80)][1] == {("10.244.1.2", 8080)}
    nat = st.rules.tables["nat"]
    assert "! -s 10.244.0.0/16 -d 10.96.0.20/32 -p tcp -m tcp --dport 80 -j KUBE-MARK-MASQ" in nat["KUBE-SERVICES"]
    assert "-p tcp -m tcp --dport 30080 -j KUBE-MARK-MASQ" in nat["KUBE-NODE-PORT"]
    assert "-s 10.244.1.2/32 -d 10.244.1.2/32 -j MASQUERADE" in nat["KUBE-POSTROUTING"]


# -- conntrack -----------------------------------------------------------------------------------------

def test_udp_conntrack_cleanup_for_removed_endpoints_and_first_endpoints():
    dns = sp(name="dns", protocol="UDP", port=53, endpoints=(EP1, EP2))
    after = sp(name="dns", protocol="UDP", port=53, endpoints=(EP1,))
    assert conntrack.stale_udp([dns], [after]) == [["-p", "udp", "--orig-dst", "10.96.0.20", "--dst-nat", "10.244.2.2"]]
    empty = sp(name="dns", protocol="UDP", port=53, endpoints=())
    assert conntrack.stale_udp([empty], [after]) == [["-p", "udp", "--orig-dst", "10.96.0.20", "--orig-port-dst", "53"]]
    assert conntrack.stale_udp([sp()], [sp()]) == []


def test_nftables_update_equals_a_full_render():
    import random
    rnd = random.Random(7)
    ports = [sp(name=f"s{i}", cluster_ip=f"10.96.3.{i}", node_port=30100 + i if i % 3 == 0 else None,
                affinity_timeout=30 if i % 5 == 0 else None, endpoints=(EP1, EP2)[: 1 + i % 2]) for i in range(40)]
    state = nftables.render(ports, CTX)
    for _ in range(20):
        after = list(ports)
        i = rnd.randrange(len(after))
        after[i] = sp(name=after[i].name, cluster_ip=after[i].cluster_ip,
                      endpoints=rnd.choice([(), (EP3,), (EP1, EP3)]))
        if rnd.random() < 0.3:
            del after[rnd.randrange(len(after))]
        updated = nftables.update(state, ports, after, CTX)
        full = nftables.render(after, CTX)
        assert (updated.chains, {m: v for m, v in updated.maps.items() if v}, updated.sets, updated.affinity) == \
            (full.chains, {m: v for m, v in full.maps.items() if v}, full.sets, full.affinity)
        ports, state = after, updated
