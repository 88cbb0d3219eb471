"""Informer: a list+watch mirror of one resource kind in a local cache, with change callbacks.

The loop, as in client-go's Reflector:

1. LIST (paginated) and replace the cache; the List's resourceVersion is where the watch starts.
2. WATCH from the last resourceVersion seen (events and BOOKMARKs advance it). When the stream ends
   (server `timeoutSeconds`) or breaks (connection error, apiserver restart), watch again from that
   resourceVersion after a backoff — the server replays what happened meanwhile, so nothing is lost
   or delivered twice.
3. When the server answers 410 Gone/Expired (our resourceVersion fell out of its window), relist. The
   relist diffs against the cache: new objects -> on_add, present ones -> on_update(old, new), objects
   that vanished while we were away -> on_delete(last known state). Handlers thus converge.

Every `resync_seconds` each cached object is re-delivered as on_update(obj, obj), so level-triggered
controllers revisit everything periodically even if an event was mishandled.

Handlers are plain (non-async) callables and should only enqueue keys; they run on the event loop
between events. The cache (`informer.store`) is shared: never mutate what it returns — deepcopy first.
`has_synced` is set once the first list has been delivered; controllers wait for it before working.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


from api.errors import APIError
from client.resources import ResourceLike, object_key, resolve
from client.rest import TRANSPORT_ERRORS, AsyncClient, is_gone
from client.store import Indexer, IndexFunc, Store

logger = logging.getLogger(__name__)

Obj = dict[str, Any]

LIST_PAGE_SIZE = 500
# client-go picks a random watch timeout in [5, 10) minutes so that watchers do not reconnect in lockstep.
WATCH_TIMEOUT_RANGE = (300, 600)
BACKOFF_INITIAL = 0.8
BACKOFF_MAX = 30.0
QUICK_WATCH_END = 1.0


@dataclass
class Handler:
    on_add: Callable[[Obj], None] | None = None
    on_update: Callable[[Obj, Obj], None] | None = None
    on_delete: Callable[[Obj], None] | None = None


class Backoff:
    """Exponential backoff with jitter, reset after a healthy period."""

    def __init__(self, initial: float = BACKOFF_INITIAL, maximum: float = BACKOFF_MAX) -> None:
        self.initial, self.maximum = initial, maximum
        self._next = initial

    def next(self) -> float:
        delay = self._next * random.uniform(1.0, 1.2)
        self._next = min(self._next * 2, self.maximum)
        return delay

    def reset(self) -> None:
        self._next = self.initial


class Informer:
    def __init__(self, client: AsyncClient, res: ResourceLike, namespace: str | None = None,
                 label_selector: str | None = None, field_selector: str | None = None,
                 resync_seconds: float | None = None, *, page_size: int = LIST_PAGE_SIZE,
                 watch_timeout: tuple[int, int] = WATCH_TIMEOUT_RANGE,
                 backoff: Backoff | None = None) -> None:
        self.client = client
        self.resource = resolve(res)
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.resync_seconds = resync_seconds
        self.page_size = page_size
        self.watch_timeout = watch_timeout
        self.backoff = backoff or Backoff()
        self.has_synced = asyncio.Event()
        self.resource_version: str | None = None
        self._indexer = Indexer()
        self._handlers: list[Handler] = []
        self._task: asyncio.Task[Any] | None = None
        self._stopping = False

    def __repr__(self) -> str:
        return f"Informer({self.resource.group_resource}, ns={self.namespace or '*'})"

    @property
    def store(self) -> Store:
        return self._indexer

    def add_index(self, name: str, fn: IndexFunc) -> None:
        self._indexer.add_index(name, fn)

    def add_handler(self, on_add: Callable[[Obj], None] | None = None,
                    on_update: Callable[[Obj, Obj], None] | None = None,
                    on_delete: Callable[[Obj], None] | None = None) -> Handler:
        """Register callbacks; a handler added after the cache filled first sees every cached object as added."""
        handler = Handler(on_add, on_update, on_delete)
        self._handlers.append(handler)
        if handler.on_add:
            for obj in self._indexer.list():
                self._call(handler.on_add, obj)
        return handler

    async def wait_for_sync(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self.has_synced.wait(), timeout)

    # -- lifecycle -------------------------------------------------------------------------------

    async def run(self) -> None:
        """List and watch until `stop()` (or cancellation)."""
        self._task = asyncio.current_task()
        resync = asyncio.create_task(self._resync_loop()) if self.resync_seconds else None
        try:
            await self._list_watch_loop()
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            if self._task is not None:
                self._task.uncancel()
        finally:
            if resync is not None:
                resync.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await resync
            logger.debug("%r stopped", self)

    def stop(self) -> None:
        self._stopping = True
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def _list_watch_loop(self) -> None:
        need_list = True
        while True:
            try:
                if need_list:
                    await self._list_and_replace()
                    need_list = False
                started = asyncio.get_running_loop().time()
                if not await self._watch() and asyncio.get_running_loop().time() - started < QUICK_WATCH_END:
                    # A watch that ends at once without events means something is wrong server-side:
                    # do not hammer it.
                    await asyncio.sleep(self.backoff.next())
            except APIError as e:
                if is_gone(e):
                    logger.info("%r: resourceVersion %s expired, relisting", self, self.resource_version)
                    need_list = True
                    continue
                logger.warning("%r: %s; retrying", self, e)
                await asyncio.sleep(self.backoff.next())
            except TRANSPORT_ERRORS as e:
                logger.warning("%r: connection to apiserver failed (%s: %s); retrying from resourceVersion %s",
                               self, type(e).__name__, e, self.resource_version)
                await asyncio.sleep(self.backoff.next())

    # -- list ------------------------------------------------------------------------------------

    async def _list(self) -> Obj:
        try:
            return await self.client.list_all(self.resource, self.namespace, self.label_selector,
                                              self.field_selector, limit=self.page_size)
        except APIError as e:
            if not is_gone(e):
                raise
            # The continue token outlived the server's history: fall back to one consistent unpaged list.
            logger.info("%r: paginated list expired, listing in one page", self)
            return await self.client.list(self.resource, self.namespace, self.label_selector, self.field_selector)

    async def _list_and_replace(self) -> None:
        listed = await self._list()
        items = listed.get("items") or []
        fresh = {object_key(obj): obj for obj in items}
        for key in [k for k in self._indexer.keys() if k not in fresh]:
            gone = self._indexer.remove(key)
            if gone is not None:
                self._dispatch_delete(gone)
        for obj in items:
            old = self._indexer.put(obj)
            self._dispatch_put(old, obj)
        self.resource_version = (listed.get("metadata") or {}).get("resourceVersion")
        logger.info("%r: listed %d objects at resourceVersion %s", self, len(items), self.resource_version)
        self.has_synced.set()

    # -- watch -----------------------------------------------------------------------------------

    async def _watch(self) -> int:
        """Stream events into the cache until the watch ends; returns how many events arrived."""
        count = 0
        stream = self.client.watch(self.resource, self.namespace, resource_version=self.resource_version,
                                   label_selector=self.label_selector, field_selector=self.field_selector,
                                   timeout_seconds=random.randint(*self.watch_timeout), allow_bookmarks=True)
        async with contextlib.aclosing(stream):
            async for kind, obj in stream:
                self._apply(kind, obj)
                self.backoff.reset()
                count += 1
        return count

    def _apply(self, kind: str, obj: Obj) -> None:
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if kind in ("ADDED", "MODIFIED"):
            old = self._indexer.put(obj)
            self._dispatch_put(old, obj)
        elif kind == "DELETED":
            self._indexer.remove(object_key(obj))
            self._dispatch_delete(obj)
        elif kind != "BOOKMARK":
            logger.warning("%r: ignoring watch event of unknown type %r", self, kind)
            return
        if rv:
            self.resource_version = rv

    # -- delivery --------------------------------------------------------------------------------

    def _call(self, fn: Callable[..., None], *args: Obj) -> None:
        try:
            fn(*args)
        except Exception:
            logger.exception("%r: event handler %r failed", self, fn)

    def _dispatch_put(self, old: Obj | None, new: Obj) -> None:
        for h in self._handlers:
            if old is None and h.on_add:
                self._call(h.on_add, new)
            elif old is not None and h.on_update:
                self._call(h.on_update, old, new)

    def _dispatch_delete(self, obj: Obj) -> None:
        for h in self._handlers:
            if h.on_delete:
                self._call(h.on_delete, obj)

    async def _resync_loop(self) -> None:
        assert self.resync_seconds
        await self.has_synced.wait()
        while True:
            await asyncio.sleep(self.resync_seconds)
            for obj in self._indexer.list():
                for h in self._handlers:
                    if h.on_update:
                        self._call(h.on_update, obj, obj)
