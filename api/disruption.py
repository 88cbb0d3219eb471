"""PodDisruptionBudget rules shared by the eviction API (apiserver) and the disruption controller.

A budget protects the pods its selector picks in its namespace. In policy/v1 a missing selector picks no
pod and an empty one (`{}`) picks every pod of the namespace. Its status says how many of them may be
disrupted right now (`disruptionsAllowed` = currentHealthy - desiredHealthy, never below zero); the
eviction API spends one disruption per evicted pod and remembers the pod in `disruptedPods` until the
controller sees it go (or two minutes pass), so two evictions racing the controller cannot both spend
the same disruption.
"""
from __future__ import annotations

from typing import Any

from api.selectors import selector_from_dict

Obj = dict[str, Any]

IF_HEALTHY_BUDGET = "IfHealthyBudget"
ALWAYS_ALLOW = "AlwaysAllow"
DISRUPTION_ALLOWED = "DisruptionAllowed"


def selects(pdb: Obj, pod: Obj) -> bool:
    meta = pod.get("metadata") or {}
    if meta.get("namespace") != pdb["metadata"].get("namespace"):
        return False
    selector = (pdb.get("spec") or {}).get("selector")
    if selector is None:
        return False
    return selector_from_dict(selector).matches(meta.get("labels") or {})


def is_pod_ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def unhealthy_pod_eviction_policy(pdb: Obj) -> str:
    return (pdb.get("spec") or {}).get("unhealthyPodEvictionPolicy") or IF_HEALTHY_BUDGET


def disruption_allowed_condition(allowed: int, *, reason: str | None = None, message: str = "",
                                 old: Obj | None = None, now: str) -> Obj:
    """The `DisruptionAllowed` condition; its lastTransitionTime moves only when its status does."""
    status = "True" if allowed > 0 and reason is None else "False"
    reason = reason or ("SufficientPods" if status == "True" else "InsufficientPods")
    since = old.get("lastTransitionTime") if old and old.get("status") == status else now
    return {"type": DISRUPTION_ALLOWED, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": since}


def set_condition(status: Obj, condition: Obj) -> None:
    others = [c for c in status.get("conditions") or [] if c.get("type") != condition["type"]]
    status["conditions"] = others + [condition]


def find_condition(status: Obj, kind: str) -> Obj | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), None)
