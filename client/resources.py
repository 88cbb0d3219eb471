"""Naming resources the way kubectl does, and turning them into API paths.

Callers name a kind by its `ResourceDef` or by a string: `"pods"`, `"po"`, `"pod"`, `"deployments.apps"`,
`"leases.coordination.k8s.io"` (plural, short name or singular, optionally qualified by group).
An unqualified name prefers the core group, then the first group that serves it, as kubectl does.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

from api import registry
from api.registry import ResourceDef

ResourceLike = ResourceDef | str


def _names(rd: ResourceDef) -> set[str]:
    return {rd.plural, rd.singular, *rd.short_names}


def resolve(res: ResourceLike) -> ResourceDef:
    if isinstance(res, ResourceDef):
        return res
    name, _, group = res.lower().partition(".")
    matches = [rd for rd in registry.RESOURCES if name in _names(rd) and (not group or rd.group == group)]
    if not matches:
        raise LookupError(f"the server doesn't have a resource type {res!r}")
    core = [rd for rd in matches if rd.group == ""]
    return core[0] if core else matches[0]


def resource_for(obj: dict[str, Any]) -> ResourceDef:
    rd = registry.by_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
    if rd is None:
        raise LookupError(f"no resource for apiVersion={obj.get('apiVersion')!r} kind={obj.get('kind')!r}")
    return rd


def path(rd: ResourceDef, namespace: str | None = None, name: str | None = None, sub: str | None = None) -> str:
    """`/api/v1/namespaces/ns/pods/name/sub`; a namespaced kind without namespace means all namespaces."""
    parts = ["/api/v1" if not rd.group else f"/apis/{rd.group}/{rd.version}"]
    if rd.namespaced and namespace:
        parts.append(f"namespaces/{quote(namespace, safe='')}")
    parts.append(rd.plural)
    if name:
        parts.append(quote(name, safe=""))
    if sub:
        parts.append(sub)
    return "/".join(parts)


def object_key(obj: dict[str, Any]) -> str:
    """The cache key Kubernetes uses: `namespace/name`, or `name` for cluster-scoped objects."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name')}" if ns else str(meta.get("name"))


def split_key(key: str) -> tuple[str | None, str]:
    ns, sep, name = key.partition("/")
    return (ns, name) if sep else (None, key)
