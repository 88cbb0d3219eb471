"""The scheduling loop against the in-memory fake apiserver: binding outcomes and status writes."""
from __future__ import annotations

import asyncio
import contextlib

import httpx
from schedtest import make_node, make_pod

from client.events import EventRecorder
from client.factory import InformerFactory
from client.testing import FakeAPIServer
from scheduler.scheduler import Scheduler


async def start(fake: FakeAPIServer):
    client = fake.async_client()
    factory = InformerFactory(client)
    sched = Scheduler(client, factory, EventRecorder(client, "test"))
    factory.start()
    await factory.wait_for_sync(5)
    task = asyncio.create_task(sched.run())
    return sched, factory, task


async def stop(factory, task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await factory.stop()


async def eventually(check, timeout: float = 5.0) -> None:
    async def loop() -> None:
        while not check():
            await asyncio.sleep(0.01)
    await asyncio.wait_for(loop(), timeout)


def binding_posts(fake: FakeAPIServer) -> list:
    return [a for a in fake.actions if a[0] == "POST" and a[1].endswith("/binding")]


async def test_pod_is_bound_through_binding_subresource():
    fake = FakeAPIServer()
    fake.seed(make_node("n1"))
    fake.seed(make_pod("web"))
    sched, factory, task = await start(fake)
    try:
        await eventually(lambda: sched.scheduled == 1)
        [post] = binding_posts(fake)
        assert post[1].endswith("/namespaces/default/pods/web/binding")
        assert post[3]["target"] == {"apiVersion": "v1", "kind": "Node", "name": "n1"}
    finally:
        await stop(factory, task)


async def test_conflict_drops_pod_and_forgets_assumption():
    fake = FakeAPIServer()
    fake.seed(make_node("n1", cpu="1"))
    fake.seed(make_pod("web", cpu="800m"))
    fake.reactors.append(lambda r: httpx.Response(409, json={
        "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409,
        "message": "pod web is already assigned"}) if r.url.path.endswith("/binding") else None)
    sched, factory, task = await start(fake)
    try:
        await eventually(lambda: binding_posts(fake) and not sched.queue.stats()["in_flight"])
        assert sched.cache.node("n1").req_cpu == 0
        assert not sched.queue.has("default/web")
        assert len(binding_posts(fake)) == 1
    finally:
        await stop(factory, task)


async def test_unschedulable_pod_gets_condition_by_strategic_patch():
    fake = FakeAPIServer()
    fake.seed(make_node("n1", cpu="1"))
    fake.seed(make_pod("big", cpu="2"))
    sched, factory, task = await start(fake)
    try:
        await eventually(lambda: any(a[0] == "PATCH" for a in fake.actions))
        [patch] = [a for a in fake.actions if a[0] == "PATCH"]
        assert patch[1].endswith("/pods/big/status")
        [cond] = patch[3]["status"]["conditions"]
        assert (cond["type"], cond["status"], cond["reason"]) == ("PodScheduled", "False", "Unschedulable")
        assert cond["message"] == "0/1 nodes are available: 1 Insufficient cpu."
        assert sched.queue.stats()["unschedulable"] == 1
    finally:
        await stop(factory, task)


async def test_terminating_pod_is_not_scheduled():
    fake = FakeAPIServer()
    fake.seed(make_node("n1"))
    pod = make_pod("leaving")
    pod["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    fake.seed(pod)
    fake.seed(make_pod("staying"))
    sched, factory, task = await start(fake)
    try:
        await eventually(lambda: sched.scheduled == 1)
        assert [p[1] for p in binding_posts(fake)] == ["/api/v1/namespaces/default/pods/staying/binding"]
    finally:
        await stop(factory, task)
