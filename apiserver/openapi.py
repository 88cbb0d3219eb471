"""OpenAPI v3 discovery and server-side field validation, as far as clients depend on them.

kubectl (and helm) validate manifests before sending them. They ask `/openapi/v3` which group-versions
exist, fetch each one's document and look for the PATCH operation of the kind at hand: if it takes a
`fieldValidation` query parameter, the client sends `?fieldValidation=Strict` and leaves checking to the
server; otherwise it falls back to downloading `/openapi/v2` and fails without it. So each document
lists, per kind, its paths with the operations and that parameter, tagged with
`x-kubernetes-group-version-kind`. Strategic merge patch is deliberately not advertised in the request
bodies, so kubectl computes apply patches from its own compiled-in types rather than from our schemas;
server-side apply (`application/apply-patch+yaml`) is.

Field validation: objects are dicts without full schemas, so Strict checks what can be checked without
one — duplicate keys anywhere in a JSON body, and unknown fields at the top level and in `metadata` —
and rejects them with 400 BadRequest ("strict decoding error: ..."). Warn adds the same findings as
`Warning` headers; Ignore skips the checks.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

import orjson

from api import errors, registry
from api.registry import ResourceDef

Obj = dict[str, Any]

META_FIELDS = {"name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
               "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations",
               "ownerReferences", "finalizers", "managedFields"}
TOP_FIELDS_BY_KIND = {
    "ConfigMap": {"data", "binaryData", "immutable"},
    "Secret": {"data", "stringData", "type", "immutable"},
    "Endpoints": {"subsets"},
    "ServiceAccount": {"secrets", "imagePullSecrets", "automountServiceAccountToken"},
    "Event": {"involvedObject", "reason", "message", "source", "firstTimestamp", "lastTimestamp", "count", "type",
              "eventTime", "series", "action", "related", "reportingComponent", "reportingInstance"},
    "ControllerRevision": {"data", "revision"},
}
COMMON_TOP = {"apiVersion", "kind", "metadata"}


def _top_fields(rd: ResourceDef) -> set[str]:
    return COMMON_TOP | TOP_FIELDS_BY_KIND.get(rd.kind, {"spec", "status"})


def _gv_path(rd: ResourceDef) -> str:
    return f"api/{rd.version}" if not rd.group else f"apis/{rd.group}/{rd.version}"


def root_document() -> Obj:
    paths = {}
    for gv in sorted({_gv_path(rd) for rd in registry.RESOURCES}):
        digest = hashlib.sha256(orjson.dumps(group_version_document(gv))).hexdigest()[:16].upper()
        paths[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}?hash={digest}"}
    return {"paths": paths}


def _param(name: str, where: str = "query", schema_type: str = "string") -> Obj:
    return {"name": name, "in": where, "schema": {"type": schema_type, "uniqueItems": True}}


def _ref(rd: ResourceDef) -> str:
    return f"#/components/schemas/{_schema_name(rd)}"


def _schema_name(rd: ResourceDef) -> str:
    return f"io.minik8s.{rd.group or 'core'}.{rd.version}.{rd.kind}"


def group_version_document(gv: str) -> Obj:
    kinds = [rd for rd in registry.RESOURCES if _gv_path(rd) == gv]
    paths: dict[str, Obj] = {}
    schemas: dict[str, Obj] = {}
    for rd in kinds:
        gvk = {"group": rd.group, "version": rd.version, "kind": rd.kind}
        ns = "/namespaces/{namespace}" if rd.namespaced else ""
        body = {"content": {"application/json": {"schema": {"$ref": _ref(rd)}}, "application/yaml": {
            "schema": {"$ref": _ref(rd)}}}}
        patch_body = {"content": {t: {"schema": {"type": "object"}} for t in (
            "application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json")}}
        response = {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": _ref(rd)}}}}}
        common = [_param("pretty"), _param("dryRun"), _param("fieldManager"), _param("fieldValidation")]

        def op(action: str, params: list[Obj], request: Obj | None = None) -> Obj:
            out: Obj = {"operationId": f"{action}{rd.kind}", "parameters": params, "responses": response,
                        "x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk}
            if request is not None:
                out["requestBody"] = request
            return out

        collection = f"/{gv}{ns}/{rd.plural}"
        item = f"{collection}/{{name}}"
        paths[collection] = {"get": op("list", [_param("labelSelector"), _param("fieldSelector")]),
                             "post": op("post", common, body)}
        paths[item] = {"get": op("get", []), "put": op("put", common, body),
                       "patch": op("patch", common + [_param("force", schema_type="boolean")], patch_body),
                       "delete": op("delete", [_param("propagationPolicy")])}
        schemas[_schema_name(rd)] = {"type": "object", "x-kubernetes-group-version-kind": [gvk],
                                     "properties": {f: {"type": "object" if f not in ("apiVersion", "kind")
                                                        else "string"} for f in sorted(_top_fields(rd))}}
    return {"openapi": "3.0.0", "info": {"title": "minik8s", "version": "v1.31.0"}, "paths": paths,
            "components": {"schemas": schemas}}


# -- field validation ------------------------------------------------------------------------------

def _duplicates(raw: bytes) -> list[str]:
    found: list[str] = []

    def hook(pairs: list[tuple[str, Any]]) -> dict:
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                found.append(k)
            seen.add(k)
        return dict(pairs)

    try:
        json.loads(raw, object_pairs_hook=hook)
    except ValueError:
        return []
    return found


def field_problems(rd: ResourceDef, raw: bytes | None, body: Any) -> list[str]:
    problems = [f'duplicate field "{k}"' for k in (_duplicates(raw) if raw else [])]
    if isinstance(body, dict):
        problems += [f'unknown field "{k}"' for k in body if k not in _top_fields(rd)]
        meta = body.get("metadata")
        if isinstance(meta, dict):
            problems += [f'unknown field "metadata.{k}"' for k in meta if k not in META_FIELDS]
    return problems


def check_fields(mode: str | None, rd: ResourceDef, raw: bytes | None, body: Any) -> list[str]:
    """Warnings to return (Warn); raises 400 for Strict; nothing for Ignore or no mode."""
    if mode in (None, "", "Ignore"):
        return []
    if mode not in ("Strict", "Warn"):
        raise errors.bad_request(f'fieldValidation must be one of "Ignore", "Warn" or "Strict", got "{mode}"')
    problems = field_problems(rd, raw, body)
    if problems and mode == "Strict":
        raise errors.bad_request("strict decoding error: " + ", ".join(problems))
    return problems
