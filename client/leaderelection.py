"""Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection package does it.

The Lease's spec is the lock record: holderIdentity, leaseDurationSeconds, acquireTime, renewTime,
leaseTransitions. Every write is a PUT carrying the resourceVersion we read, so two candidates racing
for the same lease cannot both win: the loser gets 409 Conflict and simply tries again later.

Expiry is judged by our own clock, never by comparing timestamps written by another machine: a lease
held by someone else counts as expired when its record has not changed for leaseDurationSeconds since
*we first observed* that record. Clock skew between nodes therefore does not matter.

`run(on_started_leading, on_stopped_leading)`:
  1. try to acquire every `retry_period` (jittered) until it succeeds;
  2. start `on_started_leading()` as a task and renew every `retry_period`;
  3. if renewals keep failing for `renew_deadline`, or another holder shows up, leadership is lost:
     the leading task is cancelled, `on_stopped_leading()` runs and `run` returns.
`stop()` ends a run; a leader then releases the lease (empty holderIdentity) so a successor takes over
at once instead of waiting for expiry. Components should exit when `run` returns after a loss, as
Kubernetes components do, rather than keep acting on stale assumptions.
"""
from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

from api.errors import APIError
from client.rest import AsyncClient, is_already_exists, is_conflict
from client.aio import wait_event

logger = logging.getLogger(__name__)

Obj = dict[str, Any]

LEASES = "leases.coordination.k8s.io"
JITTER = 1.2


def micro_time(dt: datetime | None = None) -> str:
    """RFC 3339 with microseconds, the MicroTime format: 2006-01-02T15:04:05.000000Z."""
    return (dt or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(self, client: AsyncClient, lease_namespace: str, lease_name: str, identity: str,
                 lease_duration: float = 15, renew_deadline: float = 10, retry_period: float = 2, *,
                 release_on_stop: bool = True, clock: Callable[[], float] = time.monotonic) -> None:
        if not lease_duration > renew_deadline > retry_period * JITTER:
            raise ValueError("need lease_duration > renew_deadline > retry_period * 1.2")
        self.client = client
        self.namespace, self.name, self.identity = lease_namespace, lease_name, identity
        self.lease_duration, self.renew_deadline, self.retry_period = lease_duration, renew_deadline, retry_period
        self.release_on_stop = release_on_stop
        self.clock = clock
        self._observed_spec: Obj | None = None
        self._observed_at = 0.0
        self._observed_rv: str | None = None
        self._leader = False
        self._stop = asyncio.Event()

    def __repr__(self) -> str:
        return f"LeaderElector({self.namespace}/{self.name}, {self.identity})"

    @property
    def is_leader(self) -> bool:
        return self._leader

    @property
    def leader(self) -> str | None:
        """The holder we last observed (may be us), or None."""
        return (self._observed_spec or {}).get("holderIdentity") or None

    # -- one attempt ------------------------------------------------------------------------------

    def _spec(self, old: Obj | None) -> Obj:
        now = micro_time()
        held_by_us = bool(old) and old.get("holderIdentity") == self.identity
        transitions = (old or {}).get("leaseTransitions", 0)
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, math.ceil(self.lease_duration)),
            "acquireTime": old.get("acquireTime") if held_by_us and old else now,
            "renewTime": now,
            "leaseTransitions": transitions if held_by_us or old is None else transitions + 1,
        }

    def _observe(self, lease: Obj) -> None:
        spec = lease.get("spec") or {}
        if spec != self._observed_spec:
            self._observed_spec = spec
            self._observed_at = self.clock()
        self._observed_rv = (lease.get("metadata") or {}).get("resourceVersion")

    async def try_acquire_or_renew(self) -> bool:
        """One round: create, renew or take over the lease.

        False when someone else validly holds it or we lost a race; other errors propagate.
        """
        lease = await self.client.get_or_none(LEASES, self.name, self.namespace)
        if lease is None:
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace}, "spec": self._spec(None)}
            try:
                self._observe(await self.client.create(LEASES, body))
            except APIError as e:
                if is_already_exists(e):
                    return False
                raise
            return True

        self._observe(lease)
        spec = self._observed_spec or {}
        holder = spec.get("holderIdentity")
        duration = spec.get("leaseDurationSeconds") or self.lease_duration
        if holder and holder != self.identity and self.clock() < self._observed_at + duration:
            return False
        if holder and holder != self.identity:
            logger.info("%r: lease held by %s expired, taking over", self, holder)
        updated = {**lease, "spec": self._spec(spec)}
        try:
            self._observe(await self.client.update(LEASES, updated))
        except APIError as e:
            if is_conflict(e):
                logger.debug("%r: lost a race for the lease", self)
                return False
            raise
        return True

    async def release(self) -> None:
        """Give the lease up so a successor need not wait for it to expire."""
        lease = await self.client.get_or_none(LEASES, self.name, self.namespace)
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
            return
        now = micro_time()
        spec = {**lease["spec"], "holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": now,
                "acquireTime": now}
        try:
            await self.client.update(LEASES, {**lease, "spec": spec})
            logger.info("%r: released the lease", self)
        except APIError as e:
            logger.warning("%r: could not release the lease: %s", self, e)

    # -- loop -------------------------------------------------------------------------------------

    async def _attempt(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                return await self.try_acquire_or_renew()
        except Exception as e:  # apiserver down, timeouts, unexpected Status: treat as "not this round"
            logger.warning("%r: lease attempt failed: %s: %s", self, type(e).__name__, e)
            return False

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopped; True if stop() was called."""
        return await wait_event(self._stop, seconds)

    async def _acquire(self) -> bool:
        while not self._stop.is_set():
            if await self._attempt(self.renew_deadline):
                return True
            if self.leader and self.leader != self.identity:
                logger.debug("%r: %s is leading", self, self.leader)
            if await self._sleep(self.retry_period * random.uniform(1.0, JITTER)):
                break
        return False

    async def _renew_until_lost(self, leading: asyncio.Task[Any]) -> None:
        """Renew every retry_period; return when stopped, when the leader work ends, or when leadership is lost."""
        stopped = asyncio.ensure_future(self._stop.wait())
        last_renew = self.clock()
        try:
            while True:
                done, _ = await asyncio.wait({stopped, leading}, timeout=self.retry_period,
                                             return_when=asyncio.FIRST_COMPLETED)
                if done:
                    return
                remaining = self.renew_deadline - (self.clock() - last_renew)
                if await self._attempt(max(remaining, 0.001)):
                    last_renew = self.clock()
                    continue
                if self.leader and self.leader != self.identity:
                    logger.warning("%r: lease taken over by %s", self, self.leader)
                    return
                if self.clock() - last_renew >= self.renew_deadline:
                    logger.warning("%r: failed to renew the lease within %ss", self, self.renew_deadline)
                    return
        finally:
            stopped.cancel()

    async def run(self, on_started_leading: Callable[[], Awaitable[Any]],
                  on_stopped_leading: Callable[[], Any] | None = None) -> None:
        if not await self._acquire():
            return
        self._leader = True
        logger.info("%r: became leader", self)
        leading = asyncio.create_task(on_started_leading(), name=f"leading-{self.name}")
        stopped_by_us = False
        try:
            await self._renew_until_lost(leading)
            stopped_by_us = self._stop.is_set() or leading.done()
        finally:
            self._leader = False
            leading.cancel()
            results = await asyncio.gather(leading, return_exceptions=True)
            if isinstance(results[0], Exception):
                logger.error("%r: leader work failed: %r", self, results[0])
            if stopped_by_us and self.release_on_stop:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.release(), self.renew_deadline)
            logger.info("%r: stopped leading", self)
            if on_stopped_leading is not None:
                result = on_stopped_leading()
                if inspect.isawaitable(result):
                    await result

    def stop(self) -> None:
        self._stop.set()
