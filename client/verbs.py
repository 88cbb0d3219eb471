"""Each API verb as a plain `Request` value: method, path, query and body, no I/O.

The sync and async clients in rest.py send these the same way, so both speak exactly the same
wire format and this module is the one place that knows Kubernetes' query parameters, patch
content types and DeleteOptions.

Namespace rules (as kubectl): for a namespaced kind an explicit `namespace` wins, then the object's
`metadata.namespace`, then "default". `list`/`watch` with no namespace span all namespaces.
Cluster-scoped kinds ignore the namespace.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import orjson

from client import resources
from client.resources import ResourceLike

Obj = dict[str, Any]

PATCH_CONTENT_TYPES = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "apply": "application/apply-patch+yaml",
}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    content_type: str | None = None

    def headers(self) -> dict[str, str]:
        return {"Content-Type": self.content_type} if self.content_type else {}


def _json(method: str, path: str, body: Any, params: dict[str, str] | None = None,
          content_type: str = "application/json") -> Request:
    return Request(method, path, params or {}, orjson.dumps(body), content_type)


def _namespace(res: ResourceLike, namespace: str | None, obj: Obj | None = None) -> str | None:
    if not resources.resolve(res).namespaced:
        return None
    from_obj = ((obj or {}).get("metadata") or {}).get("namespace")
    return namespace or from_obj or "default"


def _name(obj: Obj) -> str:
    name = (obj.get("metadata") or {}).get("name")
    if not name:
        raise ValueError("object has no metadata.name")
    return name


def _selectors(label_selector: str | None, field_selector: str | None) -> dict[str, str]:
    params = {}
    if label_selector:
        params["labelSelector"] = label_selector
    if field_selector:
        params["fieldSelector"] = field_selector
    return params


def get(res: ResourceLike, name: str, namespace: str | None = None) -> Request:
    rd = resources.resolve(res)
    return Request("GET", resources.path(rd, _namespace(rd, namespace), name))


def get_subresource(res: ResourceLike, name: str, sub: str, namespace: str | None = None,
                    params: dict[str, str] | None = None) -> Request:
    rd = resources.resolve(res)
    return Request("GET", resources.path(rd, _namespace(rd, namespace), name, sub), params or {})


def list_(res: ResourceLike, namespace: str | None = None, *, label_selector: str | None = None,
          field_selector: str | None = None, limit: int | None = None, continue_: str | None = None,
          resource_version: str | None = None) -> Request:
    rd = resources.resolve(res)
    params = _selectors(label_selector, field_selector)
    if limit:
        params["limit"] = str(limit)
    if continue_:
        params["continue"] = continue_
    if resource_version is not None:
        params["resourceVersion"] = resource_version
    return Request("GET", resources.path(rd, namespace if rd.namespaced else None), params)


def watch(res: ResourceLike, namespace: str | None = None, *, resource_version: str | None = None,
          label_selector: str | None = None, field_selector: str | None = None,
          timeout_seconds: int | None = None, allow_bookmarks: bool = True) -> Request:
    rd = resources.resolve(res)
    params = {"watch": "1", **_selectors(label_selector, field_selector)}
    if resource_version is not None:
        params["resourceVersion"] = resource_version
    if allow_bookmarks:
        params["allowWatchBookmarks"] = "true"
    if timeout_seconds:
        params["timeoutSeconds"] = str(max(1, math.ceil(timeout_seconds)))
    return Request("GET", resources.path(rd, namespace if rd.namespaced else None), params)


def create(res: ResourceLike, obj: Obj, namespace: str | None = None) -> Request:
    rd = resources.resolve(res)
    return _json("POST", resources.path(rd, _namespace(rd, namespace, obj)), obj)


def create_subresource(res: ResourceLike, name: str, sub: str, body: Obj, namespace: str | None = None) -> Request:
    rd = resources.resolve(res)
    return _json("POST", resources.path(rd, _namespace(rd, namespace, body), name, sub), body)


def update(res: ResourceLike, obj: Obj, *, subresource: str | None = None) -> Request:
    rd = resources.resolve(res)
    return _json("PUT", resources.path(rd, _namespace(rd, None, obj), _name(obj), subresource), obj)


def patch(res: ResourceLike, name: str, body: Any, namespace: str | None = None, *, patch_type: str = "merge",
          subresource: str | None = None, field_manager: str | None = None, force: bool | None = None) -> Request:
    rd = resources.resolve(res)
    try:
        content_type = PATCH_CONTENT_TYPES[patch_type]
    except KeyError:
        raise ValueError(f"unknown patch type {patch_type!r}; one of {sorted(PATCH_CONTENT_TYPES)}") from None
    params = {}
    if field_manager:
        params["fieldManager"] = field_manager
    if force is not None:
        params["force"] = "true" if force else "false"
    return _json("PATCH", resources.path(rd, _namespace(rd, namespace), name, subresource), body, params,
                 content_type)


def _delete_options(propagation_policy: str | None, grace_period_seconds: int | None,
                    preconditions: dict[str, str] | None) -> bytes | None:
    opts: Obj = {}
    if propagation_policy:
        opts["propagationPolicy"] = propagation_policy
    if grace_period_seconds is not None:
        opts["gracePeriodSeconds"] = grace_period_seconds
    if preconditions:
        opts["preconditions"] = preconditions
    if not opts:
        return None
    return orjson.dumps({"kind": "DeleteOptions", "apiVersion": "v1", **opts})


def delete(res: ResourceLike, name: str, namespace: str | None = None, *, propagation_policy: str | None = None,
           grace_period_seconds: int | None = None, preconditions: dict[str, str] | None = None) -> Request:
    """`preconditions` is DeleteOptions' `{"uid": ..., "resourceVersion": ...}`."""
    rd = resources.resolve(res)
    body = _delete_options(propagation_policy, grace_period_seconds, preconditions)
    return Request("DELETE", resources.path(rd, _namespace(rd, namespace), name), {}, body,
                   "application/json" if body else None)


def delete_collection(res: ResourceLike, namespace: str | None = None, *, label_selector: str | None = None,
                      field_selector: str | None = None, propagation_policy: str | None = None,
                      grace_period_seconds: int | None = None) -> Request:
    rd = resources.resolve(res)
    body = _delete_options(propagation_policy, grace_period_seconds, None)
    return Request("DELETE", resources.path(rd, _namespace(rd, namespace)),
                   _selectors(label_selector, field_selector), body, "application/json" if body else None)
