"""The three-way strategic merge patch of client-side apply (strategicpatch.CreateThreeWayMergePatch).

Three documents: `original`, the configuration last applied (kept in the object's
`kubectl.kubernetes.io/last-applied-configuration` annotation); `modified`, the configuration being
applied now; `current`, the live object. The patch is the union of

- what changed or was added from `current` to `modified` (so the live object matches the new config
  wherever the config says something), and
- what was deleted from `original` to `modified` (fields the user removed from the config are removed
  live; fields the config never mentioned, such as defaults and status, are left alone).

Lists follow the strategic merge rules the apiserver applies (api/patch.py, same merge-key table): atomic
lists are replaced whole when they differ; keyed lists (containers by name, ports by containerPort, ...)
are diffed element by element, removed elements become `{"$patch": "delete", key: ...}` and the order
of the new list is sent as `$setElementOrder/<field>`; primitive set lists (finalizers) add the missing
values and remove deleted ones with `$deleteFromPrimitiveList/<field>`.

Pure functions on plain dicts; nothing here mutates its inputs.
"""
from __future__ import annotations

import copy
from typing import Any

import orjson

from api.patch import ATOMIC, list_strategy  # one merge-key table for server and client

Obj = dict[str, Any]

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def last_applied_json(config: Obj) -> str:
    """The annotation's value for `config`: its JSON without the annotation itself (sorted keys, newline)."""
    clean = copy.deepcopy(config)
    annotations = (clean.get("metadata") or {}).get("annotations")
    if annotations is not None:
        annotations.pop(LAST_APPLIED, None)
        if not annotations:
            del clean["metadata"]["annotations"]
    return orjson.dumps(clean, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE).decode()


def with_last_applied(config: Obj) -> Obj:
    """`config` carrying its own last-applied annotation: what apply creates, and `modified` for the patch."""
    out = copy.deepcopy(config)
    out.setdefault("metadata", {}).setdefault("annotations", {})[LAST_APPLIED] = last_applied_json(config)
    return out


def last_applied(live: Obj) -> Obj | None:
    text = ((live.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    return orjson.loads(text) if text else None


def three_way_patch(original: Obj | None, modified: Obj, current: Obj) -> Obj:
    changes = _diff_map(current, modified, (), deletions=False)
    deletions = _diff_map(original or {}, modified, (), deletions=True)
    return _merge_patches(deletions, changes, ())


def _diff_map(old: Obj, new: Obj, path: tuple[str, ...], *, deletions: bool) -> Obj:
    """With deletions=False: keys added or changed from `old` to `new`; with True: keys `new` dropped
    (as null), found recursively, including elements dropped from merged lists."""
    patch: Obj = {}
    for key, value in new.items():
        here = path + (key,)
        if key not in old:
            if not deletions:
                patch[key] = copy.deepcopy(value)
            continue
        before = old[key]
        if isinstance(value, dict) and isinstance(before, dict):
            sub = _diff_map(before, value, here, deletions=deletions)
            if sub:
                patch[key] = sub
        elif isinstance(value, list) and isinstance(before, list):
            patch.update(_diff_list(key, before, value, here, deletions=deletions))
        elif value != before and not deletions:
            patch[key] = copy.deepcopy(value)
    if deletions:
        for key in old:
            if key not in new:
                patch[key] = None
    return patch


def _diff_list(key: str, old: list[Any], new: list[Any], path: tuple[str, ...], *, deletions: bool) -> Obj:
    """Patch entries (possibly several keys: the list and its directives) turning list `old` into `new`."""
    strategy = list_strategy(path)
    if strategy is ATOMIC:
        return {key: copy.deepcopy(new)} if new != old and not deletions else {}
    if strategy is None:
        if deletions:
            gone = [v for v in old if v not in new]
            return {f"$deleteFromPrimitiveList/{key}": gone} if gone else {}
        added = [v for v in new if v not in old]
        return {key: added, f"$setElementOrder/{key}": copy.deepcopy(new)} if added else {}
    return _diff_keyed_list(key, old, new, strategy, path, deletions=deletions)


def _diff_keyed_list(key: str, old: list[Any], new: list[Any], merge_key: str, path: tuple[str, ...], *,
                     deletions: bool) -> Obj:
    if not all(isinstance(i, dict) and merge_key in i for i in old + new):
        return {key: copy.deepcopy(new)} if new != old and not deletions else {}
    old_by_key = {item[merge_key]: item for item in old}
    new_keys = [item[merge_key] for item in new]
    items: list[Obj] = []
    for item in new:
        before = old_by_key.get(item[merge_key])
        if before is None:
            if not deletions:
                items.append(copy.deepcopy(item))
            continue
        sub = _diff_map(before, item, path, deletions=deletions)
        if sub:
            items.append({merge_key: item[merge_key], **sub})
    if deletions:
        items += [{merge_key: k, "$patch": "delete"} for k in old_by_key if k not in new_keys]
        return {key: items} if items else {}
    common = set(old_by_key) & set(new_keys)
    if not items and [k for k in old_by_key if k in common] == [k for k in new_keys if k in common]:
        return {}    # nothing to change; elements only the server has stay where they are
    return {key: items, f"$setElementOrder/{key}": [{merge_key: k} for k in new_keys]}


def _merge_patches(a: Obj, b: Obj, path: tuple[str, ...]) -> Obj:
    """Union of two patches of the same document (deletions and changes never set the same scalar)."""
    out = copy.deepcopy(a)
    for key, value in b.items():
        mine = out.get(key)
        if isinstance(mine, dict) and isinstance(value, dict):
            out[key] = _merge_patches(mine, value, path + (key,))
        elif isinstance(mine, list) and isinstance(value, list) and not key.startswith("$"):
            out[key] = _merge_patch_lists(mine, value, path + (key,))
        else:
            out[key] = copy.deepcopy(value)
    return out


def _merge_patch_lists(a: list[Any], b: list[Any], path: tuple[str, ...]) -> list[Any]:
    strategy = list_strategy(path)
    if strategy is ATOMIC or strategy is None:
        return a + [v for v in b if v not in a]
    out = [copy.deepcopy(i) for i in a]
    for item in b:
        index = next((i for i, o in enumerate(out) if o.get(strategy) == item.get(strategy)), None)
        if index is None:
            out.append(copy.deepcopy(item))
        else:
            out[index] = _merge_patches(out[index], item, path)
    return out
