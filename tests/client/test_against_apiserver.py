"""The client library against the real apiserver and etcd: CRUD, watch, informer relist, leases, events."""
import asyncio

import pytest

from api.errors import APIError
from client.events import EventRecorder
from client.informer import Backoff, Informer
from client.kubeconfig import Config
from client.leaderelection import LeaderElector
from client.rest import AsyncClient, Client
from tests.conftest import start_apiserver


def config_for(server, identity="admin"):
    return Config(server=server.url, token=server.tokens[identity], ca_file=str(server.ca))


def test_sync_client_crud_and_errors(apiserver, namespace):
    with Client(config_for(apiserver)) as c:
        created = c.create("configmaps", {"metadata": {"name": "a"}, "data": {"k": "v"}}, namespace=namespace)
        assert created["metadata"]["resourceVersion"]
        got = c.get("configmaps", "a", namespace=namespace)
        assert got["data"] == {"k": "v"}
        patched = c.patch("configmaps", "a", {"data": {"k": "w"}}, namespace=namespace)
        assert patched["data"] == {"k": "w"}
        with pytest.raises(APIError) as e:
            c.update("configmaps", created)  # stale resourceVersion
        assert e.value.code == 409 and e.value.reason == "Conflict"
        with pytest.raises(APIError) as e:
            c.get("configmaps", "missing", namespace=namespace)
        assert e.value.reason == "NotFound"
        c.delete("configmaps", "a", namespace=namespace)
        assert c.get_or_none("configmaps", "a", namespace=namespace) is None


async def test_async_watch_and_list_all(apiserver, namespace):
    async with AsyncClient(config_for(apiserver)) as c:
        for i in range(5):
            await c.create("configmaps", {"metadata": {"name": f"w{i}"}}, namespace=namespace)
        listed = await c.list_all("configmaps", namespace=namespace, limit=2)
        assert [o["metadata"]["name"] for o in listed["items"]] == [f"w{i}" for i in range(5)]
        rv = listed["metadata"]["resourceVersion"]
        await c.delete("configmaps", "w0", namespace=namespace)
        seen = []
        async for kind, obj in c.watch("configmaps", namespace=namespace, resource_version=rv, timeout_seconds=2):
            seen.append((kind, obj["metadata"]["name"]))
            break
        assert seen == [("DELETED", "w0")]


@pytest.fixture(scope="module")
def tiny_window(etcd, tmp_path_factory):
    server = start_apiserver(etcd, tmp_path_factory.mktemp("tiny-window"), "--watch-cache-size", "3")
    yield server
    server.proc.terminate()
    server.proc.wait(10)


async def test_informer_relists_after_410_and_converges(tiny_window):
    async with AsyncClient(config_for(tiny_window)) as c:
        await c.create("namespaces", {"metadata": {"name": "relist"}})
        for i in range(3):
            await c.create("configmaps", {"metadata": {"name": f"keep{i}"}}, namespace="relist")
        informer = Informer(c, "configmaps", namespace="relist", backoff=Backoff(0.05, 0.2))
        deleted = []
        informer.add_handler(on_delete=lambda o: deleted.append(o["metadata"]["name"]))
        task = asyncio.create_task(informer.run())
        await informer.wait_for_sync(10)
        # Make the informer's position fall out of the 3-event window while it is cut off.
        informer_rv = informer.resource_version
        for i in range(10):
            await c.create("configmaps", {"metadata": {"name": f"new{i}"}}, namespace="relist")
        await c.delete("configmaps", "keep0", namespace="relist")
        with pytest.raises(APIError) as e:
            async for _ in c.watch("configmaps", namespace="relist", resource_version=informer_rv, timeout_seconds=1):
                pass
        assert e.value.code == 410
        want = {f"relist/keep{i}" for i in (1, 2)} | {f"relist/new{i}" for i in range(10)}
        for _ in range(100):
            if set(informer.store.keys()) == want:
                break
            await asyncio.sleep(0.05)
        assert set(informer.store.keys()) == want
        assert deleted == ["keep0"]
        informer.stop()
        await asyncio.gather(task, return_exceptions=True)


async def test_leader_election_on_real_leases(apiserver, namespace):
    async with AsyncClient(config_for(apiserver)) as c1, AsyncClient(config_for(apiserver)) as c2:
        a = LeaderElector(c1, namespace, "lock", "a", lease_duration=1.5, renew_deadline=1.0, retry_period=0.2,
                          release_on_stop=False)
        b = LeaderElector(c2, namespace, "lock", "b", lease_duration=1.5, renew_deadline=1.0, retry_period=0.2)
        a_leading, b_leading = asyncio.Event(), asyncio.Event()

        async def lead(ev):
            ev.set()
            await asyncio.Event().wait()

        ta = asyncio.create_task(a.run(lambda: lead(a_leading)))
        await asyncio.wait_for(a_leading.wait(), 5)
        tb = asyncio.create_task(b.run(lambda: lead(b_leading)))
        await asyncio.sleep(0.6)
        assert not b_leading.is_set()
        lease = await c1.get("leases.coordination.k8s.io", "lock", namespace=namespace)
        assert lease["spec"]["holderIdentity"] == "a"
        ta.cancel()  # a dies without releasing: b must wait for expiry, then take over
        await asyncio.gather(ta, return_exceptions=True)
        await asyncio.wait_for(b_leading.wait(), 5)
        lease = await c1.get("leases.coordination.k8s.io", "lock", namespace=namespace)
        assert lease["spec"]["holderIdentity"] == "b"
        assert lease["spec"]["leaseTransitions"] >= 1
        b.stop()
        await asyncio.wait_for(tb, 5)


async def test_event_recorder_creates_and_aggregates(apiserver, namespace):
    async with AsyncClient(config_for(apiserver)) as c:
        cm = await c.create("configmaps", {"metadata": {"name": "evt"}}, namespace=namespace)
        rec = EventRecorder(c, "test-component")
        for _ in range(3):
            await rec.record(cm, "Normal", "Touched", "touched it")
        events = (await c.list("events", namespace=namespace,
                               field_selector="involvedObject.name=evt,involvedObject.kind=ConfigMap"))["items"]
        assert len(events) == 1
        assert events[0]["count"] == 3
        assert events[0]["source"]["component"] == "test-component"
        assert events[0]["involvedObject"]["uid"] == cm["metadata"]["uid"]
