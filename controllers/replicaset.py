"""ReplicaSet controller: keeps `spec.replicas` pods matching the selector alive, and reports on them.

One reconcile (Kubernetes' syncReplicaSet), level-triggered from the caches:

1. Claim: the pods this ReplicaSet controls are those carrying its controller reference and still
   matching its selector; matching orphans are adopted, controlled pods that stopped matching are
   released (`common.claim`). Pods that are terminal or being deleted do not count.
2. Manage, only when the expectations are satisfied: with too few pods, create the difference (at most
   `BURST_REPLICAS` per pass) in slow-start batches of 1, 2, 4, ... that stop at the first batch with a
   failure, so a quota or admission error costs one request, not five hundred. With too many, delete
   the surplus in `deletion_order` (the pods whose loss hurts least go first).
3. Status: replicas, fullyLabeledReplicas, readyReplicas, availableReplicas (ready for at least
   `minReadySeconds`), observedGeneration and a `ReplicaFailure` condition while creates or deletes
   fail, written through `/status` only when something changed. Unlike Kubernetes, the pods deleted in
   this very reconcile no longer count: a Deployment rolling out reads these numbers, and counting a
   pod that is already terminating as available would let it scale down below its minimum. While some pod is ready but not yet
   available the key is requeued for the moment it becomes available.

Expectations: the watch delivers our own creates and deletes a little later than the write returns. A
reconcile in that window would see too few (or too many) pods and act twice, so each reconcile that
writes pods records what it expects to observe (`Expectations`) and the next one skips step 2 until
the informer has caught up (or the expectation expired). Deletions are tracked per pod key, because a
graceful delete is observed twice (deletionTimestamp set, then the object removed).

The informers carry two indexes shared with the Deployment controller: pods and ReplicaSets by their
controller's uid, and controller-less objects by namespace, so a reconcile looks only at its own pods and
the orphans that it might adopt.
"""
from __future__ import annotations

import asyncio
import copy
import logging
import time
from typing import Any

from api.errors import APIError
from api.selectors import LabelSelector, selector_from_dict
from client.informer import Informer
from client.resources import object_key, split_key
from client.rest import is_conflict, is_namespace_terminating, is_not_found
from controllers.base import Controller
from controllers.common import (Expectations, claim, controller_ref, is_pod_active, is_pod_available, is_pod_ready,
                                now_rfc3339, parse_time, pod_condition, pod_from_template)

logger = logging.getLogger(__name__)

Obj = dict[str, Any]

BURST_REPLICAS = 500
SLOW_START_INITIAL_BATCH = 1
DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"

BY_CONTROLLER = "apps/by-controller-uid"
ORPHANS_BY_NAMESPACE = "apps/orphans-by-namespace"
BY_NAMESPACE = "apps/by-namespace"


# -- indexes shared by the apps controllers ----------------------------------------------------------

def _by_controller(obj: Obj) -> list[str]:
    ref = controller_ref(obj)
    return [ref["uid"]] if ref and ref.get("uid") else []


def _orphans_by_namespace(obj: Obj) -> list[str]:
    if controller_ref(obj) is not None:
        return []
    ns = obj["metadata"].get("namespace")
    return [ns] if ns else []


def _by_namespace(obj: Obj) -> list[str]:
    ns = obj["metadata"].get("namespace")
    return [ns] if ns else []


def ensure_indexes(informer: Informer, *, namespace: bool = False) -> None:
    """Index `informer` by controller uid and orphans by namespace, and optionally everything by namespace
    (once, however many of the apps controllers sharing the informer ask)."""
    wanted = [(BY_CONTROLLER, _by_controller), (ORPHANS_BY_NAMESPACE, _orphans_by_namespace)]
    if namespace:
        wanted.append((BY_NAMESPACE, _by_namespace))
    for name, fn in wanted:
        try:
            informer.add_index(name, fn)
        except ValueError:
            pass  # added already by the other apps controller


def controlled_and_orphans(informer: Informer, owner: Obj) -> list[Obj]:
    """What `claim` needs to look at for `owner`: objects it controls plus orphans of its namespace."""
    store = informer.store
    return store.by_index(BY_CONTROLLER, owner["metadata"]["uid"]) + \
        store.by_index(ORPHANS_BY_NAMESPACE, owner["metadata"]["namespace"])


class SelectorCache:
    """Parsed selectors by owner uid (workload selectors are immutable once created)."""

    def __init__(self) -> None:
        self._parsed: dict[str, tuple[Any, LabelSelector]] = {}

    def get(self, obj: Obj) -> LabelSelector:
        uid = obj["metadata"].get("uid", "")
        raw = (obj.get("spec") or {}).get("selector")
        hit = self._parsed.get(uid)
        if hit is not None and hit[0] == raw:
            return hit[1]
        parsed = selector_from_dict(raw)
        self._parsed[uid] = (copy.deepcopy(raw), parsed)
        return parsed

    def forget(self, obj: Obj) -> None:
        self._parsed.pop(obj["metadata"].get("uid", ""), None)


# -- deletion order ----------------------------------------------------------------------------------

_PHASE_ORDER = {"Pending": 0, "Unknown": 1, "Running": 2}


def _ready_since(pod: Obj) -> float:
    c = pod_condition(pod, "Ready")
    return parse_time((c or {}).get("lastTransitionTime")) or 0.0


def _max_restarts(pod: Obj) -> int:
    return max((s.get("restartCount") or 0 for s in (pod.get("status") or {}).get("containerStatuses") or []),
               default=0)


def _deletion_cost(pod: Obj) -> int:
    try:
        return int(((pod["metadata"].get("annotations") or {}).get(DELETION_COST_ANNOTATION)) or 0)
    except ValueError:
        return 0


def _zero_or_later_first(t: float) -> tuple[int, float]:
    """Sort key for "empty < later < earlier" timestamps."""
    return (0, 0.0) if not t else (1, -t)


def deletion_order(pods: list[Obj], related: list[Obj] | None = None) -> list[Obj]:
    """`pods` sorted so that the ones to delete first come first (Kubernetes' ActivePodsWithRanks):
    unscheduled before scheduled; Pending < Unknown < Running; not ready before ready; lower
    pod-deletion-cost first; pods on nodes crowded with related pods first; among ready pods the most
    recently ready first; more restarts first; newer before older."""
    per_node: dict[str, int] = {}
    for p in related if related is not None else pods:
        node = (p.get("spec") or {}).get("nodeName")
        if node and is_pod_active(p):
            per_node[node] = per_node.get(node, 0) + 1

    def key(pod: Obj) -> tuple:
        node = (pod.get("spec") or {}).get("nodeName")
        ready = is_pod_ready(pod)
        return (bool(node),
                _PHASE_ORDER.get((pod.get("status") or {}).get("phase"), 0),
                ready,
                _deletion_cost(pod),
                -per_node.get(node, 0) if node else 0,
                _zero_or_later_first(_ready_since(pod)) if ready else (0, 0.0),
                -_max_restarts(pod),
                _zero_or_later_first(parse_time(pod["metadata"].get("creationTimestamp")) or 0.0))

    return sorted(pods, key=key)


# -- status --------------------------------------------------------------------------------------------

REPLICA_FAILURE = "ReplicaFailure"


def calculate_status(rs: Obj, pods: list[Obj], manage_error: str | None, *, failure_reason: str = "FailedCreate",
                     now: float | None = None) -> Obj:
    """The status a ReplicaSet with these active, claimed pods should report."""
    spec = rs.get("spec") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    now = time.time() if now is None else now
    fully_labeled = ready = available = 0
    for pod in pods:
        labels = pod["metadata"].get("labels") or {}
        if all(labels.get(k) == v for k, v in template_labels.items()):
            fully_labeled += 1
        if is_pod_ready(pod):
            ready += 1
            if is_pod_available(pod, min_ready, now):
                available += 1
    old = rs.get("status") or {}
    conditions = [dict(c) for c in old.get("conditions") or []]
    failure = next((c for c in conditions if c.get("type") == REPLICA_FAILURE), None)
    if manage_error is not None and failure is None:
        conditions.append({"type": REPLICA_FAILURE, "status": "True", "reason": failure_reason,
                           "message": manage_error, "lastTransitionTime": now_rfc3339()})
    elif manage_error is None and failure is not None:
        conditions.remove(failure)
    status: Obj = {"replicas": len(pods), "fullyLabeledReplicas": fully_labeled, "readyReplicas": ready,
                   "availableReplicas": available,
                   "observedGeneration": rs["metadata"].get("generation", old.get("observedGeneration", 0))}
    if conditions:
        status["conditions"] = conditions
    return status


def status_changed(old: Obj | None, new: Obj) -> bool:
    old = old or {}
    return any(old.get(k, 0) != v for k, v in new.items() if k != "conditions") or \
        (old.get("conditions") or []) != (new.get("conditions") or [])


def next_availability_check(rs: Obj, pods: list[Obj], now: float) -> float | None:
    """Seconds until the first ready-but-not-yet-available pod turns available, if any."""
    min_ready = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
    if not min_ready:
        return None
    waits = [_ready_since(p) + min_ready - now for p in pods
             if is_pod_ready(p) and not is_pod_available(p, min_ready, now)]
    return max(0.0, min(waits)) if waits else None


# -- the controller ------------------------------------------------------------------------------------

class ManageError(Exception):
    """Creating or deleting pods failed; `reason` names it in the ReplicaFailure condition."""

    def __init__(self, message: str, reason: str, deleted: set[str] | None = None):
        super().__init__(message)
        self.reason = reason
        self.deleted = deleted or set()


class ReplicaSetController(Controller):
    name = "replicaset"
    workers = 5

    @classmethod
    def add_arguments(cls, group) -> None:
        group.add_argument("--concurrent-replicaset-syncs", type=int, default=5,
                           help="ReplicaSets reconciled at once")

    def setup(self) -> None:
        self.workers = int(self.options.get("concurrent_replicaset_syncs") or self.workers)
        self.expectations = Expectations()
        self.selectors = SelectorCache()
        self.replicasets = self.factory.informer("replicasets")
        self.pods = self.factory.informer("pods")
        ensure_indexes(self.replicasets, namespace=True)
        ensure_indexes(self.pods)
        self.replicasets.add_handler(on_add=self.enqueue, on_update=lambda old, new: self.enqueue(new),
                                     on_delete=self._rs_deleted)
        self.pods.add_handler(on_add=self._pod_added, on_update=self._pod_updated, on_delete=self._pod_deleted)

    # -- handlers: map pod changes to ReplicaSet keys ----------------------------------------------------

    def _rs_deleted(self, rs: Obj) -> None:
        self.selectors.forget(rs)
        self.enqueue(rs)

    def _owner_key(self, pod: Obj, ref: Obj | None) -> str | None:
        if ref is None or ref.get("kind") != "ReplicaSet":
            return None
        key = f'{pod["metadata"]["namespace"]}/{ref["name"]}'
        rs = self.replicasets.store.get(key)
        return key if rs is not None and rs["metadata"].get("uid") == ref.get("uid") else None

    def _enqueue_matching(self, pod: Obj) -> None:
        """An orphan changed: every ReplicaSet that might adopt it takes a look."""
        labels = pod["metadata"].get("labels") or {}
        for rs in self.replicasets.store.by_index(BY_NAMESPACE, pod["metadata"].get("namespace", "")):
            if self.selectors.get(rs).matches(labels):
                self.enqueue(rs)

    def _pod_added(self, pod: Obj) -> None:
        if pod["metadata"].get("deletionTimestamp"):
            self._pod_deleted(pod)
            return
        ref = controller_ref(pod)
        if ref is not None:
            key = self._owner_key(pod, ref)
            if key is not None:
                self.expectations.creation_observed(key)
                self.queue.add(key)
            return
        self._enqueue_matching(pod)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if old["metadata"].get("resourceVersion") == new["metadata"].get("resourceVersion"):
            return
        labels_changed = old["metadata"].get("labels") != new["metadata"].get("labels")
        if new["metadata"].get("deletionTimestamp"):
            self._pod_deleted(new)
            if labels_changed:
                self._pod_deleted(old)
            return
        old_ref, new_ref = controller_ref(old), controller_ref(new)
        ref_changed = (old_ref or {}).get("uid") != (new_ref or {}).get("uid")
        if ref_changed and (key := self._owner_key(old, old_ref)) is not None:
            self.queue.add(key)
        if new_ref is not None:
            if (key := self._owner_key(new, new_ref)) is not None:
                self.queue.add(key)
            return
        if labels_changed or ref_changed:
            self._enqueue_matching(new)

    def _pod_deleted(self, pod: Obj) -> None:
        key = self._owner_key(pod, controller_ref(pod))
        if key is not None:
            self.expectations.deletion_observed(key, object_key(pod))
            self.queue.add(key)

    # -- reconcile -------------------------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        rs = self.replicasets.store.get(key)
        if rs is None:
            self.expectations.forget(key)
            return
        needs_sync = self.expectations.satisfied(key)
        selector = self.selectors.get(rs)
        active = [p for p in controlled_and_orphans(self.pods, rs) if is_pod_active(p)]
        pods = await claim(self.client, rs, selector, active)

        error: ManageError | None = None
        if needs_sync and not rs["metadata"].get("deletionTimestamp"):
            try:
                deleted = await self.manage_replicas(key, rs, pods)
            except ManageError as e:
                error, deleted = e, e.deleted
            if deleted:
                pods = [p for p in pods if object_key(p) not in deleted]

        now = time.time()
        status = calculate_status(rs, pods, str(error) if error else None,
                                  failure_reason=error.reason if error else "FailedCreate", now=now)
        if status_changed(rs.get("status"), status):
            await self._write_status(rs, status)
        if error is not None:
            raise error
        wait = next_availability_check(rs, pods, now)
        if wait is not None:
            self.queue.add_after(key, wait + 0.05)

    async def manage_replicas(self, key: str, rs: Obj, pods: list[Obj]) -> set[str]:
        """Create or delete pods towards spec.replicas; returns the keys of the pods deleted."""
        want = int((rs.get("spec") or {}).get("replicas", 1))
        diff = len(pods) - want
        if diff < 0:
            await self._create(key, rs, min(-diff, BURST_REPLICAS))
        elif diff > 0:
            return await self._delete(key, rs, pods, min(diff, BURST_REPLICAS))
        return set()

    async def _create(self, key: str, rs: Obj, count: int) -> None:
        self.expectations.expect(key, creations=count)
        template = (rs.get("spec") or {}).get("template") or {}
        created, failure = await slow_start_batch(count, SLOW_START_INITIAL_BATCH,
                                                  lambda: self._create_pod(rs, template))
        if created < count:
            # The creates we skipped or that failed will never show up in the informer.
            self.expectations.creation_observed(key, count - created)
        logger.info("replicaset %s: created %d of %d pods", key, created, count)
        if is_namespace_terminating(failure):
            return  # its namespace is being deleted, this ReplicaSet with it: no error to retry
        if failure is not None:
            raise ManageError(str(failure), "FailedCreate")

    async def _create_pod(self, rs: Obj, template: Obj) -> None:
        pod = pod_from_template(template, rs)
        try:
            created = await self.client.create("pods", pod, rs["metadata"]["namespace"])
        except APIError as e:
            self.recorder.event(rs, "Warning", "FailedCreate", f"Error creating: {e}")
            raise
        self.recorder.event(rs, "Normal", "SuccessfulCreate", f'Created pod: {created["metadata"]["name"]}')

    async def _delete(self, key: str, rs: Obj, pods: list[Obj], count: int) -> set[str]:
        related = self._related_pods(rs, pods)
        victims = deletion_order(pods, related)[:count]
        self.expectations.expect(key, deletions=[object_key(p) for p in victims])
        results = await asyncio.gather(*(self._delete_pod(key, rs, p) for p in victims), return_exceptions=True)
        deleted = {object_key(p) for p, r in zip(victims, results) if not isinstance(r, BaseException)}
        logger.info("replicaset %s: deleted %d of %d pods", key, len(deleted), len(victims))
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, Exception):
                raise r
        failures = [r for r in results if isinstance(r, Exception)]
        if failures:
            raise ManageError(str(failures[0]), "FailedDelete", deleted)
        return deleted

    async def _delete_pod(self, key: str, rs: Obj, pod: Obj) -> None:
        meta = pod["metadata"]
        try:
            await self.client.delete("pods", meta["name"], meta["namespace"], preconditions={"uid": meta["uid"]})
        except APIError as e:
            self.expectations.deletion_observed(key, object_key(pod))
            if is_not_found(e) or is_conflict(e):
                return  # gone already, or replaced by another pod of that name we must not touch
            self.recorder.event(rs, "Warning", "FailedDelete", f"Error deleting: {e}")
            raise
        except Exception:
            self.expectations.deletion_observed(key, object_key(pod))
            raise
        self.recorder.event(rs, "Normal", "SuccessfulDelete", f'Deleted pod: {meta["name"]}')

    def _related_pods(self, rs: Obj, pods: list[Obj]) -> list[Obj]:
        """Pods of this ReplicaSet and of its siblings (same controller), to spot crowded nodes."""
        ref = controller_ref(rs)
        if ref is None:
            return pods
        related: list[Obj] = []
        for sibling in self.replicasets.store.by_index(BY_CONTROLLER, ref["uid"]):
            related += [p for p in self.pods.store.by_index(BY_CONTROLLER, sibling["metadata"]["uid"])
                        if is_pod_active(p)]
        return related

    async def _write_status(self, rs: Obj, status: Obj) -> None:
        """PUT /status guarded by the cached resourceVersion; after a conflict, once more on a fresh copy."""
        target = copy.deepcopy(rs)
        for attempt in (1, 2):
            target["status"] = status
            try:
                await self.client.update_status("replicasets", target)
                return
            except APIError as e:
                if is_not_found(e):
                    return
                if not is_conflict(e) or attempt == 2:
                    raise
            ns, name = split_key(object_key(rs))
            target = await self.client.get("replicasets", name, ns)
            if target["metadata"].get("uid") != rs["metadata"].get("uid"):
                return


async def slow_start_batch(count: int, initial: int, fn) -> tuple[int, Exception | None]:
    """Call `fn` `count` times in batches of initial, 2×initial, ... (each batch concurrently), stopping
    after the first batch in which a call failed. Returns (successes, first error)."""
    done = 0
    batch = min(count, initial)
    while batch > 0:
        results = await asyncio.gather(*(fn() for _ in range(batch)), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        done += batch - len(failures)
        for r in failures:
            if not isinstance(r, Exception):
                raise r
        if failures:
            return done, failures[0]
        remaining = count - done
        batch = min(2 * batch, remaining)
    return done, None
