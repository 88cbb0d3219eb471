"""Namespace deletion against the in-memory fake apiserver: content removal, conditions, /finalize."""
from __future__ import annotations

import asyncio

import pytest

from client.events import EventRecorder
from client.factory import InformerFactory
from client.testing import FakeAPIServer
from controllers.namespace import NamespaceController, deletion_conditions, merge_conditions, namespaced_kinds


def namespace(name: str, terminating: bool) -> dict:
    meta: dict = {"name": name}
    if terminating:
        # The fake apiserver knows only metadata.finalizers; this one stands in for the real apiserver
        # keeping a namespace while spec.finalizers is not empty.
        meta.update(deletionTimestamp="2030-01-01T00:00:00Z", finalizers=["test/keep"])
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta, "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Terminating" if terminating else "Active"}}


def content(kind: str, name: str, ns: str, **meta) -> dict:
    api = {"ConfigMap": "v1", "Pod": "v1", "Deployment": "apps/v1"}[kind]
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": ns, **meta}}


@pytest.fixture
async def ctl():
    fake = FakeAPIServer()
    fake.seed(namespace("doomed", True))
    fake.seed(namespace("alive", False))
    fake.seed(content("ConfigMap", "cfg", "doomed"))
    fake.seed(content("Deployment", "web", "doomed"))
    fake.seed(content("Pod", "held", "doomed", finalizers=["example.com/hold"]))
    fake.seed(content("ConfigMap", "cfg", "alive"))
    client = fake.async_client()
    factory = InformerFactory(client)
    c = NamespaceController(client, factory, EventRecorder(client, "test"))
    factory.start()
    await factory.wait_for_sync(5)
    c.fake = fake
    yield c
    await asyncio.sleep(0.05)  # the fake watch stream can swallow a cancellation that meets a ready event
    await factory.stop()
    await client.aclose()


def conditions(ns: dict) -> dict:
    return {c["type"]: c for c in (ns.get("status") or {}).get("conditions") or []}


async def wait_cached(ctl, predicate) -> None:
    for _ in range(100):
        ns = ctl.namespaces.store.get("doomed")
        if predicate(ns):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("cache did not catch up")


async def test_terminating_namespace_is_emptied_then_finalized(ctl):
    fake = ctl.fake
    await ctl.reconcile("doomed")
    collections = [a[1] for a in fake.actions if a[0] == "DELETE"]
    for rd in namespaced_kinds():
        assert any(p.endswith(f"/namespaces/doomed/{rd.plural}") for p in collections), rd.plural
    assert fake.objects.get(("configmaps", "doomed/cfg")) is None
    assert fake.objects.get(("deployments.apps", "doomed/web")) is None
    # The pod holds on through its finalizer: the namespace reports it and stays.
    ns = fake.objects[("namespaces", "doomed")]
    conds = conditions(ns)
    assert conds["NamespaceContentRemaining"]["status"] == "True"
    assert conds["NamespaceContentRemaining"]["message"] == \
        "Some resources are remaining: pods has 1 resource instances"
    assert conds["NamespaceFinalizersRemaining"]["message"] == \
        "Some finalizers are remaining: example.com/hold in 1 resource instances"
    assert conds["NamespaceDeletionContentFailure"]["status"] == "False"
    assert ns["spec"]["finalizers"] == ["kubernetes"]
    assert not [a for a in fake.actions if a[1].endswith("/finalize")]
    # Nothing outside the namespace was touched.
    assert fake.objects.get(("configmaps", "alive/cfg")) is not None

    await ctl.client.patch("pods", "held", {"metadata": {"finalizers": None}}, "doomed")
    await wait_cached(ctl, lambda ns: conditions(ns).get("NamespaceContentRemaining"))
    await ctl.reconcile("doomed")
    finalize = [a for a in fake.actions if a[1].endswith("/namespaces/doomed/finalize")]
    assert len(finalize) == 1 and finalize[0][0] == "PUT" and finalize[0][3]["spec"]["finalizers"] == []
    assert not conditions(fake.objects[("namespaces", "doomed")])["NamespaceContentRemaining"]["status"] == "True"


async def test_active_namespaces_are_left_alone(ctl):
    await ctl.reconcile("alive")
    await ctl.reconcile("missing")
    assert [a for a in ctl.fake.actions if a[0] != "GET"] == []


async def test_failures_become_a_content_failure_condition():
    problems = deletion_conditions(["pods: boom"], {}, {})
    merged = merge_conditions([], problems, "2030-01-01T00:00:00Z")
    by_type = {c["type"]: c for c in merged}
    assert by_type["NamespaceDeletionContentFailure"]["reason"] == "ContentDeletionFailed"
    assert by_type["NamespaceDeletionContentFailure"]["message"] == \
        "Failed to delete all resource types, 1 remaining: pods: boom"
    assert by_type["NamespaceContentRemaining"] == {
        "type": "NamespaceContentRemaining", "status": "False", "reason": "ContentRemoved",
        "message": "All content successfully removed", "lastTransitionTime": "2030-01-01T00:00:00Z"}
    # Unchanged conditions keep their transition time; a flip moves it.
    again = merge_conditions(merged, deletion_conditions([], {}, {}), "2031-01-01T00:00:00Z")
    times = {c["type"]: c["lastTransitionTime"] for c in again}
    assert times["NamespaceDeletionContentFailure"] == "2031-01-01T00:00:00Z"
    assert times["NamespaceContentRemaining"] == "2030-01-01T00:00:00Z"
