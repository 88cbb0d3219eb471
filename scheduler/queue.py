"""The scheduling queue: active pods, pods backing off, and pods waiting for the cluster to change.

As Kubernetes' PriorityQueue, three places hold pending pods:

- *active*: ready to be scheduled, highest `spec.priority` first, then oldest first;
- *backoff*: failed recently; each failure doubles the pod's wait (1 s, 2 s, 4 s … up to 10 s),
  after which it returns to active on its own;
- *unschedulable*: no node fits. These pods wait for a cluster event that could change the answer —
  a node added or updated, a bound pod deleted or added — and only pods that some rejecting plugin
  cares about that event are moved (to backoff if their backoff has not expired yet, else to active).
  After `UNSCHEDULABLE_TIMEOUT` they are retried anyway, as a safety net against a missed event.

A move request that arrives while a pod is being scheduled would be lost if that pod were then parked
as unschedulable; so a pod whose attempt began before the latest move goes to backoff instead
(Kubernetes' moveRequestCycle).

Keys are `namespace/name`; the queue keeps the newest pod object per key, so an update while queued
replaces it without duplicates. A popped pod is *in flight* until `done(key)`.
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from dataclasses import dataclass, field

from scheduler.nodeinfo import Obj

logger = logging.getLogger(__name__)

INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 10.0
UNSCHEDULABLE_TIMEOUT = 300.0

# Cluster events and the plugins whose verdict they can change.
NODE_ADD = "NodeAdd"
NODE_UPDATE = "NodeUpdate"
POD_DELETE = "AssignedPodDelete"
POD_ADD = "AssignedPodAdd"
EVENT_PLUGINS: dict[str, set[str] | None] = {
    NODE_ADD: None,  # None: every plugin
    NODE_UPDATE: None,
    POD_DELETE: {"NodeResourcesFit", "NodePorts", "InterPodAffinity", "PodTopologySpread"},
    POD_ADD: {"InterPodAffinity", "PodTopologySpread"},
}


@dataclass
class QueuedPod:
    pod: Obj
    key: str
    attempts: int = 0
    added: float = 0.0
    cycle: int = 0
    backoff_until: float = 0.0
    unschedulable_since: float = 0.0
    rejected_by: set[str] = field(default_factory=set)


def _priority(pod: Obj) -> int:
    return int((pod.get("spec") or {}).get("priority") or 0)


class SchedulingQueue:
    def __init__(self, *, initial_backoff: float = INITIAL_BACKOFF, max_backoff: float = MAX_BACKOFF,
                 unschedulable_timeout: float = UNSCHEDULABLE_TIMEOUT) -> None:
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.unschedulable_timeout = unschedulable_timeout
        self._pods: dict[str, QueuedPod] = {}        # every pending pod we know, wherever it waits
        self._heap: list[tuple[int, int, str]] = []  # (-priority, seq, key); stale entries skipped
        self._active: set[str] = set()
        self._backoff: dict[str, asyncio.TimerHandle] = {}
        self._unschedulable: set[str] = set()
        self._in_flight: set[str] = set()
        self._seq = itertools.count()
        self._cycle = 0
        self._move_cycle = -1
        self._wakeup = asyncio.Event()
        self._closed = False
        self._flusher: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._active)

    def stats(self) -> dict[str, int]:
        return {"active": len(self._active), "backoff": len(self._backoff),
                "unschedulable": len(self._unschedulable), "in_flight": len(self._in_flight)}

    def has(self, key: str) -> bool:
        return key in self._pods or key in self._in_flight

    # -- adding and removing ---------------------------------------------------------------------

    def add(self, pod: Obj, key: str) -> None:
        """A new pending pod, or a new version of one; a changed pod gets another chance at once."""
        if key in self._in_flight:
            return
        qp = self._pods.get(key)
        if qp is None:
            qp = self._pods[key] = QueuedPod(pod, key, added=self._now())
            self._activate(qp)
            return
        qp.pod = pod
        if key in self._unschedulable:
            self._unschedulable.discard(key)
            self._to_backoff_or_active(qp)

    def update(self, pod: Obj, key: str) -> None:
        """A queued pod changed (not just its status): refresh it and retry it if it was parked."""
        self.add(pod, key)

    def delete(self, key: str) -> None:
        qp = self._pods.pop(key, None)
        if qp is None:
            return
        self._active.discard(key)
        self._unschedulable.discard(key)
        handle = self._backoff.pop(key, None)
        if handle is not None:
            handle.cancel()

    # -- popping ---------------------------------------------------------------------------------

    async def pop(self) -> QueuedPod | None:
        """The next active pod (None once closed); it is in flight until `done`."""
        while True:
            while self._heap:
                _, _, key = heapq.heappop(self._heap)
                if key in self._active:
                    self._active.discard(key)
                    qp = self._pods.pop(key)
                    self._in_flight.add(key)
                    self._cycle += 1
                    qp.cycle = self._cycle
                    qp.attempts += 1
                    return qp
            if self._closed:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()

    def done(self, key: str) -> None:
        self._in_flight.discard(key)

    # -- failures --------------------------------------------------------------------------------

    def add_unschedulable(self, qp: QueuedPod, rejected_by: set[str]) -> None:
        """No node fits: wait for a relevant cluster change (or backoff, if one happened meanwhile)."""
        self._in_flight.discard(qp.key)
        if self._closed:
            return
        self._pods[qp.key] = qp
        qp.rejected_by = rejected_by
        qp.backoff_until = self._now() + self._backoff_duration(qp)
        if self._move_cycle >= qp.cycle:
            self._start_backoff(qp)
            return
        qp.unschedulable_since = self._now()
        self._unschedulable.add(qp.key)
        self._schedule_flush()

    def add_backoff(self, qp: QueuedPod) -> None:
        """An error (not a verdict): retry after the pod's backoff."""
        self._in_flight.discard(qp.key)
        if self._closed:
            return
        self._pods[qp.key] = qp
        qp.backoff_until = self._now() + self._backoff_duration(qp)
        self._start_backoff(qp)

    def move_all(self, event: str) -> None:
        """A cluster event happened: retry the parked pods it may help."""
        self._move_cycle = self._cycle
        plugins = EVENT_PLUGINS.get(event)
        for key in list(self._unschedulable):
            qp = self._pods[key]
            if plugins is None or not qp.rejected_by or qp.rejected_by & plugins:
                self._unschedulable.discard(key)
                self._to_backoff_or_active(qp)

    def close(self) -> None:
        self._closed = True
        for handle in self._backoff.values():
            handle.cancel()
        self._backoff.clear()
        if self._flusher is not None:
            self._flusher.cancel()
        self._wakeup.set()

    # -- internals -------------------------------------------------------------------------------

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    def _backoff_duration(self, qp: QueuedPod) -> float:
        return min(self.initial_backoff * 2 ** max(qp.attempts - 1, 0), self.max_backoff)

    def _activate(self, qp: QueuedPod) -> None:
        self._active.add(qp.key)
        heapq.heappush(self._heap, (-_priority(qp.pod), next(self._seq), qp.key))
        self._wakeup.set()

    def _to_backoff_or_active(self, qp: QueuedPod) -> None:
        if qp.backoff_until > self._now():
            self._start_backoff(qp)
        else:
            self._activate(qp)

    def _start_backoff(self, qp: QueuedPod) -> None:
        if qp.key in self._backoff:
            return
        delay = max(qp.backoff_until - self._now(), 0.0)
        self._backoff[qp.key] = asyncio.get_running_loop().call_later(delay, self._backoff_done, qp.key)

    def _backoff_done(self, key: str) -> None:
        self._backoff.pop(key, None)
        qp = self._pods.get(key)
        if qp is not None and key not in self._unschedulable:
            self._activate(qp)

    def _schedule_flush(self) -> None:
        if self._flusher is None and not self._closed:
            self._flusher = asyncio.get_running_loop().call_later(self.unschedulable_timeout / 10, self._flush)

    def _flush(self) -> None:
        """Retry pods parked longer than the timeout, in case an event that would free them was missed."""
        self._flusher = None
        now = self._now()
        for key in list(self._unschedulable):
            qp = self._pods[key]
            if now - qp.unschedulable_since >= self.unschedulable_timeout:
                self._unschedulable.discard(key)
                self._to_backoff_or_active(qp)
        if self._unschedulable:
            self._schedule_flush()
