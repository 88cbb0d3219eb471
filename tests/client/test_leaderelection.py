import asyncio
import re

import httpx
import pytest

from client.leaderelection import LeaderElector

MICRO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def lease_spec(fake):
    from client.resources import resolve
    return fake.get_object(resolve("leases.coordination.k8s.io"), "kube-system/lock")["spec"]


def elector(aclient, identity, clock=None, **kw):
    kw = {"lease_duration": 15, "renew_deadline": 10, "retry_period": 2, **kw}
    if clock is not None:
        kw["clock"] = clock
    return LeaderElector(aclient, "kube-system", "lock", identity, **kw)


async def test_acquires_absent_lease_then_renews(fake, aclient):
    a = elector(aclient, "a")
    assert await a.try_acquire_or_renew()
    first = lease_spec(fake)
    assert first["holderIdentity"] == "a" and first["leaseDurationSeconds"] == 15
    assert first["leaseTransitions"] == 0
    assert MICRO.match(first["acquireTime"]) and MICRO.match(first["renewTime"])
    await asyncio.sleep(0.001)
    assert await a.try_acquire_or_renew()
    second = lease_spec(fake)
    assert second["acquireTime"] == first["acquireTime"] and second["renewTime"] > first["renewTime"]
    assert [(m, p) for m, p, _, _ in fake.actions if m != "GET"] == [
        ("POST", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases"),
        ("PUT", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/lock")]
    put_body = fake.actions[-1][3]
    assert put_body["metadata"]["resourceVersion"] == "1"  # the update is conditional


async def test_takes_over_only_after_observed_expiry(fake, aclient):
    clock_a, clock_b = Clock(), Clock()
    a, b = elector(aclient, "a", clock_a), elector(aclient, "b", clock_b)
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    assert b.leader == "a"
    clock_b.now += 10
    assert await a.try_acquire_or_renew()  # a renews: the record changes, b's observation restarts
    clock_b.now += 10
    assert not await b.try_acquire_or_renew()
    clock_b.now += 15.1  # a stopped renewing 15s ago, as measured by b's own clock
    assert await b.try_acquire_or_renew()
    spec = lease_spec(fake)
    assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1
    assert not await a.try_acquire_or_renew()
    assert a.leader == "b"


async def test_lost_races_are_not_errors(fake, aclient):
    a = elector(aclient, "a")
    fake.seed({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "metadata": {"name": "lock", "namespace": "kube-system"}, "spec": {"holderIdentity": ""}})

    def conflict(request):
        if request.method == "PUT":
            return httpx.Response(409, json={"kind": "Status", "code": 409, "reason": "Conflict", "message": "rv"})

    fake.reactors.append(conflict)
    assert not await a.try_acquire_or_renew()
    fake.reactors.clear()
    assert await a.try_acquire_or_renew()
    assert lease_spec(fake)["leaseTransitions"] == 1


async def test_create_race_returns_false(fake, aclient):
    a = elector(aclient, "a")

    def exists(request):
        if request.method == "POST":
            return httpx.Response(409, json={"kind": "Status", "code": 409, "reason": "AlreadyExists",
                                             "message": "exists"})

    fake.reactors.append(exists)
    assert not await a.try_acquire_or_renew()


def test_rejects_inconsistent_timings(aclient):
    with pytest.raises(ValueError):
        elector(aclient, "a", lease_duration=5, renew_deadline=10)


async def test_run_leads_then_releases_on_stop_so_successor_starts_at_once(fake, aclient):
    fast = {"lease_duration": 5, "renew_deadline": 0.5, "retry_period": 0.05}
    a, b = elector(aclient, "a", **fast), elector(aclient, "b", **fast)
    log = []
    started = asyncio.Event()

    async def lead_a():
        log.append("a started")
        started.set()
        await asyncio.Event().wait()

    run_a = asyncio.create_task(a.run(lead_a, lambda: log.append("a stopped")))
    await asyncio.wait_for(started.wait(), 2)
    assert a.is_leader
    await asyncio.sleep(0.15)  # a few renewals
    assert lease_spec(fake)["holderIdentity"] == "a"

    b_started = asyncio.Event()

    async def lead_b():
        b_started.set()
        await asyncio.Event().wait()

    run_b = asyncio.create_task(b.run(lead_b))
    await asyncio.sleep(0.1)
    assert not b.is_leader
    a.stop()
    await asyncio.wait_for(run_a, 2)
    assert log == ["a started", "a stopped"] and not a.is_leader
    await asyncio.wait_for(b_started.wait(), 2)  # well before the 5 s lease would expire
    b.stop()
    await asyncio.wait_for(run_b, 2)
    assert lease_spec(fake)["holderIdentity"] == ""


async def test_loses_leadership_when_renewals_fail(fake, aclient):
    a = elector(aclient, "a", lease_duration=2, renew_deadline=0.3, retry_period=0.05)
    cancelled = asyncio.Event()
    stopped = asyncio.Event()

    async def lead():
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def on_stopped():
        stopped.set()

    run = asyncio.create_task(a.run(lead, on_stopped))
    while not a.is_leader:
        await asyncio.sleep(0.01)
    fake.down = True
    await asyncio.wait_for(run, 2)
    assert cancelled.is_set() and stopped.is_set() and not a.is_leader
