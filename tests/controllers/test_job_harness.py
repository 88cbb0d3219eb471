"""Shared test plumbing for the workload controllers: a fake apiserver, a fake clock, cache settling,
and a stand-in kubelet that moves pods through their phases."""
from __future__ import annotations

import asyncio
from typing import Any

from client.events import EventRecorder
from client.factory import InformerFactory
from client.testing import FakeAPIServer

Obj = dict[str, Any]


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Harness:
    """A controller wired to a FakeAPIServer; `settle()` lets every watch event reach the caches."""

    def __init__(self, controller_cls, **options: Any):
        self.fake = FakeAPIServer()
        self.client = self.fake.async_client()
        self.factory = InformerFactory(self.client)
        self.recorder = EventRecorder(self.client, "test")
        self.clock = FakeClock()
        self.ctl = controller_cls(self.client, self.factory, self.recorder, clock=self.clock, **options)

    async def start(self) -> "Harness":
        self.factory.start()
        await self.factory.wait_for_sync(5)
        return self

    async def stop(self) -> None:
        self.ctl.queue.shut_down()
        await self.recorder.flush()
        await self.factory.stop()
        await self.client.aclose()

    async def settle(self) -> None:
        for _ in range(500):
            await asyncio.sleep(0)
            if all(q.empty() for *_, q in self.fake._watchers):
                break
        for _ in range(5):
            await asyncio.sleep(0)

    async def seed(self, obj: Obj) -> Obj:
        out = self.fake.seed(obj)
        await self.settle()
        return out

    async def reconcile(self, key: str) -> None:
        await self.ctl.reconcile(key)
        await self.settle()

    def mark(self) -> int:
        return len(self.fake.actions)

    def writes(self, since: int = 0) -> list[tuple]:
        """Write requests (not GETs, not events) since `since`."""
        return [a for a in self.fake.actions[since:] if a[0] != "GET" and "/events" not in a[1]]

    def list(self, plural: str, group: str = "", version: str = "v1") -> list[Obj]:
        return sorted((o for (gr, _), o in self.fake.objects.items()
                       if gr == (f"{plural}.{group}" if group else plural)),
                      key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"]["name"]))

    async def events(self) -> list[str]:
        await self.recorder.flush()
        return [e["reason"] for e in self.list("events")]

    async def set_pod_status(self, pod: Obj, **status: Any) -> Obj:
        meta = pod["metadata"]
        out = await self.client.patch("pods", meta["name"], {"status": status}, meta["namespace"],
                                      subresource="status")
        await self.settle()
        return out

    async def run_pod(self, pod: Obj, *, ready: bool = True, node: str = "n1") -> Obj:
        meta = pod["metadata"]
        await self.client.patch("pods", meta["name"], {"spec": {"nodeName": node}}, meta["namespace"])
        conditions = [{"type": "Ready", "status": "True" if ready else "False",
                       "lastTransitionTime": "2023-01-01T00:00:00Z"}]
        return await self.set_pod_status(pod, phase="Running", conditions=conditions)
