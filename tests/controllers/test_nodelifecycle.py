"""Node lifecycle and PodGC with a fake clock against the in-memory fake apiserver."""
from __future__ import annotations

import asyncio

import pytest

from client.events import EventRecorder
from client.factory import InformerFactory
from client.testing import FakeAPIServer
from controllers.nodelifecycle import (UNREACHABLE, NodeLifecycleController, eviction_deadline, rfc3339)
from controllers.podgc import PodGCController

T0 = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def node(name: str, ready: str = "True") -> dict:
    conds = [{"type": t, "status": "False", "lastHeartbeatTime": rfc3339(T0), "lastTransitionTime": rfc3339(T0)}
             for t in ("MemoryPressure", "DiskPressure", "PIDPressure")]
    conds.append({"type": "Ready", "status": ready, "lastHeartbeatTime": rfc3339(T0),
                  "lastTransitionTime": rfc3339(T0)})
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": {},
            "status": {"conditions": conds}}


def lease(name: str, renew: float) -> dict:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": name, "renewTime": rfc3339(renew)}}


def pod(name: str, node_name: str, tolerations=None, deleting: str | None = None) -> dict:
    meta = {"name": name, "namespace": "default"}
    if deleting:
        meta["deletionTimestamp"] = deleting
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"nodeName": node_name, "tolerations": tolerations or [],
                     "containers": [{"name": "c", "image": "x"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}


class Harness:
    def __init__(self, cls, **options) -> None:
        self.fake = FakeAPIServer()
        self.clock = Clock()
        self.cls, self.options = cls, options

    async def start(self):
        self.client = self.fake.async_client()
        self.factory = InformerFactory(self.client)
        self.ctl = self.cls(self.client, self.factory, EventRecorder(self.client, "test"), clock=self.clock,
                            **self.options)
        self.factory.start()
        await self.factory.wait_for_sync(5)
        return self.ctl

    async def settle(self) -> None:
        await asyncio.sleep(0.05)

    def get(self, resource: str, key: str) -> dict | None:
        return self.fake.objects.get((resource, key))

    def writes(self) -> list:
        return [a for a in self.fake.actions if a[0] != "GET" and "/events" not in a[1]]

    def events(self, reason: str) -> list:
        return [a[3] for a in self.fake.actions if a[0] == "POST" and "/events" in a[1] and a[3]["reason"] == reason]

    async def stop(self) -> None:
        await asyncio.sleep(0.05)  # the fake watch stream can swallow a cancellation that meets a ready event
        await self.factory.stop()
        await self.client.aclose()


@pytest.fixture
async def nlc():
    h = Harness(NodeLifecycleController, node_monitor_grace_period=40, node_monitor_period=5,
                default_not_ready_toleration_seconds=300, default_unreachable_toleration_seconds=300)
    h.fake.seed(node("n1"))
    h.fake.seed(node("n2"))
    h.fake.seed(lease("n1", T0))
    h.fake.seed(lease("n2", T0))
    h.fake.seed(pod("plain", "n1"))
    h.fake.seed(pod("short", "n1", [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute",
                                     "tolerationSeconds": 10}]))
    h.fake.seed(pod("forever", "n1", [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}]))
    h.fake.seed(pod("elsewhere", "n2"))
    await h.start()
    yield h
    await h.stop()


async def renew(h: Harness, name: str) -> None:
    await h.client.patch("leases", name, {"spec": {"renewTime": rfc3339(h.clock.now)}}, "kube-node-lease")
    await h.settle()


async def test_healthy_nodes_cause_no_writes(nlc):
    nlc.clock.now = T0 + 39
    for n in ("n1", "n2"):
        await nlc.ctl.reconcile(n)
    assert nlc.writes() == []


async def test_silent_node_goes_unknown_is_tainted_and_its_pods_are_evicted_on_time(nlc):
    h, ctl = nlc, nlc.ctl
    for n in ("n1", "n2"):
        await ctl.reconcile(n)  # both observed at T0
    h.clock.now = T0 + 41
    await renew(h, "n2")
    await ctl.reconcile("n2")
    await ctl.reconcile("n1")
    n1 = h.get("nodes", "n1")
    conds = {c["type"]: c for c in n1["status"]["conditions"]}
    assert {c["status"] for c in conds.values()} == {"Unknown"}
    assert conds["Ready"]["reason"] == "NodeStatusUnknown"
    assert conds["Ready"]["message"] == "Kubelet stopped posting node status."
    assert conds["Ready"]["lastHeartbeatTime"] == rfc3339(T0)
    assert n1["spec"]["taints"] == [{"key": UNREACHABLE, "effect": "NoSchedule"},
                                    {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": rfc3339(T0 + 41)}]
    await h.settle()
    assert h.events("NodeNotReady") and h.get("nodes", "n2")["spec"] == {}
    # Pods on the dead node are no longer Ready; none is evicted yet (they all tolerate for a while).
    assert h.get("pods", "default/plain")["status"]["conditions"][0]["status"] == "False"
    assert h.get("pods", "default/elsewhere")["status"]["conditions"][0]["status"] == "True"
    assert not [a for a in h.writes() if a[0] == "DELETE"]

    await h.settle()
    before = len(h.writes())
    await ctl.reconcile("n1")
    assert len(h.writes()) == before, "a converged node must cause no writes"

    h.clock.now = T0 + 41 + 10
    await ctl.reconcile("n1")
    assert h.get("pods", "default/short") is None and h.get("pods", "default/plain") is not None
    await h.settle()
    assert [e["involvedObject"]["name"] for e in h.events("TaintManagerEviction")] == ["short"]

    h.clock.now = T0 + 41 + 300
    await renew(h, "n2")  # n2 stays healthy; were every node silent, nothing would be evicted
    await ctl.reconcile("n2")
    await ctl.reconcile("n1")
    assert h.get("pods", "default/plain") is None
    assert h.get("pods", "default/forever") is not None


async def test_recovered_node_is_untainted(nlc):
    h, ctl = nlc, nlc.ctl
    await ctl.reconcile("n1")
    h.clock.now = T0 + 41
    await renew(h, "n2")
    await ctl.reconcile("n2")
    await ctl.reconcile("n1")
    assert h.get("nodes", "n1")["spec"]["taints"]
    # The kubelet comes back: lease renewed and Ready=True reported with a fresh heartbeat.
    h.clock.now = T0 + 60
    await renew(h, "n1")
    fresh = node("n1")["status"]["conditions"]
    for c in fresh:
        c["lastHeartbeatTime"] = rfc3339(h.clock.now)
    await h.client.patch("nodes", "n1", {"status": {"conditions": fresh}}, subresource="status")
    await h.settle()
    await ctl.reconcile("n1")
    assert not h.get("nodes", "n1")["spec"].get("taints")


async def test_kubelet_reported_not_ready_taints_not_ready(nlc):
    h, ctl = nlc, nlc.ctl
    await h.client.patch("nodes", "n2", {"status": {"conditions": node("n2", ready="False")["status"]["conditions"]}},
                         subresource="status")
    await h.settle()
    await ctl.reconcile("n1")
    await ctl.reconcile("n2")
    taints = h.get("nodes", "n2")["spec"]["taints"]
    assert [(t["key"], t["effect"]) for t in taints] == [("node.kubernetes.io/not-ready", "NoSchedule"),
                                                          ("node.kubernetes.io/not-ready", "NoExecute")]


async def test_full_disruption_sets_no_noexecute_taints(nlc):
    h, ctl = nlc, nlc.ctl
    for n in ("n1", "n2"):
        await ctl.reconcile(n)
    h.clock.now = T0 + 41
    for n in ("n1", "n2"):
        await ctl.reconcile(n)
        await h.settle()
    for n in ("n1", "n2"):
        assert [t["effect"] for t in h.get("nodes", n)["spec"]["taints"]] == ["NoSchedule"]
    h.clock.now = T0 + 1000
    await ctl.reconcile("n1")
    assert not [a for a in h.writes() if a[0] == "DELETE"]


def test_eviction_deadline_rules():
    taint = {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": rfc3339(T0)}
    custom = {"key": "dedicated", "value": "gpu", "effect": "NoExecute", "timeAdded": rfc3339(T0)}
    kw = dict(not_ready_seconds=300, unreachable_seconds=20, first_seen=lambda t: T0)
    assert eviction_deadline(pod("p", "n"), [taint], **kw) == T0 + 20  # the default toleration
    assert eviction_deadline(pod("p", "n"), [custom], **kw) == float("-inf")  # not tolerated: at once
    tolerant = pod("p", "n", [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoExecute"}])
    assert eviction_deadline(tolerant, [custom], **kw) is None
    wildcard = pod("p", "n", [{"operator": "Exists"}])
    assert eviction_deadline(wildcard, [taint, custom], **kw) is None  # no default added: it tolerates all
    assert eviction_deadline(pod("p", "n"), [{"key": "x", "effect": "NoSchedule"}], **kw) is None


# -- PodGC -------------------------------------------------------------------------------------------

@pytest.fixture
async def podgc():
    h = Harness(PodGCController, podgc_period=20, podgc_terminating_delay=30, podgc_orphan_quarantine=40,
                terminated_pod_gc_threshold=1)
    h.fake.seed(node("healthy"))
    h.fake.seed(node("dead", ready="Unknown"))
    stamp = rfc3339(T0)
    h.fake.seed(pod("stuck-on-dead", "dead", deleting=stamp))
    h.fake.seed(pod("stopping-on-healthy", "healthy", deleting=stamp))
    h.fake.seed(pod("running-on-dead", "dead"))
    h.fake.seed(pod("orphan", "no-such-node"))
    unscheduled = pod("unscheduled", "", deleting=stamp)
    h.fake.seed(unscheduled)
    for i, phase in enumerate(("Succeeded", "Failed")):
        done = pod(f"done-{i}", "healthy")
        done["status"]["phase"] = phase
        done["metadata"]["creationTimestamp"] = rfc3339(T0 + i)
        h.fake.seed(done)
    await h.start()
    yield h
    await h.stop()


async def test_podgc_force_deletes_only_what_no_kubelet_will_finish(podgc):
    h, ctl = podgc, podgc.ctl
    await ctl.reconcile("podgc")
    assert h.get("pods", "default/unscheduled") is None
    assert h.get("pods", "default/stuck-on-dead") is not None, "not before the delay"
    assert h.get("pods", "default/orphan") is not None, "not before the quarantine"
    assert len([p for p in ("done-0", "done-1") if h.get("pods", f"default/{p}")]) == 1

    h.clock.now = T0 + 41
    await h.settle()
    await ctl.reconcile("podgc")
    assert h.get("pods", "default/stuck-on-dead") is None
    assert h.get("pods", "default/orphan") is None
    assert h.get("pods", "default/stopping-on-healthy") is not None
    assert h.get("pods", "default/running-on-dead") is not None
    forced = [a for a in h.writes() if a[0] == "DELETE" and a[3].get("gracePeriodSeconds") == 0]
    assert {a[1].rsplit("/", 1)[1] for a in forced} == {"unscheduled", "stuck-on-dead", "orphan"}
    assert all(a[3]["preconditions"]["uid"] for a in forced)
    assert ("GET", "/api/v1/nodes/no-such-node") in [(a[0], a[1]) for a in h.fake.actions]
