"""A rate-limited work queue of object keys with Kubernetes semantics (client-go util/workqueue).

Three sets make it safe for level-triggered controllers with several workers:

- `queue` (FIFO) holds keys waiting for a worker;
- `dirty` holds keys that need processing — adding a key already dirty is a no-op (dedupe);
- `processing` holds keys a worker holds — a key re-added meanwhile is marked dirty but only queued
  again when the worker calls `done(key)`, so one key is never synced by two workers at once.

Retries: `add_rate_limited(key)` re-adds after the rate limiter's delay (per-key exponential 5 ms ×
2^failures up to 1000 s, combined with an overall token bucket of 10 qps / burst 100, like client-go's
DefaultControllerRateLimiter); `forget(key)` resets a key's failures after a successful sync;
`add_after(key, delay)` schedules a re-add (the earliest pending time per key wins).

`run_workers(queue, sync, n)` is the standard worker loop: get → sync → forget or rate-limited retry → done.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Protocol

logger = logging.getLogger(__name__)


class ShutDown(Exception):
    """Raised by `WorkQueue.get()` once the queue is shut down and drained."""


class RateLimiter(Protocol):
    def when(self, item: Hashable) -> float: ...
    def forget(self, item: Hashable) -> None: ...
    def num_requeues(self, item: Hashable) -> int: ...


class ItemExponentialRateLimiter:
    """Per-item delay `base * 2**failures`, capped at `maximum`."""

    def __init__(self, base: float = 0.005, maximum: float = 1000.0) -> None:
        self.base, self.maximum = base, maximum
        self._failures: dict[Hashable, int] = {}

    def when(self, item: Hashable) -> float:
        failures = self._failures.get(item, 0)
        self._failures[item] = failures + 1
        if failures > 64:  # 2**64 * base is already far beyond any sane maximum
            return self.maximum
        return min(self.base * 2 ** failures, self.maximum)

    def forget(self, item: Hashable) -> None:
        self._failures.pop(item, None)

    def num_requeues(self, item: Hashable) -> int:
        return self._failures.get(item, 0)


class BucketRateLimiter:
    """An overall token bucket (`qps` refill, `burst` capacity): each retry reserves the next free token."""

    def __init__(self, qps: float = 10.0, burst: int = 100, clock: Callable[[], float] = time.monotonic) -> None:
        self.qps, self.burst, self.clock = qps, burst, clock
        self._tokens = float(burst)
        self._last = clock()

    def when(self, item: Hashable) -> float:
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.qps)
        self._last = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    def forget(self, item: Hashable) -> None:
        pass

    def num_requeues(self, item: Hashable) -> int:
        return 0


class MaxOfRateLimiter:
    def __init__(self, *limiters: RateLimiter) -> None:
        self.limiters = limiters

    def when(self, item: Hashable) -> float:
        return max(limiter.when(item) for limiter in self.limiters)

    def forget(self, item: Hashable) -> None:
        for limiter in self.limiters:
            limiter.forget(item)

    def num_requeues(self, item: Hashable) -> int:
        return max(limiter.num_requeues(item) for limiter in self.limiters)


def default_rate_limiter() -> RateLimiter:
    return MaxOfRateLimiter(ItemExponentialRateLimiter(), BucketRateLimiter())


class WorkQueue:
    def __init__(self, name: str = "", rate_limiter: RateLimiter | None = None) -> None:
        self.name = name
        self.rate_limiter = rate_limiter or default_rate_limiter()
        self._queue: collections.deque[Hashable] = collections.deque()
        self._dirty: set[Hashable] = set()
        self._processing: set[Hashable] = set()
        self._getters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._waiting: dict[Hashable, tuple[float, asyncio.TimerHandle]] = {}
        self._shutting_down = False

    def __len__(self) -> int:
        return len(self._queue)

    def __repr__(self) -> str:
        return f"WorkQueue({self.name!r}, queued={len(self._queue)}, processing={len(self._processing)})"

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def add(self, key: Hashable) -> None:
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return
        self._queue.append(key)
        self._wake_one()

    async def get(self) -> Hashable:
        """Wait for a key and mark it processing; raises ShutDown once shut down and empty."""
        while not self._queue:
            if self._shutting_down:
                raise ShutDown(self.name)
            waiter = asyncio.get_running_loop().create_future()
            self._getters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in self._getters:
                    self._getters.remove(waiter)
                if self._queue and not waiter.cancelled():
                    self._wake_one()  # we were woken for an item we will not take: pass it on
                raise
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def done(self, key: Hashable) -> None:
        """The worker finished `key`; if it was re-added meanwhile, queue it again now."""
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._wake_one()

    def add_after(self, key: Hashable, delay: float) -> None:
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        ready_at = loop.time() + delay
        pending = self._waiting.get(key)
        if pending is not None:
            if pending[0] <= ready_at:
                return
            pending[1].cancel()
        self._waiting[key] = (ready_at, loop.call_at(ready_at, self._ready, key))

    def _ready(self, key: Hashable) -> None:
        self._waiting.pop(key, None)
        self.add(key)

    def add_rate_limited(self, key: Hashable) -> None:
        self.add_after(key, self.rate_limiter.when(key))

    def forget(self, key: Hashable) -> None:
        self.rate_limiter.forget(key)

    def num_requeues(self, key: Hashable) -> int:
        return self.rate_limiter.num_requeues(key)

    def shut_down(self) -> None:
        """Stop accepting keys; workers drain what is queued, then `get()` raises ShutDown."""
        self._shutting_down = True
        for _, handle in self._waiting.values():
            handle.cancel()
        self._waiting.clear()
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _wake_one(self) -> None:
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


async def run_workers(queue: WorkQueue, sync: Callable[[Hashable], Awaitable[object]], n: int = 1) -> None:
    """Run `n` workers until the queue shuts down (or this coroutine is cancelled)."""

    async def worker(i: int) -> None:
        while True:
            try:
                key = await queue.get()
            except ShutDown:
                return
            try:
                await sync(key)
            except Exception:
                logger.exception("%s: sync of %r failed (retry %d)", queue.name or "workqueue", key,
                                 queue.num_requeues(key) + 1)
                queue.add_rate_limited(key)
            else:
                queue.forget(key)
            finally:
                queue.done(key)

    workers = [asyncio.create_task(worker(i), name=f"{queue.name}-worker-{i}") for i in range(n)]
    try:
        await asyncio.gather(*workers)
    finally:
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
