"""What workload controllers share: controller references, claiming pods, pod readiness, expectations.

- Controller references (`ownerReferences` with `controller: true`) say which object manages which;
  `claim(...)` is Kubernetes' adoption rule: an owner adopts matching orphans (by patching in its ref)
  and releases pods it controls that no longer match its selector; pods controlled by someone else are
  never touched.
- `pod_from_template` builds the pod a controller creates: template labels/annotations/spec, the
  controller reference, finalizers none, `generateName` from the owner.
- `Expectations` remembers creates/deletes a controller issued but has not yet seen in its informer, so a
  reconcile that runs before the watch catches up does not create (or delete) the same pods again.
  Deletions are tracked per pod key: handlers report every sighting of a pod going away (added or
  updated with a deletionTimestamp, deleted) and each pod counts once.
- Readiness: `is_pod_ready`, `is_pod_available(pod, min_ready_seconds, now)`, `is_pod_active`.
- `OwnedPodHandlers` are the pod informer handlers of a controller that owns pods by controller reference
  (DaemonSet, Job): each event reaches the owner's expectations and queues the owner's key.
"""
from __future__ import annotations

import copy
import datetime
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from api.errors import APIError
from api.selectors import LabelSelector, selector_from_dict
from client.resources import object_key
from client.rest import AsyncClient

Obj = dict[str, Any]


# -- time --------------------------------------------------------------------------------------------

def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_diff(old: Obj, new: Obj) -> Obj:
    """The JSON merge patch that turns `old` into `new` (nested objects diffed, removed keys null)."""
    patch: Obj = {}
    for k in set(old) | set(new):
        if k not in new:
            patch[k] = None
        elif isinstance(new[k], dict) and isinstance(old.get(k), dict):
            sub = merge_diff(old[k], new[k])
            if sub:
                patch[k] = sub
        elif old.get(k) != new[k] or k not in old:
            patch[k] = new[k]
    return patch


def parse_time(value: str | None) -> float | None:
    """RFC 3339 (with or without fractional seconds) to a Unix timestamp."""
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


# -- owner references --------------------------------------------------------------------------------

def controller_ref(obj: Obj) -> Obj | None:
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def is_controlled_by(obj: Obj, owner: Obj) -> bool:
    ref = controller_ref(obj)
    return ref is not None and ref.get("uid") == owner["metadata"].get("uid")


def new_controller_ref(owner: Obj) -> Obj:
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


# -- pods --------------------------------------------------------------------------------------------

def get_condition(obj: Obj, ctype: str) -> Obj | None:
    """The status condition of type `ctype` of any object (pods, jobs, deployments, ...)."""
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None


pod_condition = get_condition


def is_pod_ready(pod: Obj) -> bool:
    c = pod_condition(pod, "Ready")
    return c is not None and c.get("status") == "True"


def is_pod_available(pod: Obj, min_ready_seconds: int, now: float | None = None) -> bool:
    """Ready for at least `min_ready_seconds` (Kubernetes' podutil.IsPodAvailable)."""
    c = pod_condition(pod, "Ready")
    if c is None or c.get("status") != "True":
        return False
    if not min_ready_seconds:
        return True
    since = parse_time(c.get("lastTransitionTime"))
    return since is not None and since + min_ready_seconds <= (now if now is not None else time.time())


def is_pod_active(pod: Obj) -> bool:
    """Not terminal and not being deleted (controller.FilterActivePods)."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not pod["metadata"].get("deletionTimestamp")


def pod_from_template(template: Obj, owner: Obj, *, name: str | None = None, namespace: str | None = None,
                      extra_labels: dict[str, str] | None = None) -> Obj:
    """The pod a controller creates from its template: named `name` or generated from the owner's name."""
    template = copy.deepcopy(template or {})
    tmeta = template.get("metadata") or {}
    meta: Obj = {"labels": {**(tmeta.get("labels") or {}), **(extra_labels or {})},
                 "annotations": dict(tmeta.get("annotations") or {}),
                 "ownerReferences": [new_controller_ref(owner)],
                 "namespace": namespace or owner["metadata"].get("namespace")}
    if tmeta.get("finalizers"):
        meta["finalizers"] = list(tmeta["finalizers"])
    if name:
        meta["name"] = name
    else:
        meta["generateName"] = f'{owner["metadata"]["name"]}-'
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template.get("spec") or {}}


# -- claiming ----------------------------------------------------------------------------------------

async def claim(client: AsyncClient, owner: Obj, selector: LabelSelector, candidates: Iterable[Obj],
                resource: str = "pods") -> list[Obj]:
    """The objects `owner` controls after adopting matching orphans and releasing non-matching ones.

    An owner being deleted adopts nothing. Adoption and release are patches guarded by the object's uid,
    so a concurrent change of hands fails instead of being overwritten."""
    owned: list[Obj] = []
    deleting = bool(owner["metadata"].get("deletionTimestamp"))
    for obj in candidates:
        meta = obj["metadata"]
        ref = controller_ref(obj)
        matches = selector.matches(meta.get("labels"))
        if ref is not None:
            if ref.get("uid") != owner["metadata"]["uid"]:
                continue
            if matches or deleting:
                owned.append(obj)
                continue
            if await _release(client, owner, obj, resource):
                continue
            owned.append(obj)
        elif matches and not deleting and not meta.get("deletionTimestamp"):
            adopted = await _adopt(client, owner, obj, resource)
            if adopted is not None:
                owned.append(adopted)
    return owned


async def _adopt(client: AsyncClient, owner: Obj, obj: Obj, resource: str) -> Obj | None:
    meta = obj["metadata"]
    refs = list(meta.get("ownerReferences") or []) + [new_controller_ref(owner)]
    patch = {"metadata": {"ownerReferences": refs, "uid": meta["uid"], "resourceVersion": meta["resourceVersion"]}}
    try:
        return await client.patch(resource, meta["name"], patch, meta.get("namespace"), patch_type="merge")
    except APIError as e:
        if e.code in (404, 409, 422):
            return None
        raise


async def _release(client: AsyncClient, owner: Obj, obj: Obj, resource: str) -> bool:
    meta = obj["metadata"]
    refs = [r for r in meta.get("ownerReferences") or [] if r.get("uid") != owner["metadata"]["uid"]]
    patch = {"metadata": {"ownerReferences": refs or None, "uid": meta["uid"],
                          "resourceVersion": meta["resourceVersion"]}}
    try:
        await client.patch(resource, meta["name"], patch, meta.get("namespace"), patch_type="merge")
        return True
    except APIError as e:
        if e.code in (404, 409, 422):
            return e.code == 404
        raise


def owner_selector(owner: Obj) -> LabelSelector:
    return selector_from_dict((owner.get("spec") or {}).get("selector"))


# -- expectations ------------------------------------------------------------------------------------

EXPECTATIONS_TTL = 300.0


@dataclass
class _Expected:
    creations: int
    deletions: set[str]
    since: float


class Expectations:
    """Creates and deletes a controller issued and has not yet seen in its informer, per controller key
    (Kubernetes' UIDTrackingControllerExpectations).

    Creations are a count (generated names are unknown in advance); deletions a set of pod keys, so a
    graceful delete, observed twice (deletionTimestamp set, then the object removed), counts once and
    pods someone else deletes count not at all. A controller acts only on `satisfied` keys: every
    expected event observed, or the expectation older than `ttl` (a create that failed server-side
    never shows up, and the controller must not wedge). Expecting more while something is still
    outstanding adds to it; a fulfilled or expired expectation is replaced."""

    def __init__(self, ttl: float = EXPECTATIONS_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._pending: dict[str, _Expected] = {}

    def expect(self, key: str, *, creations: int = 0, deletions: Iterable[str] = ()) -> None:
        pending = _Expected(0, set(), 0.0) if self.satisfied(key) else self._pending[key]
        self._pending[key] = _Expected(max(pending.creations, 0) + creations, pending.deletions | set(deletions),
                                       self.clock())

    def creation_observed(self, key: str, count: int = 1) -> None:
        if key in self._pending:
            self._pending[key].creations -= count

    def deletion_observed(self, key: str, pod_key: str) -> None:
        if key in self._pending:
            self._pending[key].deletions.discard(pod_key)

    def satisfied(self, key: str) -> bool:
        pending = self._pending.get(key)
        if pending is None:
            return True
        if (pending.creations <= 0 and not pending.deletions) or self.clock() - pending.since > self.ttl:
            del self._pending[key]
            return True
        return False

    def forget(self, key: str) -> None:
        self._pending.pop(key, None)


# -- pod events of owners ------------------------------------------------------------------------------


def owner_key(pod: Obj, kind: str) -> str | None:
    """The key of the `kind` object that controls `pod`, or None."""
    ref = controller_ref(pod)
    if ref is None or ref.get("kind") != kind:
        return None
    return f'{pod["metadata"].get("namespace")}/{ref.get("name")}'


class OwnedPodHandlers:
    """Pod informer handlers for a controller whose pods name it as their controller (DaemonSet, Job).

    Every event of an owned pod is told to the owner's expectations and queues the owner's key: a pod
    added is a creation observed, unless it is already terminating (first seen on its way out, after a
    relist, it is not one of our creations); a terminating or deleted pod is a deletion observed. A pod
    whose owner changed also wakes the old owner, and an orphan wakes every owner in its namespace whose
    selector matches it, since one of them may adopt it. `observe(key, pod, deleted)` sees every event
    of an owned pod, for books a controller keeps besides the expectations."""

    def __init__(self, kind: str, owners: Callable[[], Iterable[Obj]], queue_add: Callable[[str], None],
                 expectations: Expectations, *, observe: Callable[[str, Obj, bool], None] | None = None) -> None:
        self.kind = kind
        self.owners = owners
        self.queue_add = queue_add
        self.expectations = expectations
        self.observe = observe or (lambda key, pod, deleted: None)

    def handlers(self) -> dict:
        return {"on_add": self.added, "on_update": self.updated, "on_delete": self.deleted}

    def _enqueue_matching(self, pod: Obj) -> None:
        labels = pod["metadata"].get("labels") or {}
        for owner in self.owners():
            if owner["metadata"].get("namespace") == pod["metadata"].get("namespace") \
                    and owner_selector(owner).matches(labels):
                self.queue_add(object_key(owner))

    def added(self, pod: Obj) -> None:
        key = owner_key(pod, self.kind)
        if key is None:
            if controller_ref(pod) is None:
                self._enqueue_matching(pod)
            return
        if pod["metadata"].get("deletionTimestamp"):
            self.expectations.deletion_observed(key, object_key(pod))
        else:
            self.expectations.creation_observed(key)
        self.observe(key, pod, False)
        self.queue_add(key)

    def updated(self, old: Obj, new: Obj) -> None:
        key = owner_key(new, self.kind)
        old_key = owner_key(old, self.kind)
        if old_key and old_key != key:
            self.queue_add(old_key)
        if key is None:
            if controller_ref(new) is None:
                self._enqueue_matching(new)
            return
        if new["metadata"].get("deletionTimestamp"):
            self.expectations.deletion_observed(key, object_key(new))
        self.observe(key, new, False)
        self.queue_add(key)

    def deleted(self, pod: Obj) -> None:
        key = owner_key(pod, self.kind)
        if key is None:
            return
        self.expectations.deletion_observed(key, object_key(pod))
        self.observe(key, pod, True)
        self.queue_add(key)
