"""The pod lifecycle event generator: tells the kubelet which pods' containers changed.

Two sources, both ending in `on_pod_changed(pod_uid)` on the event loop:

- Docker's event stream (`docker events` filtered to this node's managed containers) read by a daemon
  thread, so a container death wakes its pod worker within milliseconds;
- a periodic relist (`docker ps -a`, no inspect) as the safety net for events lost while the stream was
  down or dockerd restarted: every pod whose container set or states differ from the last relist, and
  every pod the kubelet no longer knows, is reported.

Reports are hints: the pod worker always reads the full current state itself (level-triggered).
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable


from kubelet import labels as L
from kubelet.runtime import Runtime

logger = logging.getLogger(__name__)

# Only what the kubelet did not cause itself: creates and starts are ours and would only echo back.
EVENTS = ["die", "oom", "destroy"]
RETRY_DELAY = 1.0


class PLEG:
    def __init__(self, runtime: Runtime, on_pod_changed: Callable[[str], None], *, relist_period: float = 5.0) -> None:
        self.runtime = runtime
        self.on_pod_changed = on_pod_changed
        self.relist_period = relist_period
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = threading.Event()
        self._stream = None
        self._thread: threading.Thread | None = None
        self._seen: dict[str, frozenset[tuple[str, str]]] = {}

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._read_events, name="pleg-docker-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        stream = self._stream
        if stream is not None:
            try:
                stream.close()
            except Exception:
                pass

    def _read_events(self) -> None:
        filters = {"type": "container", "event": EVENTS, **L.selector(self.runtime.node)}
        while not self._stopping.is_set():
            try:
                self._stream = self.runtime.api.events(decode=True, filters=filters)
                for event in self._stream:
                    uid = ((event.get("Actor") or {}).get("Attributes") or {}).get(L.POD_UID)
                    if uid and self._loop is not None:
                        self._loop.call_soon_threadsafe(self.on_pod_changed, uid)
            except Exception as e:
                if self._stopping.is_set():
                    return
                logger.warning("docker event stream broke (%s); reconnecting", e)
                time.sleep(RETRY_DELAY)

    async def relist(self) -> set[str]:
        """One relist; returns the pod uids that have containers now."""
        summaries = await self.runtime.summaries()
        current: dict[str, set[tuple[str, str]]] = {}
        for s in summaries:
            uid = (s.get("Labels") or {}).get(L.POD_UID)
            if uid:
                current.setdefault(uid, set()).add((s["Id"], s.get("State", "")))
        frozen = {uid: frozenset(v) for uid, v in current.items()}
        for uid in set(frozen) | set(self._seen):
            if frozen.get(uid) != self._seen.get(uid):
                self.on_pod_changed(uid)
        gone = {cid for states in self._seen.values() for cid, _ in states} - \
            {cid for states in frozen.values() for cid, _ in states}
        self.runtime.forget(gone)
        self._seen = frozen
        return set(frozen)

    async def relist_loop(self) -> None:
        while True:
            await asyncio.sleep(self.relist_period)
            try:
                await self.relist()
            except Exception as e:
                logger.warning("relist failed: %s", e)
