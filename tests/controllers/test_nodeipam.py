"""Node IPAM: unit tests on the allocator and reconcile (fake apiserver), e2e through real processes."""
import asyncio
import copy
import subprocess
import sys
import time

import pytest

from client.events import EventRecorder
from client.factory import InformerFactory
from client.kubeconfig import write_kubeconfig
from client.testing import FakeAPIServer
from controllers.manager import select
from controllers.nodeipam import CIDRAllocator, NodeIPAMController
from tests.conftest import ROOT


def test_allocator_hands_out_distinct_ranges_and_reuses_released_ones():
    a = CIDRAllocator("10.244.0.0/16", 24)
    a.occupy("10.244.0.0/24")
    first, second = a.allocate(), a.allocate()
    assert (first, second) == ("10.244.1.0/24", "10.244.2.0/24")
    a.release(first)
    assert a.allocate() == first


def test_allocator_reports_exhaustion():
    a = CIDRAllocator("10.0.0.0/23", 24)
    a.allocate(), a.allocate()
    with pytest.raises(RuntimeError):
        a.allocate()


def test_controller_selection_syntax():
    everything = select("*")
    assert "nodeipam" in everything and everything == sorted(everything)
    assert "nodeipam" not in select("*,-nodeipam")
    assert select("nodeipam") == ["nodeipam"]
    with pytest.raises(ValueError):
        select("bogus")


async def test_reconcile_assigns_missing_cidrs_and_leaves_set_ones_alone():
    fake = FakeAPIServer()
    fake.seed({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "has"}, "spec": {"podCIDR": "10.244.0.0/24"}})
    fake.seed({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "new"}, "spec": {}})
    client = fake.async_client()
    factory = InformerFactory(client)
    ctl = NodeIPAMController(client, factory, EventRecorder(client, "test"), cluster_cidr="10.244.0.0/16")
    factory.start()
    await factory.wait_for_sync(5)
    await ctl.reconcile("new")
    await ctl.reconcile("has")
    patches = [a for a in fake.actions if a[0] == "PATCH"]
    assert len(patches) == 1 and patches[0][1].endswith("/nodes/new")
    assert patches[0][3]["spec"]["podCIDR"] == "10.244.1.0/24"
    # Converged: reconciling again writes nothing.
    for _ in range(50):
        if (ctl.nodes.store.get("new") or {}).get("spec", {}).get("podCIDR"):
            break
        await asyncio.sleep(0.02)
    await ctl.reconcile("new")
    assert len([a for a in fake.actions if a[0] == "PATCH"]) == 1
    await factory.stop()
    await client.aclose()


async def test_a_second_reconcile_before_the_watch_catches_up_cuts_no_second_range():
    fake = FakeAPIServer()
    fake.seed({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "new"}, "spec": {}})
    client = fake.async_client()
    factory = InformerFactory(client)
    ctl = NodeIPAMController(client, factory, EventRecorder(client, "test"), cluster_cidr="10.244.0.0/16")
    factory.start()
    await factory.wait_for_sync(5)
    stale = copy.deepcopy(ctl.nodes.store.get("new"))
    await ctl.reconcile("new")
    # The watch is behind: the cache still shows the node without a podCIDR (as after a heartbeat that
    # raced our patch), and the node is reconciled again.
    ctl.nodes.store.put(stale)
    await ctl.reconcile("new")
    patches = [a for a in fake.actions if a[0] == "PATCH"]
    assert len(patches) == 1, patches
    await factory.stop()
    await client.aclose()


def start_cm(kubeconfig, identity, port):
    return subprocess.Popen([sys.executable, "-m", "cli.main", "controller-manager", "--kubeconfig", str(kubeconfig),
                             "--identity", identity, "--health-port", str(port), "--leader-elect-lease-duration", "3",
                             "--leader-elect-renew-deadline", "2", "--leader-elect-retry-period", "0.5"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for(fn, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.1)
    return fn()


def test_controller_manager_processes_assign_cidrs_and_fail_over(apiserver, http, tmp_path):
    from cli.etcd import free_port
    kc = tmp_path / "cm.kubeconfig"
    write_kubeconfig(kc, server=apiserver.url, ca_pem=apiserver.ca.read_bytes(),
                     token=apiserver.tokens["system:kube-controller-manager"], user="system:kube-controller-manager")
    http.delete("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager")
    a = start_cm(kc, "cm-a", free_port())
    b = None
    try:
        holder = lambda: (http.get("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager")  # noqa: E731
                          .json().get("spec", {}).get("holderIdentity"))
        assert wait_for(lambda: holder() == "cm-a")
        b = start_cm(kc, "cm-b", free_port())
        names = [f"ipam-{i}" for i in range(5)]
        for n in names:
            assert http.post("/api/v1/nodes", json={"metadata": {"name": n}}).status_code == 201

        def cidrs():
            got = {n: http.get(f"/api/v1/nodes/{n}").json().get("spec", {}).get("podCIDR") for n in names}
            return got if all(got.values()) else None
        got = wait_for(cidrs)
        assert got and len(set(got.values())) == 5
        assert holder() == "cm-a"
        a.kill()  # the leader dies without releasing; b takes over after the lease expires
        killed = time.monotonic()
        assert wait_for(lambda: holder() == "cm-b")
        assert time.monotonic() - killed < 15
        http.post("/api/v1/nodes", json={"metadata": {"name": "ipam-late"}})
        late = wait_for(lambda: http.get("/api/v1/nodes/ipam-late").json().get("spec", {}).get("podCIDR"))
        assert late and late not in got.values()
    finally:
        for p in (a, b):
            if p and p.poll() is None:
                p.terminate()
                p.wait(10)
        for n in [f"ipam-{i}" for i in range(5)] + ["ipam-late"]:
            http.delete(f"/api/v1/nodes/{n}")
