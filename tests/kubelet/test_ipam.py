"""The kubelet's file-backed pod IPAM: no kernel, just the state file."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from kubelet.ipam import Ipam, IpamExhausted


@pytest.fixture
def path(tmp_path):
    return tmp_path / "ipam.json"


def test_skips_network_gateway_and_broadcast(path):
    ipam = Ipam(path, "10.244.1.0/29")
    ips = [ipam.allocate(f"pod-{i}") for i in range(5)]
    assert ips == ["10.244.1.2", "10.244.1.3", "10.244.1.4", "10.244.1.5", "10.244.1.6"]


def test_same_uid_gets_same_ip(path):
    ipam = Ipam(path, "10.244.1.0/24")
    assert ipam.allocate("a") == ipam.allocate("a") == ipam.get("a")
    assert ipam.allocate("b") != ipam.get("a")


def test_exhaustion(path):
    ipam = Ipam(path, "10.244.1.0/29")
    for i in range(5):
        ipam.allocate(f"pod-{i}")
    with pytest.raises(IpamExhausted):
        ipam.allocate("one-too-many")
    assert ipam.get("one-too-many") is None


def test_release_frees_the_address_for_reuse(path):
    ipam = Ipam(path, "10.244.1.0/29")
    ips = {f"pod-{i}": ipam.allocate(f"pod-{i}") for i in range(5)}
    assert ipam.release("pod-2") == ips["pod-2"]
    assert ipam.release("pod-2") is None
    assert ipam.get("pod-2") is None
    assert ipam.allocate("new") == ips["pod-2"]


def test_freed_address_is_not_reused_at_once(path):
    ipam = Ipam(path, "10.244.1.0/24")
    first = ipam.allocate("a")
    ipam.release("a")
    assert ipam.allocate("b") != first


def test_state_survives_a_restart(path):
    ipam = Ipam(path, "10.244.1.0/24")
    a, b = ipam.allocate("a"), ipam.allocate("b")
    reloaded = Ipam(path)
    assert reloaded.cidr == "10.244.1.0/24"
    assert reloaded.all() == {"a": a, "b": b}
    assert reloaded.allocate("c") not in {a, b}
    assert json.loads(path.read_text())["allocations"]["c"] == reloaded.get("c")
    assert not path.with_name("ipam.json.tmp").exists()


def test_cidr_change_drops_allocations_outside(path):
    ipam = Ipam(path, "10.244.0.0/23")
    ipam.allocate("a")                        # 10.244.0.2
    for i in range(300):
        ipam.allocate(f"fill-{i}")            # runs into 10.244.1.x
    inside = {uid: ip for uid, ip in ipam.all().items() if ip.startswith("10.244.1.") and ip != "10.244.1.1"}
    ipam.set_cidr("10.244.1.0/24")
    assert ipam.get("a") is None
    assert ipam.all() == inside
    assert Ipam(path).all() == inside


def test_cidr_change_drops_the_new_gateway(path):
    ipam = Ipam(path, "10.244.0.0/16")
    for i in range(256):
        ipam.allocate(f"pod-{i}")
    owner = next(uid for uid, ip in ipam.all().items() if ip == "10.244.1.1")
    ipam.set_cidr("10.244.1.0/24")
    assert ipam.get(owner) is None


def test_allocate_without_cidr_fails(path):
    with pytest.raises(RuntimeError):
        Ipam(path).allocate("a")


def test_concurrent_allocations_never_share_an_ip(path):
    ipam = Ipam(path, "10.244.1.0/24")
    with ThreadPoolExecutor(16) as pool:
        ips = list(pool.map(ipam.allocate, [f"pod-{i}" for i in range(200)]))
    assert len(set(ips)) == 200
    assert Ipam(path).all() == {f"pod-{i}": ip for i, ip in enumerate(ips)}
