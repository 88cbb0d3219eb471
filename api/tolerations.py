"""Tolerations against taints, shared by the scheduler, the DaemonSet controller and node lifecycle.

Kubernetes' Toleration.ToleratesTaint: an effect, when set, must equal the taint's (empty means every
effect); a key, when set, must equal the taint's (empty means every key); operator Exists then
tolerates any value, Equal (the default) only the taint's value, and any other operator nothing.
Validation admits an empty key only with Exists, so an empty toleration `{"operator": "Exists"}`
tolerates every taint.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

Obj = dict[str, Any]


def tolerates(toleration: Obj, taint: Obj) -> bool:
    effect = toleration.get("effect")
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key")
    if key and key != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    return operator == "Equal" and (toleration.get("value") or "") == (taint.get("value") or "")


def tolerating(tolerations: Iterable[Obj], taint: Obj) -> Obj | None:
    """The first toleration that tolerates the taint (its tolerationSeconds may matter), or None."""
    return next((t for t in tolerations if tolerates(t, taint)), None)


def tolerated(tolerations: Iterable[Obj], taint: Obj) -> bool:
    """Kubernetes' TolerationsTolerateTaint."""
    return tolerating(tolerations, taint) is not None
