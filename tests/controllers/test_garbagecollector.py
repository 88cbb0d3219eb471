"""Garbage collector against the in-memory fake apiserver: background, foreground and orphan propagation."""
from __future__ import annotations

import asyncio

import pytest

from client.events import EventRecorder
from client.factory import InformerFactory
from client.testing import FakeAPIServer
from controllers.garbagecollector import GarbageCollector

NS = "gc"


def cm(name: str, **meta) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": NS, **meta}}


def pod(name: str, *owners: dict, block: bool = True, **meta) -> dict:
    refs = [{"apiVersion": o["apiVersion"], "kind": o["kind"], "name": o["metadata"]["name"],
             "uid": o["metadata"]["uid"], "blockOwnerDeletion": block} for o in owners]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "ownerReferences": refs, **meta},
            "spec": {"containers": [{"name": "c", "image": "x"}]}}


def ghost(name: str, uid: str, kind: str = "ConfigMap", api_version: str = "v1") -> dict:
    """An owner that does not exist (only its reference does)."""
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "uid": uid}}


class Harness:
    def __init__(self) -> None:
        self.fake = FakeAPIServer()

    async def start(self) -> GarbageCollector:
        self.client = self.fake.async_client()
        self.factory = InformerFactory(self.client)
        self.gc = GarbageCollector(self.client, self.factory, EventRecorder(self.client, "test"))
        self.factory.start()
        await self.factory.wait_for_sync(5)
        return self.gc

    async def drain(self, rounds: int = 20) -> None:
        """Reconcile everything queued, letting watch events arrive between rounds, until quiet."""
        for _ in range(rounds):
            await asyncio.sleep(0.02)
            if not len(self.gc.queue):
                return
            while len(self.gc.queue):
                key = await self.gc.queue.get()
                try:
                    await self.gc.reconcile(key)
                finally:
                    self.gc.queue.done(key)
        raise AssertionError("garbage collector did not settle")

    def writes(self) -> list:
        return [a for a in self.fake.actions if a[0] in ("POST", "PUT", "PATCH", "DELETE") and "/events" not in a[1]]

    def pod(self, name: str) -> dict | None:
        return self.fake.objects.get(("pods", f"{NS}/{name}"))

    async def stop(self) -> None:
        # Python 3.11's asyncio.wait_for (used by the fake's watch stream) can swallow a cancellation that
        # meets a ready event; letting pending events drain first keeps informer shutdown prompt.
        await asyncio.sleep(0.05)
        await self.factory.stop()
        await self.client.aclose()


@pytest.fixture
async def h():
    harness = Harness()
    yield harness
    await harness.stop()


async def test_background_deletes_dependents_only_when_every_owner_is_gone(h):
    alive = h.fake.seed(cm("alive"))
    gone = ghost("gone", "uid-gone")
    h.fake.seed(pod("orphaned", gone))
    h.fake.seed(pod("half", gone, alive))
    h.fake.seed(pod("owned", alive))
    h.fake.seed({**pod("free"), "metadata": {"name": "free", "namespace": NS}})
    await h.start()
    await h.drain()

    assert h.pod("orphaned") is None
    deletes = [a for a in h.writes() if a[0] == "DELETE"]
    assert len(deletes) == 1 and deletes[0][1].endswith("/pods/orphaned")
    assert deletes[0][3]["preconditions"]["uid"] and deletes[0][3]["propagationPolicy"] == "Background"
    # The absent owner was looked up live before anything was deleted.
    assert ("GET", f"/api/v1/namespaces/{NS}/configmaps/gone") in [(a[0], a[1]) for a in h.fake.actions]
    # A dependent with a remaining owner keeps living, without the dangling reference.
    assert [r["uid"] for r in h.pod("half")["metadata"]["ownerReferences"]] == [alive["metadata"]["uid"]]
    assert h.pod("owned")["metadata"]["ownerReferences"][0]["uid"] == alive["metadata"]["uid"]
    assert h.pod("free") is not None

    before = len(h.writes())
    for key in list(h.gc.informers["pods"][1].store.keys()):
        h.gc.queue.add(f"pods/{key}")
    await h.drain()
    assert len(h.writes()) == before, "a converged graph must cause no writes"


async def test_an_owner_missing_from_the_cache_is_checked_live_and_never_deleted_wrongly(h):
    await h.start()
    # The owner exists in the apiserver but the collector's cache has not seen it (a watch lag).
    owner = cm("late")
    owner["metadata"].update(uid="uid-late", resourceVersion="1")
    h.fake.objects[("configmaps", f"{NS}/late")] = owner
    h.fake.seed(pod("child", owner))
    # Same name, other uid: the owner this pod referenced was replaced, so the pod is garbage.
    h.fake.seed(pod("stale-child", ghost("late", "uid-of-an-older-late")))
    await h.drain()
    assert h.pod("child") is not None
    assert h.pod("stale-child") is None


async def test_deleting_an_owner_in_the_background_collects_its_dependents(h):
    owner = h.fake.seed(cm("rs"))
    h.fake.seed(pod("a", owner))
    h.fake.seed(pod("b", owner))
    await h.start()
    await h.drain()
    assert h.writes() == []
    await h.client.delete("configmaps", "rs", NS)
    await h.drain()
    assert h.pod("a") is None and h.pod("b") is None


async def test_foreground_deletes_dependents_first_then_removes_the_finalizer(h):
    owner = h.fake.seed(cm("fg"))
    other = h.fake.seed(cm("other"))
    h.fake.seed(pod("blocking", owner, block=True))
    h.fake.seed(pod("nonblocking", owner, block=False))
    h.fake.seed(pod("shared", owner, other))
    # A pod that holds on (finalizer) keeps the owner waiting.
    h.fake.seed(pod("slow", owner, finalizers=["example.com/hold"]))
    await h.start()
    await h.drain()
    await h.client.patch("configmaps", "fg", {"metadata": {"finalizers": ["foregroundDeletion"]}}, NS)
    await h.client.delete("configmaps", "fg", NS)  # finalizer present: only marks deletionTimestamp
    await h.drain()

    assert h.pod("blocking") is None and h.pod("nonblocking") is None
    assert [r["uid"] for r in h.pod("shared")["metadata"]["ownerReferences"]] == [other["metadata"]["uid"]]
    assert h.pod("slow")["metadata"].get("deletionTimestamp")
    fg = h.fake.objects.get(("configmaps", f"{NS}/fg"))
    assert fg is not None and fg["metadata"]["finalizers"] == ["foregroundDeletion"], "must wait for 'slow'"

    await h.client.patch("pods", "slow", {"metadata": {"finalizers": None}}, NS)
    await h.drain()
    assert h.fake.objects.get(("configmaps", f"{NS}/fg")) is None
    owner_patch = [i for i, a in enumerate(h.writes()) if a[0] == "PATCH" and a[1].endswith("/configmaps/fg")][-1]
    pod_deletes = [i for i, a in enumerate(h.writes()) if a[0] == "DELETE" and "/pods/" in a[1]]
    assert pod_deletes and max(pod_deletes) < owner_patch


async def test_orphan_strips_the_owner_reference_and_keeps_dependents(h):
    owner = h.fake.seed(cm("orph"))
    other = h.fake.seed(cm("keep"))
    h.fake.seed(pod("only", owner))
    h.fake.seed(pod("both", owner, other))
    await h.start()
    await h.drain()
    await h.client.patch("configmaps", "orph", {"metadata": {"finalizers": ["orphan"]}}, NS)
    await h.client.delete("configmaps", "orph", NS)
    await h.drain()

    assert h.fake.objects.get(("configmaps", f"{NS}/orph")) is None
    assert not h.pod("only")["metadata"].get("ownerReferences")
    assert [r["uid"] for r in h.pod("both")["metadata"]["ownerReferences"]] == [other["metadata"]["uid"]]
    assert not [a for a in h.writes() if a[0] == "DELETE" and "/pods/" in a[1]]


async def test_owners_of_unknown_kinds_are_kept(h):
    h.fake.seed(pod("custom", ghost("thing", "uid-thing", kind="Widget", api_version="example.com/v1")))
    await h.start()
    await h.drain()
    assert h.pod("custom") is not None
    assert h.writes() == []


async def test_a_cluster_scoped_owner_collects_namespaced_dependents(h):
    node = h.fake.seed({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
             "metadata": {"name": "n1", "namespace": "kube-node-lease",
                          "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "n1",
                                               "uid": node["metadata"]["uid"]}]}}
    h.fake.seed(lease)
    await h.start()
    await h.drain()
    assert h.writes() == []
    await h.client.delete("nodes", "n1")
    await h.drain()
    assert h.fake.objects.get(("leases.coordination.k8s.io", "kube-node-lease/n1")) is None
