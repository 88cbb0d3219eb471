"""Deployment controller: the arithmetic as pure functions, and reconcile against the in-memory fake
apiserver (ReplicaSet status is set by the test, standing in for the ReplicaSet controller)."""
from __future__ import annotations

import asyncio
import copy

import pytest

from client.events import EventRecorder
from client.factory import InformerFactory
from client.testing import FakeAPIServer
from controllers import deployment_util as du
from controllers.deployment import DeploymentController

NS = "default"
LABELS = {"app": "web"}
T0 = 1_700_000_000.0


def template(image="minik8s/myapp:v1", **annotations):
    t = {"metadata": {"labels": dict(LABELS)}, "spec": {"containers": [{"name": "c", "image": image}]}}
    if annotations:
        t["metadata"]["annotations"] = annotations
    return t


def make_deployment(replicas=4, image="minik8s/myapp:v1", strategy=None, **spec):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": NS},
            "spec": {"replicas": replicas, "selector": {"matchLabels": dict(LABELS)}, "template": template(image),
                     "strategy": strategy or {"type": "RollingUpdate",
                                              "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}},
                     "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600, **spec}}


class Harness:
    def __init__(self):
        self.fake = FakeAPIServer()
        self.client = self.fake.async_client()
        self.factory = InformerFactory(self.client)
        self.recorder = EventRecorder(self.client, "test")
        self.clock = T0
        self.ctl = DeploymentController(self.client, self.factory, self.recorder, now=lambda: self.clock)

    async def settle(self):
        for _ in range(1000):
            await asyncio.sleep(0)
            if all(q.empty() for *_, q in self.fake._watchers):
                break
        for _ in range(5):
            await asyncio.sleep(0)

    async def reconcile(self):
        await self.settle()
        await self.ctl.reconcile(f"{NS}/web")
        await self.settle()

    def deployment(self):
        return self.fake.objects[("deployments.apps", f"{NS}/web")]

    def replicasets(self):
        return sorted((o for (gr, _), o in self.fake.objects.items() if gr == "replicasets.apps"),
                      key=lambda rs: rs["metadata"]["name"])

    def rs_by_image(self, image):
        return next(rs for rs in self.replicasets()
                    if rs["spec"]["template"]["spec"]["containers"][0]["image"] == image)

    def seed_rs(self, d, image, replicas, revision, *, available=None, name=None):
        """An existing ReplicaSet of `d` for `image`, its status as if its controller had caught up."""
        rs = du.new_rs_object(d | {"spec": {**d["spec"], "template": template(image)}}, None)
        if name:
            rs["metadata"]["name"] = name
        rs["spec"]["replicas"] = replicas
        rs["metadata"]["annotations"] = {du.REVISION: str(revision), du.DESIRED_REPLICAS: str(du.replicas(d)),
                                         du.MAX_REPLICAS: str(du.replicas(d) + du.max_surge(d))}
        seeded = self.fake.seed(rs)
        self.set_rs_status(seeded["metadata"]["name"], replicas, replicas if available is None else available)
        return seeded

    def set_rs_status(self, name, replicas, available):
        rs = self.fake.objects[("replicasets.apps", f"{NS}/{name}")]
        status = {"replicas": replicas, "readyReplicas": available, "availableReplicas": available,
                  "observedGeneration": rs["metadata"]["generation"]}
        self.fake._write(rs_rd(), copy.deepcopy(rs), {**copy.deepcopy(rs), "status": status}, "status")

    def update_deployment(self, mutate):
        d = copy.deepcopy(self.deployment())
        mutate(d)
        self.fake._write(dep_rd(), copy.deepcopy(self.deployment()), d, None)

    def writes(self, since=0):
        return [a for a in self.fake.actions[since:] if a[0] != "GET" and "/events" not in a[1]]

    async def events(self):
        await self.recorder.flush()
        return [o["message"] for (gr, _), o in self.fake.objects.items() if gr == "events"]


def rs_rd():
    from api import registry
    return registry.lookup("apps", "v1", "replicasets")


def dep_rd():
    from api import registry
    return registry.lookup("apps", "v1", "deployments")


@pytest.fixture
async def h():
    harness = Harness()
    harness.factory.start()
    await harness.factory.wait_for_sync(5)
    yield harness
    await harness.recorder.flush()
    await harness.settle()  # see test_replicaset: drain events before cancelling the watches
    await harness.factory.stop()
    await harness.client.aclose()


# -- pure arithmetic -----------------------------------------------------------------------------------

def test_pod_template_hash_is_stable_and_sensitive_to_content_and_collisions():
    a = {"metadata": {"labels": {"app": "web", "tier": "x"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
    b = {"spec": {"containers": [{"image": "i", "name": "c"}]}, "metadata": {"labels": {"tier": "x", "app": "web"}}}
    assert du.compute_hash(a) == du.compute_hash(b) == du.compute_hash(copy.deepcopy(a))
    assert du.compute_hash(a) != du.compute_hash(template("other"))
    assert du.compute_hash(a, 1) != du.compute_hash(a) != du.compute_hash(a, 2)
    assert set(du.compute_hash(a)) <= set("bcdfghjklmnpqrstvwxz2456789") and 1 <= len(du.compute_hash(a)) <= 10


@pytest.mark.parametrize("surge, unavailable, desired, expected", [
    ("25%", "25%", 4, (1, 1)),
    ("25%", "25%", 10, (3, 2)),     # surge rounds up, unavailable rounds down
    ("25%", "25%", 1, (1, 0)),
    (0, "10%", 5, (0, 1)),          # both zero after rounding: unavailable becomes 1
    ("0%", "0%", 3, (0, 1)),
    (2, 0, 3, (2, 0)),
    ("50%", "50%", 3, (2, 1)),
    ("100%", "100%", 7, (7, 7)),
])
def test_fencepost_rounding(surge, unavailable, desired, expected):
    assert du.resolve_fenceposts(surge, unavailable, desired) == expected


def _rs(name, replicas, available, created, **ann):
    return {"metadata": {"name": name, "uid": name, "creationTimestamp": created, "annotations": dict(ann)},
            "spec": {"replicas": replicas}, "status": {"replicas": replicas, "availableReplicas": available}}


def test_rolling_steps_surge_then_scale_down_within_max_unavailable():
    d = make_deployment(replicas=4)
    old = _rs("old", 4, 4, "2024-01-01T00:00:00Z")
    new = _rs("new", 0, 0, "2024-01-02T00:00:00Z")
    assert du.new_rs_target(d, [old, new], new) == 1                          # 4 + maxSurge 1
    new = _rs("new", 1, 0, "2024-01-02T00:00:00Z")
    assert du.new_rs_target(d, [old, new], new) == 1                          # at 5 pods: no more
    assert [(rs["metadata"]["name"], n) for rs, n in du.old_rs_scale_down(d, [old, new], [old], new)] == [("old", 3)]
    old = _rs("old", 3, 3, "2024-01-01T00:00:00Z")
    assert du.new_rs_target(d, [old, new], new) == 2
    new = _rs("new", 2, 0, "2024-01-02T00:00:00Z")
    # 3 available old pods are the minimum (4 - 1) and 2 new ones are not available: nothing may go.
    assert du.old_rs_scale_down(d, [old, new], [old], new) == []
    new = _rs("new", 2, 2, "2024-01-02T00:00:00Z")
    assert [n for _, n in du.old_rs_scale_down(d, [old, new], [old], new)] == [1]


def test_rolling_scale_down_removes_unhealthy_old_pods_first():
    d = make_deployment(replicas=4)
    oldest = _rs("oldest", 2, 0, "2024-01-01T00:00:00Z")   # broken: none available
    old = _rs("old", 2, 2, "2024-01-02T00:00:00Z")
    new = _rs("new", 1, 0, "2024-01-03T00:00:00Z")
    plan = {rs["metadata"]["name"]: n for rs, n in du.old_rs_scale_down(d, [oldest, old, new], [oldest, old], new)}
    # Budget: 5 pods - 3 minimum available - 1 new one not available = 1, taken from the broken ReplicaSet
    # first; available old pods cannot go (2 available + 0 new = below the minimum already).
    assert plan == {"oldest": 1}
    # Surge is counted from pods that still exist: an old ReplicaSet scaled down but not yet shrunk
    # holds the new one back.
    shrinking = _rs("old", 3, 3, "2024-01-01T00:00:00Z")
    shrinking["status"]["replicas"] = 4
    assert du.new_rs_target(d, [shrinking, new], new) == 1


def test_rolling_scale_down_does_not_trust_the_status_of_a_shrinking_replicaset():
    # CI saw this: the old ReplicaSet was just scaled 3 -> 2 and its status still counts 3 available pods.
    # 2 new + 3 "available" old would allow 2 more to go (to 0), leaving 2 ready of 4 with maxUnavailable 1.
    d = make_deployment(replicas=4)
    old = _rs("old", 2, 3, "2024-01-01T00:00:00Z")
    old["status"]["replicas"] = 3
    new = _rs("new", 2, 2, "2024-01-02T00:00:00Z")
    assert du.new_rs_target(d, [old, new], new) == 2          # 5 pods still exist: no surge yet
    assert [n for _, n in du.old_rs_scale_down(d, [old, new], [old], new)] == [1]
    assert du.available_counted(old) == 2
    old["status"].update(replicas=2, availableReplicas=2)     # the surplus pod is gone: same answer
    assert [n for _, n in du.old_rs_scale_down(d, [old, new], [old], new)] == [1]


def test_proportional_scaling_of_a_resized_rollout():
    d = make_deployment(replicas=20, strategy={"type": "RollingUpdate",
                                               "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}})
    old = _rs("old", 6, 6, "2024-01-01T00:00:00Z", **{du.MAX_REPLICAS: "10"})
    new = _rs("new", 4, 0, "2024-01-02T00:00:00Z", **{du.MAX_REPLICAS: "10"})
    plan, op = du.proportional_sizes(d, new, [old])
    assert op == "up" and {rs["metadata"]["name"]: n for rs, n in plan} == {"old": 12, "new": 8}
    d["spec"]["replicas"] = 5
    plan, op = du.proportional_sizes(d, new, [old])
    assert op == "down" and {rs["metadata"]["name"]: n for rs, n in plan} == {"old": 3, "new": 2}


def test_available_condition_follows_min_available():
    d = make_deployment(replicas=4)
    rs = _rs("a", 4, 3, "2024-01-01T00:00:00Z")
    status = du.calculate_status(d, [rs], rs, T0)
    assert du.get_condition(status, "Available")["reason"] == "MinimumReplicasAvailable"
    rs["status"]["availableReplicas"] = 2
    status = du.calculate_status(d, [rs], rs, T0)
    assert du.get_condition(status, "Available")["status"] == "False"
    assert du.get_condition(status, "Available")["reason"] == "MinimumReplicasUnavailable"
    assert status["unavailableReplicas"] == 2


# -- reconcile -----------------------------------------------------------------------------------------

async def test_creates_a_hashed_replicaset_with_revision_and_converges(h):
    d = h.fake.seed(make_deployment(replicas=3))
    await h.reconcile()
    [rs] = h.replicasets()
    pod_hash = du.compute_hash(d["spec"]["template"])
    assert rs["metadata"]["name"] == f"web-{pod_hash}"
    assert rs["spec"]["selector"]["matchLabels"] == {**LABELS, "pod-template-hash": pod_hash}
    assert rs["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] == pod_hash
    assert rs["spec"]["replicas"] == 3
    assert rs["metadata"]["ownerReferences"][0]["uid"] == d["metadata"]["uid"]
    ann = rs["metadata"]["annotations"]
    assert (ann[du.REVISION], ann[du.DESIRED_REPLICAS], ann[du.MAX_REPLICAS]) == ("1", "3", "4")
    dep = h.deployment()
    assert dep["metadata"]["annotations"][du.REVISION] == "1"
    assert du.get_condition(dep["status"], "Progressing")["reason"] == "NewReplicaSetCreated"
    assert f"Scaled up replica set web-{pod_hash} to 3" in await h.events()

    h.set_rs_status(rs["metadata"]["name"], 3, 3)
    await h.reconcile()
    dep = h.deployment()
    assert {k: dep["status"][k] for k in ("replicas", "updatedReplicas", "availableReplicas", "unavailableReplicas",
                                          "observedGeneration")} == \
        {"replicas": 3, "updatedReplicas": 3, "availableReplicas": 3, "unavailableReplicas": 0,
         "observedGeneration": 1}
    assert du.get_condition(dep["status"], "Progressing")["reason"] == "NewReplicaSetAvailable"
    assert du.get_condition(dep["status"], "Available")["status"] == "True"
    mark = len(h.fake.actions)
    await h.reconcile()
    assert h.writes(mark) == []


async def test_rolling_update_surges_one_then_scales_the_old_down(h):
    d = h.fake.seed(make_deployment(replicas=4))
    old = h.seed_rs(d, "minik8s/myapp:v1", 4, 1)
    await h.reconcile()
    h.update_deployment(lambda d: d["spec"]["template"]["spec"]["containers"][0].update(image="minik8s/myapp:v2"))
    await h.reconcile()
    new = h.rs_by_image("minik8s/myapp:v2")
    assert new["spec"]["replicas"] == 1 and new["metadata"]["annotations"][du.REVISION] == "2"
    # 4 old available, 1 new unavailable: one old pod may go at once (4 + 1 - 1 unavailable = 3 remain).
    assert h.rs_by_image("minik8s/myapp:v1")["spec"]["replicas"] == 3
    assert h.deployment()["metadata"]["annotations"][du.REVISION] == "2"
    assert {"Scaled up replica set " + new["metadata"]["name"] + " to 1",
            "Scaled down replica set " + old["metadata"]["name"] + " to 3"} <= set(await h.events())
    h.set_rs_status(old["metadata"]["name"], 3, 3)
    h.set_rs_status(new["metadata"]["name"], 1, 0)
    await h.reconcile()
    assert (h.rs_by_image("minik8s/myapp:v1")["spec"]["replicas"], new_size(h)) == (3, 2)   # surge back to 5
    h.set_rs_status(new["metadata"]["name"], 2, 0)
    await h.reconcile()
    assert (h.rs_by_image("minik8s/myapp:v1")["spec"]["replicas"], new_size(h)) == (3, 2)   # nothing may move
    h.set_rs_status(new["metadata"]["name"], 2, 2)
    await h.reconcile()
    assert (h.rs_by_image("minik8s/myapp:v1")["spec"]["replicas"], new_size(h)) == (1, 2)
    assert du.get_condition(h.deployment()["status"], "Progressing")["reason"] == "ReplicaSetUpdated"


def new_size(h):
    return h.rs_by_image("minik8s/myapp:v2")["spec"]["replicas"]


async def test_recreate_scales_old_to_zero_and_waits_for_old_pods_before_creating_the_new(h):
    d = h.fake.seed(make_deployment(replicas=2, strategy={"type": "Recreate"}))
    old = h.seed_rs(d, "minik8s/myapp:v1", 2, 1)
    pod = h.fake.seed({"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": "old-pod", "namespace": NS,
                                    "labels": old["spec"]["template"]["metadata"]["labels"],
                                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                         "name": old["metadata"]["name"],
                                                         "uid": old["metadata"]["uid"], "controller": True}]},
                       "spec": {"containers": [{"name": "c", "image": "x"}]}, "status": {"phase": "Running"}})
    h.update_deployment(lambda d: d["spec"]["template"]["spec"]["containers"][0].update(image="minik8s/myapp:v2"))
    await h.reconcile()
    assert [rs["spec"]["replicas"] for rs in h.replicasets()] == [0]   # old scaled down, no new one yet
    h.set_rs_status(old["metadata"]["name"], 0, 0)
    await h.reconcile()
    assert len(h.replicasets()) == 1                                   # a pod of the old one still runs
    await h.client.delete("pods", "old-pod", NS)
    await h.reconcile()
    assert h.rs_by_image("minik8s/myapp:v2")["spec"]["replicas"] == 2
    assert pod["metadata"]["name"] == "old-pod"


async def test_rollback_reuses_and_renumbers_the_old_replicaset(h):
    d = h.fake.seed(make_deployment(replicas=2, image="minik8s/myapp:v2"))
    v1 = h.seed_rs(d, "minik8s/myapp:v1", 0, 1)
    v2 = h.seed_rs(d, "minik8s/myapp:v2", 2, 2)
    await h.reconcile()
    assert h.deployment()["metadata"]["annotations"][du.REVISION] == "2"
    h.update_deployment(lambda d: d["spec"]["template"]["spec"]["containers"][0].update(image="minik8s/myapp:v1"))
    await h.reconcile()
    assert {rs["metadata"]["name"] for rs in h.replicasets()} == {v1["metadata"]["name"], v2["metadata"]["name"]}
    reused = h.rs_by_image("minik8s/myapp:v1")
    assert reused["metadata"]["annotations"][du.REVISION] == "3"
    assert reused["metadata"]["annotations"][du.REVISION_HISTORY] == "1"
    await h.reconcile()
    assert h.deployment()["metadata"]["annotations"][du.REVISION] == "3"
    assert h.rs_by_image("minik8s/myapp:v1")["spec"]["replicas"] == 1  # surge 1 on the reused ReplicaSet


async def test_revision_history_limit_deletes_the_oldest_empty_replicasets(h):
    d = h.fake.seed(make_deployment(replicas=1, image="minik8s/myapp:v4", revisionHistoryLimit=1))
    for rev, image in enumerate(["v1", "v2", "v3"], start=1):
        h.seed_rs(d, f"minik8s/myapp:{image}", 0, rev)
    h.seed_rs(d, "minik8s/myapp:v4", 1, 4)
    await h.reconcile()           # records the revision and a complete status
    await h.reconcile()
    images = sorted(rs["spec"]["template"]["spec"]["containers"][0]["image"] for rs in h.replicasets())
    assert images == ["minik8s/myapp:v3", "minik8s/myapp:v4"]


async def test_paused_deployment_does_not_roll_out_but_still_scales(h):
    d = h.fake.seed(make_deployment(replicas=2))
    h.seed_rs(d, "minik8s/myapp:v1", 2, 1)
    await h.reconcile()
    h.update_deployment(lambda d: (d["spec"].update(paused=True, replicas=3),
                                   d["spec"]["template"]["spec"]["containers"][0].update(image="minik8s/myapp:v2")))
    await h.reconcile()
    assert len(h.replicasets()) == 1 and h.replicasets()[0]["spec"]["replicas"] == 3
    cond = du.get_condition(h.deployment()["status"], "Progressing")
    assert (cond["status"], cond["reason"]) == ("Unknown", "DeploymentPaused")
    h.update_deployment(lambda d: d["spec"].update(paused=False))
    await h.reconcile()
    assert h.rs_by_image("minik8s/myapp:v2")["spec"]["replicas"] == 1
    assert h.deployment()["metadata"]["annotations"][du.REVISION] == "2"


async def test_no_progress_past_the_deadline_sets_progress_deadline_exceeded(h):
    d = h.fake.seed(make_deployment(replicas=2, progressDeadlineSeconds=30))
    h.seed_rs(d, "minik8s/myapp:v1", 2, 1)
    await h.reconcile()
    h.update_deployment(lambda d: d["spec"]["template"]["spec"]["containers"][0].update(image="minik8s/myapp:v2"))
    await h.reconcile()   # new ReplicaSet, surge 1; its pods never become available
    new = h.rs_by_image("minik8s/myapp:v2")
    h.set_rs_status(new["metadata"]["name"], 1, 0)
    await h.reconcile()
    assert du.get_condition(h.deployment()["status"], "Progressing")["status"] == "True"
    h.clock += 31
    await h.reconcile()
    cond = du.get_condition(h.deployment()["status"], "Progressing")
    assert (cond["status"], cond["reason"]) == ("False", "ProgressDeadlineExceeded")
    assert cond["message"] == f'ReplicaSet "{new["metadata"]["name"]}" has timed out progressing.'
