"""The arithmetic of Deployments, as pure functions on plain dicts (Kubernetes' deployment/util).

- Identity: a ReplicaSet belongs to a template through `pod-template-hash`, a short stable hash of the
  pod template (FNV-1a over its canonical JSON, plus the collision count, encoded like Kubernetes'
  SafeEncodeString). The *new* ReplicaSet is the oldest one whose template equals the Deployment's once
  that label is ignored, so rolling back to an older template finds and reuses its old ReplicaSet.
- Revisions: `deployment.kubernetes.io/revision` on each ReplicaSet; the new one gets max(old)+1, which
  renumbers a reused old ReplicaSet (its former numbers go to `revision-history`).
- Fenceposts: maxSurge rounds percentages up, maxUnavailable rounds them down; if both come out 0,
  maxUnavailable is 1.
- Rolling steps (`new_rs_target`, `old_rs_scale_down`), proportional scaling of a Deployment resized
  mid-rollout (`proportional_sizes`), the status and the Progressing/Available conditions.
"""
from __future__ import annotations

import copy
import datetime
import logging
from typing import Any, Iterable

import orjson

from controllers.common import parse_time

logger = logging.getLogger(__name__)

Obj = dict[str, Any]

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
# Deployment annotations that describe the Deployment itself and are not copied to its ReplicaSets.
NOT_COPIED = {"kubectl.kubernetes.io/last-applied-configuration", REVISION, REVISION_HISTORY, DESIRED_REPLICAS,
              MAX_REPLICAS, "deprecated.deployment.rollback.to"}

# Condition types and reasons, as Kubernetes spells them.
AVAILABLE, PROGRESSING, REPLICA_FAILURE = "Available", "Progressing", "ReplicaFailure"
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
RS_UPDATED = "ReplicaSetUpdated"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
FAILED_RS_CREATE = "ReplicaSetCreateError"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"

MAX_INT32 = 2**31 - 1


# -- hashing -----------------------------------------------------------------------------------------

_SAFE_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"


def _fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def compute_hash(template: Obj, collision_count: int | None = None) -> str:
    """A short, stable name for a pod template: equal templates (same JSON, any key order) hash alike."""
    data = orjson.dumps(template, option=orjson.OPT_SORT_KEYS)
    if collision_count is not None:
        data += (collision_count & 0xFFFFFFFF).to_bytes(4, "little") + bytes(4)
    return "".join(_SAFE_ALPHANUMS[int(d) % len(_SAFE_ALPHANUMS)] for d in str(_fnv32a(data)))


def without_hash(template: Obj | None) -> Obj:
    t = copy.deepcopy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if labels and HASH_LABEL in labels:
        del labels[HASH_LABEL]
    return t


def equal_ignore_hash(a: Obj | None, b: Obj | None) -> bool:
    return without_hash(a) == without_hash(b)


# -- small accessors ---------------------------------------------------------------------------------

def replicas(obj: Obj | None) -> int:
    return int(((obj or {}).get("spec") or {}).get("replicas", 1) or 0) if obj is not None else 0


def status_of(obj: Obj | None, field: str) -> int:
    return int(((obj or {}).get("status") or {}).get(field) or 0)


def revision(rs: Obj) -> int:
    try:
        return int(((rs.get("metadata") or {}).get("annotations") or {}).get(REVISION) or 0)
    except ValueError:
        return 0


def max_revision(rss: Iterable[Obj]) -> int:
    return max((revision(rs) for rs in rss), default=0)


def creation_key(rs: Obj) -> tuple[float, str]:
    """Oldest first; ties broken by name (ReplicaSetsByCreationTimestamp)."""
    return parse_time(rs["metadata"].get("creationTimestamp")) or 0.0, rs["metadata"].get("name", "")


def active(rss: Iterable[Obj | None]) -> list[Obj]:
    return [rs for rs in rss if rs is not None and replicas(rs) > 0]


def sum_replicas(rss: Iterable[Obj | None]) -> int:
    return sum(replicas(rs) for rs in rss if rs is not None)


def sum_status(rss: Iterable[Obj | None], field: str) -> int:
    return sum(status_of(rs, field) for rs in rss if rs is not None)


# -- strategy ----------------------------------------------------------------------------------------

def is_rolling(d: Obj) -> bool:
    return ((d.get("spec") or {}).get("strategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"


def scaled_value(value: int | str | None, total: int, round_up: bool) -> int:
    """An IntOrString against `total`: "25%" of 10 is 3 rounding up, 2 rounding down."""
    if value is None:
        value = "25%"
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not text.endswith("%"):
        return int(text)
    pct = int(text[:-1])
    return -(-pct * total // 100) if round_up else pct * total // 100


def resolve_fenceposts(max_surge: int | str | None, max_unavailable: int | str | None,
                       desired: int) -> tuple[int, int]:
    surge = scaled_value(max_surge, desired, True)
    unavailable = scaled_value(max_unavailable, desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def _fenceposts(d: Obj) -> tuple[int, int]:
    rolling = ((d.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}
    return resolve_fenceposts(rolling.get("maxSurge"), rolling.get("maxUnavailable"), replicas(d))


def max_surge(d: Obj) -> int:
    return _fenceposts(d)[0] if is_rolling(d) else 0


def max_unavailable(d: Obj) -> int:
    if not is_rolling(d) or replicas(d) == 0:
        return 0
    return min(_fenceposts(d)[1], replicas(d))


def has_progress_deadline(d: Obj) -> bool:
    deadline = (d.get("spec") or {}).get("progressDeadlineSeconds")
    return deadline is not None and deadline != MAX_INT32


# -- new and old ReplicaSets -------------------------------------------------------------------------

def find_new_rs(d: Obj, rss: list[Obj]) -> Obj | None:
    """The oldest ReplicaSet whose template is the Deployment's (there may be several after a collision)."""
    template = (d.get("spec") or {}).get("template")
    for rs in sorted(rss, key=creation_key):
        if equal_ignore_hash((rs.get("spec") or {}).get("template"), template):
            return rs
    return None


def find_old_rss(d: Obj, rss: list[Obj], new_rs: Obj | None) -> list[Obj]:
    uid = new_rs["metadata"]["uid"] if new_rs is not None else None
    return [rs for rs in rss if rs["metadata"].get("uid") != uid]


def set_replicas_annotations(rs: Obj, desired: int, maximum: int) -> bool:
    ann = rs["metadata"].setdefault("annotations", {})
    changed = ann.get(DESIRED_REPLICAS) != str(desired) or ann.get(MAX_REPLICAS) != str(maximum)
    ann[DESIRED_REPLICAS], ann[MAX_REPLICAS] = str(desired), str(maximum)
    return changed


def replicas_annotations_need_update(rs: Obj, desired: int, maximum: int) -> bool:
    ann = (rs.get("metadata") or {}).get("annotations") or {}
    return ann.get(DESIRED_REPLICAS) != str(desired) or ann.get(MAX_REPLICAS) != str(maximum)


def set_new_rs_annotations(d: Obj, rs: Obj, new_revision: int, exists: bool) -> bool:
    """Copy the Deployment's own annotations, raise the revision to `new_revision` (keeping the former
    numbers in revision-history), and on a ReplicaSet about to be created set the replica annotations.
    Mutates `rs`; returns whether anything changed."""
    ann = rs["metadata"].setdefault("annotations", {})
    changed = False
    for k, v in ((d.get("metadata") or {}).get("annotations") or {}).items():
        if k not in NOT_COPIED and ann.get(k) != v:
            ann[k] = v
            changed = True
    old = revision(rs)
    if old < new_revision:
        ann[REVISION] = str(new_revision)
        changed = True
        if old:
            history = [h for h in (ann.get(REVISION_HISTORY) or "").split(",") if h]
            ann[REVISION_HISTORY] = ",".join(history + [str(old)])
    if not exists and set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)):
        changed = True
    return changed


def new_rs_object(d: Obj, collision_count: int | None) -> Obj:
    """The ReplicaSet for the Deployment's current template (replicas still to be decided)."""
    template = copy.deepcopy((d.get("spec") or {}).get("template") or {})
    pod_hash = compute_hash(template, collision_count)
    tmeta = template.setdefault("metadata", {})
    tmeta["labels"] = {**(tmeta.get("labels") or {}), HASH_LABEL: pod_hash}
    selector = copy.deepcopy((d.get("spec") or {}).get("selector") or {})
    selector["matchLabels"] = {**(selector.get("matchLabels") or {}), HASH_LABEL: pod_hash}
    meta = d["metadata"]
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f'{meta["name"]}-{pod_hash}', "namespace": meta.get("namespace"),
                         "labels": dict(tmeta["labels"]), "annotations": {},
                         "ownerReferences": [{"apiVersion": d.get("apiVersion", "apps/v1"),
                                              "kind": d.get("kind", "Deployment"), "name": meta["name"],
                                              "uid": meta["uid"], "controller": True,
                                              "blockOwnerDeletion": True}]},
            "spec": {"replicas": 0, "minReadySeconds": (d.get("spec") or {}).get("minReadySeconds", 0),
                     "selector": selector, "template": template}}


# -- rolling update steps ----------------------------------------------------------------------------

def pods_counted(rs: Obj) -> int:
    """Pods a ReplicaSet has or is about to have. Kubernetes counts spec.replicas only; a ReplicaSet just
    scaled down still has its surplus pods until its controller deletes them and says so in status, and
    counting those keeps a rollout within maxSurge even in that short window."""
    return max(replicas(rs), status_of(rs, "replicas"))


def available_counted(rs: Obj | None) -> int:
    """Available pods a ReplicaSet will surely keep. Kubernetes reads status.availableReplicas as is; but
    right after a scale-down that status still counts the surplus pods its controller is about to delete,
    and a second reconcile in that window would scale down again against availability that is going away
    (seen: 3 -> 2 -> 0 within 8 ms, ready pods below replicas - maxUnavailable). So the surplus is assumed
    to be taken from the available pods."""
    if rs is None:
        return 0
    surplus = max(0, status_of(rs, "replicas") - replicas(rs))
    return max(0, status_of(rs, "availableReplicas") - surplus)


def new_rs_new_replicas(d: Obj, all_rss: list[Obj], new_rs: Obj) -> int:
    """How big the new ReplicaSet may be now (NewRSNewReplicas)."""
    if not is_rolling(d):
        return replicas(d)
    current = sum(pods_counted(rs) for rs in all_rss if rs is not None)
    max_total = replicas(d) + max_surge(d)
    if current >= max_total:
        return replicas(new_rs)
    return replicas(new_rs) + min(max_total - current, replicas(d) - replicas(new_rs))


def new_rs_target(d: Obj, all_rss: list[Obj], new_rs: Obj) -> int:
    """The rolling update's next size for the new ReplicaSet (reconcileNewReplicaSet)."""
    if replicas(new_rs) >= replicas(d):
        return replicas(d)
    return new_rs_new_replicas(d, all_rss, new_rs)


def old_rs_scale_down(d: Obj, all_rss: list[Obj], old_rss: list[Obj], new_rs: Obj | None) -> list[tuple[Obj, int]]:
    """Which old ReplicaSets to shrink to what, oldest first (reconcileOldReplicaSets).

    Never below the minimum available (replicas - maxUnavailable) counting the new ReplicaSet's pods
    that are not available yet as missing; unhealthy old pods go first (they cost no availability),
    then available ones down to the minimum."""
    old_active = active(old_rss)
    if sum_replicas(old_active) == 0:
        return []
    min_available = replicas(d) - max_unavailable(d)
    new_unavailable = replicas(new_rs) - available_counted(new_rs) if new_rs is not None else 0
    budget = sum_replicas(all_rss) - min_available - new_unavailable
    if budget <= 0:
        return []
    ordered = sorted(old_active, key=creation_key)
    sizes = {rs["metadata"]["uid"]: replicas(rs) for rs in ordered}
    cleaned = 0
    for rs in ordered:
        if cleaned >= budget:
            break
        uid, have = rs["metadata"]["uid"], replicas(rs)
        unhealthy = have - available_counted(rs)
        if have == 0 or unhealthy <= 0:
            continue
        n = min(budget - cleaned, unhealthy)
        sizes[uid] = have - n
        cleaned += n
    available = sum(available_counted(rs) for rs in all_rss)
    if available > min_available:
        wanted, done = available - min_available, 0
        for rs in ordered:
            if done >= wanted:
                break
            uid = rs["metadata"]["uid"]
            if sizes[uid] == 0:
                continue
            n = min(sizes[uid], wanted - done)
            sizes[uid] -= n
            done += n
    return [(rs, sizes[rs["metadata"]["uid"]]) for rs in ordered if sizes[rs["metadata"]["uid"]] != replicas(rs)]


# -- proportional scaling ----------------------------------------------------------------------------

def is_saturated(d: Obj, rs: Obj | None) -> bool:
    if rs is None:
        return False
    try:
        desired = int(((rs["metadata"].get("annotations") or {}).get(DESIRED_REPLICAS)) or "")
    except ValueError:
        return False
    return replicas(rs) == replicas(d) and desired == replicas(d) and \
        status_of(rs, "availableReplicas") == replicas(d)


def find_active_or_latest(new_rs: Obj | None, old_rss: list[Obj]) -> Obj | None:
    """The one ReplicaSet with replicas if there is exactly one; the newest if none has any."""
    if new_rs is None and not old_rss:
        return None
    newest_first = sorted(old_rss, key=creation_key, reverse=True)
    live = active(newest_first + [new_rs])
    if not live:
        return new_rs if new_rs is not None else newest_first[0]
    return live[0] if len(live) == 1 else None


def _fraction(rs: Obj, d: Obj) -> int:
    if replicas(d) == 0:
        return -replicas(rs)
    allowed = replicas(d) + max_surge(d)
    try:
        annotated = int(((rs["metadata"].get("annotations") or {}).get(MAX_REPLICAS)) or "")
    except ValueError:
        annotated = status_of(d, "replicas")
    if annotated == 0:
        return 0
    exact = replicas(rs) * allowed / annotated
    rounded = int(exact + 0.5) if exact >= 0 else -int(-exact + 0.5)
    return rounded - replicas(rs)


def proportional_sizes(d: Obj, new_rs: Obj | None, old_rss: list[Obj]) -> tuple[list[tuple[Obj, int]], str]:
    """A rolling Deployment resized mid-rollout: spread the difference over its active ReplicaSets in
    proportion to their sizes (largest first; newer first when growing, older first when shrinking;
    leftovers to the first). Returns [(rs, new size)] for every active ReplicaSet and "up"/"down"/""."""
    live = active(old_rss + [new_rs])
    allowed = replicas(d) + max_surge(d) if replicas(d) > 0 else 0
    to_add = allowed - sum_replicas(live)
    if to_add > 0:
        live.sort(key=lambda rs: (-replicas(rs), -creation_key(rs)[0]))
        op = "up"
    elif to_add < 0:
        live.sort(key=lambda rs: (-replicas(rs), creation_key(rs)))
        op = "down"
    else:
        op = ""
    sizes: list[int] = []
    added = 0
    for rs in live:
        if to_add == 0:
            sizes.append(replicas(rs))
            continue
        if replicas(rs) == 0 or to_add == added:
            proportion = 0
        else:
            fraction, room = _fraction(rs, d), to_add - added
            proportion = min(fraction, room) if to_add > 0 else max(fraction, room)
        sizes.append(replicas(rs) + proportion)
        added += proportion
    if live and to_add != 0:
        sizes[0] = max(0, sizes[0] + to_add - added)
    return list(zip(live, sizes)), op


# -- conditions and status -----------------------------------------------------------------------------

def rfc3339(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_condition(ctype: str, status: str, reason: str, message: str, now: float) -> Obj:
    t = rfc3339(now)
    return {"type": ctype, "status": status, "lastUpdateTime": t, "lastTransitionTime": t, "reason": reason,
            "message": message}


def get_condition(status: Obj | None, ctype: str) -> Obj | None:
    return next((c for c in (status or {}).get("conditions") or [] if c.get("type") == ctype), None)


def set_condition(status: Obj, cond: Obj) -> None:
    """Add or replace; a condition with the same status and reason is left as it is, and a change of
    reason alone keeps the transition time."""
    current = get_condition(status, cond["type"])
    if current is not None and current.get("status") == cond["status"] and current.get("reason") == cond["reason"]:
        return
    if current is not None and current.get("status") == cond["status"]:
        cond = {**cond, "lastTransitionTime": current.get("lastTransitionTime", cond["lastTransitionTime"])}
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != cond["type"]] + [cond]


def remove_condition(status: Obj, ctype: str) -> None:
    if status.get("conditions"):
        status["conditions"] = [c for c in status["conditions"] if c.get("type") != ctype]


def calculate_status(d: Obj, all_rss: list[Obj], new_rs: Obj | None, now: float) -> Obj:
    available = sum_status(all_rss, "availableReplicas")
    status: Obj = {
        "observedGeneration": d["metadata"].get("generation", 0),
        "replicas": sum_status(all_rss, "replicas"),
        "updatedReplicas": sum_status([new_rs], "replicas"),
        "readyReplicas": sum_status(all_rss, "readyReplicas"),
        "availableReplicas": available,
        "unavailableReplicas": max(0, sum_replicas(all_rss) - available),
        "conditions": copy.deepcopy((d.get("status") or {}).get("conditions") or []),
    }
    if (d.get("status") or {}).get("collisionCount") is not None:
        status["collisionCount"] = d["status"]["collisionCount"]
    if available >= replicas(d) - max_unavailable(d):
        set_condition(status, new_condition(AVAILABLE, "True", MIN_AVAILABLE, "Deployment has minimum availability.",
                                            now))
    else:
        set_condition(status, new_condition(AVAILABLE, "False", MIN_UNAVAILABLE,
                                            "Deployment does not have minimum availability.", now))
    return status


def deployment_complete(d: Obj, status: Obj) -> bool:
    n = replicas(d)
    return status.get("updatedReplicas") == n and status.get("replicas") == n and \
        status.get("availableReplicas") == n and status.get("observedGeneration", 0) >= d["metadata"].get("generation", 0)


def deployment_progressing(d: Obj, status: Obj) -> bool:
    old = d.get("status") or {}
    old_old = int(old.get("replicas") or 0) - int(old.get("updatedReplicas") or 0)
    new_old = status.get("replicas", 0) - status.get("updatedReplicas", 0)
    return status.get("updatedReplicas", 0) > int(old.get("updatedReplicas") or 0) or new_old < old_old or \
        status.get("readyReplicas", 0) > int(old.get("readyReplicas") or 0) or \
        status.get("availableReplicas", 0) > int(old.get("availableReplicas") or 0)


def deployment_timed_out(d: Obj, status: Obj, now: float) -> bool:
    if not has_progress_deadline(d):
        return False
    cond = get_condition(status, PROGRESSING)
    if cond is None or cond.get("reason") == NEW_RS_AVAILABLE:
        return False
    if cond.get("reason") == TIMED_OUT:
        return True
    since = parse_time(cond.get("lastUpdateTime"))
    return since is not None and since + int(d["spec"]["progressDeadlineSeconds"]) < now
