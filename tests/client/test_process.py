"""The leader-elected process main, against the in-memory fake apiserver (leases, informers) and real signals."""
import asyncio
import os
import signal

from cli.etcd import free_port
from client.resources import resolve
from client.process import run_leader_elected

FAST = {"lease_duration": 1.5, "renew_deadline": 1.0, "retry_period": 0.2}
CONFIGMAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "seen", "namespace": "default"}}


def holder(fake):
    lease = fake.get_object(resolve("leases.coordination.k8s.io"), "kube-system/test-lock")
    return lease and lease["spec"]["holderIdentity"]


class Work:
    """A component's start(): one informer, and work that records what the cache held when it began."""

    def __init__(self, *, forever: bool = True):
        self.forever = forever
        self.started = asyncio.Event()
        self.cached_at_start: list[str] = []
        self.event_source = None

    def __call__(self, client, factory, recorder):
        informer = factory.informer("configmaps")
        self.event_source = recorder.component

        async def run():
            self.cached_at_start = list(informer.store.keys())
            self.started.set()
            if self.forever:
                await asyncio.Event().wait()
        return run


async def http_get(port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\n\r\n".encode())
    body = (await reader.read()).split(b"\r\n\r\n", 1)[1]
    writer.close()
    return body


def sigterm() -> None:
    assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # handled, or this would end the test run
    os.kill(os.getpid(), signal.SIGTERM)


async def test_leader_runs_work_on_synced_caches_and_releases_the_lease_on_sigterm(fake, aclient):
    fake.seed(CONFIGMAP)
    work, port = Work(), free_port()
    main = asyncio.create_task(run_leader_elected(aclient, work, lease_name="test-lock", event_source="tester",
                                                  identity="me", health_port=port, **FAST))
    await asyncio.wait_for(work.started.wait(), 5)
    assert work.cached_at_start == ["default/seen"]
    assert work.event_source == "tester"
    assert holder(fake) == "me"
    assert await http_get(port, "/healthz") == b"ok"
    assert await http_get(port, "/leader") == b"leader"
    sigterm()
    assert await asyncio.wait_for(main, 5) == 0
    assert holder(fake) == ""  # released: a follower takes over at once
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


async def test_work_that_ends_by_itself_exits_with_failure(fake, aclient):
    work = Work(forever=False)
    code = await asyncio.wait_for(run_leader_elected(aclient, work, lease_name="test-lock", event_source="tester",
                                                     identity="me", **FAST), 5)
    assert code == 1
    assert work.started.is_set()


async def test_follower_waits_while_another_holds_the_lease(fake, aclient):
    fake.seed({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "metadata": {"name": "test-lock", "namespace": "kube-system"},
               "spec": {"holderIdentity": "other", "leaseDurationSeconds": 60}})
    work, port = Work(), free_port()
    main = asyncio.create_task(run_leader_elected(aclient, work, lease_name="test-lock", event_source="tester",
                                                  identity="me", health_port=port, **FAST))
    await asyncio.sleep(0.5)
    assert await http_get(port, "/leader") == b"follower"
    sigterm()
    assert await asyncio.wait_for(main, 5) == 0
    assert not work.started.is_set()
    assert holder(fake) == "other"


async def test_without_leader_election_work_starts_and_no_lease_is_written(fake, aclient):
    work = Work()
    main = asyncio.create_task(run_leader_elected(aclient, work, lease_name="test-lock", event_source="tester",
                                                  leader_elect=False, **FAST))
    await asyncio.wait_for(work.started.wait(), 5)
    sigterm()
    assert await asyncio.wait_for(main, 5) == 0
    assert holder(fake) is None
