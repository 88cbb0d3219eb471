"""When to sync: coalesced, rate-limited, periodic — Kubernetes' BoundedFrequencyRunner in asyncio.

`request()` marks the rules dirty; the loop runs `sync(full)` at most once per `min_interval`, so a
burst of a thousand changes becomes one sync that sees all of them (changes arriving during a sync mark
it dirty again and produce exactly one more). Every `period` without a sync, a full sync runs anyway, to
repair whatever drifted. A failed sync is retried after an exponential backoff, as a full one.
Nothing runs before `start()` is called — the proxy calls it once its caches hold the first lists.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from client.aio import wait_event

SYNC_BURST = 2

logger = logging.getLogger(__name__)


class SyncRunner:
    def __init__(self, sync: Callable[[bool], Awaitable[None]], *, min_interval: float, period: float,
                 retry_initial: float = 0.5, retry_max: float = 30.0) -> None:
        self.sync = sync
        self.min_interval, self.period = min_interval, period
        self.retry_initial, self.retry_max = retry_initial, retry_max
        self._dirty = asyncio.Event()
        self._started = asyncio.Event()
        self._full = True
        self.pending_since: float | None = None
        self.last_success: float | None = None
        self.syncs = 0
        self.failures = 0

    def request(self, full: bool = False) -> None:
        if full:
            self._full = True
        if self.pending_since is None:
            self.pending_since = time.monotonic()
        self._dirty.set()

    def start(self) -> None:
        self.request()
        self._started.set()

    async def run(self) -> None:
        await self._started.wait()
        loop = asyncio.get_running_loop()
        # A token bucket like Kubernetes' BoundedFrequencyRunner: an isolated change syncs at once (burst of
        # SYNC_BURST), a stream of changes at most once per min_interval, coalesced.
        tokens, refilled = float(SYNC_BURST), loop.time()
        backoff = self.retry_initial
        while True:
            if not await wait_event(self._dirty, self.period):
                self.request(full=True)
            now = loop.time()
            if self.min_interval > 0:
                tokens = min(float(SYNC_BURST), tokens + (now - refilled) / self.min_interval)
            else:
                tokens = float(SYNC_BURST)
            refilled = now
            if tokens < 1:
                await asyncio.sleep((1 - tokens) * self.min_interval)
                tokens, refilled = 1.0, loop.time()
            tokens -= 1
            self._dirty.clear()
            full, self._full = self._full, False
            pending, self.pending_since = self.pending_since, None
            try:
                await self.sync(full)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.failures += 1
                logger.exception("sync failed; retrying in %.1fs with a full sync", backoff)
                self.pending_since = pending
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.retry_max)
                self.request(full=True)
                continue
            backoff = self.retry_initial
            self.syncs += 1
            self.last_success = time.monotonic()
