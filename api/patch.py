"""The three PATCH content types the apiserver accepts.

- `merge_patch`: RFC 7386 JSON merge patch (`application/merge-patch+json`). Maps merge recursively,
  `null` deletes a key, anything else (lists included) replaces.
- `json_patch`: RFC 6902 (`application/json-patch+json`), applied with the `jsonpatch` library. A malformed
  patch or an operation on a missing path is a 400; a failed `test` operation is a 422 like Kubernetes.
- `strategic_merge_patch`: Kubernetes' strategic merge patch (`application/strategic-merge-patch+json`).
  It is a merge patch whose lists know how to merge: Kubernetes reads the strategy from Go struct tags;
  we have no Go types, so a small table (`_LIST_MERGE_KEYS`) names the merge key per field, looked up by
  the field's name and, where a name is ambiguous (`ports`), its parent. Lists not in the table are
  replaced whole, as atomic lists are in Kubernetes.

Strategic directives supported: `$patch: replace|merge|delete` in maps and in list elements,
`$retainKeys`, `$deleteFromPrimitiveList/<field>` and `$setElementOrder/<field>`. Ordering under
`$setElementOrder` is simplified: listed elements come first in the given order, then any elements only
the server had, in their old order.

Nothing here mutates its inputs: every function works on deep copies.
"""
from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import jsonpointer

from api.errors import APIError, bad_request

Obj = dict[str, Any]


# --- RFC 7386 ------------------------------------------------------------------------------------


def merge_patch(doc: Obj, patch: Any) -> Any:
    """Apply an RFC 7386 merge patch; a non-object patch replaces the document."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(doc) if isinstance(doc, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            result[key] = merge_patch(result.get(key), value)
        else:
            result[key] = copy.deepcopy(value)
    return result


# --- RFC 6902 ------------------------------------------------------------------------------------


def json_patch(doc: Obj, ops: Any) -> Obj:
    """Apply an RFC 6902 patch; 400 for a malformed patch or bad path, 422 when a `test` fails."""
    if not isinstance(ops, list) or not all(isinstance(op, dict) for op in ops):
        raise bad_request("json patch must be a list of operation objects")
    try:
        return jsonpatch.JsonPatch(ops).apply(doc, in_place=False)
    except jsonpatch.JsonPatchTestFailed as exc:
        raise APIError(422, "Invalid", f"the server rejected our request due to an error in our request: "
                                       f"testing value failed: {exc}") from None
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError, KeyError,
            IndexError, ValueError) as exc:
        raise bad_request(f"the server rejected our request due to an error in our request: {exc}") from None


# --- strategic merge patch -----------------------------------------------------------------------

PATCH = "$patch"
RETAIN_KEYS = "$retainKeys"
DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"
SET_ORDER = "$setElementOrder/"

_CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")

# Field name → merge key, for lists merged element by element. `None` marks a list of primitives merged
# as a set (finalizers). Everything absent is atomic: the patch's list replaces the old one.
_LIST_MERGE_KEYS: dict[str, str | None] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "secrets": "name",  # ServiceAccount.secrets
    "hostAliases": "ip",
    "podIPs": "ip",
    "conditions": "type",
    "addresses": "type",  # Node.status.addresses
    "ownerReferences": "uid",
    "resourceClaims": "name",
    "schedulingGates": "name",
    "topologySpreadConstraints": "topologyKey",
    "finalizers": None,
}

# `ports` means different things by parent: a container's ports merge by containerPort,
# a Service spec's by port; Endpoints subsets' ports have no strategy and are replaced.
_PORTS_KEY_BY_PARENT = {name: "containerPort" for name in _CONTAINER_LISTS} | {"spec": "port"}

ATOMIC = object()  # sentinel: the list has no merge strategy


def list_strategy(path: tuple[str, ...]) -> Any:
    """Merge key for the list at `path` (field names, list indexes skipped), None for a primitive set,
    or `ATOMIC` when the list is replaced whole."""
    name = path[-1] if path else ""
    if name == "ports":
        parent = path[-2] if len(path) > 1 else ""
        return _PORTS_KEY_BY_PARENT.get(parent, ATOMIC)
    if name == "finalizers" and path[-2:-1] != ("metadata",):
        return ATOMIC  # Namespace spec.finalizers is atomic; only metadata.finalizers merge as a set.
    return _LIST_MERGE_KEYS.get(name, ATOMIC)


def strategic_merge_patch(doc: Obj, patch: Any) -> Obj:
    """Apply a Kubernetes strategic merge patch. Malformed directives → 400."""
    if not isinstance(patch, dict):
        raise bad_request("strategic merge patch must be a JSON object")
    result = _merge_map(copy.deepcopy(doc) if isinstance(doc, dict) else {}, patch, ())
    if result is None:
        raise bad_request("strategic merge patch may not delete the whole object")
    return result


def _merge_map(original: Obj, patch: Obj, path: tuple[str, ...]) -> Obj | None:
    """Merge `patch` into `original` (owned by us, mutated); None means the map is deleted."""
    directive = patch.get(PATCH)
    if directive == "delete":
        return None
    if directive == "replace":
        return _strip_directives({k: v for k, v in patch.items() if k != PATCH}, path)
    if directive not in (None, "merge"):
        raise bad_request(f"unknown patch type: {directive!r} in map at {_dotted(path)}")

    retain = patch.get(RETAIN_KEYS)
    if retain is not None:
        original = _apply_retain_keys(original, patch, retain, path)

    # Deletions from primitive lists apply to the server's list before the patch's additions.
    for key, value in patch.items():
        if key.startswith(DELETE_PRIMITIVE):
            field = key[len(DELETE_PRIMITIVE):]
            if not isinstance(value, list):
                raise bad_request(f"{key} must be a list")
            if isinstance(original.get(field), list):
                original[field] = [v for v in original[field] if v not in value]

    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            original.pop(key, None)
            continue
        merged = _merge_value(original.get(key), value, path + (key,))
        if merged is None:
            original.pop(key, None)
        else:
            original[key] = merged

    for key, order in patch.items():
        if key.startswith(SET_ORDER):
            field = key[len(SET_ORDER):]
            if isinstance(original.get(field), list):
                original[field] = _apply_element_order(original[field], order, path + (field,))
    return original


def _apply_retain_keys(original: Obj, patch: Obj, retain: Any, path: tuple[str, ...]) -> Obj:
    if not isinstance(retain, list) or not all(isinstance(k, str) for k in retain):
        raise bad_request(f"$retainKeys at {_dotted(path)} must be a list of strings")
    for key in patch:
        if not key.startswith("$") and key not in retain:
            raise bad_request(f"$retainKeys at {_dotted(path)} does not contain the patched key {key!r}")
    return {k: v for k, v in original.items() if k in retain}


def _merge_value(original: Any, patch: Any, path: tuple[str, ...]) -> Any:
    if isinstance(patch, dict):
        return _merge_map(original if isinstance(original, dict) else {}, patch, path)
    if isinstance(patch, list):
        return _merge_list(original if isinstance(original, list) else [], patch, path)
    return copy.deepcopy(patch)


def _merge_list(original: list[Any], patch: list[Any], path: tuple[str, ...]) -> list[Any]:
    strategy = list_strategy(path)
    if strategy is ATOMIC:
        return _strip_directives(patch, path)
    if strategy is None:
        return _merge_primitive_list(original, patch)
    return _merge_keyed_list(original, patch, strategy, path)


def _merge_primitive_list(original: list[Any], patch: list[Any]) -> list[Any]:
    result = list(original)
    for item in patch:
        if item not in result:
            result.append(copy.deepcopy(item))
    return result


def _merge_keyed_list(original: list[Any], patch: list[Any], key: str, path: tuple[str, ...]) -> list[Any]:
    # `{"$patch": "replace"}` anywhere in the patch list means: the rest of the patch list is the list.
    if any(isinstance(item, dict) and item.get(PATCH) == "replace" for item in patch):
        return _strip_directives([i for i in patch if not (isinstance(i, dict) and i.get(PATCH) == "replace")],
                                 path)
    result = list(original)
    for item in patch:
        if not isinstance(item, dict):
            raise bad_request(f"list {_dotted(path)} is merged by key {key!r}; its items must be objects")
        if PATCH in item and len(item) == 1 and item[PATCH] == "merge":
            continue
        if key not in item:
            raise bad_request(f"map: {item} does not contain declared merge key: {key}")
        index = _find_by_key(result, key, item[key])
        if item.get(PATCH) == "delete":
            if index is not None:
                del result[index]
            continue
        if index is None:
            result.append(_strip_directives(item, path))
        else:
            merged = _merge_map(result[index] if isinstance(result[index], dict) else {}, item, path)
            if merged is None:
                del result[index]
            else:
                result[index] = merged
    return result


def _find_by_key(items: list[Any], key: str, value: Any) -> int | None:
    for i, item in enumerate(items):
        if isinstance(item, dict) and item.get(key) == value:
            return i
    return None


def _apply_element_order(items: list[Any], order: Any, path: tuple[str, ...]) -> list[Any]:
    if not isinstance(order, list):
        raise bad_request(f"$setElementOrder/{path[-1]} must be a list")
    strategy = list_strategy(path)
    if strategy is ATOMIC:
        return items

    def identity(item: Any) -> Any:
        if strategy is None:
            return item
        return item.get(strategy) if isinstance(item, dict) else None

    wanted = [identity(o) for o in order]
    rank = {repr(w): i for i, w in enumerate(wanted)}
    listed = sorted((i for i in items if repr(identity(i)) in rank), key=lambda i: rank[repr(identity(i))])
    return listed + [i for i in items if repr(identity(i)) not in rank]


def _strip_directives(value: Any, path: tuple[str, ...]) -> Any:
    """A patch value that lands where the server had nothing: merge it into emptiness so that any
    directives inside are honoured (and removed) rather than stored."""
    if isinstance(value, dict):
        return _merge_map({}, value, path) or {}
    if isinstance(value, list):
        strategy = list_strategy(path)
        if strategy is ATOMIC or strategy is None:
            return [_strip_directives(v, path) if isinstance(v, dict) else copy.deepcopy(v) for v in value]
        return _merge_keyed_list([], value, strategy, path)
    return copy.deepcopy(value)


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join(path) or "<root>"


# --- associative list keys for server-side apply ------------------------------------------------

# Server-side apply identifies an item of an associative list by *all* its key fields (Kubernetes'
# `listMapKeys`), where strategic merge patch uses only the first: a container port is
# (containerPort, protocol), a Service port (port, protocol), a spread constraint
# (topologyKey, whenUnsatisfiable). A key field an item omits takes its schema default, if it has one.
_EXTRA_LIST_MAP_KEYS: dict[str, tuple[str, ...]] = {
    "containerPort": ("protocol",),
    "port": ("protocol",),
    "topologyKey": ("whenUnsatisfiable",),
}
LIST_MAP_KEY_DEFAULTS: dict[str, Any] = {"protocol": "TCP"}


def list_map_keys(path: tuple[str, ...]) -> Any:
    """Key fields of the associative list at `path`, None for a set of primitives, or `ATOMIC`."""
    strategy = list_strategy(path)
    if strategy is ATOMIC or strategy is None:
        return strategy
    return (strategy, *_EXTRA_LIST_MAP_KEYS.get(strategy, ()))
