"""The informer's local cache: objects by key, plus optional secondary indexes.

Keys are `namespace/name` (or `name` for cluster-scoped kinds), the keys controllers put on their
workqueues. Indexes map an index name to a function `obj -> list of values`; `by_index("byNode", "n1")`
then answers "which pods are on n1" without a scan.

The cache hands out the very dicts it holds, for speed: NEVER mutate an object read from a Store —
`copy.deepcopy` it first, change the copy, and write that to the apiserver. Only the informer writes
to the store (through `Indexer`); consumers see it as the read-only `Store`.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from client.resources import object_key

logger = logging.getLogger(__name__)

Obj = dict[str, Any]
IndexFunc = Callable[[Obj], Iterable[str]]


def namespace_index(obj: Obj) -> list[str]:
    ns = (obj.get("metadata") or {}).get("namespace")
    return [ns] if ns else []


class Store:
    """Read-only view of cached objects."""

    def __init__(self) -> None:
        self._items: dict[str, Obj] = {}
        self._index_funcs: dict[str, IndexFunc] = {}
        self._indices: dict[str, dict[str, set[str]]] = {}

    def get(self, key: str) -> Obj | None:
        return self._items.get(key)

    def get_by_name(self, name: str, namespace: str | None = None) -> Obj | None:
        return self._items.get(f"{namespace}/{name}" if namespace else name)

    def list(self) -> list[Obj]:
        return list(self._items.values())

    def keys(self) -> list[str]:
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def by_index(self, name: str, value: str) -> list[Obj]:
        if name not in self._index_funcs:
            raise KeyError(f"no index named {name!r}")
        return [self._items[k] for k in sorted(self._indices[name].get(value, ()))]

    def index_keys(self, name: str, value: str) -> list[str]:
        if name not in self._index_funcs:
            raise KeyError(f"no index named {name!r}")
        return sorted(self._indices[name].get(value, ()))

    def add_index(self, name: str, fn: IndexFunc) -> None:
        """Register an index; existing objects are indexed at once."""
        if name in self._index_funcs:
            raise ValueError(f"index {name!r} already exists")
        self._index_funcs[name] = fn
        self._indices[name] = {}
        for key, obj in self._items.items():
            self._index_one(name, key, obj)

    def _index_one(self, name: str, key: str, obj: Obj) -> None:
        for value in self._index_funcs[name](obj):
            self._indices[name].setdefault(value, set()).add(key)

    def _unindex(self, key: str, obj: Obj) -> None:
        for name, fn in self._index_funcs.items():
            for value in fn(obj):
                keys = self._indices[name].get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del self._indices[name][value]


class Indexer(Store):
    """The writable side, used by the informer only."""

    def put(self, obj: Obj) -> Obj | None:
        """Insert or replace; returns the previous object for the key."""
        key = object_key(obj)
        old = self._items.get(key)
        if old is not None:
            self._unindex(key, old)
        self._items[key] = obj
        for name in self._index_funcs:
            self._index_one(name, key, obj)
        return old

    def remove(self, key: str) -> Obj | None:
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old
