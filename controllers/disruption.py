"""Disruption controller: keeps every PodDisruptionBudget's status true to its pods.

Kubernetes' pkg/controller/disruption, in short. For a budget it finds the pods its selector picks, then:

- expected pods and desired healthy pods. `minAvailable: N` wants N of however many pods exist.
  A percentage, or `maxUnavailable`, is of the pods the owning controllers *want* (their `replicas`): each
  selected pod's controller is followed to a ReplicaSet (and on to its Deployment), or a StatefulSet, and
  their sizes are summed, so a budget is not fooled by pods missing at the moment. Percentages round up
  (`minAvailable: 50%` of 3 is 2; `maxUnavailable: 50%` of 3 is 2, leaving 1). Pods without a controller
  are left out of that count (an `UnmanagedPods` event says so); a pod whose controller has no size
  (a Job's, a DaemonSet's) makes the count impossible: the status then allows no disruption
  (`DisruptionAllowed=False`, reason `SyncFailed`), failing safe.
- current healthy pods: Ready, not being deleted, and not in `disruptedPods` (evicted through the API but
  not yet seen going). An entry of `disruptedPods` is dropped once its pod is deleted or being deleted, or
  after two minutes (`DELETION_TIMEOUT`) if it never went.
- `disruptionsAllowed` = max(0, currentHealthy - desiredHealthy), and the `DisruptionAllowed` condition
  (SufficientPods / InsufficientPods).

The status is written through `/status` when it changed, guarded by the cached resourceVersion: an
eviction spending from the budget meanwhile makes the write conflict, and the event that brings the new
budget requeues it.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Any

from api import disruption
from api.errors import APIError
from client.rest import is_conflict, is_not_found
from client.store import namespace_index
from controllers.base import Controller
from controllers.common import controller_ref, now_rfc3339, parse_time

logger = logging.getLogger(__name__)

Obj = dict[str, Any]

BY_NAMESPACE = "disruption/by-namespace"
DELETION_TIMEOUT = 120.0  # Kubernetes' DeletionTimeout: how long an evicted pod may take to go


class CountError(Exception):
    """The expected pod count cannot be known (a pod's controller has no size)."""


def scaled(value: Any, total: int) -> int:
    """An IntOrString against `total`, percentages rounded up (GetScaledValueFromIntOrPercent)."""
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(int(value[:-1]) * total / 100)
    return int(value)


def is_percent(value: Any) -> bool:
    return isinstance(value, str) and value.endswith("%")


def expected_and_desired(spec: Obj, pods: list[Obj], controller_scale: Any) -> tuple[int, int]:
    """(expectedPods, desiredHealthy) for a budget's spec; `controller_scale()` sums the owners' sizes."""
    if spec.get("maxUnavailable") is not None:
        expected = controller_scale()
        return expected, max(0, expected - scaled(spec["maxUnavailable"], expected))
    if spec.get("minAvailable") is not None:
        if not is_percent(spec["minAvailable"]):
            return len(pods), int(spec["minAvailable"])
        expected = controller_scale()
        return expected, scaled(spec["minAvailable"], expected)
    return len(pods), 0


def healthy_and_disrupted(pods: list[Obj], disrupted: dict[str, str], now: float) -> tuple[int, dict[str, str], float | None]:
    """Ready pods not being deleted nor recently evicted; the disruptedPods entries still pending; and when
    the first of those expires (to look again then)."""
    healthy, pending, recheck = 0, {}, None
    for pod in pods:
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            continue
        since = parse_time(disrupted.get(meta["name"]))
        if since is not None and since + DELETION_TIMEOUT > now:
            pending[meta["name"]] = disrupted[meta["name"]]
            recheck = min(recheck or math.inf, since + DELETION_TIMEOUT)
            continue
        if disruption.is_pod_ready(pod):
            healthy += 1
    return healthy, pending, recheck


class DisruptionController(Controller):
    name = "disruption"
    workers = 2

    def setup(self) -> None:
        self.pdbs = self.factory.informer("poddisruptionbudgets")
        self.pods = self.factory.informer("pods")
        self.replicasets = self.factory.informer("replicasets")
        self.deployments = self.factory.informer("deployments")
        self.statefulsets = self.factory.informer("statefulsets")
        for informer in (self.pdbs, self.pods):
            try:
                informer.add_index(BY_NAMESPACE, namespace_index)
            except ValueError:
                pass
        self.pdbs.add_handler(**self.enqueue_handlers())
        self.pods.add_handler(on_add=self._pod_changed, on_update=self._pod_updated, on_delete=self._pod_changed)

    def _pod_changed(self, pod: Obj) -> None:
        for pdb in self.pdbs.store.by_index(BY_NAMESPACE, pod["metadata"].get("namespace", "")):
            if disruption.selects(pdb, pod):
                self.enqueue(pdb)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        self._pod_changed(new)
        if (old["metadata"].get("labels") or {}) != (new["metadata"].get("labels") or {}):
            self._pod_changed(old)

    # -- reconcile -----------------------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        pdb = self.pdbs.store.get(key)
        if pdb is None:
            return
        namespace = pdb["metadata"]["namespace"]
        pods = [p for p in self.pods.store.by_index(BY_NAMESPACE, namespace) if disruption.selects(pdb, p)]
        if not pods:
            self.recorder.event(pdb, "Normal", "NoPods", "No matching pods found")
        unmanaged = [p["metadata"]["name"] for p in pods if controller_ref(p) is None]
        try:
            expected, desired = expected_and_desired(pdb.get("spec") or {}, pods, lambda: self._scale_of(pods))
        except CountError as e:
            self.recorder.event(pdb, "Warning", "CalculateExpectedPodCountFailed",
                                f"Failed to calculate the number of expected pods: {e}")
            await self._write(pdb, self._failed_status(pdb, str(e)))
            return
        if unmanaged and (is_percent((pdb.get("spec") or {}).get("minAvailable"))
                          or (pdb.get("spec") or {}).get("maxUnavailable") is not None):
            self.recorder.event(pdb, "Warning", "UnmanagedPods",
                                f"Pods selected by this PodDisruptionBudget (selector: {pdb['spec'].get('selector')}) "
                                f"were found to be unmanaged. As a result, the status of the PDB cannot be "
                                f"calculated correctly, which may result in undefined behavior. To account for "
                                f"these pods please set \".spec.minAvailable\" field of the PDB to an integer "
                                f"value.")
        now = time.time()
        status = pdb.get("status") or {}
        healthy, pending, recheck = healthy_and_disrupted(pods, status.get("disruptedPods") or {}, now)
        allowed = max(0, healthy - desired)
        new: Obj = {"observedGeneration": pdb["metadata"].get("generation", 1), "disruptedPods": pending,
                    "disruptionsAllowed": allowed, "currentHealthy": healthy, "desiredHealthy": desired,
                    "expectedPods": expected, "conditions": status.get("conditions") or []}
        old_condition = disruption.find_condition(status, disruption.DISRUPTION_ALLOWED)
        disruption.set_condition(new, disruption.disruption_allowed_condition(allowed, old=old_condition,
                                                                              now=now_rfc3339()))
        await self._write(pdb, new)
        if recheck is not None:
            self.queue.add_after(key, max(0.0, recheck - now) + 0.1)

    def _scale_of(self, pods: list[Obj]) -> int:
        """The summed `replicas` of the controllers owning `pods`, each counted once."""
        sizes: dict[str, int] = {}
        for pod in pods:
            ref = controller_ref(pod)
            if ref is None:
                continue
            uid, size = self._owner_size(pod["metadata"]["namespace"], ref)
            sizes[uid] = size
        return sum(sizes.values())

    def _owner_size(self, namespace: str, ref: Obj) -> tuple[str, int]:
        kind, group = ref.get("kind"), (ref.get("apiVersion") or "").split("/")[0]
        if group == "apps" and kind == "ReplicaSet":
            rs = self.replicasets.store.get(f"{namespace}/{ref.get('name')}")
            if rs is not None and rs["metadata"].get("uid") == ref.get("uid"):
                owner = controller_ref(rs)
                if owner is not None and owner.get("kind") == "Deployment":
                    d = self.deployments.store.get(f"{namespace}/{owner.get('name')}")
                    if d is not None and d["metadata"].get("uid") == owner.get("uid"):
                        return owner["uid"], int((d.get("spec") or {}).get("replicas", 1))
                return ref["uid"], int((rs.get("spec") or {}).get("replicas", 1))
        if group == "apps" and kind == "StatefulSet":
            sts = self.statefulsets.store.get(f"{namespace}/{ref.get('name')}")
            if sts is not None and sts["metadata"].get("uid") == ref.get("uid"):
                return ref["uid"], int((sts.get("spec") or {}).get("replicas", 1))
        raise CountError(f"found no controllers for pod in {kind} {namespace}/{ref.get('name')}")

    def _failed_status(self, pdb: Obj, why: str) -> Obj:
        status = pdb.get("status") or {}
        new = {**status, "observedGeneration": pdb["metadata"].get("generation", 1), "disruptionsAllowed": 0,
               "conditions": status.get("conditions") or []}
        old = disruption.find_condition(status, disruption.DISRUPTION_ALLOWED)
        disruption.set_condition(new, disruption.disruption_allowed_condition(0, reason="SyncFailed", message=why,
                                                                              old=old, now=now_rfc3339()))
        return new

    async def _write(self, pdb: Obj, status: Obj) -> None:
        old = pdb.get("status") or {}
        if _comparable(old) == _comparable(status):
            return
        body = {**pdb, "status": status}
        try:
            await self.client.update_status("poddisruptionbudgets", body)
        except APIError as e:
            if is_conflict(e) or is_not_found(e):
                return  # the newer budget (or its deletion) arrives through the informer and requeues
            raise


def _comparable(status: Obj) -> Obj:
    """A status without condition timestamps (they move only with the condition's status)."""
    out = {k: v for k, v in status.items() if k != "conditions"}
    out["disruptedPods"] = out.get("disruptedPods") or {}
    out["conditions"] = [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status.get("conditions") or []]
    return out
