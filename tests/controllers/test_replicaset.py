"""ReplicaSet controller: reconcile against the in-memory fake apiserver, one behaviour per test."""
from __future__ import annotations

import asyncio

import httpx
import pytest

from client.events import EventRecorder
from client.factory import InformerFactory
from client.testing import FakeAPIServer
from controllers.replicaset import (ReplicaSetController, calculate_status, deletion_order,
                                    next_availability_check, slow_start_batch)

NS = "default"
LABELS = {"app": "web"}


def make_rs(name="web", replicas=3, labels=None, min_ready=0):
    labels = labels or LABELS
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name, "namespace": NS},
            "spec": {"replicas": replicas, "minReadySeconds": min_ready, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": "minik8s/myapp:v1"}]}}}}


def make_pod(name, labels=None, owner=None, *, node=None, phase="Pending", ready=None, ready_since=None,
             restarts=0, created="2024-01-01T00:00:00Z"):
    meta = {"name": name, "namespace": NS, "labels": dict(LABELS if labels is None else labels),
            "creationTimestamp": created}
    if owner is not None:
        meta["ownerReferences"] = [{"apiVersion": owner["apiVersion"], "kind": owner["kind"],
                                    "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
                                    "controller": True}]
    status = {"phase": phase, "containerStatuses": [{"name": "c", "restartCount": restarts}]}
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "status": "True" if ready else "False",
                                 "lastTransitionTime": ready_since or "2024-01-01T00:00:00Z"}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]} if node else
            {"containers": [{"name": "c", "image": "x"}]}, "status": status}


class Harness:
    def __init__(self, fake: FakeAPIServer):
        self.fake = fake
        self.client = fake.async_client()
        self.factory = InformerFactory(self.client)
        self.recorder = EventRecorder(self.client, "test")
        self.ctl = ReplicaSetController(self.client, self.factory, self.recorder)

    async def settle(self):
        """Until every watch event queued by the fake has reached the caches (the event loop only)."""
        for _ in range(1000):
            await asyncio.sleep(0)
            if all(q.empty() for *_, q in self.fake._watchers):
                break
        for _ in range(5):
            await asyncio.sleep(0)

    def writes(self, since=0):
        return [a for a in self.fake.actions[since:] if a[0] != "GET" and "/events" not in a[1]]

    def pods(self):
        return [o for (gr, _), o in self.fake.objects.items() if gr == "pods"]

    def rs(self, name="web"):
        return self.fake.objects[("replicasets.apps", f"{NS}/{name}")]


@pytest.fixture
async def h():
    harness = Harness(FakeAPIServer())
    harness.factory.start()
    await harness.factory.wait_for_sync(5)
    yield harness
    await harness.recorder.flush()
    # Python 3.11's wait_for (inside the fake's watch stream) swallows a cancel that meets a queued
    # event, so let pending events drain before stopping the informers.
    await harness.settle()
    await harness.factory.stop()
    await harness.client.aclose()


async def test_creates_missing_pods_from_the_template_and_reports_status(h):
    rs = h.fake.seed(make_rs(replicas=3))
    await h.settle()
    await h.ctl.reconcile(f"{NS}/web")
    await h.settle()
    pods = h.pods()
    assert len(pods) == 3
    for p in pods:
        assert p["metadata"]["labels"] == LABELS
        assert p["metadata"]["generateName"] == "web-"
        assert p["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]
    assert h.rs()["status"]["replicas"] == 0  # status describes the pods this reconcile started from
    await h.ctl.reconcile(f"{NS}/web")
    status = h.rs()["status"]
    assert status["replicas"] == 3 and status["fullyLabeledReplicas"] == 3
    assert status["readyReplicas"] == 0 and status["observedGeneration"] == 1
    await h.recorder.flush()
    reasons = [o["reason"] for (gr, _), o in h.fake.objects.items() if gr == "events"]
    assert reasons == ["SuccessfulCreate"] * 3


async def test_second_reconcile_when_converged_writes_nothing(h):
    h.fake.seed(make_rs(replicas=2))
    await h.settle()
    await h.ctl.reconcile(f"{NS}/web")
    await h.settle()
    await h.ctl.reconcile(f"{NS}/web")  # status catches up with the pods now in the cache
    await h.settle()
    mark = len(h.fake.actions)
    await h.ctl.reconcile(f"{NS}/web")
    assert h.writes(mark) == []


async def test_expectations_stop_a_second_create_before_the_watch_catches_up(h, monkeypatch):
    h.fake.seed(make_rs(replicas=3))
    await h.settle()
    held = []
    monkeypatch.setattr(h.ctl.pods, "_apply", lambda kind, obj: held.append((kind, obj)))
    await h.ctl.reconcile(f"{NS}/web")
    await h.ctl.reconcile(f"{NS}/web")
    assert len(h.pods()) == 3
    assert not h.ctl.expectations.satisfied(f"{NS}/web")


async def test_a_terminating_namespace_stops_creates_without_an_error(h):
    h.fake.seed(make_rs(replicas=3))
    h.fake.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS,
                                                                       "deletionTimestamp": "2030-01-01T00:00:00Z"}})
    await h.settle()
    await h.ctl.reconcile(f"{NS}/web")  # no exception: the workqueue would retry it over and over
    assert h.pods() == []
    assert not [c for c in h.rs().get("status", {}).get("conditions") or [] if c["type"] == "ReplicaFailure"]
    await h.recorder.flush()
    assert [o["reason"] for (gr, _), o in h.fake.objects.items() if gr == "events"] == []


async def test_slow_start_stops_after_the_first_failing_batch(h):
    h.fake.seed(make_rs(replicas=10))
    await h.settle()
    posts = []

    def fail_second_create(request: httpx.Request):
        if request.method == "POST" and request.url.path.endswith("/pods"):
            posts.append(1)
            if len(posts) == 2:
                return httpx.Response(403, json={"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                                 "reason": "Forbidden", "code": 403, "message": "quota exceeded"})
        return None

    h.fake.reactors.append(fail_second_create)
    with pytest.raises(Exception, match="quota exceeded"):
        await h.ctl.reconcile(f"{NS}/web")
    assert len(posts) == 3  # batch of 1, then a batch of 2 with one failure; no batch of 4
    assert len(h.pods()) == 2
    # The skipped and failed creates are not expected: once the two pods are seen, the next reconcile acts.
    await h.settle()
    assert h.ctl.expectations.satisfied(f"{NS}/web")
    failure = [c for c in h.rs()["status"]["conditions"] if c["type"] == "ReplicaFailure"]
    assert failure and failure[0]["reason"] == "FailedCreate" and "quota exceeded" in failure[0]["message"]
    await h.recorder.flush()
    assert "FailedCreate" in {o["reason"] for (gr, _), o in h.fake.objects.items() if gr == "events"}

    h.fake.reactors.clear()
    await h.settle()
    await h.ctl.reconcile(f"{NS}/web")
    await h.settle()
    await h.ctl.reconcile(f"{NS}/web")
    assert len(h.pods()) == 10
    assert "conditions" not in h.rs()["status"]  # the failure condition is cleared once creates work


async def test_slow_start_batch_sizes():
    calls: list[int] = []
    in_flight = 0

    async def fn():
        nonlocal in_flight
        in_flight += 1
        calls.append(in_flight)
        await asyncio.sleep(0)
        in_flight -= 1

    done, err = await slow_start_batch(10, 1, fn)
    assert (done, err) == (10, None)
    assert max(calls) == 4  # batches 1, 2, 4, then the remaining 3


async def test_leaves_pods_of_other_owners_alone_adopts_orphans_and_releases_strays(h):
    rs = h.fake.seed(make_rs(replicas=2))
    other = h.fake.seed({**make_rs(name="other"), "spec": {**make_rs()["spec"], "replicas": 0}})
    h.fake.seed(make_pod("foreign", owner=other))
    h.fake.seed(make_pod("orphan"))
    h.fake.seed(make_pod("stray", labels={"app": "other"}, owner=rs))
    h.fake.seed(make_pod("unrelated", labels={"app": "db"}))
    await h.settle()
    await h.ctl.reconcile(f"{NS}/web")
    await h.settle()
    pods = {p["metadata"]["name"]: p for p in h.pods()}
    owner = lambda p: (p["metadata"].get("ownerReferences") or [{}])[0].get("uid")  # noqa: E731
    assert owner(pods["foreign"]) == other["metadata"]["uid"]
    assert owner(pods["orphan"]) == rs["metadata"]["uid"]
    assert owner(pods["stray"]) is None
    assert owner(pods["unrelated"]) is None
    mine = [p for p in pods.values() if owner(p) == rs["metadata"]["uid"]]
    assert len(mine) == 2  # the adopted orphan plus one new pod
    written = {a[1].rsplit("/", 1)[-1] for a in h.writes() if a[0] in ("PATCH", "DELETE")}
    assert "foreign" not in written and "unrelated" not in written


async def test_scale_down_deletes_the_least_valuable_pods_first(h):
    rs = h.fake.seed(make_rs(replicas=2))
    h.fake.seed(make_pod("ready-old", owner=rs, node="n1", phase="Running", ready=True,
                         ready_since="2024-01-01T00:00:00Z"))
    h.fake.seed(make_pod("ready-new", owner=rs, node="n2", phase="Running", ready=True,
                         ready_since="2024-01-01T00:05:00Z"))
    h.fake.seed(make_pod("unscheduled", owner=rs))
    h.fake.seed(make_pod("pending", owner=rs, node="n1"))
    await h.settle()
    await h.ctl.reconcile(f"{NS}/web")
    deleted = sorted(a[1].rsplit("/", 1)[-1] for a in h.writes() if a[0] == "DELETE")
    assert deleted == ["pending", "unscheduled"]
    await h.settle()
    assert h.ctl.expectations.satisfied(f"{NS}/web")


def test_deletion_order_follows_kubernetes_ranking():
    pods = [
        make_pod("ready-long", node="n1", phase="Running", ready=True, ready_since="2024-01-01T00:00:00Z"),
        make_pod("ready-short", node="n1", phase="Running", ready=True, ready_since="2024-01-01T00:10:00Z"),
        make_pod("running-not-ready", node="n1", phase="Running", ready=False),
        make_pod("restarts", node="n1", phase="Running", ready=False, restarts=5),
        make_pod("unknown", node="n1", phase="Unknown"),
        make_pod("pending-newer", node="n1", created="2024-01-02T00:00:00Z"),
        make_pod("pending-older", node="n1", created="2024-01-01T00:00:00Z"),
        make_pod("unassigned"),
    ]
    names = [p["metadata"]["name"] for p in deletion_order(pods)]
    assert names == ["unassigned", "pending-newer", "pending-older", "unknown", "restarts", "running-not-ready",
                     "ready-short", "ready-long"]


def test_deletion_order_prefers_pods_on_crowded_nodes():
    a = make_pod("alone", node="n2", phase="Running", ready=True)
    b = make_pod("crowded", node="n1", phase="Running", ready=True)
    sibling = make_pod("sibling", node="n1", phase="Running", ready=True)
    assert [p["metadata"]["name"] for p in deletion_order([a, b], [a, b, sibling])] == ["crowded", "alone"]


def test_status_counts_ready_and_available_with_min_ready_seconds():
    rs = {**make_rs(min_ready=10), "metadata": {"name": "web", "namespace": NS, "generation": 4}}
    now = 1704067200.0 + 60  # 2024-01-01T00:01:00Z
    pods = [make_pod("a", ready=True, ready_since="2024-01-01T00:00:00Z"),   # ready 60 s: available
            make_pod("b", ready=True, ready_since="2024-01-01T00:00:55Z"),   # ready 5 s: not yet
            make_pod("c", ready=False),
            make_pod("d", labels={"app": "web", "x": "y"}, ready=False)]
    pods[2]["metadata"]["labels"] = {"app": "web-partial"}
    rs["spec"]["template"]["metadata"]["labels"] = {"app": "web"}
    status = calculate_status(rs, pods, None, now=now)
    assert status == {"replicas": 4, "fullyLabeledReplicas": 3, "readyReplicas": 2, "availableReplicas": 1,
                      "observedGeneration": 4}
    assert next_availability_check(rs, pods, now) == pytest.approx(5.0)


async def test_a_deleted_replicaset_is_forgotten(h):
    h.fake.seed(make_rs(replicas=1))
    await h.settle()
    h.ctl.expectations.expect(f"{NS}/web", creations=5)
    await h.client.delete("replicasets", "web", NS)
    await h.settle()
    mark = len(h.fake.actions)
    await h.ctl.reconcile(f"{NS}/web")
    assert h.writes(mark) == [] and h.ctl.expectations.satisfied(f"{NS}/web")
