"""Pod workers: one asyncio task per pod uid, so one pod is never synced twice at the same time.

`wake(uid)` asks for a sync; wake-ups arriving during a sync coalesce into one more sync after it.
`sync(uid)` returns how long until the pod needs looking at again without any event (a backoff
expiring), `None` for "only on events", or `DONE` when the pod is gone and its worker should end.
A failing sync is retried with exponential backoff (1 s doubling to 30 s), and logged.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from client.aio import wait_event

logger = logging.getLogger(__name__)

DONE = -1.0
RETRY_INITIAL = 1.0
RETRY_MAX = 30.0

SyncFn = Callable[[str], Awaitable[float | None]]


class PodWorkers:
    def __init__(self, sync: SyncFn) -> None:
        self.sync = sync
        self._wakeups: dict[str, asyncio.Event] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def wake(self, uid: str) -> None:
        event = self._wakeups.get(uid)
        if event is None:
            event = self._wakeups[uid] = asyncio.Event()
            self._tasks[uid] = asyncio.create_task(self._run(uid, event), name=f"pod-{uid}")
        event.set()

    def active(self) -> set[str]:
        return set(self._tasks)

    async def _run(self, uid: str, event: asyncio.Event) -> None:
        retry = RETRY_INITIAL
        try:
            while True:
                event.clear()
                try:
                    delay = await self.sync(uid)
                    retry = RETRY_INITIAL
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.exception("syncing pod %s failed; retrying in %.0fs", uid, retry)
                    delay, retry = retry, min(retry * 2, RETRY_MAX)
                if delay == DONE:
                    if not event.is_set():
                        return
                    continue
                await wait_event(event, delay)
        finally:
            if self._wakeups.get(uid) is event:
                del self._wakeups[uid]
                del self._tasks[uid]

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
