import asyncio

import pytest

from client.workqueue import (BucketRateLimiter, ItemExponentialRateLimiter, ShutDown, WorkQueue,
                              default_rate_limiter, run_workers)


async def test_add_dedupes_dirty_keys():
    q = WorkQueue("t")
    for key in ("a", "b", "a", "a"):
        q.add(key)
    assert len(q) == 2
    assert [await q.get(), await q.get()] == ["a", "b"]


async def test_key_in_processing_is_requeued_only_after_done():
    q = WorkQueue("t")
    q.add("a")
    key = await q.get()
    q.add("a")  # changed again while a worker holds it
    assert len(q) == 0
    second = asyncio.create_task(q.get())
    await asyncio.sleep(0.01)
    assert not second.done()  # never handed to a second worker
    q.done(key)
    assert await asyncio.wait_for(second, 1) == "a"
    q.done("a")
    assert len(q) == 0


async def test_get_waits_for_add():
    q = WorkQueue("t")
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0.01)
    q.add("x")
    assert await asyncio.wait_for(getter, 1) == "x"


async def test_add_after_delays_and_keeps_earliest():
    q = WorkQueue("t")
    q.add_after("a", 0.2)
    q.add_after("a", 0.03)
    q.add_after("a", 5)
    assert len(q) == 0
    start = asyncio.get_running_loop().time()
    assert await asyncio.wait_for(q.get(), 1) == "a"
    assert 0.02 <= asyncio.get_running_loop().time() - start < 0.15
    q.done("a")
    await asyncio.sleep(0.25)
    assert len(q) == 0


def test_item_exponential_backoff_like_client_go():
    rl = ItemExponentialRateLimiter()
    assert [rl.when("k") for _ in range(4)] == [0.005, 0.01, 0.02, 0.04]
    assert rl.num_requeues("k") == 4 and rl.when("other") == 0.005
    for _ in range(40):
        rl.when("k")
    assert rl.when("k") == 1000.0
    rl.forget("k")
    assert rl.num_requeues("k") == 0 and rl.when("k") == 0.005


def test_bucket_limits_overall_rate():
    now = [0.0]
    bucket = BucketRateLimiter(qps=10, burst=2, clock=lambda: now[0])
    assert [bucket.when(i) for i in range(4)] == [0, 0, pytest.approx(0.1), pytest.approx(0.2)]
    now[0] = 10.0
    assert bucket.when("x") == 0


async def test_add_rate_limited_backs_off_per_key_and_forget_resets():
    q = WorkQueue("t", rate_limiter=ItemExponentialRateLimiter(base=0.02, maximum=1))
    q.add_rate_limited("k")
    q.add_rate_limited("k")  # a second failure does not delay the pending retry
    assert q.num_requeues("k") == 2
    await asyncio.sleep(0.03)
    assert len(q) == 1
    q.forget("k")
    assert q.num_requeues("k") == 0
    assert isinstance(default_rate_limiter().when("k"), float)


async def test_shut_down_drains_then_raises():
    q = WorkQueue("t")
    waiting = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.add("a")
    assert await waiting == "a"
    q.add("b")
    q.add_after("c", 0.01)
    q.shut_down()
    q.add("d")
    assert await q.get() == "b"
    with pytest.raises(ShutDown):
        await q.get()
    blocked = asyncio.create_task(WorkQueue("u").get())
    await asyncio.sleep(0)
    blocked.cancel()


async def test_shut_down_wakes_blocked_getters():
    q = WorkQueue("t")
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0.01)
    q.shut_down()
    with pytest.raises(ShutDown):
        await asyncio.wait_for(getter, 1)


async def test_run_workers_retries_failures_then_forgets():
    q = WorkQueue("t", rate_limiter=ItemExponentialRateLimiter(base=0.001, maximum=0.01))
    calls: list[str] = []
    active: set[str] = set()
    overlap = []
    succeeded: list[str] = []

    async def sync(key):
        if key in active:
            overlap.append(key)
        active.add(key)
        calls.append(key)
        await asyncio.sleep(0.005)
        active.discard(key)
        if key == "flaky" and calls.count("flaky") < 3:
            raise RuntimeError("transient")
        succeeded.append(key)
        if key == "ok":
            q.add("ok")  # re-added while processing: must not run concurrently

    workers = asyncio.create_task(run_workers(q, sync, n=4))
    q.add("flaky")
    q.add("ok")
    deadline = asyncio.get_running_loop().time() + 2
    while "flaky" not in succeeded or succeeded.count("ok") < 3:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.005)
    assert overlap == []
    assert q.num_requeues("flaky") == 0  # forgotten after the successful sync
    q.shut_down()
    await asyncio.wait_for(workers, 1)
