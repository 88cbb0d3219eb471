"""The resolver against plain dicts in hand-filled caches: every record type, NXDOMAIN and NODATA."""
from __future__ import annotations

import pytest
from dnslib import QTYPE, RCODE

from client.store import Indexer
from clusterdns.records import Resolver, add_indexes, undashed

ZONE = "cluster.local"


def service(name, ns="default", cluster_ip="10.96.0.20", ports=None, **spec):
    spec = {"clusterIP": cluster_ip, "ports": ports if ports is not None else [{"port": 80, "protocol": "TCP"}], **spec}
    return {"metadata": {"name": name, "namespace": ns}, "spec": spec}


def endpoints(name, ns="default", addresses=(), not_ready=(), ports=None):
    subset = {"addresses": list(addresses), "ports": ports or [{"port": 8080, "protocol": "TCP"}]}
    if not_ready:
        subset["notReadyAddresses"] = list(not_ready)
    return {"metadata": {"name": name, "namespace": ns}, "subsets": [subset]}


def pod(name, ns, ip, host_network=False):
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"hostNetwork": host_network},
            "status": {"phase": "Running", "podIP": ip}}


def make(objs=()):
    stores = {"Service": Indexer(), "Endpoints": Indexer(), "Pod": Indexer()}
    add_indexes(stores["Service"], stores["Endpoints"], stores["Pod"])
    for kind, obj in objs:
        stores[kind].put(obj)
    return Resolver(stores["Service"], stores["Endpoints"], stores["Pod"], zone=ZONE, ttl=5)


def rdatas(answer, rtype=None):
    return [str(rr.rdata) for rr in answer.answer if rtype is None or rr.rtype == rtype]


WEB_PORTS = [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}]


@pytest.fixture
def r():
    return make([
        ("Service", service("web", "shop", "10.96.0.20", ports=WEB_PORTS)),
        ("Endpoints", endpoints("web", "shop", [{"ip": "10.244.1.5"}], ports=[
            {"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "dns", "port": 5353, "protocol": "UDP"}])),
        ("Service", service("db", "shop", "None", ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}])),
        ("Endpoints", endpoints("db", "shop",
                                [{"ip": "10.244.2.7", "hostname": "db-0"}, {"ip": "10.244.1.9", "hostname": "db-1"},
                                 {"ip": "10.244.3.3"}],
                                not_ready=[{"ip": "10.244.3.4", "hostname": "db-3"}],
                                ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}])),
        ("Service", service("empty", "shop", "None", ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}])),
        ("Service", service("ext", "shop", None, ports=[], type="ExternalName", externalName="db.example.com")),
        ("Service", service("alias", "shop", None, ports=[], type="ExternalName",
                            externalName="web.shop.svc.cluster.local")),
        ("Service", service("v6", "shop", "fd00::20", clusterIPs=["fd00::20"])),
        ("Service", service("kube-dns", "kube-system", "10.96.0.10")),
        ("Pod", pod("web-abc", "shop", "10.244.1.5")),
        ("Pod", pod("agent", "kube-system", "192.168.1.10", host_network=True)),
    ])


def test_cluster_ip_service_a_record(r):
    a = r.resolve("web.shop.svc.cluster.local.", QTYPE.A)
    assert a.rcode == RCODE.NOERROR and rdatas(a) == ["10.96.0.20"]
    assert a.answer[0].ttl == 5 and str(a.answer[0].rname) == "web.shop.svc.cluster.local."


def test_names_are_case_insensitive(r):
    assert rdatas(r.resolve("WEB.Shop.SVC.cluster.LOCAL", QTYPE.A)) == ["10.96.0.20"]


def test_aaaa_for_v4_service_is_nodata_with_soa(r):
    a = r.resolve("web.shop.svc.cluster.local", QTYPE.AAAA)
    assert a.rcode == RCODE.NOERROR and a.answer == []
    assert [rr.rtype for rr in a.authority] == [QTYPE.SOA] and str(a.authority[0].rname) == "cluster.local."


def test_v6_service_answers_aaaa_only(r):
    assert rdatas(r.resolve("v6.shop.svc.cluster.local", QTYPE.AAAA)) == ["fd00::20"]
    assert r.resolve("v6.shop.svc.cluster.local", QTYPE.A).answer == []


def test_missing_service_is_nxdomain_with_soa(r):
    a = r.resolve("nope.shop.svc.cluster.local", QTYPE.A)
    assert a.rcode == RCODE.NXDOMAIN and a.answer == [] and a.authority[0].rtype == QTYPE.SOA


@pytest.mark.parametrize("name", [
    "web.shop.svc.cluster.local.shop.svc.cluster.local",   # search-path expansion of a FQDN
    "web.shop.svc.cluster.local.svc.cluster.local",
    "www.example.com.shop.svc.cluster.local",
    "www.example.com.cluster.local",
    "a.b.c.d.e.web.shop.svc.cluster.local",
    "foo.cluster.local",
])
def test_search_path_misses_are_nxdomain(r, name):
    a = r.resolve(name, QTYPE.A)
    assert a.rcode == RCODE.NXDOMAIN and not a.outside


def test_headless_service_answers_ready_endpoint_addresses(r):
    a = r.resolve("db.shop.svc.cluster.local", QTYPE.A)
    assert rdatas(a) == ["10.244.1.9", "10.244.2.7", "10.244.3.3"]  # not-ready 10.244.3.4 left out


def test_headless_publish_not_ready_addresses():
    r = make([("Service", service("db", "shop", "None", publishNotReadyAddresses=True)),
              ("Endpoints", endpoints("db", "shop", [{"ip": "10.244.2.7"}], not_ready=[{"ip": "10.244.3.4"}]))])
    assert rdatas(r.resolve("db.shop.svc.cluster.local", QTYPE.A)) == ["10.244.2.7", "10.244.3.4"]


def test_headless_without_endpoints_is_nodata(r):
    a = r.resolve("empty.shop.svc.cluster.local", QTYPE.A)
    assert a.rcode == RCODE.NOERROR and a.answer == [] and a.authority


def test_endpoint_hostname_records(r):
    assert rdatas(r.resolve("db-0.db.shop.svc.cluster.local", QTYPE.A)) == ["10.244.2.7"]
    assert rdatas(r.resolve("10-244-3-3.db.shop.svc.cluster.local", QTYPE.A)) == ["10.244.3.3"]
    assert r.resolve("db-3.db.shop.svc.cluster.local", QTYPE.A).rcode == RCODE.NXDOMAIN  # not ready
    assert r.resolve("db-9.db.shop.svc.cluster.local", QTYPE.A).rcode == RCODE.NXDOMAIN
    nodata = r.resolve("db-0.db.shop.svc.cluster.local", QTYPE.AAAA)
    assert nodata.rcode == RCODE.NOERROR and nodata.answer == []


def test_srv_for_cluster_ip_service_targets_the_service(r):
    a = r.resolve("_http._tcp.web.shop.svc.cluster.local", QTYPE.SRV)
    assert [(rr.rdata.priority, rr.rdata.port, str(rr.rdata.target)) for rr in a.answer] == \
        [(0, 80, "web.shop.svc.cluster.local.")]
    assert str(a.answer[0].rname) == "_http._tcp.web.shop.svc.cluster.local."
    assert [(str(rr.rname), str(rr.rdata)) for rr in a.additional] == [("web.shop.svc.cluster.local.", "10.96.0.20")]
    assert [rr.rdata.port for rr in r.resolve("_dns._udp.web.shop.svc.cluster.local", QTYPE.SRV).answer] == [53]


def test_srv_protocol_and_port_name_must_match(r):
    assert r.resolve("_http._udp.web.shop.svc.cluster.local", QTYPE.SRV).rcode == RCODE.NXDOMAIN
    assert r.resolve("_nope._tcp.web.shop.svc.cluster.local", QTYPE.SRV).rcode == RCODE.NXDOMAIN
    a = r.resolve("_http._tcp.web.shop.svc.cluster.local", QTYPE.A)
    assert a.rcode == RCODE.NOERROR and a.answer == []


def test_srv_for_headless_service_one_record_per_endpoint(r):
    a = r.resolve("_pg._tcp.db.shop.svc.cluster.local", QTYPE.SRV)
    assert sorted((rr.rdata.port, str(rr.rdata.target)) for rr in a.answer) == [
        (5432, "10-244-3-3.db.shop.svc.cluster.local."),
        (5432, "db-0.db.shop.svc.cluster.local."),
        (5432, "db-1.db.shop.svc.cluster.local."),
    ]
    assert {rr.rdata.weight for rr in a.answer} == {33}
    assert sorted((str(rr.rname), str(rr.rdata)) for rr in a.additional) == [
        ("10-244-3-3.db.shop.svc.cluster.local.", "10.244.3.3"),
        ("db-0.db.shop.svc.cluster.local.", "10.244.2.7"),
        ("db-1.db.shop.svc.cluster.local.", "10.244.1.9"),
    ]


def test_srv_on_the_service_name_lists_every_port(r):
    a = r.resolve("web.shop.svc.cluster.local", QTYPE.SRV)
    assert sorted(rr.rdata.port for rr in a.answer) == [53, 80]


def test_srv_of_headless_service_without_endpoints_is_nodata(r):
    a = r.resolve("_pg._tcp.empty.shop.svc.cluster.local", QTYPE.SRV)
    assert a.rcode == RCODE.NOERROR and a.answer == []


def test_external_name_is_a_cname_not_chased_here(r):
    a = r.resolve("ext.shop.svc.cluster.local", QTYPE.A)
    assert a.rcode == RCODE.NOERROR and not a.outside
    assert [(rr.rtype, str(rr.rdata)) for rr in a.answer] == [(QTYPE.CNAME, "db.example.com.")]
    assert a.chase == "db.example.com"


def test_external_name_into_the_zone_is_followed(r):
    a = r.resolve("alias.shop.svc.cluster.local", QTYPE.A)
    assert [(rr.rtype, str(rr.rdata)) for rr in a.answer] == [
        (QTYPE.CNAME, "web.shop.svc.cluster.local."), (QTYPE.A, "10.96.0.20")]
    assert a.chase is None


def test_external_name_loop_stops_after_one_level():
    r = make([("Service", service("a", "x", None, ports=[], type="ExternalName", externalName="b.x.svc.cluster.local")),
              ("Service", service("b", "x", None, ports=[], type="ExternalName", externalName="a.x.svc.cluster.local"))])
    a = r.resolve("a.x.svc.cluster.local", QTYPE.A)
    assert [str(rr.rdata) for rr in a.answer] == ["b.x.svc.cluster.local.", "a.x.svc.cluster.local."]


def test_pod_records_decode_the_name(r):
    assert rdatas(r.resolve("10-244-1-5.shop.pod.cluster.local", QTYPE.A)) == ["10.244.1.5"]
    # "insecure" mode: any namespace, any IP, no pod needed
    assert rdatas(r.resolve("1-2-3-4.other.pod.cluster.local", QTYPE.A)) == ["1.2.3.4"]
    assert r.resolve("not-an-ip.shop.pod.cluster.local", QTYPE.A).rcode == RCODE.NXDOMAIN
    assert r.resolve("1-2-3-4.shop.pod.cluster.local", QTYPE.AAAA).answer == []
    assert undashed("fd00--5") == "fd00::5"


def test_namespace_and_zone_nodes(r):
    assert r.resolve("shop.svc.cluster.local", QTYPE.A).rcode == RCODE.NOERROR
    assert r.resolve("nowhere.svc.cluster.local", QTYPE.A).rcode == RCODE.NXDOMAIN
    assert r.resolve("svc.cluster.local", QTYPE.A).rcode == RCODE.NOERROR
    soa = r.resolve("cluster.local", QTYPE.SOA)
    assert soa.answer[0].rtype == QTYPE.SOA and str(soa.answer[0].rdata.mname) == "ns.dns.cluster.local."
    assert rdatas(r.resolve("cluster.local", QTYPE.NS)) == ["ns.dns.cluster.local."]
    assert rdatas(r.resolve("ns.dns.cluster.local", QTYPE.A)) == ["10.96.0.10"]


def test_ptr_for_service_endpoint_and_pod_ips(r):
    assert rdatas(r.resolve("20.0.96.10.in-addr.arpa", QTYPE.PTR)) == ["web.shop.svc.cluster.local."]
    assert rdatas(r.resolve("7.2.244.10.in-addr.arpa", QTYPE.PTR)) == ["db-0.db.shop.svc.cluster.local."]
    assert rdatas(r.resolve("5.1.244.10.in-addr.arpa", QTYPE.PTR)) == ["10-244-1-5.shop.pod.cluster.local."]
    v6 = ".".join(reversed("fd000000000000000000000000000020")) + ".ip6.arpa"
    assert rdatas(r.resolve(v6, QTYPE.PTR)) == ["v6.shop.svc.cluster.local."]


def test_unknown_reverse_names_and_host_network_pods_are_not_ours(r):
    assert r.resolve("8.8.8.8.in-addr.arpa", QTYPE.PTR).outside
    assert r.resolve("10.1.168.192.in-addr.arpa", QTYPE.PTR).outside  # hostNetwork pod: the node's IP


@pytest.mark.parametrize("name", ["example.com", "kubernetes.default.svc.cluster.localx", "local", "."])
def test_names_outside_the_zone_are_outside(r, name):
    assert r.resolve(name, QTYPE.A).outside


def test_cache_changes_show_at_once():
    services, eps, pods = Indexer(), Indexer(), Indexer()
    add_indexes(services, eps, pods)
    r = Resolver(services, eps, pods, zone=ZONE)
    assert r.resolve("web.x.svc.cluster.local", QTYPE.A).rcode == RCODE.NXDOMAIN
    services.put(service("web", "x", "10.96.0.33"))
    assert rdatas(r.resolve("web.x.svc.cluster.local", QTYPE.A)) == ["10.96.0.33"]
    services.remove("x/web")
    assert r.resolve("web.x.svc.cluster.local", QTYPE.A).rcode == RCODE.NXDOMAIN


def test_other_cluster_domain():
    r = make([("Service", service("web", "x", "10.96.0.33"))])
    r2 = Resolver(r.services, r.endpoints, r.pods, zone="corp.example.")
    assert rdatas(r2.resolve("web.x.svc.corp.example", QTYPE.A)) == ["10.96.0.33"]
    assert r2.resolve("web.x.svc.cluster.local", QTYPE.A).outside


def test_any_query_answers_every_address(r):
    assert rdatas(r.resolve("web.shop.svc.cluster.local", QTYPE.ANY)) == ["10.96.0.20"]


def test_dual_stack_headless_service_orders_v4_first():
    r = make([("Service", service("db", "x", "None")),
              ("Endpoints", endpoints("db", "x", [{"ip": "fd00::7"}, {"ip": "10.244.0.9"}, {"ip": "10.244.0.10"}]))])
    assert rdatas(r.resolve("db.x.svc.cluster.local", QTYPE.A)) == ["10.244.0.9", "10.244.0.10"]
    assert rdatas(r.resolve("db.x.svc.cluster.local", QTYPE.AAAA)) == ["fd00::7"]


def test_protocol_node_above_srv_names_exists(r):
    assert r.resolve("_tcp.web.shop.svc.cluster.local", QTYPE.A).rcode == RCODE.NOERROR
    assert r.resolve("_sctp.web.shop.svc.cluster.local", QTYPE.A).rcode == RCODE.NXDOMAIN
