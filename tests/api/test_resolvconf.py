"""A pod's resolv.conf for each dnsPolicy, dnsConfig merging and limits; its service environment variables."""
from __future__ import annotations

from api.resolvconf import parse_resolv_conf, resolv_conf, service_env_vars

HOST = """# written by the node
nameserver 192.168.1.1
nameserver 192.168.1.2 ; second
search corp.example. lab.example
options timeout:2 attempts:3
"""


def pod(policy=None, *, ns="shop", host_network=False, dns_config=None):
    spec = {"hostNetwork": host_network}
    if policy:
        spec["dnsPolicy"] = policy
    if dns_config is not None:
        spec["dnsConfig"] = dns_config
    return {"metadata": {"name": "web", "namespace": ns}, "spec": spec}


def conf(p, *, cluster_dns=("10.96.0.10",), host=HOST):
    return resolv_conf(p, cluster_dns=list(cluster_dns), cluster_domain="cluster.local", host_resolv_conf=host)


def test_parse_host_resolv_conf():
    assert parse_resolv_conf(HOST) == (["192.168.1.1", "192.168.1.2"], ["corp.example", "lab.example"],
                                       ["timeout:2", "attempts:3"])


def test_cluster_first_is_the_default():
    expected = ("nameserver 10.96.0.10\n"
                "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example\n"
                "options ndots:5\n")
    assert conf(pod()) == expected
    assert conf(pod("ClusterFirst")) == expected


def test_cluster_first_on_host_network_falls_back_to_default():
    assert conf(pod("ClusterFirst", host_network=True)).startswith("nameserver 192.168.1.1\n")


def test_cluster_first_with_host_net_uses_cluster_dns_on_host_network():
    text = conf(pod("ClusterFirstWithHostNet", host_network=True))
    assert text.splitlines()[0] == "nameserver 10.96.0.10" and "options ndots:5" in text


def test_cluster_first_without_cluster_dns_falls_back_to_default():
    assert conf(pod("ClusterFirst"), cluster_dns=()) == conf(pod("Default"))


def test_default_takes_the_host_configuration():
    assert conf(pod("Default")) == ("nameserver 192.168.1.1\nnameserver 192.168.1.2\n"
                                    "search corp.example lab.example\noptions timeout:2 attempts:3\n")


def test_default_with_empty_host_resolv_conf_disables_lookups():
    assert conf(pod("Default"), host="") == "nameserver 127.0.0.1\nsearch .\n"


def test_none_is_only_the_dns_config():
    assert conf(pod("None", dns_config={"nameservers": ["1.2.3.4"], "searches": ["a.example"],
                                        "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]})) == \
        "nameserver 1.2.3.4\nsearch a.example\noptions ndots:2 edns0\n"
    assert conf(pod("None", dns_config={})) == "\n"


def test_dns_config_is_merged_into_cluster_first():
    text = conf(pod(dns_config={
        "nameservers": ["10.96.0.10", "1.2.3.4"],
        "searches": ["svc.cluster.local", "extra.example"],
        "options": [{"name": "ndots", "value": "2"}, {"name": "single-request-reopen"}],
    }))
    assert text == ("nameserver 10.96.0.10\nnameserver 1.2.3.4\n"
                    "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example "
                    "extra.example\n"
                    "options ndots:2 single-request-reopen\n")


def test_dns_config_merged_into_default_keeps_host_options():
    text = conf(pod("Default", dns_config={"options": [{"name": "attempts", "value": "5"}, {"name": "rotate"}]}))
    assert text.splitlines()[-1] == "options timeout:2 attempts:5 rotate"


def test_nameservers_are_capped_at_three():
    text = conf(pod(dns_config={"nameservers": ["1.1.1.1", "2.2.2.2", "3.3.3.3"]}))
    assert [l for l in text.splitlines() if l.startswith("nameserver")] == \
        ["nameserver 10.96.0.10", "nameserver 1.1.1.1", "nameserver 2.2.2.2"]


def test_search_paths_are_capped():
    many = [f"d{i}.example" for i in range(40)] + ["x" * 254]
    searches = conf(pod("None", dns_config={"searches": many})).splitlines()[0].split()[1:]
    assert searches == many[:32]
    long = [f"{i:02d}" + "y" * 250 for i in range(10)]
    line = conf(pod("None", dns_config={"searches": long})).splitlines()[0]
    assert len(line) - len("search ") <= 2048 and line.split()[1:] == long[:8]


# -- service environment variables ---------------------------------------------------------------

def svc(name, ns, ip="10.96.0.20", ports=None, **spec):
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "ports": ports if ports is not None else [{"port": 80, "protocol": "TCP"}], **spec}}


KUBERNETES = svc("kubernetes", "default", "10.96.0.1", [{"name": "https", "port": 443, "protocol": "TCP"}])


def test_env_vars_of_a_multi_port_service_with_dashes():
    redis = svc("redis-primary", "shop", "10.96.0.30", [{"name": "redis", "port": 6379, "protocol": "TCP"},
                                                         {"name": "metrics-port", "port": 9121},
                                                         {"name": "gossip", "port": 7946, "protocol": "UDP"}])
    env = service_env_vars([redis], "shop")
    assert env == {
        "REDIS_PRIMARY_SERVICE_HOST": "10.96.0.30",
        "REDIS_PRIMARY_SERVICE_PORT": "6379",
        "REDIS_PRIMARY_SERVICE_PORT_REDIS": "6379",
        "REDIS_PRIMARY_SERVICE_PORT_METRICS_PORT": "9121",
        "REDIS_PRIMARY_SERVICE_PORT_GOSSIP": "7946",
        "REDIS_PRIMARY_PORT": "tcp://10.96.0.30:6379",
        "REDIS_PRIMARY_PORT_6379_TCP": "tcp://10.96.0.30:6379",
        "REDIS_PRIMARY_PORT_6379_TCP_PROTO": "tcp",
        "REDIS_PRIMARY_PORT_6379_TCP_PORT": "6379",
        "REDIS_PRIMARY_PORT_6379_TCP_ADDR": "10.96.0.30",
        "REDIS_PRIMARY_PORT_9121_TCP": "tcp://10.96.0.30:9121",
        "REDIS_PRIMARY_PORT_9121_TCP_PROTO": "tcp",
        "REDIS_PRIMARY_PORT_9121_TCP_PORT": "9121",
        "REDIS_PRIMARY_PORT_9121_TCP_ADDR": "10.96.0.30",
        "REDIS_PRIMARY_PORT_7946_UDP": "udp://10.96.0.30:7946",
        "REDIS_PRIMARY_PORT_7946_UDP_PROTO": "udp",
        "REDIS_PRIMARY_PORT_7946_UDP_PORT": "7946",
        "REDIS_PRIMARY_PORT_7946_UDP_ADDR": "10.96.0.30",
    }


def test_env_vars_only_for_the_pods_namespace_and_cluster_ip_services():
    services = [KUBERNETES, svc("web", "shop"), svc("web", "other", "10.96.0.99"), svc("db", "shop", "None"),
                svc("ext", "shop", None, [], type="ExternalName", externalName="db.example.com")]
    env = service_env_vars(services, "shop")
    assert env["WEB_SERVICE_HOST"] == "10.96.0.20" and env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert env["KUBERNETES_PORT"] == "tcp://10.96.0.1:443" and env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert not any(k.startswith(("DB_", "EXT_")) for k in env)


def test_enable_service_links_false_keeps_only_the_master_service():
    env = service_env_vars([KUBERNETES, svc("web", "shop")], "shop", enable_service_links=False)
    assert env and all(k.startswith("KUBERNETES_") for k in env)


def test_a_kubernetes_service_in_the_pods_namespace_wins():
    own = svc("kubernetes", "shop", "10.96.0.77")
    for services in ([KUBERNETES, own], [own, KUBERNETES]):
        assert service_env_vars(services, "shop")["KUBERNETES_SERVICE_HOST"] == "10.96.0.77"
    assert service_env_vars([own, KUBERNETES], "shop", enable_service_links=False)["KUBERNETES_SERVICE_HOST"] == \
        "10.96.0.1"


def test_ipv6_cluster_ip_is_bracketed_in_urls():
    env = service_env_vars([svc("v6", "shop", "fd00::20")], "shop")
    assert env["V6_PORT"] == "tcp://[fd00::20]:80" and env["V6_PORT_80_TCP_ADDR"] == "fd00::20"
