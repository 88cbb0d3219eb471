"""Pod garbage collection: force-delete pods no kubelet will ever finish (Kubernetes' PodGC).

Every `--podgc-period` seconds one pass over the pod cache:

- terminating pods bound to a node that is gone, or whose Ready condition is not True (the kubelet is
  dead or cut off, so nobody will complete the graceful deletion), are deleted with grace 0 once their
  grace period has run out plus `--podgc-terminating-delay` seconds — at once when the node carries the
  `node.kubernetes.io/out-of-service` taint, Kubernetes' explicit signal that it is down for good;
- terminating pods never bound to a node are deleted with grace 0 (no kubelet is involved);
- orphan pods, bound to a node that does not exist, are deleted with grace 0 after a quarantine of
  `--podgc-orphan-quarantine` seconds, and only once a live GET confirms the node is absent, so a node
  that just registered (and a lagging cache) never loses its pods;
- terminated pods (Succeeded/Failed) beyond `--terminated-pod-gc-threshold` are deleted, oldest first
  (0 disables).

Force deletions carry a uid precondition. The clock is injectable (`clock=` option).
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

from api.errors import APIError
from controllers.base import Controller
from controllers.common import parse_time

logger = logging.getLogger(__name__)

Obj = dict[str, Any]

PASS_KEY = "podgc"
OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"


def node_ready(node: Obj) -> bool:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def out_of_service(node: Obj) -> bool:
    return any(t.get("key") == OUT_OF_SERVICE and t.get("effect") in ("NoExecute", "NoSchedule")
               for t in (node.get("spec") or {}).get("taints") or [])


class PodGCController(Controller):
    name = "podgc"
    workers = 1

    @classmethod
    def add_arguments(cls, group) -> None:
        group.add_argument("--podgc-period", type=float, default=20, help="seconds between PodGC passes")
        group.add_argument("--podgc-terminating-delay", type=float, default=60,
                           help="seconds past its grace period before a terminating pod on a NotReady or "
                                "missing node is force-deleted")
        group.add_argument("--podgc-orphan-quarantine", type=float, default=40,
                           help="seconds a pod bound to a nonexistent node is left alone before deletion")
        group.add_argument("--terminated-pod-gc-threshold", type=int, default=12500,
                           help="terminated pods kept before the oldest are deleted (0: never)")

    def setup(self) -> None:
        o = self.options
        self.clock: Callable[[], float] = o.get("clock") or time.time
        self.period = float(o.get("podgc_period") or 20)
        self.terminating_delay = float(o.get("podgc_terminating_delay", 60))
        self.quarantine = float(o.get("podgc_orphan_quarantine", 40))
        self.threshold = int(o.get("terminated_pod_gc_threshold", 12500))
        self.pods = self.factory.informer("pods")
        self.nodes = self.factory.informer("nodes")
        self._orphan_since: dict[str, float] = {}
        self.queue.add(PASS_KEY)

    async def reconcile(self, key: str) -> None:
        now = self.clock()
        try:
            await self.gc_terminated()
            await self.gc_terminating(now)
            await self.gc_orphans(now)
        finally:
            self.queue.add_after(PASS_KEY, self.period)

    async def gc_terminated(self) -> None:
        if self.threshold <= 0:
            return
        done = [p for p in self.pods.store.list() if (p.get("status") or {}).get("phase") in ("Succeeded", "Failed")
                and not p["metadata"].get("deletionTimestamp")]
        excess = len(done) - self.threshold
        if excess <= 0:
            return
        done.sort(key=lambda p: p["metadata"].get("creationTimestamp") or "")
        for pod in done[:excess]:
            await self._delete(pod, "terminated pods exceed the threshold", grace=None)

    async def gc_terminating(self, now: float) -> None:
        for pod in self.pods.store.list():
            meta = pod["metadata"]
            if not meta.get("deletionTimestamp"):
                continue
            node_name = (pod.get("spec") or {}).get("nodeName")
            if not node_name:
                await self._delete(pod, "terminating and never scheduled")
                continue
            node = self.nodes.store.get(node_name)
            if node is not None and node_ready(node) and not out_of_service(node):
                continue
            if node is not None and out_of_service(node):
                await self._delete(pod, f"node {node_name} is out of service")
                continue
            deadline = parse_time(meta["deletionTimestamp"])
            if deadline is not None and now >= deadline + self.terminating_delay:
                why = "is gone" if node is None else "is not Ready"
                await self._delete(pod, f"terminating on node {node_name}, which {why}")

    async def gc_orphans(self, now: float) -> None:
        seen: set[str] = set()
        for pod in self.pods.store.list():
            node_name = (pod.get("spec") or {}).get("nodeName")
            if not node_name or node_name in self.nodes.store or pod["metadata"].get("deletionTimestamp"):
                continue
            uid = pod["metadata"].get("uid", "")
            seen.add(uid)
            since = self._orphan_since.setdefault(uid, now)
            if now - since < self.quarantine:
                continue
            if await self.client.get_or_none("nodes", node_name) is not None:
                continue
            await self._delete(pod, f"bound to node {node_name}, which does not exist")
        self._orphan_since = {uid: t for uid, t in self._orphan_since.items() if uid in seen}

    async def _delete(self, pod: Obj, why: str, grace: int | None = 0) -> None:
        meta = pod["metadata"]
        try:
            await self.client.delete("pods", meta["name"], meta["namespace"], grace_period_seconds=grace,
                                     preconditions={"uid": meta["uid"]})
        except APIError as e:
            if e.code in (404, 409):
                return
            raise
        logger.info("pod %s/%s deleted%s: %s", meta["namespace"], meta["name"],
                    " with grace 0" if grace == 0 else "", why)
        self.recorder.event(pod, "Normal", "PodGCDeleted", f"Deleted by PodGC: {why}")
