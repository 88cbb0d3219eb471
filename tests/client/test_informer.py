import asyncio

import httpx

from client.informer import Backoff, Informer


def pod(name, ns="default", node=None):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}}


async def eventually(cond, timeout=3.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


class Recorder:
    def __init__(self, informer):
        self.events = []
        informer.add_handler(
            on_add=lambda o: self.events.append(("add", o["metadata"]["name"])),
            on_update=lambda old, new: self.events.append(
                ("update", new["metadata"]["name"], old["metadata"]["resourceVersion"],
                 new["metadata"]["resourceVersion"])),
            on_delete=lambda o: self.events.append(("delete", o["metadata"]["name"])),
        )


def start(informer):
    return asyncio.create_task(informer.run())


def watch_params(fake):
    return [p for m, _, p, _ in fake.actions if m == "GET" and p.get("watch")]


def fast_backoff():
    return Backoff(initial=0.01, maximum=0.05)


async def test_lists_in_pages_then_watches_and_calls_handlers(fake, aclient):
    for i in range(5):
        fake.seed(pod(f"p{i}"))
    inf = Informer(aclient, "pods", page_size=2, backoff=fast_backoff())
    rec = Recorder(inf)
    task = start(inf)
    await inf.wait_for_sync(2)
    assert sorted(inf.store.keys()) == [f"default/p{i}" for i in range(5)]
    assert [p.get("limit") for m, _, p, _ in fake.actions if m == "GET" and not p.get("watch")] == ["2"] * 3
    await eventually(lambda: watch_params(fake))
    assert watch_params(fake)[0]["resourceVersion"] == "5"
    assert watch_params(fake)[0]["allowWatchBookmarks"] == "true"

    await aclient.create("pods", pod("new"))
    await aclient.patch("pods", "p0", {"metadata": {"labels": {"x": "y"}}})
    await aclient.delete("pods", "p1")
    await eventually(lambda: len(rec.events) == 8)
    assert rec.events[5:] == [("add", "new"), ("update", "p0", "1", "7"), ("delete", "p1")]
    assert "default/p1" not in inf.store and inf.store.get("default/p0")["metadata"]["labels"] == {"x": "y"}
    inf.stop()
    await task
    assert fake.watch_count() == 0


async def test_resumes_from_last_resource_version_without_loss_or_duplicates(fake, aclient):
    fake.seed(pod("a"))
    inf = Informer(aclient, "pods", backoff=fast_backoff())
    rec = Recorder(inf)
    task = start(inf)
    await inf.wait_for_sync(2)
    await eventually(lambda: fake.watch_count() == 1)
    await aclient.create("pods", pod("b"))
    await eventually(lambda: ("add", "b") in rec.events)
    fake.bookmark()
    await eventually(lambda: inf.resource_version == "2")

    # The apiserver restarts: the stream breaks and it refuses connections for a while.
    fake.down = True
    fake.drop_watches()
    await asyncio.sleep(0.1)
    fake.seed(pod("c"))  # written while the informer was disconnected
    fake.down = False
    await eventually(lambda: ("add", "c") in rec.events)
    await aclient.delete("pods", "a")
    await eventually(lambda: ("delete", "a") in rec.events)

    assert rec.events == [("add", "a"), ("add", "b"), ("add", "c"), ("delete", "a")]
    resumed = [p["resourceVersion"] for p in watch_params(fake)]
    assert resumed[0] == "1" and set(resumed[1:]) == {"2"}
    assert [m for m, _, p, _ in fake.actions if m == "GET" and not p.get("watch")] == ["GET"]  # never relisted
    assert sorted(inf.store.keys()) == ["default/b", "default/c"]
    inf.stop()
    await task


async def test_relists_on_410_and_converges_with_deletes(fake, aclient):
    for name in ("a", "b"):
        fake.seed(pod(name))
    inf = Informer(aclient, "pods", backoff=fast_backoff())
    rec = Recorder(inf)
    task = start(inf)
    await inf.wait_for_sync(2)
    await eventually(lambda: fake.watch_count() == 1)

    def refuse_watches(request):
        if request.url.params.get("watch"):
            raise httpx.ConnectError("refused", request=request)

    fake.reactors.append(refuse_watches)
    fake.drop_watches()
    await aclient.delete("pods", "b")
    await aclient.create("pods", pod("c"))
    await aclient.patch("pods", "a", {"metadata": {"labels": {"v": "2"}}})
    fake.compact()  # the events above fell out of the server's window
    fake.reactors.remove(refuse_watches)

    await eventually(lambda: ("delete", "b") in rec.events and ("add", "c") in rec.events)
    assert sorted(inf.store.keys()) == ["default/a", "default/c"]
    assert ("update", "a", "1", "5") in rec.events
    assert rec.events.count(("delete", "b")) == 1
    await eventually(lambda: fake.watch_count() == 1)
    assert watch_params(fake)[-1]["resourceVersion"] == "5"
    inf.stop()
    await task


async def test_expired_continue_token_falls_back_to_a_single_page(fake, aclient):
    for i in range(3):
        fake.seed(pod(f"p{i}"))

    def compact_on_continue(request):
        if request.url.params.get("continue"):
            fake.compact()

    fake.reactors.append(compact_on_continue)
    inf = Informer(aclient, "pods", page_size=1, backoff=fast_backoff())
    task = start(inf)
    await inf.wait_for_sync(2)
    assert len(inf.store) == 3
    inf.stop()
    await task


async def test_resync_redelivers_cached_objects(fake, aclient):
    fake.seed(pod("a"))
    inf = Informer(aclient, "pods", resync_seconds=0.05, backoff=fast_backoff())
    rec = Recorder(inf)
    task = start(inf)
    await eventually(lambda: rec.events.count(("update", "a", "1", "1")) >= 2)
    # Periodic: the same cached version (old and new resourceVersion equal) is handed out again and again.
    assert rec.events[0] == ("add", "a")
    assert rec.events.count(("update", "a", "1", "1")) >= 2
    inf.stop()
    await task


async def test_index_late_handler_and_failing_handler(fake, aclient):
    fake.seed(pod("a", node="n1"))
    fake.seed(pod("b", node="n2"))
    fake.seed(pod("c", ns="other", node="n1"))
    inf = Informer(aclient, "pods", backoff=fast_backoff())
    inf.add_index("byNode", lambda p: [p["spec"]["nodeName"]] if p["spec"].get("nodeName") else [])

    def broken(obj):
        raise RuntimeError("handler bug")

    inf.add_handler(on_add=broken)
    task = start(inf)
    await inf.wait_for_sync(2)
    assert [p["metadata"]["name"] for p in inf.store.by_index("byNode", "n1")] == ["a", "c"]
    late = Recorder(inf)
    assert sorted(late.events) == [("add", "a"), ("add", "b"), ("add", "c")]
    await eventually(lambda: fake.watch_count() == 1)
    await aclient.patch("pods", "b", {"spec": {"nodeName": "n1"}})
    await eventually(lambda: len(inf.store.by_index("byNode", "n1")) == 3)
    assert inf.store.by_index("byNode", "n2") == []
    inf.stop()
    await task


async def test_namespace_and_selector_scoping(fake, aclient):
    fake.seed(pod("a", ns="x"))
    fake.seed(pod("b", ns="y"))
    inf = Informer(aclient, "pods", namespace="x", field_selector="metadata.name=a", backoff=fast_backoff())
    task = start(inf)
    await inf.wait_for_sync(2)
    assert inf.store.keys() == ["x/a"]
    assert fake.actions[0][1] == "/api/v1/namespaces/x/pods"
    assert fake.actions[0][2]["fieldSelector"] == "metadata.name=a"
    inf.stop()
    await task


async def test_list_failure_is_retried_not_reported_as_empty(fake, aclient):
    fake.seed(pod("a"))
    fake.down = True
    inf = Informer(aclient, "pods", backoff=fast_backoff())
    task = start(inf)
    await asyncio.sleep(0.1)
    assert not inf.has_synced.is_set()
    fake.down = False
    await inf.wait_for_sync(2)
    assert inf.store.keys() == ["default/a"]
    inf.stop()
    await task


async def test_watches_that_end_at_once_are_backed_off(fake, aclient):
    def empty_watch(request):
        if request.url.params.get("watch"):
            return httpx.Response(200, content=b"")

    fake.reactors.append(empty_watch)
    inf = Informer(aclient, "pods", backoff=Backoff(initial=0.05, maximum=0.05))
    task = start(inf)
    await asyncio.sleep(0.3)
    assert 2 <= len(watch_params(fake)) <= 7
    inf.stop()
    await task
