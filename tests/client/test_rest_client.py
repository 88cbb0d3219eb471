import httpx
import pytest

from api.errors import APIError
from api.registry import lookup
from client.rest import is_already_exists, is_conflict


def pod(name, ns="default", labels=None):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


async def test_create_get_update_status_delete(aclient, fake):
    created = await aclient.create("pods", pod("a", ns="ns1"))
    assert created["metadata"]["uid"] and created["metadata"]["resourceVersion"] == "1"
    got = await aclient.get("po", "a", "ns1")
    got["status"] = {"phase": "Running"}
    await aclient.update_status("pods", got)
    assert (await aclient.get("pods", "a", "ns1"))["status"] == {"phase": "Running"}
    await aclient.delete("pods", "a", "ns1", propagation_policy="Background", grace_period_seconds=0)
    assert await aclient.get_or_none("pods", "a", "ns1") is None
    method, path, _, body = fake.actions[-2]
    assert (method, path) == ("DELETE", "/api/v1/namespaces/ns1/pods/a")
    assert body == {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background",
                    "gracePeriodSeconds": 0}


async def test_paths_for_groups_and_cluster_scope(aclient, fake):
    await aclient.create("leases.coordination.k8s.io", {"metadata": {"name": "l", "namespace": "kube-system"}})
    await aclient.create("nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
    await aclient.list("deployments.apps")
    await aclient.get("nodes", "n1", namespace="ignored")
    paths = [p for _, p, _, _ in fake.actions]
    assert paths == ["/apis/coordination.k8s.io/v1/namespaces/kube-system/leases", "/api/v1/nodes",
                     "/apis/apps/v1/deployments", "/api/v1/nodes/n1"]


async def test_namespace_defaults_to_default(aclient, fake):
    await aclient.create("configmaps", {"metadata": {"name": "cm"}, "data": {}})
    await aclient.get("configmaps", "cm")
    assert [p for _, p, _, _ in fake.actions] == ["/api/v1/namespaces/default/configmaps"] + [
        "/api/v1/namespaces/default/configmaps/cm"]


async def test_status_error_becomes_api_error_with_reason(aclient):
    await aclient.create("pods", pod("a"))
    with pytest.raises(APIError) as e:
        await aclient.create("pods", pod("a"))
    assert e.value.code == 409 and e.value.reason == "AlreadyExists" and is_already_exists(e.value)
    with pytest.raises(APIError) as e:
        await aclient.get("pods", "missing")
    assert e.value.code == 404 and e.value.reason == "NotFound" and e.value.name == "missing"


async def test_non_status_error_body_still_raises(fake, aclient):
    fake.reactors.append(lambda req: httpx.Response(503, text="upstream down"))
    with pytest.raises(APIError) as e:
        await aclient.list("pods")
    assert e.value.code == 503 and e.value.reason == "ServiceUnavailable"


async def test_connection_errors_propagate(fake, aclient):
    fake.down = True
    with pytest.raises(httpx.ConnectError):
        await aclient.list("pods")


async def test_update_with_stale_resource_version_conflicts(aclient):
    stale = await aclient.create("pods", pod("a"))
    fresh = await aclient.patch("pods", "a", {"metadata": {"labels": {"x": "1"}}})
    assert fresh["metadata"]["labels"] == {"x": "1"}
    with pytest.raises(APIError) as e:
        await aclient.update("pods", stale)
    assert is_conflict(e.value)


async def test_list_pagination_and_list_all(aclient, fake):
    for i in range(7):
        await aclient.create("pods", pod(f"p{i}", labels={"app": "web" if i % 2 else "db"}))
    page = await aclient.list("pods", limit=3)
    assert len(page["items"]) == 3 and page["metadata"]["continue"]
    every = await aclient.list_all("pods", limit=3)
    assert [p["metadata"]["name"] for p in every["items"]] == [f"p{i}" for i in range(7)]
    assert every["kind"] == "PodList" and "continue" not in every["metadata"]
    assert every["metadata"]["resourceVersion"] == page["metadata"]["resourceVersion"]
    web = await aclient.list_all("pods", "default", label_selector="app=web")
    assert len(web["items"]) == 3
    params = [p for m, _, p, _ in fake.actions if m == "GET"]
    assert params[-1] == {"labelSelector": "app=web", "limit": "500"}


async def test_patch_types_send_their_content_type(aclient, fake):
    await aclient.create("pods", pod("a"))
    seen = []
    fake.reactors.append(lambda req: seen.append(req.headers["content-type"]) if req.method == "PATCH" else None)
    await aclient.patch("pods", "a", [{"op": "add", "path": "/metadata/labels/k", "value": "v"}], patch_type="json")
    await aclient.patch("pods", "a", {"metadata": {"labels": {"k": None}}}, patch_type="strategic")
    assert seen == ["application/json-patch+json", "application/strategic-merge-patch+json"]
    assert (await aclient.get("pods", "a"))["metadata"]["labels"] == {}


async def test_binding_subresource(aclient):
    await aclient.create("pods", pod("a"))
    await aclient.create_subresource("pods", "a", "binding",
                                     {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "a"},
                                      "target": {"kind": "Node", "name": "n1"}}, namespace="default")
    assert (await aclient.get("pods", "a"))["spec"]["nodeName"] == "n1"


async def test_delete_collection_by_label(aclient):
    for i in range(3):
        await aclient.create("pods", pod(f"p{i}", labels={"app": "x" if i else "y"}))
    await aclient.delete_collection("pods", "default", label_selector="app=x")
    assert [p["metadata"]["name"] for p in (await aclient.list("pods"))["items"]] == ["p0"]


async def test_watch_parses_events_and_raises_on_error_event(aclient, fake):
    await aclient.create("pods", pod("a"))
    await aclient.patch("pods", "a", {"metadata": {"labels": {"k": "v"}}})
    await aclient.delete("pods", "a")
    events = [k async for k, _ in aclient.watch("pods", resource_version="0", timeout_seconds=1)]
    assert events == []  # nothing left; the stream ends cleanly at timeoutSeconds
    events = []
    async for kind, obj in aclient.watch("pods", resource_version="1"):
        events.append((kind, obj["metadata"]["resourceVersion"]))
        if kind == "DELETED":
            break
    assert events == [("MODIFIED", "2"), ("DELETED", "3")]
    _, _, params, _ = fake.actions[-1]
    assert params == {"watch": "1", "resourceVersion": "1", "allowWatchBookmarks": "true"}
    fake.compact()
    with pytest.raises(APIError) as e:
        async for _ in aclient.watch("pods", resource_version="1", timeout_seconds=1):
            pass
    assert e.value.code == 410 and e.value.reason == "Expired"


async def test_retry_on_conflict_and_modify(aclient, fake):
    await aclient.create("pods", pod("a"))
    conflicts = [1, 1]

    def conflict_twice(req):
        if req.method == "PUT" and conflicts:
            conflicts.pop()
            return httpx.Response(409, json={"kind": "Status", "code": 409, "reason": "Conflict", "message": "x"})
        return None

    fake.reactors.append(conflict_twice)
    out = await aclient.modify("pods", "a", lambda p: p["metadata"].setdefault("labels", {}).update(done="1"))
    assert out["metadata"]["labels"] == {"done": "1"}
    assert [m for m, *_ in fake.actions].count("GET") == 3


def test_sync_client_mirrors_async(fake):
    with fake.client() as c:
        c.create("pods", pod("a"))
        c.patch("pods", "a", {"metadata": {"labels": {"k": "v"}}})
        assert [p["metadata"]["name"] for p in c.list_all("pods", limit=1)["items"]] == ["a"]
        assert [k for k, _ in c.watch("pods", resource_version="0")] == ["ADDED"]
        assert [k for k, _ in c.watch("pods", resource_version="1")] == ["MODIFIED"]
        assert c.get_or_none("pods", "zzz") is None
        with pytest.raises(APIError):
            c.update("pods", {**pod("a"), "metadata": {"name": "a", "namespace": "default", "resourceVersion": "1"}})


def test_unknown_resource_name():
    from client.resources import resolve
    with pytest.raises(LookupError):
        resolve("widgets")
    assert resolve("deploy").group == "apps"
    assert resolve("leases.coordination.k8s.io") is lookup("coordination.k8s.io", "v1", "leases")


async def test_accept_asks_for_another_representation(aclient, fake):
    await aclient.create("pods", pod("a"))
    seen = []
    fake.reactors.append(lambda req: seen.append(req.headers["accept"]) if req.method == "GET" else None)
    table = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    await aclient.get("pods", "a", accept=table)
    await aclient.list("pods", accept=table)
    await aclient.get("pods", "a")
    assert [k async for k, _ in aclient.watch("pods", resource_version="0", timeout_seconds=1, accept=table)]
    assert seen == [table, table, "application/json", table]


def test_sync_accept_and_streamed_subresource(fake):
    seen = []

    def logs(req):
        seen.append((req.url.path, req.headers["accept"], dict(req.url.params)))
        if req.url.path.endswith("/log"):
            return httpx.Response(200, content=b"one\ntwo\n", headers={"content-type": "text/plain"})
        return None

    fake.reactors.append(logs)
    table = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    with fake.client() as c:
        c.create("pods", pod("a"))
        c.get("pods", "a", accept=table)
        c.list("pods", "default", accept=table)
        assert [k for k, _ in c.watch("pods", resource_version="0", accept=table)] == ["ADDED"]
        assert b"".join(c.stream_subresource("pods", "a", "log", "default", {"follow": "true"})) == b"one\ntwo\n"
        fake.reactors.insert(0, lambda req: httpx.Response(404, json={"kind": "Status", "code": 404,
                                                                      "reason": "NotFound", "message": "gone"}))
        with pytest.raises(APIError) as e:
            list(c.stream_subresource("pods", "a", "log", "default"))
        assert e.value.code == 404
    assert [a for p, a, _ in seen[1:4]] == [table, table, table]
    assert seen[4] == ("/api/v1/namespaces/default/pods/a/log", "*/*", {"follow": "true"})
