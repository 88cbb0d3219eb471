"""The scheduling queue: priority order, backoff, and which cluster events wake parked pods."""
from __future__ import annotations

import asyncio

from scheduler.queue import NODE_ADD, POD_ADD, POD_DELETE, SchedulingQueue


def pod(name: str, priority: int = 0) -> dict:
    return {"metadata": {"name": name, "namespace": "default"}, "spec": {"priority": priority}}


async def test_higher_priority_pops_first_then_fifo():
    q = SchedulingQueue()
    q.add(pod("a"), "default/a")
    q.add(pod("b", priority=10), "default/b")
    q.add(pod("c"), "default/c")
    assert [(await q.pop()).key for _ in range(3)] == ["default/b", "default/a", "default/c"]


async def test_same_key_is_queued_once():
    q = SchedulingQueue()
    q.add(pod("a"), "default/a")
    q.add(pod("a"), "default/a")
    assert len(q) == 1


async def test_unschedulable_pod_waits_for_an_event():
    q = SchedulingQueue(initial_backoff=0.01)
    q.add(pod("a"), "default/a")
    qp = await q.pop()
    q.add_unschedulable(qp, {"NodeResourcesFit"})
    await asyncio.sleep(0.05)
    assert q.stats()["unschedulable"] == 1 and len(q) == 0


async def test_node_add_moves_unschedulable_pod_back():
    q = SchedulingQueue(initial_backoff=0.01)
    q.add(pod("a"), "default/a")
    qp = await q.pop()
    q.add_unschedulable(qp, {"NodeResourcesFit"})
    q.move_all(NODE_ADD)
    assert (await asyncio.wait_for(q.pop(), 1)).key == "default/a"


async def test_pod_add_does_not_wake_pod_short_of_resources():
    q = SchedulingQueue(initial_backoff=0.01)
    q.add(pod("a"), "default/a")
    q.add_unschedulable(await q.pop(), {"NodeResourcesFit"})
    q.move_all(POD_ADD)
    assert q.stats()["unschedulable"] == 1


async def test_pod_delete_wakes_pod_short_of_resources():
    q = SchedulingQueue(initial_backoff=0.01)
    q.add(pod("a"), "default/a")
    q.add_unschedulable(await q.pop(), {"NodeResourcesFit"})
    q.move_all(POD_DELETE)
    assert q.stats()["unschedulable"] == 0


async def test_event_during_attempt_sends_pod_to_backoff_not_parking():
    q = SchedulingQueue(initial_backoff=0.01)
    q.add(pod("a"), "default/a")
    qp = await q.pop()
    q.move_all(NODE_ADD)  # arrives while the pod is being scheduled
    q.add_unschedulable(qp, {"NodeResourcesFit"})
    assert (await asyncio.wait_for(q.pop(), 1)).key == "default/a"


async def test_backoff_doubles_up_to_the_maximum():
    q = SchedulingQueue(initial_backoff=1, max_backoff=10)
    q.add(pod("a"), "default/a")
    qp = await q.pop()
    durations = []
    for attempts in range(1, 7):
        qp.attempts = attempts
        durations.append(q._backoff_duration(qp))
    assert durations == [1, 2, 4, 8, 10, 10]


async def test_deleted_pod_is_not_popped():
    q = SchedulingQueue()
    q.add(pod("a"), "default/a")
    q.add(pod("b"), "default/b")
    q.delete("default/a")
    assert (await q.pop()).key == "default/b"
