"""The watch cache: one etcd watch feeds every HTTP watcher and serves lists.

At start the cache lists the whole `/registry/` keyspace at one revision, then opens a single etcd watch
from the next revision. Each event updates the current state of its resource (key -> object) and is
appended to that resource's bounded event window. HTTP watchers subscribe with a starting
resourceVersion: events newer than it are replayed from the window, then new ones are pushed as they
arrive. A resourceVersion older than the window answers 410 Gone, which makes clients relist.

Because all of our keys live under `/registry/` and one watch sees them all, the cache's revision is the
etcd revision of the last write. A consistent list therefore asks etcd for its current revision, waits
until the cache has caught up with it, and answers from memory.

Objects held here are shared: nobody may mutate them. Serialised bytes are computed once and reused by
every list and watcher.
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import orjson

from api.registry import RESOURCES, ResourceDef
from apiserver.storage import Store, decode, prefix_end

logger = logging.getLogger(__name__)

Obj = dict[str, Any]


@dataclass(slots=True)
class Event:
    type: str  # ADDED | MODIFIED | DELETED
    obj: Obj
    prev: Obj | None
    rv: int
    _line: bytes | None = None

    def line(self) -> bytes:
        if self._line is None:
            self._line = orjson.dumps({"type": self.type, "object": self.obj}) + b"\n"
        return self._line


class Watcher:
    """One HTTP watch: a queue of events passing its filter. Closed when it falls too far behind."""

    def __init__(self, cache: "ResourceCache", accept: Callable[[Obj], bool], namespace: str | None,
                 max_queue: int = 10000):
        self.cache = cache
        self.accept = accept
        self.namespace = namespace
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self.max_queue = max_queue
        self.closed = False

    def offer(self, ev: Event) -> None:
        if self.closed:
            return
        if self.namespace is not None and ev.obj["metadata"].get("namespace") != self.namespace:
            return
        now = self.accept(ev.obj)
        before = ev.prev is not None and self.accept(ev.prev)
        if ev.type == "DELETED":
            out = ev if before or now else None
        elif now and (before or ev.prev is None):
            out = ev
        elif now:  # started matching the filter: an ADDED from this watcher's point of view
            out = Event("ADDED", ev.obj, None, ev.rv)
        elif before:  # stopped matching: it left this watcher's view
            out = Event("DELETED", ev.obj, None, ev.rv)
        else:
            out = None
        if out is None:
            return
        if self.queue.qsize() >= self.max_queue:
            logger.warning("watcher on %s fell behind; closing it", self.cache.rd.plural)
            self.close()
            return
        self.queue.put_nowait(out)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.cache.watchers.discard(self)
            self.queue.put_nowait(None)


class ResourceCache:
    def __init__(self, rd: ResourceDef, window: int):
        self.rd = rd
        self.prefix = rd.storage_prefix()
        self.objects: dict[str, Obj] = {}
        self.bytes: dict[str, bytes] = {}
        # namespace -> its keys (insertion-ordered), so a namespaced list never scans the whole resource
        self.by_namespace: dict[str, dict[str, None]] = {}
        self.events: deque[Event] = deque(maxlen=window)
        self.watchers: set[Watcher] = set()
        # Oldest revision the window can replay from; raised as old events fall out of the window.
        self.window_start = 0
        # Bumped on every change: lets readers that derive state from `objects` know when to redo it.
        self.changes = 0

    def _namespace_of(self, key: str) -> str | None:
        if not self.rd.namespaced:
            return None
        return key[len(self.prefix):].split("/", 1)[0]

    def put(self, key: str, obj: Obj) -> None:
        self.changes += 1
        self.objects[key] = obj
        ns = self._namespace_of(key)
        if ns is not None:
            self.by_namespace.setdefault(ns, {})[key] = None

    def remove(self, key: str) -> None:
        self.changes += 1
        del self.objects[key]
        ns = self._namespace_of(key)
        if ns is not None:
            keys = self.by_namespace.get(ns)
            if keys is not None:
                keys.pop(key, None)
                if not keys:
                    del self.by_namespace[ns]

    def items(self, namespace: str | None) -> list[tuple[str, Obj]]:
        """(key, object) pairs of one namespace (None: all), in key order as etcd lists them."""
        if namespace is None or not self.rd.namespaced:
            return sorted(self.objects.items())
        return sorted((k, self.objects[k]) for k in self.by_namespace.get(namespace, ()))

    def serialized(self, key: str) -> bytes:
        b = self.bytes.get(key)
        if b is None:
            b = self.bytes[key] = orjson.dumps(self.objects[key])
        return b

    def apply(self, key: str, obj: Obj | None, rv: int) -> None:
        prev = self.objects.get(key)
        if obj is None:
            if prev is None:
                return
            self.remove(key)
            self.bytes.pop(key, None)
            gone = dict(prev)
            gone["metadata"] = {**prev["metadata"], "resourceVersion": str(rv)}
            ev = Event("DELETED", gone, prev, rv)
        else:
            self.put(key, obj)
            self.bytes.pop(key, None)
            ev = Event("MODIFIED" if prev is not None else "ADDED", obj, prev, rv)
        if len(self.events) == self.events.maxlen:
            self.window_start = self.events[0].rv
        self.events.append(ev)
        for w in list(self.watchers):
            w.offer(ev)


class WatchCache:
    def __init__(self, store: Store, window: int = 10000):
        self.store = store
        self.caches: dict[str, ResourceCache] = {r.storage_prefix(): ResourceCache(r, window) for r in RESOURCES}
        self._prefixes = sorted(self.caches, key=len, reverse=True)
        self.revision = 0
        self._advanced = asyncio.Condition()
        self.ready = asyncio.Event()
        self._task: asyncio.Task | None = None

    def cache_for(self, rd: ResourceDef) -> ResourceCache:
        return self.caches[rd.storage_prefix()]

    def _route(self, key: str) -> ResourceCache | None:
        for p in self._prefixes:
            if key.startswith(p):
                return self.caches[p]
        return None

    async def start(self) -> None:
        await self._initial_list()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        for c in self.caches.values():
            for w in list(c.watchers):
                w.close()

    async def _initial_list(self) -> None:
        resp = await self.store._range(b"/registry/", prefix_end(b"/registry/"))
        rev = resp.header.revision
        for kv in resp.kvs:
            key = kv.key.decode()
            cache = self._route(key)
            if cache is not None:
                cache.put(key, decode(kv.value, kv.mod_revision))
        for c in self.caches.values():
            c.window_start = rev
        self.revision = rev
        self.ready.set()
        logger.info("watch cache primed at revision %d (%d keys)", rev, len(resp.kvs))

    async def _relist(self) -> None:
        """After losing the etcd watch beyond compaction: diff a fresh list into the caches as events."""
        resp = await self.store._range(b"/registry/", prefix_end(b"/registry/"))
        rev = resp.header.revision
        seen: dict[str, tuple[Obj, int]] = {}
        for kv in resp.kvs:
            seen[kv.key.decode()] = (decode(kv.value, kv.mod_revision), kv.mod_revision)
        for c in self.caches.values():
            for key in [k for k in c.objects if k not in seen]:
                c.apply(key, None, rev)
        for key, (obj, mod) in seen.items():
            cache = self._route(key)
            if cache is not None:
                old = cache.objects.get(key)
                if old is None or old["metadata"]["resourceVersion"] != obj["metadata"]["resourceVersion"]:
                    cache.apply(key, obj, mod)
        await self._advance(rev)

    async def _advance(self, rev: int) -> None:
        if rev > self.revision:
            self.revision = rev
            async with self._advanced:
                self._advanced.notify_all()

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                watch = await self.store.client.watch(b"/registry/", range_end=prefix_end(b"/registry/"),
                                                      start_revision=self.revision + 1)
                backoff = 0.1
                async for ev in watch:
                    kv = ev.kv
                    rev = kv.mod_revision
                    key = kv.key.decode()
                    cache = self._route(key)
                    if cache is not None:
                        if ev.kind == "DELETE":
                            obj = None
                        else:
                            obj = self.store.take_written(kv.key, rev)
                            if obj is None:
                                obj = decode(kv.value, rev)
                            else:
                                obj["metadata"]["resourceVersion"] = str(rev)
                        cache.apply(key, obj, rev)
                    await self._advance(rev)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # etcd restarted or the watch was compacted away
                logger.warning("etcd watch ended (%r); re-establishing", e)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5)
                if "ompact" in type(e).__name__ or "ompact" in repr(e):
                    try:
                        await self._relist()
                    except Exception as e2:
                        logger.warning("relist failed: %r", e2)

    async def wait_for(self, rev: int, timeout: float = 3.0) -> bool:
        """Wait until the cache has seen revision `rev`; False on timeout."""
        if self.revision >= rev:
            return True
        try:
            async with asyncio.timeout(timeout):
                async with self._advanced:
                    await self._advanced.wait_for(lambda: self.revision >= rev)
            return True
        except TimeoutError:
            return False

    async def sync(self) -> int:
        """A consistent read point: the current etcd revision, once the cache has reached it."""
        rev = await self.store.current_revision()
        if not await self.wait_for(rev):
            raise TimeoutError(f"watch cache did not reach revision {rev}")
        return rev

    def subscribe(self, rd: ResourceDef, from_rv: int, accept: Callable[[Obj], bool],
                  namespace: str | None) -> Watcher | None:
        """Register a watcher for events after `from_rv`. None if `from_rv` is older than the window."""
        cache = self.cache_for(rd)
        if from_rv < cache.window_start:
            return None
        w = Watcher(cache, accept, namespace)
        for ev in cache.events:
            if ev.rv > from_rv:
                w.offer(ev)
        cache.watchers.add(w)
        return w
