"""Field ownership (`metadata.managedFields`) and server-side apply, on plain dicts.

Every write names a *manager* (the `fieldManager` parameter, else the User-Agent up to its first "/").
The object remembers, per manager, the set of fields that manager last set:

    {"manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1", "time": "...",
     "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}, "subresource": "status"?}

A field set is kept in Kubernetes' FieldsV1 form and operated on in that form, so nothing is converted
on the way in or out: a node is a dict whose keys are path elements — `f:<field>`, `k:{"name":"x"}` for
an associative-list item (its key fields as compact JSON, sorted), `v:<json>` for an item of a set list —
and whose values are nodes again. A path belongs to the set when its node is `{}` (a leaf) or holds
`"."` (a member that also has members below it). `None` stands for the empty set.

Two writes, two rules (after sigs.k8s.io/structured-merge-diff):

- An update (create, PUT, merge/JSON/strategic patch, /scale) compares the live object with the new
  one. Whatever it added or changed now belongs to the writer and to nobody else; whatever it removed
  belongs to nobody. Nothing is ever refused: the writer took the fields over.
- An apply sends a partial object, the *configuration*. It is merged into the live object: maps by
  key, associative lists by their key fields (`api.patch.list_map_keys`: containers by name, container
  ports by containerPort+protocol, ...), set lists as sets, everything else (scalars, atomic lists
  such as tolerations or args, atomic maps such as label selectors) replaced whole. Fields the same
  manager applied last time but left out now are removed, unless another manager also owns them.
  The applier then owns exactly what its configuration holds. If the merge changes a field another
  manager owns, that is a conflict (409), unless `force` takes the field over. Applying the value a
  field already has is no change, so two managers applying the same value share the field.

Which fields count: `apiVersion`, `kind` and the metadata the server controls (name, namespace, uid,
resourceVersion, generation, creationTimestamp, managedFields, ...) never do. Writes to the main
resource of a kind with a status subresource do not track `status`; writes to `/status` track only
`status` (the strategy throws the rest away). Without Go types we cannot tell an always-present
struct from an optional map, so the `.` marker of a map or struct node that appears with a write is
recorded as structured-merge-diff would for an optional one, except for top-level `spec`/`status`.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson

from api import errors
from api.errors import APIError, Cause
from api.patch import ATOMIC, LIST_MAP_KEY_DEFAULTS, list_map_keys

Obj = dict[str, Any]
Node = dict[str, Any]  # a FieldsV1 node; None is the empty set

APPLY, UPDATE = "Apply", "Update"
MISSING: Any = object()
MAX_MANAGER_LENGTH = 128

# Metadata the server controls: never part of anyone's fields (Kubernetes' stripMeta set).
STRIPPED_METADATA = frozenset({"name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName",
                               "generation", "managedFields", "resourceVersion"})
# Top-level nodes that always exist in Kubernetes' Go types, so no write ever "adds" them.
_ALWAYS_PRESENT = frozenset({"metadata", "spec", "status"})

# Maps and structs replaced whole, like Kubernetes' `+mapType=atomic` / `+structType=atomic`
# (label selectors, node selectors, object references, env var sources). Keyed by field name.
_ATOMIC_MAPS = frozenset({"selector", "labelSelector", "namespaceSelector", "nodeSelector", "configMapKeyRef",
                          "secretKeyRef", "fieldRef", "resourceFieldRef", "targetRef", "involvedObject",
                          "claimRef", "roleRef", "dataSource", "dataSourceRef"})


def _atomic_map(fpath: tuple[str, ...]) -> bool:
    if not fpath:
        return False
    name = fpath[-1]
    if name == "requiredDuringSchedulingIgnoredDuringExecution":
        return fpath[-2:-1] == ("nodeAffinity",)  # a NodeSelector; pod (anti-)affinity's is a list
    return name in _ATOMIC_MAPS


# -- field sets -------------------------------------------------------------------------------------


# The one leaf node that sets built here share: field sets are never changed in place.
_LEAF: Node = {}


def _member(node: Node) -> bool:
    return not node or "." in node


def _join(member: bool, children: Node) -> Node | None:
    if not children:
        return {} if member else None
    if member:
        return {".": {}, **children}
    return children


def union(a: Node | None, b: Node | None) -> Node | None:
    if a is None:
        return b
    if b is None or a is b:
        return a
    children = {}
    for k, v in a.items():
        if k != ".":
            children[k] = union(v, b[k]) if k in b else v
    for k, v in b.items():
        if k != "." and k not in a:
            children[k] = v
    return _join(_member(a) or _member(b), children)


def difference(a: Node | None, b: Node | None) -> Node | None:
    """The members of `a` that are not members of `b`."""
    if a is None or b is None:
        return a
    children = {}
    for k, v in a.items():
        if k == ".":
            continue
        other = b.get(k)
        if other is None:
            children[k] = v
        else:
            rest = difference(v, other)
            if rest is not None:
                children[k] = rest
    return _join(_member(a) and not _member(b), children)


def intersection(a: Node | None, b: Node | None) -> Node | None:
    if a is None or b is None:
        return None
    children = {}
    for k, v in a.items():
        if k != "." and k in b:
            both = intersection(v, b[k])
            if both is not None:
                children[k] = both
    return _join(_member(a) and _member(b), children)


def members(node: Node | None, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every path of the set, as tuples of path elements, depth first in the set's order."""
    if node is None:
        return
    if prefix and _member(node):
        yield prefix
    for k, v in node.items():
        if k != ".":
            yield from members(v, prefix + (k,))


def readable(path: tuple[str, ...]) -> str:
    """A path as Kubernetes prints it: `.spec.containers[name="web"].image`, `[="x"]` for set items."""
    out = []
    for pe in path:
        kind, text = pe[:2], pe[2:]
        if kind == "f:":
            out.append("." + text)
        elif kind == "k:":
            fields = orjson.loads(text)
            out.append("[" + ",".join(f"{k}={orjson.dumps(v).decode()}" for k, v in fields.items()) + "]")
        else:
            out.append(f"[={text}]")
    return "".join(out)


_ELEMENT_PREFIXES = ("f:", "k:", "v:", "i:")


def valid_fields(node: Any) -> bool:
    """Whether a user-supplied fieldsV1 has the shape of a field set."""
    stack = [node]
    while stack:
        node = stack.pop()
        if type(node) is not dict:
            return False
        for k, v in node.items():
            if k != "." and not (type(k) is str and k.startswith(_ELEMENT_PREFIXES)):
                return False
            stack.append(v)
    return True


# -- path elements of list items -------------------------------------------------------------------


class KeyError_(ValueError):
    """An associative list item without its key, or two items with one key (apply refuses both)."""


def _item_elements(items: list, keys: Any, fpath: tuple[str, ...]) -> list[str]:
    """The path element of each item of a granular list; raises KeyError_ when items cannot be told apart."""
    out = []
    if keys is None:
        for v in items:
            if isinstance(v, (dict, list)):
                raise KeyError_(f".{'.'.join(fpath)}: a set may only hold scalars")
            out.append("v:" + orjson.dumps(v).decode())
    else:
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise KeyError_(f".{'.'.join(fpath)}: element {i}: associative list items must be objects")
            fields = {}
            for k in sorted(keys):
                v = item.get(k, LIST_MAP_KEY_DEFAULTS.get(k))
                if v is None:
                    raise KeyError_(f'.{".".join(fpath)}: element {i}: associative list with keys has an element '
                                    f'that omits key field "{k}" (and doesn\'t have default value)')
                fields[k] = v
            out.append("k:" + orjson.dumps(fields).decode())
    if len(set(out)) != len(out):
        raise KeyError_(f".{'.'.join(fpath)}: duplicate entries for key")
    return out


def _granular(items: list, fpath: tuple[str, ...]) -> list[str] | None:
    """Item path elements, or None when the list is atomic (by schema, or because its items cannot be
    told apart — Kubernetes tolerates such live objects and so do we, treating the list as one value)."""
    keys = list_map_keys(fpath)
    if keys is ATOMIC:
        return None
    try:
        return _item_elements(items, keys, fpath)
    except KeyError_:
        return None


# -- the set of fields a value holds ---------------------------------------------------------------


def fieldset(value: Any, fpath: tuple[str, ...] = (), *, nodes: bool, member: bool = False,
             strict: bool = False) -> Node | None:
    """The fields `value` holds. `nodes=False` is what an apply configuration owns (leaves and list
    items); `nodes=True` is what a write that added `value` touched (maps and structs too).
    `strict` raises KeyError_ for list items apply cannot identify."""
    if isinstance(value, dict) and value and not _atomic_map(fpath):
        node: Node = {".": _LEAF} if member else {}
        top = not fpath
        for k, v in value.items():
            if type(v) is dict or type(v) is list:  # scalars (most fields) are leaves: no call for them
                child = fieldset(v, fpath + (k,), nodes=nodes, member=nodes and not (top and k in _ALWAYS_PRESENT),
                                 strict=strict)
                if child is None:
                    continue
                node["f:" + k] = child
            else:
                node["f:" + k] = _LEAF
        if len(node) == 1 and member:
            return _LEAF
        return node or None
    if isinstance(value, list):
        keys = list_map_keys(fpath)
        if keys is ATOMIC or _atomic_map(fpath):
            return _LEAF
        if not value:
            return _LEAF if nodes else None
        if strict:
            pes = _item_elements(value, keys, fpath)
        else:
            pes = _granular(value, fpath)
        if pes is None:
            return _LEAF
        children = {}
        for pe, item in zip(pes, value):
            children[pe] = fieldset(item, fpath, nodes=nodes, member=True, strict=strict) \
                if isinstance(item, dict) else _LEAF
        return _join(member, children)
    return _LEAF


# -- comparing two versions of an object -----------------------------------------------------------


class Changes:
    """What a write did to an object's fields: added, modified (leaves) and removed paths."""

    __slots__ = ("added", "modified", "removed")

    def __init__(self) -> None:
        self.added: Node | None = None
        self.modified: Node | None = None
        self.removed: Node | None = None

    @property
    def touched(self) -> Node | None:
        return union(self.added, self.modified)

    @property
    def empty(self) -> bool:
        return self.added is None and self.modified is None and self.removed is None


def compare(live: Obj, new: Obj) -> Changes:
    """Compare two (scoped) objects; equal subtrees are skipped at C speed, so a small change to a big
    object costs little."""
    changes = Changes()
    added, modified, removed = _compare(live, new, ())
    changes.added, changes.modified, changes.removed = added, modified, removed
    return changes


def _compare(lhs: Any, rhs: Any, fpath: tuple[str, ...]) -> tuple[Node | None, Node | None, Node | None]:
    if lhs == rhs:
        return None, None, None
    pairs = _children(lhs, rhs, fpath)
    if pairs is None:
        return None, _LEAF, None  # a leaf (scalar, atomic value, or a change of type) that changed
    added: Node = {}
    modified: Node = {}
    removed: Node = {}
    for pe, lv, rv, child_path, child_member in pairs:
        if rv is MISSING or lv is MISSING:
            node = fieldset(lv if rv is MISSING else rv, child_path, nodes=True, member=child_member)
            if node is not None:
                (removed if rv is MISSING else added)[pe] = node
            continue
        a, m, r = _compare(lv, rv, child_path)
        if a is not None:
            added[pe] = a
        if m is not None:
            modified[pe] = m
        if r is not None:
            removed[pe] = r
    return _join(False, added), _join(False, modified), _join(False, removed)


def _children(lhs: Any, rhs: Any, fpath: tuple[str, ...]) -> list[tuple] | None:
    """The children of two versions of a map or granular list, paired by path element:
    (element, left or MISSING, right or MISSING, their field path, whether their node is a member)."""
    if _atomic_map(fpath):
        return None
    if isinstance(lhs, dict) and isinstance(rhs, dict):
        top = not fpath
        pairs = [("f:" + k, lv, rhs.get(k, MISSING), fpath + (k,), not (top and k in _ALWAYS_PRESENT))
                 for k, lv in lhs.items()]
        pairs += [("f:" + k, MISSING, rv, fpath + (k,), not (top and k in _ALWAYS_PRESENT))
                  for k, rv in rhs.items() if k not in lhs]
        return pairs
    if isinstance(lhs, list) and isinstance(rhs, list):
        lpes, rpes = _granular(lhs, fpath), _granular(rhs, fpath)
        if lpes is None or rpes is None:
            return None
        litems, ritems = dict(zip(lpes, lhs)), dict(zip(rpes, rhs))
        pairs = [(pe, li, ritems.get(pe, MISSING), fpath, True) for pe, li in litems.items()]
        pairs += [(pe, MISSING, ri, fpath, True) for pe, ri in ritems.items() if pe not in litems]
        return pairs
    return None


# -- scope: which part of an object a write through a given endpoint can own ------------------------


def scoped(obj: Obj | None, subresource: str | None, has_status: bool) -> Obj:
    """A shallow view of `obj` holding only what a write through `subresource` may own."""
    if not obj:
        return {}
    if subresource == "status":
        return {"status": obj["status"]} if "status" in obj else {}
    out = {}
    for k, v in obj.items():
        if k in ("apiVersion", "kind") or (k == "status" and has_status):
            continue
        if k == "metadata" and isinstance(v, dict):
            v = {mk: mv for mk, mv in v.items() if mk not in STRIPPED_METADATA}
            if not v:
                continue
        out[k] = v
    return out


# -- merging an apply configuration ----------------------------------------------------------------


def merge(live: Any, config: Any, fpath: tuple[str, ...] = ()) -> Any:
    """The live value with the configuration merged in. Shares (does not copy) subtrees of both:
    callers pass values they own. A null in the configuration removes the field."""
    if isinstance(config, dict) and not _atomic_map(fpath):
        out = dict(live) if isinstance(live, dict) else {}
        for k, v in config.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = merge(out.get(k, MISSING), v, fpath + (k,))
        return out
    if isinstance(config, list) and isinstance(live, list) and live and not _atomic_map(fpath):
        cpes, lpes = _granular(config, fpath), _granular(live, fpath)
        if cpes is not None and lpes is not None:
            return _merge_items(live, lpes, config, cpes, fpath)
    if isinstance(config, list) and not _atomic_map(fpath) and _granular(config, fpath) is not None:
        return [merge(MISSING, item, fpath) for item in config]
    return config


def _merge_items(live: list, lpes: list[str], config: list, cpes: list[str], fpath: tuple[str, ...]) -> list:
    """Merge two granular lists as structured-merge-diff orders them: items only the live list has stay
    where they were, items of the configuration come in its order."""
    litems, citems = dict(zip(lpes, live)), dict(zip(cpes, config))
    shared = iter([pe for pe in cpes if pe in litems])
    next_shared = next(shared, None)
    out: list = []
    i = j = 0
    while i < len(lpes) or j < len(cpes):
        if i < len(lpes) and j < len(cpes) and lpes[i] == cpes[j]:
            out.append(merge(live[i], config[j], fpath))
            i, j = i + 1, j + 1
            next_shared = next(shared, None)
            continue
        if i < len(lpes):
            pe = lpes[i]
            if pe not in citems:
                out.append(live[i])
                i += 1
                continue
            if next_shared is not None and next_shared != pe:
                i += 1  # a shared item the configuration places later; it is emitted then
                continue
        if j < len(cpes):
            pe = cpes[j]
            out.append(merge(litems.get(pe, MISSING), config[j], fpath))
            j += 1
            if next_shared == pe:
                next_shared = next(shared, None)
        else:
            i += 1
    return out


def prune(obj: Obj, drop: Node | None, keep: Node | None) -> None:
    """Remove from `obj` (in place) the members of `drop`, except those `keep` holds or holds anything
    below. A map or list emptied by the removal goes too (Kubernetes' omitempty would drop it)."""
    if drop:
        _prune(obj, drop, keep, ())


def _prune(value: Any, drop: Node, keep: Node | None, fpath: tuple[str, ...]) -> None:
    if isinstance(value, dict):
        for pe, node in drop.items():
            if pe[:2] != "f:" or pe[2:] not in value:
                continue
            name = pe[2:]
            kept = keep.get(pe) if keep else None
            if _member(node) and kept is None:
                del value[name]
                continue
            child = value[name]
            if node and isinstance(child, (dict, list)):
                _prune(child, node, kept, fpath + (name,))
                if not child and not (kept is not None and _member(kept)):
                    del value[name]
    elif isinstance(value, list):
        pes = _granular(value, fpath)
        if pes is None:
            return
        keys = list_map_keys(fpath)
        key_fields = {"f:" + k for k in keys} if isinstance(keys, tuple) else set()
        doomed = set()
        for index, pe in enumerate(pes):
            node = drop.get(pe)
            if node is None:
                continue
            kept = keep.get(pe) if keep else None
            if _member(node) and kept is None:
                doomed.add(index)
            elif isinstance(value[index], dict):
                # The item stays (someone owns part of it): its key fields stay with it.
                inner = {k: v for k, v in node.items() if k not in key_fields}
                _prune(value[index], inner, kept, fpath)
        if doomed:
            value[:] = [v for i, v in enumerate(value) if i not in doomed]


# -- managedFields entries -------------------------------------------------------------------------


_clock: list = [0, ""]


def now() -> str:
    """The current second in RFC 3339, formatted once per second (every write asks)."""
    second = int(time.time())
    if second != _clock[0]:
        _clock[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))]
    return _clock[1]


def manager_from(field_manager: str | None, user_agent: str | None) -> str:
    """The manager of a write: `fieldManager`, else the User-Agent up to its first "/" (Kubernetes)."""
    if field_manager:
        return field_manager
    return (user_agent or "").split("/", 1)[0][:MAX_MANAGER_LENGTH]


def _identity(e: Obj) -> tuple:
    op = e.get("operation")
    return (e.get("manager"), op, None if op == APPLY else e.get("apiVersion"), e.get("subresource") or None)


def _entry(manager: str, operation: str, api_version: str, time: str | None, fields: Node,
           subresource: str | None) -> Obj:
    e = {"manager": manager, "operation": operation, "apiVersion": api_version}
    if time is not None:
        e["time"] = time
    e["fieldsType"] = "FieldsV1"
    e["fieldsV1"] = fields
    if subresource:
        e["subresource"] = subresource
    return e


def _sorted(entries: list[Obj]) -> list[Obj]:
    """Kubernetes' order: Apply before Update, then by time, manager, apiVersion, subresource."""
    return sorted(entries, key=lambda e: (e.get("operation") or "", e.get("time") or "", e.get("manager") or "",
                                          e.get("apiVersion") or "", e.get("subresource") or ""))


def describe(e: Obj) -> str:
    """A manager as conflict messages name it."""
    out = f'"{e.get("manager", "")}"'
    if e.get("subresource"):
        out += f' with subresource "{e["subresource"]}"'
    if e.get("operation") == UPDATE:
        out += f' using {e.get("apiVersion")}'
        if e.get("time"):
            out += f' at {e["time"]}'
    return out


def requested_entries(requested: Any, live_entries: list[Obj]) -> list[Obj]:
    """The entries a write starts from: the live ones, unless the request sent its own. An empty list
    (or one empty entry) clears them, as in Kubernetes; entries that are not a field set are ignored
    in favour of the live ones. Raises 422 for an unknown operation or fieldsType."""
    if requested is MISSING or requested is None or requested == live_entries:
        return live_entries
    if requested == [] or requested == [{}]:
        return []
    if not isinstance(requested, list) or not all(isinstance(e, dict) for e in requested):
        return live_entries
    causes = []
    for i, e in enumerate(requested):
        if e.get("operation") not in (APPLY, UPDATE):
            causes.append(Cause(f"metadata.managedFields[{i}].operation",
                                f'Unsupported value: "{e.get("operation")}": supported values: "Apply", "Update"',
                                "FieldValueNotSupported"))
        if e.get("fieldsType") not in (None, "FieldsV1"):
            causes.append(Cause(f"metadata.managedFields[{i}].fieldsType",
                                f'Unsupported value: "{e.get("fieldsType")}": supported values: "FieldsV1"',
                                "FieldValueNotSupported"))
    if causes:
        raise APIError(422, "Invalid", "managedFields: " + ", ".join(f"{c.field}: {c.message}" for c in causes),
                       causes=causes)
    if not all(isinstance(e.get("manager", ""), str) and valid_fields(e.get("fieldsV1", {})) for e in requested):
        return live_entries
    return requested


def after_update(entries: list[Obj], changes: Changes, *, manager: str, api_version: str,
                 subresource: str | None, time: str) -> list[Obj]:
    """Entries after a non-apply write: what it added or changed is the writer's and nobody else's,
    what it removed is nobody's. The writer's time moves only when it took something."""
    if changes.empty:
        return entries
    touched, removed = changes.touched, changes.removed
    mine_id = (manager, UPDATE, api_version, subresource or None)
    out, mine = [], None
    for e in entries:
        fields = difference(difference(e.get("fieldsV1"), touched), removed)
        if _identity(e) == mine_id:
            mine = (e, fields)
        elif fields is not None:
            out.append(e if fields is e.get("fieldsV1") else {**e, "fieldsV1": fields})
    taken = difference(touched, removed)
    if taken is not None:
        fields = union(mine[1], taken) if mine else taken
        out.append(_entry(manager, UPDATE, api_version, time, fields, subresource))
    elif mine is not None and mine[1] is not None:
        out.append({**mine[0], "fieldsV1": mine[1]})
    return _sorted(out)


def apply(live: Obj | None, config: Obj, entries: list[Obj], *, manager: str, api_version: str,
          subresource: str | None, has_status: bool, force: bool, time: str) -> tuple[Obj, list[Obj]]:
    """Merge an apply configuration into `live` (None: the object does not exist yet).

    Returns the merged object (before defaulting; `live`'s subtrees may be shared, `config` is consumed)
    and the new entries. Raises 400 for list items the configuration does not identify and 409 listing
    every field another manager owns with a different value, unless `force`."""
    try:
        applied = fieldset(scoped(config, subresource, has_status), nodes=False, strict=True)
    except KeyError_ as e:
        raise errors.bad_request(f"failed to create typed patch object: {e}") from None
    merged = merge(live or {}, config)
    mine_id = (manager, APPLY, None, subresource or None)
    previous = next((e for e in entries if _identity(e) == mine_id), None)
    others = [e for e in entries if e is not previous]
    if previous is not None:
        owned_by_others = None
        for e in others:
            owned_by_others = union(owned_by_others, e.get("fieldsV1"))
        prune(merged, difference(previous.get("fieldsV1"), applied), union(owned_by_others, applied))
    changes = compare(scoped(live, subresource, has_status), scoped(merged, subresource, has_status))
    touched, removed = changes.touched, changes.removed
    conflicts = [(e, path) for e in others for path in members(intersection(e.get("fieldsV1"), touched))]
    if conflicts and not force:
        raise conflict_error(conflicts)
    out = []
    for e in others:
        fields = difference(difference(e.get("fieldsV1"), touched if force else None), removed)
        if fields is not None:
            out.append(e if fields is e.get("fieldsV1") else {**e, "fieldsV1": fields})
    if applied is not None:
        out.append(_entry(manager, APPLY, api_version, time, applied, subresource))
    return merged, _sorted(out)


class ApplyConflict(APIError):
    """A 409 that remembers its conflicts as (entry, path) pairs."""

    conflicts: list[tuple[Obj, tuple[str, ...]]]


def conflict_error(conflicts: list[tuple[Obj, tuple[str, ...]]]) -> ApplyConflict:
    causes = [Cause(readable(path), f"conflict with {describe(e)}", "FieldManagerConflict") for e, path in conflicts]
    if len(conflicts) == 1:
        message = f"Apply failed with 1 conflict: conflict with {describe(conflicts[0][0])}: {causes[0].field}"
    else:
        by_manager: dict[str, list[str]] = {}
        for (e, _), cause in zip(conflicts, causes):
            by_manager.setdefault(describe(e), []).append(cause.field)
        lines = []
        for who in sorted(by_manager):
            lines.append(f"conflicts with {who}:")
            lines += [f"- {p}" for p in by_manager[who]]
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    error = ApplyConflict(409, "Conflict", message, causes=causes)
    error.conflicts = conflicts
    return error


def has(node: Node | None, path: tuple[str, ...]) -> bool:
    for pe in path:
        if node is None:
            return False
        node = node.get(pe)
    return node is not None and _member(node)


# -- moving from client-side apply -----------------------------------------------------------------

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
KUBECTL = "kubectl"


def _last_applied(obj: Obj | None) -> str | None:
    annotations = (obj or {}).get("metadata", {}).get("annotations")
    value = annotations.get(LAST_APPLIED) if isinstance(annotations, dict) else None
    return value if isinstance(value, str) and value else None


def _owned_by_last_applied(live: Obj, api_version: str, subresource: str | None, has_status: bool) -> Node | None:
    """The fields client-side apply last set and that still hold those values: kubectl's first
    server-side apply may take them without a conflict (Kubernetes' lastAppliedManager)."""
    try:
        last = orjson.loads(_last_applied(live) or "")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(last, dict) or last.get("apiVersion") != api_version:
        return None
    last_scoped = scoped(last, subresource, has_status)
    changes = compare(last_scoped, scoped(live, subresource, has_status))
    fields = fieldset(last_scoped, nodes=False)
    return difference(difference(difference(fields, changes.modified), changes.added), changes.removed)


def same_but_times(a: list[Obj], b: list[Obj]) -> bool:
    """Whether two entry lists differ at most in their timestamps (a no-op apply keeps the old ones, so
    it does not change the object — Kubernetes' IgnoreManagedFieldsTimestampsTransformer)."""
    if len(a) != len(b):
        return False
    return all({**x, "time": None} == {**y, "time": None} for x, y in zip(a, b))


class Writer:
    """One write: its manager and the endpoint it came through. Gives the entries to store with the
    new object — from the apply, when `apply` merged a configuration, otherwise by comparing."""

    def __init__(self, manager: str, *, api_version: str, subresource: str | None, has_status: bool):
        self.manager, self.api_version = manager, api_version
        self.subresource, self.has_status = subresource, has_status
        self.applied: list[Obj] | None = None

    def apply(self, live: Obj | None, config: Obj, *, force: bool) -> Obj:
        """Merge `config` into `live`. kubectl's own applies also honour its client-side history, as
        Kubernetes does for the manager "kubectl": conflicts on fields its last-applied annotation set
        (to the values they still have) are taken over, and that annotation follows the configuration."""
        def run(forced: bool) -> tuple[Obj, list[Obj]]:
            return apply(live, config, live_entries(live), manager=self.manager, api_version=self.api_version,
                         subresource=self.subresource, has_status=self.has_status, force=forced, time=now())

        kubectl_history = self.manager == KUBECTL and _last_applied(live) is not None
        if kubectl_history:
            meta = dict(config.get("metadata") or {})
            if isinstance(meta.get("annotations"), dict):
                meta["annotations"] = {k: v for k, v in meta["annotations"].items() if k != LAST_APPLIED}
            last_applied = orjson.dumps({**config, "metadata": meta}).decode()
        try:
            merged, self.applied = run(force)
        except ApplyConflict as e:
            if not kubectl_history:
                raise
            allowed = _owned_by_last_applied(live, self.api_version, self.subresource, self.has_status)
            remaining = [(entry, path) for entry, path in e.conflicts if not has(allowed, path)]
            if remaining:
                raise conflict_error(remaining) from None
            merged, self.applied = run(True)
        if kubectl_history:
            merged.setdefault("metadata", {}).setdefault("annotations", {})[LAST_APPLIED] = last_applied
        return merged

    def entries(self, live: Obj | None, new: Obj, requested: Any = MISSING) -> list[Obj]:
        """`new` is the object about to be stored, without managedFields; `requested` what the request
        sent as managedFields (subresource writes cannot set them)."""
        old = live_entries(live)
        if self.applied is not None:
            result = self.applied
        else:
            base = requested_entries(requested if self.subresource is None else MISSING, old)
            changes = compare(scoped(live, self.subresource, self.has_status),
                              scoped(new, self.subresource, self.has_status))
            result = after_update(base, changes, manager=self.manager, api_version=self.api_version,
                                  subresource=self.subresource, time=now())
        if result is not old and same_but_times(result, old) and _without_entries(live) == new:
            return old
        return result


def live_entries(obj: Obj | None) -> list[Obj]:
    entries = (obj or {}).get("metadata", {}).get("managedFields") if obj else None
    return entries if isinstance(entries, list) else []


def _without_entries(obj: Obj | None) -> Obj | None:
    if not obj or "managedFields" not in obj.get("metadata", {}):
        return obj
    return {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "managedFields"}}
