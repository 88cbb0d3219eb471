"""Disruption controller and the eviction API's budget decision: pure parts and reconcile against the fake."""
from __future__ import annotations

import asyncio
import time

import pytest

from api.errors import APIError
from apiserver import eviction
from client.events import EventRecorder
from client.factory import InformerFactory
from client.testing import FakeAPIServer
from controllers import disruption as dc
from controllers.common import now_rfc3339


def pod(name, *, ready=True, labels=None, owner=None, deleting=False, phase="Running", ns="default", owner_uid=None):
    meta = {"name": name, "namespace": ns, "labels": labels if labels is not None else {"app": "web"},
            "uid": f"uid-{name}", "resourceVersion": "7"}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner[0], "name": owner[1],
                                    "uid": owner_uid or f"uid-{owner[1]}", "controller": True}]
    if deleting:
        meta["deletionTimestamp"] = "2030-01-01T00:00:00Z"
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def pdb(name="web", ns="default", selector=None, status=None, generation=1, **spec):
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": name, "namespace": ns, "generation": generation, "resourceVersion": "5"},
            "spec": {"selector": {"matchLabels": {"app": "web"}} if selector is None else selector, **spec},
            "status": status or {}}


# -- pure parts ----------------------------------------------------------------------------------------

def test_percentages_round_up_and_counts_come_from_the_right_place():
    pods = [pod("a"), pod("b"), pod("c")]
    assert dc.expected_and_desired({"minAvailable": 2}, pods, lambda: 99) == (3, 2)   # int: pods that exist
    assert dc.expected_and_desired({"minAvailable": "50%"}, pods, lambda: 3) == (3, 2)  # ceil(1.5)
    assert dc.expected_and_desired({"maxUnavailable": "50%"}, pods, lambda: 3) == (3, 1)  # 3 - ceil(1.5)
    assert dc.expected_and_desired({"maxUnavailable": 1}, pods, lambda: 5) == (5, 4)   # owners want 5
    assert dc.expected_and_desired({"maxUnavailable": 7}, pods, lambda: 5) == (5, 0)   # never below zero
    assert dc.expected_and_desired({}, pods, lambda: 99) == (3, 0)


def test_healthy_pods_exclude_deleting_and_recently_disrupted_ones():
    now = time.time()
    recent = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 10))
    stale = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 500))
    pods = [pod("a"), pod("b"), pod("c", ready=False), pod("d", deleting=True), pod("e")]
    healthy, pending, recheck = dc.healthy_and_disrupted(pods, {"b": recent, "e": stale, "gone": recent}, now)
    assert healthy == 2            # a, and e whose eviction never happened within two minutes
    assert pending == {"b": recent}  # the deleted/absent/expired entries are dropped
    assert recheck is not None and now + 100 < recheck <= now + dc.DELETION_TIMEOUT


def test_selector_semantics_of_policy_v1():
    assert dc.disruption.selects(pdb(selector={}), pod("a", labels={"x": "y"}))        # empty: every pod
    assert not dc.disruption.selects(pdb(), pod("a", labels={"app": "db"}))
    assert not dc.disruption.selects(pdb(ns="other"), pod("a"))
    no_selector = pdb()
    del no_selector["spec"]["selector"]
    assert not dc.disruption.selects(no_selector, pod("a"))                            # missing: none


def test_spending_a_disruption():
    budget = pdb(minAvailable=2, status={"observedGeneration": 1, "disruptionsAllowed": 1, "currentHealthy": 3,
                                          "desiredHealthy": 2, "conditions": []})
    spent = eviction.spend(budget, "a")
    assert spent["status"]["disruptionsAllowed"] == 0 and set(spent["status"]["disruptedPods"]) == {"a"}
    assert spent["status"]["conditions"][0]["status"] == "False"
    assert budget["status"]["disruptionsAllowed"] == 1                      # the input is left alone
    with pytest.raises(APIError) as e:
        eviction.spend(spent, "b")
    assert e.value.code == 429 and e.value.reason == "TooManyRequests"
    assert e.value.causes[0].reason == "DisruptionBudget" and "needs 2 healthy pods and has 3" in e.value.causes[0].message
    behind = pdb(generation=2, minAvailable=1, status={"observedGeneration": 1, "disruptionsAllowed": 5})
    with pytest.raises(APIError) as e:
        eviction.spend(behind, "a")
    assert e.value.code == 429 and "still being processed" in e.value.causes[0].message
    with pytest.raises(APIError) as e:
        eviction.spend(pdb(status={"observedGeneration": 1, "disruptionsAllowed": -1}), "a")
    assert e.value.code == 403


def test_which_pods_bypass_the_budget():
    assert eviction.budget_ignorable(pod("a", phase="Pending"))
    assert eviction.budget_ignorable(pod("a", phase="Succeeded"))
    assert eviction.budget_ignorable(pod("a", deleting=True))
    assert not eviction.budget_ignorable(pod("a"))
    met = {"currentHealthy": 2, "desiredHealthy": 2}
    assert eviction.unhealthy_pod_may_go(pdb(status=met))
    assert not eviction.unhealthy_pod_may_go(pdb(status={"currentHealthy": 1, "desiredHealthy": 2}))
    assert eviction.unhealthy_pod_may_go(pdb(status={"currentHealthy": 0, "desiredHealthy": 2},
                                             unhealthyPodEvictionPolicy="AlwaysAllow"))


# -- reconcile against the fake apiserver --------------------------------------------------------------

@pytest.fixture
async def fake():
    fake = FakeAPIServer()
    yield fake
    await asyncio.sleep(0.05)
    for stop in fake.cleanup:
        await stop()


async def started(fake):
    client = fake.async_client()
    factory = InformerFactory(client)
    ctl = dc.DisruptionController(client, factory, EventRecorder(client, "test"))
    fake.cleanup = [factory.stop, client.aclose]
    factory.start()
    await factory.wait_for_sync(5)
    return ctl


def stored_status(fake, name="web"):
    return fake.objects[("poddisruptionbudgets.policy", f"default/{name}")]["status"]


async def test_status_of_a_deployment_budget(fake):
    d = fake.seed({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
                   "spec": {"replicas": 4}})
    rs = fake.seed({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "metadata": {"name": "web-1", "namespace": "default",
                                 "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                                      "uid": d["metadata"]["uid"], "controller": True}]},
                    "spec": {"replicas": 3}})
    for name, ready in (("a", True), ("b", True), ("c", False)):
        fake.seed(pod(name, ready=ready, owner=("ReplicaSet", "web-1"), owner_uid=rs["metadata"]["uid"]))
    fake.seed(pod("other", labels={"app": "db"}))
    fake.seed(pdb(maxUnavailable="25%"))
    ctl = await started(fake)
    await ctl.reconcile("default/web")
    status = stored_status(fake)
    # The Deployment wants 4 (not the 3 pods that exist): 25% of 4 is 1 unavailable, so 3 must be healthy.
    assert (status["expectedPods"], status["desiredHealthy"], status["currentHealthy"]) == (4, 3, 2)
    assert status["disruptionsAllowed"] == 0 and status["observedGeneration"] == 1
    assert status["conditions"][0]["reason"] == "InsufficientPods"

    writes = len([a for a in fake.actions if a[0] == "PUT"])
    for _ in range(200):  # the informer brings our own write back
        if (ctl.pdbs.store.get("default/web").get("status") or {}).get("expectedPods"):
            break
        await asyncio.sleep(0.01)
    await ctl.reconcile("default/web")  # converged: nothing to write
    assert len([a for a in fake.actions if a[0] == "PUT"]) == writes


async def test_integer_min_available_counts_existing_pods_and_honours_disrupted_pods(fake):
    for name in "abc":
        fake.seed(pod(name))
    fake.seed(pdb(minAvailable=1, status={"disruptedPods": {"a": now_rfc3339()}}))
    ctl = await started(fake)
    await ctl.reconcile("default/web")
    status = stored_status(fake)
    assert (status["expectedPods"], status["currentHealthy"], status["disruptionsAllowed"]) == (3, 2, 1)
    assert set(status["disruptedPods"]) == {"a"}
    assert status["conditions"][0]["status"] == "True"


async def test_pods_whose_controller_has_no_size_fail_safe(fake):
    fake.seed(pod("a", owner=("DaemonSet", "agent")))
    fake.seed(pdb(maxUnavailable=1))
    ctl = await started(fake)
    await ctl.reconcile("default/web")
    status = stored_status(fake)
    assert status["disruptionsAllowed"] == 0
    assert status["conditions"][0]["reason"] == "SyncFailed" and "found no controllers" in status["conditions"][0]["message"]
