"""StatefulSet controller: ordering, scale-down, partitioned rolling updates and claims per ordinal."""
import pytest

from controllers.history import REVISION_HASH_LABEL
from controllers.statefulset import POD_INDEX_LABEL, POD_NAME_LABEL, StatefulSetController
from tests.controllers.test_job_harness import Harness


def statefulset(name="web", replicas=3, *, policy="OrderedReady", claims=True, **spec):
    body = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name, "namespace": "ns"},
            "spec": {"replicas": replicas, "serviceName": "nginx", "podManagementPolicy": policy,
                     "revisionHistoryLimit": 10, "selector": {"matchLabels": {"app": name}},
                     "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                     "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "minik8s/myapp:v1",
                                                           "volumeMounts": [{"name": "data", "mountPath": "/d"}]
                                                           if claims else []}]}},
                     **spec}}
    if claims:
        body["spec"]["volumeClaimTemplates"] = [{"metadata": {"name": "data"}, "spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
    return body


@pytest.fixture
async def h():
    harness = await Harness(StatefulSetController).start()
    yield harness
    await harness.stop()


def names(h, live=True):
    return sorted(p["metadata"]["name"] for p in h.list("pods") if not (live and p["metadata"].get("deletionTimestamp")))


def pod(h, name):
    return h.fake.objects[("pods", f"ns/{name}")]


def status(h):
    return h.fake.objects[("statefulsets.apps", "ns/web")].get("status") or {}


async def ready(h, name):
    await h.run_pod(pod(h, name))


async def scale_up_ordered(h, n):
    for i in range(n):
        await h.reconcile("ns/web")
        await ready(h, f"web-{i}")
    await h.reconcile("ns/web")


async def test_ordered_ready_creates_one_ordinal_at_a_time(h):
    await h.seed(statefulset())
    await h.reconcile("ns/web")
    assert names(h) == ["web-0"]
    await h.reconcile("ns/web")
    assert names(h) == ["web-0"], "web-1 waits until web-0 is Running and Ready"
    await h.run_pod(pod(h, "web-0"), ready=False)
    await h.reconcile("ns/web")
    assert names(h) == ["web-0"]
    await ready(h, "web-0")
    await h.reconcile("ns/web")
    assert names(h) == ["web-0", "web-1"]
    await ready(h, "web-1")
    await h.reconcile("ns/web")
    await ready(h, "web-2")
    await h.reconcile("ns/web")
    p = pod(h, "web-2")
    assert p["metadata"]["labels"][POD_NAME_LABEL] == "web-2" and p["metadata"]["labels"][POD_INDEX_LABEL] == "2"
    assert p["spec"]["hostname"] == "web-2" and p["spec"]["subdomain"] == "nginx"
    assert p["metadata"]["ownerReferences"][0]["kind"] == "StatefulSet"
    st = status(h)
    assert st["replicas"] == 3 and st["readyReplicas"] == 3 and st["availableReplicas"] == 3
    assert st["currentRevision"] == st["updateRevision"] == p["metadata"]["labels"][REVISION_HASH_LABEL]
    assert st["currentReplicas"] == st["updatedReplicas"] == 3 and st["observedGeneration"] == 1
    mark = h.mark()
    await h.reconcile("ns/web")
    assert h.writes(mark) == []


async def test_one_claim_per_ordinal_mounted_by_the_pod_and_kept_on_scale_down(h):
    await h.seed(statefulset(replicas=2, policy="Parallel"))
    await h.reconcile("ns/web")
    claims = {c["metadata"]["name"]: c for c in h.list("persistentvolumeclaims")}
    assert sorted(claims) == ["data-web-0", "data-web-1"]
    assert claims["data-web-0"]["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert claims["data-web-0"]["metadata"]["labels"] == {"app": "web"}
    assert not claims["data-web-0"]["metadata"].get("ownerReferences"), "Retain: claims outlive the set"
    assert pod(h, "web-1")["spec"]["volumes"] == [{"name": "data", "persistentVolumeClaim": {"claimName": "data-web-1"}}]
    await h.client.patch("statefulsets", "web", {"spec": {"replicas": 1}}, "ns")
    await h.settle()
    await h.reconcile("ns/web")
    assert names(h) == ["web-0"]
    assert sorted(c["metadata"]["name"] for c in h.list("persistentvolumeclaims")) == ["data-web-0", "data-web-1"]


async def test_when_scaled_delete_removes_claims_of_removed_ordinals(h):
    await h.seed(statefulset(replicas=2, policy="Parallel",
                             persistentVolumeClaimRetentionPolicy={"whenDeleted": "Retain", "whenScaled": "Delete"}))
    await h.reconcile("ns/web")
    await h.client.patch("statefulsets", "web", {"spec": {"replicas": 1}}, "ns")
    await h.settle()
    await h.reconcile("ns/web")  # deletes web-1
    await h.reconcile("ns/web")  # then its claim
    assert [c["metadata"]["name"] for c in h.list("persistentvolumeclaims")] == ["data-web-0"]


async def test_ordered_scale_down_removes_the_highest_ordinal_first_one_at_a_time(h):
    await h.seed(statefulset(claims=False))
    await scale_up_ordered(h, 3)
    await h.client.patch("statefulsets", "web", {"spec": {"replicas": 1}}, "ns")
    await h.settle()
    # Pods being deleted linger (graceful deletion) until their kubelet removes them.
    h.fake.objects[("pods", "ns/web-2")]["metadata"]["finalizers"] = ["test/hold"]
    await h.reconcile("ns/web")
    assert names(h) == ["web-0", "web-1"]
    await h.reconcile("ns/web")
    assert names(h) == ["web-0", "web-1"], "web-1 waits until web-2 is gone"
    await h.client.patch("pods", "web-2", {"metadata": {"finalizers": None}}, "ns")
    await h.settle()
    await h.reconcile("ns/web")
    assert names(h) == ["web-0"]


async def test_parallel_creates_all_at_once(h):
    await h.seed(statefulset(policy="Parallel", claims=False))
    await h.reconcile("ns/web")
    assert names(h) == ["web-0", "web-1", "web-2"]


async def test_rolling_update_goes_in_reverse_ordinal_order_down_to_the_partition(h):
    await h.seed(statefulset(claims=False))
    await scale_up_ordered(h, 3)
    old_rev = status(h)["currentRevision"]
    await h.client.patch("statefulsets", "web", {"spec": {
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}},
        "template": {"spec": {"containers": [{"name": "c", "image": "minik8s/myapp:v2"}]}}}}, "ns")
    await h.settle()
    await h.reconcile("ns/web")
    assert names(h) == ["web-0", "web-1"], "web-2 goes first"
    await h.reconcile("ns/web")
    assert pod(h, "web-2")["spec"]["containers"][0]["image"] == "minik8s/myapp:v2"
    await h.reconcile("ns/web")
    assert names(h) == ["web-0", "web-1", "web-2"], "web-1 waits for web-2 to be ready"
    await ready(h, "web-2")
    await h.reconcile("ns/web")
    assert names(h) == ["web-0", "web-2"]
    await h.reconcile("ns/web")
    await ready(h, "web-1")
    await h.reconcile("ns/web")
    images = {n: pod(h, n)["spec"]["containers"][0]["image"] for n in names(h)}
    assert images == {"web-0": "minik8s/myapp:v1", "web-1": "minik8s/myapp:v2", "web-2": "minik8s/myapp:v2"}
    st = status(h)
    assert st["currentRevision"] == old_rev != st["updateRevision"]
    assert st["updatedReplicas"] == 2 and st["currentReplicas"] == 1
    # A pod below the partition that is recreated keeps the current revision's template.
    await h.client.delete("pods", "web-0", "ns")
    await h.settle()
    await h.reconcile("ns/web")
    assert pod(h, "web-0")["spec"]["containers"][0]["image"] == "minik8s/myapp:v1"
    assert pod(h, "web-0")["metadata"]["labels"][REVISION_HASH_LABEL] == old_rev


async def test_completed_rollout_moves_the_current_revision(h):
    await h.seed(statefulset(replicas=1, claims=False))
    await scale_up_ordered(h, 1)
    await h.client.patch("statefulsets", "web", {"spec": {"template": {"metadata": {"labels": {"app": "web", "v": "2"}}}}},
                         "ns")
    await h.settle()
    await h.reconcile("ns/web")
    await h.reconcile("ns/web")
    await ready(h, "web-0")
    await h.reconcile("ns/web")
    st = status(h)
    assert st["currentRevision"] == st["updateRevision"] and st["currentReplicas"] == 1


async def test_on_delete_replaces_pods_only_when_deleted(h):
    await h.seed(statefulset(replicas=1, claims=False, updateStrategy={"type": "OnDelete"}))
    await scale_up_ordered(h, 1)
    await h.client.patch("statefulsets", "web", {"spec": {"template": {"spec": {"containers": [
        {"name": "c", "image": "minik8s/myapp:v2"}]}}}}, "ns")
    await h.settle()
    await h.reconcile("ns/web")
    assert pod(h, "web-0")["spec"]["containers"][0]["image"] == "minik8s/myapp:v1"
    await h.client.delete("pods", "web-0", "ns")
    await h.settle()
    await h.reconcile("ns/web")
    assert pod(h, "web-0")["spec"]["containers"][0]["image"] == "minik8s/myapp:v2"


async def test_leaves_pods_it_does_not_own_alone(h):
    await h.seed({"apiVersion": "v1", "kind": "Pod",
                  "metadata": {"name": "web-0", "namespace": "ns", "labels": {"app": "web"},
                               "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "x",
                                                    "uid": "other", "controller": True}]},
                  "spec": {"containers": [{"name": "c", "image": "i"}]}})
    await h.seed(statefulset(replicas=1, claims=False))
    await h.reconcile("ns/web")
    assert pod(h, "web-0")["metadata"]["ownerReferences"][0]["uid"] == "other"
    assert not [a for a in h.writes() if a[1].endswith("/pods/web-0") and a[0] != "POST"]
