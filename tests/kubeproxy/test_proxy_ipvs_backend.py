"""IPVS backend against recording fakes of the netlink handles and of the iptables runner."""
from __future__ import annotations

from kubeproxy import model
from kubeproxy.ipvs_backend import IpvsBackend

NODE = "n1"
CTX = model.NodeContext(NODE, ("10.77.0.1",), "10.244.0.0/16")
EP1, EP2 = model.Endpoint("10.244.1.2", 8080, NODE), model.Endpoint("10.244.2.2", 8080, "n2")


class FakeIpvs:
    def __init__(self, existing=None):
        self.table = dict(existing or {})
        self.calls = []

    def list(self):
        return dict(self.table)

    def add_service(self, vs):
        self.calls.append(("add_service", vs.key))
        self.table[vs.key] = (vs, frozenset())

    def del_service(self, vs):
        self.calls.append(("del_service", vs.key))
        del self.table[vs.key]

    def add_dest(self, vs, d):
        self.calls.append(("add_dest", vs.key, d))
        self.table[vs.key] = (self.table[vs.key][0], self.table[vs.key][1] | {d})

    def del_dest(self, vs, d):
        self.calls.append(("del_dest", vs.key, d))
        self.table[vs.key] = (self.table[vs.key][0], self.table[vs.key][1] - {d})


class FakeLink:
    def __init__(self, addresses=()):
        self.addrs = set(addresses)
        self.calls = []

    def ensure(self):
        self.calls.append(("ensure",))

    def addresses(self):
        return set(self.addrs)

    def add_address(self, ip):
        self.calls.append(("add", ip))
        self.addrs.add(ip)

    def del_address(self, ip):
        self.calls.append(("del", ip))
        self.addrs.discard(ip)

    def remove(self):
        self.calls.append(("remove",))


class Commands:
    def __init__(self):
        self.seen = []

    def __call__(self, cmd, input=None, *, check=True, timeout=300):
        self.seen.append((cmd, input))
        return ""


def sp(name="web", **kw):
    base = dict(namespace="default", name=name, port_name="", protocol="TCP", cluster_ip="10.96.0.20", port=80,
                endpoints=(EP1, EP2))
    return model.ServicePort(**{**base, **kw})


def backend(existing=None, addresses=()):
    ipvs, link, cmds = FakeIpvs(existing), FakeLink(addresses), Commands()
    return IpvsBackend(handle=ipvs, link=link, runner=cmds, set_sysctls=False), ipvs, link, cmds


def test_first_sync_binds_addresses_creates_services_with_masquerade_dests_and_rules():
    b, ipvs, link, cmds = backend()
    b.sync([sp(node_port=30080, affinity_timeout=30)], CTX, full=True)
    assert ("add", "10.96.0.20") in link.calls
    assert ipvs.table[("TCP", "10.96.0.20", 80)][1] == {("10.244.1.2", 8080), ("10.244.2.2", 8080)}
    assert ipvs.table[("TCP", "10.96.0.20", 80)][0].persistence == 30
    assert ("TCP", "10.77.0.1", 30080) in ipvs.table
    restore = [inp for cmd, inp in cmds.seen if cmd[0] == "iptables-restore"]
    assert restore and "-A KUBE-NODE-PORT -p tcp -m tcp --dport 30080 -j KUBE-MARK-MASQ" in restore[-1]


def test_incremental_sync_only_touches_differences():
    b, ipvs, link, _ = backend()
    b.sync([sp(), sp(name="other", cluster_ip="10.96.0.21")], CTX, full=True)
    ipvs.calls.clear()
    link.calls.clear()
    b.sync([sp(endpoints=(EP1,))], CTX)
    assert ipvs.calls == [("del_dest", ("TCP", "10.96.0.20", 80), ("10.244.2.2", 8080)),
                          ("del_service", ("TCP", "10.96.0.21", 80))]
    assert link.calls == [("del", "10.96.0.21")]


def test_full_sync_removes_leftovers_bound_to_kube_ipvs0_but_not_foreign_services():
    from kubeproxy.ipvs import VirtualServer
    stale = VirtualServer("TCP", "10.96.0.99", 80)
    foreign = VirtualServer("TCP", "192.0.2.1", 80)
    b, ipvs, link, _ = backend({stale.key: (stale, frozenset()), foreign.key: (foreign, frozenset())},
                               addresses={"10.96.0.99"})
    b.sync([sp()], CTX, full=True)
    assert stale.key not in ipvs.table and foreign.key in ipvs.table
    assert "10.96.0.99" not in link.addrs


def test_changed_persistence_recreates_the_virtual_server():
    b, ipvs, _, _ = backend()
    b.sync([sp()], CTX, full=True)
    ipvs.calls.clear()
    b.sync([sp(affinity_timeout=60)], CTX)
    assert [c[0] for c in ipvs.calls] == ["del_service", "add_service", "add_dest", "add_dest"]
