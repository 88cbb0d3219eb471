"""EventRecorder: record core/v1 Events about objects, the way `kubectl describe` shows them.

`recorder.event(obj, "Normal"|"Warning", reason, message)` is fire-and-forget: it returns at once and
never raises into the caller; the write happens in a background task and failures are only logged.
Events are for humans — losing one must never break a control loop.

Repeats of the same (object, type, reason, message) are aggregated like client-go's EventCorrelator:
instead of a new Event, the existing one is PATCHed with count+1 and a new lastTimestamp (if that
Event has meanwhile been deleted, a fresh one is created). Writes are serialized per recorder so a
burst of identical events becomes one create plus patches. `flush()` waits for pending writes
(tests, shutdown).
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from datetime import datetime, timezone
from typing import Any

from api.errors import APIError
from client.rest import AsyncClient, is_not_found

logger = logging.getLogger(__name__)

Obj = dict[str, Any]

CACHE_SIZE = 4096
MAX_PENDING = 1000


def _timestamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def involved_object(obj: Obj) -> Obj:
    meta = obj.get("metadata") or {}
    ref = {"kind": obj.get("kind"), "apiVersion": obj.get("apiVersion"), "name": meta.get("name"),
           "namespace": meta.get("namespace"), "uid": meta.get("uid"),
           "resourceVersion": meta.get("resourceVersion")}
    return {k: v for k, v in ref.items() if v}


class EventRecorder:
    def __init__(self, client: AsyncClient, component: str, host: str | None = None) -> None:
        self.client = client
        self.component = component
        self.host = host
        self._seen: collections.OrderedDict[tuple[str, ...], tuple[str, str, int]] = collections.OrderedDict()
        self._lock = asyncio.Lock()
        self._pending: set[asyncio.Task[None]] = set()
        self._dropped = 0

    def event(self, obj: Obj, type: str, reason: str, message: str) -> None:
        """Record an event about `obj` in the background; never raises."""
        try:
            if len(self._pending) >= MAX_PENDING:
                # Like client-go's broadcaster (a queue of 1000): a burst beyond it loses events, not
                # time. One log line per burst, with the count, rather than one per dropped event.
                if not self._dropped:
                    logger.warning("dropping events: %d writes pending (first dropped: %s %s for %s)",
                                   MAX_PENDING, type, reason, involved_object(obj).get("name"))
                self._dropped += 1
                return
            if self._dropped:
                logger.warning("dropped %d events while %d writes were pending", self._dropped, MAX_PENDING)
                self._dropped = 0
            task = asyncio.get_running_loop().create_task(self.record(obj, type, reason, message))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        except Exception:
            logger.exception("could not schedule event %s %s", type, reason)

    async def flush(self) -> None:
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def record(self, obj: Obj, type: str, reason: str, message: str) -> None:
        """Write the event now (create or aggregate); logs failures instead of raising."""
        ref = involved_object(obj)
        namespace = ref.get("namespace") or "default"
        key = (ref.get("kind", ""), namespace, ref.get("name", ""), ref.get("uid", ""), type, reason, message)
        try:
            async with self._lock:
                seen = self._seen.get(key)
                if seen is not None and await self._bump(key, *seen):
                    return
                await self._create(key, ref, namespace, type, reason, message)
        except Exception as e:
            logger.warning("failed to record event %s/%s on %s %s/%s: %s", type, reason, ref.get("kind"),
                           namespace, ref.get("name"), e)

    async def _bump(self, key: tuple[str, ...], namespace: str, name: str, count: int) -> bool:
        try:
            await self.client.patch("events", name, {"count": count + 1, "lastTimestamp": _timestamp()}, namespace)
        except APIError as e:
            if is_not_found(e):
                self._seen.pop(key, None)
                return False
            raise
        self._remember(key, (namespace, name, count + 1))
        return True

    async def _create(self, key: tuple[str, ...], ref: Obj, namespace: str, type: str, reason: str,
                      message: str) -> None:
        now = _timestamp()
        name = f"{ref.get('name', 'unknown')}.{time.time_ns():x}"
        source = {"component": self.component, **({"host": self.host} if self.host else {})}
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": ref,
            "type": type, "reason": reason, "message": message,
            "source": source,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            "reportingComponent": self.component,
            "reportingInstance": self.host or self.component,
        }
        await self.client.create("events", event, namespace)
        self._remember(key, (namespace, name, 1))

    def _remember(self, key: tuple[str, ...], value: tuple[str, str, int]) -> None:
        self._seen[key] = value
        self._seen.move_to_end(key)
        while len(self._seen) > CACHE_SIZE:
            self._seen.popitem(last=False)
