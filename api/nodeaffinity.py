"""Node selector terms (required node affinity), shared by the scheduler and the DaemonSet controller.

A term matches when all its matchExpressions hold against the node's labels and all its matchFields
against its fields (only `metadata.name` exists); an empty term matches nothing. Operators as
Kubernetes has them: In, NotIn, Exists, DoesNotExist, Gt, Lt (integers).
"""
from __future__ import annotations

from typing import Any

Obj = dict[str, Any]


def requirement_matches(expr: Obj, value: str | None) -> bool:
    """One NodeSelectorRequirement against a label (or field) value; None when the node lacks it."""
    op, values = expr.get("operator"), expr.get("values") or []
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt") and value is not None and len(values) == 1:
        try:
            have, want = int(value), int(values[0])
        except ValueError:
            return False
        return have > want if op == "Gt" else have < want
    return False


def term_matches(term: Obj, labels: dict[str, str], name: str) -> bool:
    expressions, fields = term.get("matchExpressions") or [], term.get("matchFields") or []
    if not expressions and not fields:
        return False
    return all(requirement_matches(e, labels.get(e.get("key"))) for e in expressions) and \
        all(requirement_matches(f, name if f.get("key") == "metadata.name" else None) for f in fields)
