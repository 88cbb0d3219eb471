"""DaemonSet controller: eligibility per node, placement, revisions and rolling updates (fake apiserver)."""
import pytest

from controllers.daemonset import DaemonSetController, should_run, target_node
from controllers.history import REVISION_HASH_LABEL, template_hash
from tests.controllers.test_job_harness import Harness


def node(name, labels=None, taints=None):
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"taints": taints or []}}


def daemonset(name="ds", image="minik8s/myapp:v1", *, strategy=None, **pod_spec):
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name, "namespace": "ns"},
            "spec": {"selector": {"matchLabels": {"app": name}}, "revisionHistoryLimit": 10,
                     "updateStrategy": strategy or {"type": "RollingUpdate",
                                                    "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": image}], **pod_spec}}}}


@pytest.fixture
async def h():
    harness = await Harness(DaemonSetController).start()
    yield harness
    await harness.stop()


def pods(h, live=True):
    return [p for p in h.list("pods") if not (live and p["metadata"].get("deletionTimestamp"))]


def by_node(h):
    out = {}
    for p in pods(h):
        out.setdefault(target_node(p), []).append(p)
    return out


def status(h):
    return h.fake.objects[("daemonsets.apps", "ns/ds")].get("status") or {}


async def run_all(h):
    for p in pods(h):
        if (p.get("status") or {}).get("phase") != "Running":
            await h.run_pod(p, node=target_node(p))


def test_eligibility_follows_selector_affinity_and_taints():
    ds = daemonset(nodeSelector={"disk": "ssd"})
    assert should_run(ds, node("a", {"disk": "ssd"})) == (True, True)
    assert should_run(ds, node("b", {"disk": "hdd"})) == (False, False)
    plain = daemonset()
    no_schedule = node("c", taints=[{"key": "dedicated", "value": "x", "effect": "NoSchedule"}])
    assert should_run(plain, no_schedule) == (False, True), "existing pods stay on a NoSchedule taint"
    no_execute = node("d", taints=[{"key": "dedicated", "effect": "NoExecute"}])
    assert should_run(plain, no_execute) == (False, False)
    defaults = node("e", taints=[{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
                                 {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
                                 {"key": "node.kubernetes.io/disk-pressure", "effect": "NoSchedule"}])
    assert should_run(plain, defaults) == (True, True), "DaemonSet pods tolerate these by default"
    tolerant = daemonset(tolerations=[{"key": "dedicated", "operator": "Exists"}])
    assert should_run(tolerant, no_execute) == (True, True)
    affinity = daemonset(affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}]}}})
    assert should_run(affinity, node("f", {"zone": "z1"}))[0]
    assert not should_run(affinity, node("g", {"zone": "z2"}))[0]


async def test_one_pod_per_eligible_node_placed_by_node_affinity(h):
    for n in (node("n1"), node("n2"), node("gpu", taints=[{"key": "gpu", "effect": "NoSchedule"}])):
        await h.seed(n)
    await h.seed(daemonset())
    await h.reconcile("ns/ds")
    placed = by_node(h)
    assert sorted(placed) == ["n1", "n2"] and all(len(v) == 1 for v in placed.values())
    pod = placed["n1"][0]
    assert not pod["spec"].get("nodeName"), "the scheduler binds daemon pods"
    assert pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}
    keys = {(t["key"], t["effect"]) for t in pod["spec"]["tolerations"]}
    assert ("node.kubernetes.io/unschedulable", "NoSchedule") in keys
    assert ("node.kubernetes.io/not-ready", "NoExecute") in keys
    digest = pod["metadata"]["labels"][REVISION_HASH_LABEL]
    assert digest == template_hash(daemonset()["spec"]["template"])
    [revision] = h.list("controllerrevisions", "apps")
    assert revision["metadata"]["name"] == f"ds-{digest}" and revision["revision"] == 1
    await h.reconcile("ns/ds")  # status counts what the pod cache shows
    st = status(h)
    assert st["desiredNumberScheduled"] == 2 and st["currentNumberScheduled"] == 2 and st["numberReady"] == 0
    await run_all(h)
    await h.reconcile("ns/ds")
    st = status(h)
    assert st["numberReady"] == 2 and st["numberAvailable"] == 2 and st["updatedNumberScheduled"] == 2
    assert st["observedGeneration"] == 1
    mark = h.mark()
    await h.reconcile("ns/ds")
    assert h.writes(mark) == []


async def test_new_nodes_get_pods_and_departed_or_ineligible_nodes_lose_them(h):
    await h.seed(node("n1", {"role": "worker"}))
    await h.seed(node("n2", {"role": "worker"}))
    await h.seed(daemonset(nodeSelector={"role": "worker"}))
    await h.reconcile("ns/ds")
    await h.seed(node("n3", {"role": "worker"}))
    await h.reconcile("ns/ds")
    assert sorted(by_node(h)) == ["n1", "n2", "n3"]
    await h.client.delete("nodes", "n3")
    await h.client.patch("nodes", "n2", {"metadata": {"labels": {"role": "db"}}})
    await h.settle()
    await h.reconcile("ns/ds")
    assert sorted(by_node(h)) == ["n1"]
    assert (await h.events()).count("SuccessfulDelete") == 2


async def test_leaves_pods_it_does_not_own_alone(h):
    await h.seed(node("n1"))
    await h.seed({"apiVersion": "v1", "kind": "Pod",
                  "metadata": {"name": "foreign", "namespace": "ns", "labels": {"app": "ds"},
                               "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "x",
                                                    "uid": "other", "controller": True}]},
                  "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]}})
    await h.seed(daemonset())
    await h.reconcile("ns/ds")
    assert ("pods", "ns/foreign") in h.fake.objects
    assert len([p for p in pods(h) if p["metadata"]["name"] != "foreign"]) == 1


async def test_rolling_update_replaces_at_most_max_unavailable_at_a_time(h):
    for n in ("n1", "n2", "n3"):
        await h.seed(node(n))
    await h.seed(daemonset())
    await h.reconcile("ns/ds")
    await run_all(h)
    old_hash = pods(h)[0]["metadata"]["labels"][REVISION_HASH_LABEL]
    await h.client.patch("daemonsets", "ds", {"spec": {"template": {"spec": {"containers": [
        {"name": "c", "image": "minik8s/myapp:v2"}]}}}}, "ns")
    await h.settle()
    for step in range(3):
        await h.reconcile("ns/ds")  # deletes one old pod
        old = [p for p in pods(h, live=False) if p["metadata"]["labels"][REVISION_HASH_LABEL] == old_hash]
        assert len(old) == 2 - step, "one old pod at a time"
        await h.reconcile("ns/ds")  # recreates it from the new template
        await run_all(h)
    assert {p["spec"]["containers"][0]["image"] for p in pods(h)} == {"minik8s/myapp:v2"}
    await h.reconcile("ns/ds")
    assert status(h)["updatedNumberScheduled"] == 3
    assert len(h.list("controllerrevisions", "apps")) == 2


async def test_rolling_update_with_surge_starts_new_pods_before_deleting_old_ones(h):
    await h.seed(node("n1"))
    await h.seed(node("n2"))
    await h.seed(daemonset(strategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}))
    await h.reconcile("ns/ds")
    await run_all(h)
    await h.client.patch("daemonsets", "ds", {"spec": {"template": {"metadata": {"labels": {"app": "ds", "v": "2"}}}}},
                         "ns")
    await h.settle()
    await h.reconcile("ns/ds")
    placed = by_node(h)
    assert sorted(len(v) for v in placed.values()) == [1, 2], "one node surges, the other waits"
    surged = next(n for n, v in placed.items() if len(v) == 2)
    await h.reconcile("ns/ds")
    assert len(by_node(h)[surged]) == 2, "the old pod stays until the new one is available"
    await run_all(h)
    await h.reconcile("ns/ds")
    assert len(by_node(h)[surged]) == 1
    assert all(p["metadata"]["labels"].get("v") == "2" for p in by_node(h)[surged])


async def test_on_delete_keeps_old_pods_until_deleted(h):
    await h.seed(node("n1"))
    await h.seed(daemonset(strategy={"type": "OnDelete"}))
    await h.reconcile("ns/ds")
    await run_all(h)
    await h.client.patch("daemonsets", "ds", {"spec": {"template": {"spec": {"containers": [
        {"name": "c", "image": "minik8s/myapp:v2"}]}}}}, "ns")
    await h.settle()
    await h.reconcile("ns/ds")
    [pod] = pods(h)
    assert pod["spec"]["containers"][0]["image"] == "minik8s/myapp:v1"
    assert status(h)["updatedNumberScheduled"] == 0
    await h.client.delete("pods", pod["metadata"]["name"], "ns")
    await h.settle()
    await h.reconcile("ns/ds")
    [pod] = pods(h)
    assert pod["spec"]["containers"][0]["image"] == "minik8s/myapp:v2"
