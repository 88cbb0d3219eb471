"""Optimistic concurrency against a real etcd: one winner, everyone else gets the right 409."""
import asyncio

import pytest


def pod(name, **labels):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}


async def test_concurrent_updates_with_same_resource_version_have_one_winner(apiserver, namespace):
    async with apiserver.ahttp() as c:
        r = await c.post(f"/api/v1/namespaces/{namespace}/configmaps",
                         json={"metadata": {"name": "cm"}, "data": {"n": "0"}})
        assert r.status_code == 201
        base = r.json()

        async def update(i):
            body = {**base, "data": {"n": str(i + 1)}}
            return await c.put(f"/api/v1/namespaces/{namespace}/configmaps/cm", json=body)

        results = await asyncio.gather(*(update(i) for i in range(50)))
    codes = sorted(r.status_code for r in results)
    assert codes.count(200) == 1
    assert codes.count(409) == 49
    assert all(r.json()["reason"] == "Conflict" for r in results if r.status_code == 409)


async def test_concurrent_creates_of_one_name_have_one_winner(apiserver, namespace):
    async with apiserver.ahttp() as c:
        results = await asyncio.gather(*(c.post(f"/api/v1/namespaces/{namespace}/pods", json=pod("same"))
                                         for _ in range(20)))
    codes = [r.status_code for r in results]
    assert codes.count(201) == 1
    assert codes.count(409) == 19
    assert {r.json()["reason"] for r in results if r.status_code == 409} == {"AlreadyExists"}


async def test_put_without_resource_version_is_unconditional(http, namespace):
    r = http.post(f"/api/v1/namespaces/{namespace}/configmaps", json={"metadata": {"name": "u"}, "data": {"a": "1"}})
    assert r.status_code == 201
    r = http.put(f"/api/v1/namespaces/{namespace}/configmaps/u", json={"metadata": {"name": "u"}, "data": {"a": "2"}})
    assert r.status_code == 200, r.text
    assert r.json()["data"] == {"a": "2"}
    assert int(r.json()["metadata"]["resourceVersion"]) > 0


async def test_concurrent_service_creates_never_share_an_ip_or_node_port(apiserver, namespace):
    async with apiserver.ahttp() as c:
        async def create(i):
            return await c.post(f"/api/v1/namespaces/{namespace}/services", json={
                "metadata": {"name": f"s{i}"},
                "spec": {"type": "NodePort", "selector": {"app": "x"}, "ports": [{"port": 80}]}})
        results = await asyncio.gather(*(create(i) for i in range(40)))
    assert all(r.status_code == 201 for r in results), [r.text for r in results if r.status_code != 201]
    ips = [r.json()["spec"]["clusterIP"] for r in results]
    ports = [r.json()["spec"]["ports"][0]["nodePort"] for r in results]
    assert len(set(ips)) == 40
    assert len(set(ports)) == 40
    assert all(30000 <= p <= 32767 for p in ports)
    assert all(ip.startswith("10.") for ip in ips)


def test_requested_cluster_ip_is_honoured_then_refused_when_taken_and_released_on_delete(http, namespace):
    svc = lambda name: {"metadata": {"name": name},  # noqa: E731
                        "spec": {"clusterIP": "10.96.3.7", "ports": [{"port": 80}], "selector": {"a": "b"}}}
    r = http.post(f"/api/v1/namespaces/{namespace}/services", json=svc("first"))
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["clusterIP"] == "10.96.3.7"
    r = http.post(f"/api/v1/namespaces/{namespace}/services", json=svc("second"))
    assert r.status_code == 422
    assert r.json()["reason"] == "Invalid"
    assert "already allocated" in r.json()["message"]
    assert http.get(f"/api/v1/namespaces/{namespace}/services/second").status_code == 404
    assert http.delete(f"/api/v1/namespaces/{namespace}/services/first").status_code == 200
    r = http.post(f"/api/v1/namespaces/{namespace}/services", json=svc("second"))
    assert r.status_code == 201, r.text


def free_node_port(http) -> int:
    """A NodePort no Service holds now (the apiserver is shared; other tests allocate at random)."""
    used = {p.get("nodePort") for s in http.get("/api/v1/services").json()["items"]
            for p in s["spec"].get("ports") or []}
    return next(port for port in range(31234, 32768) if port not in used)


def test_requested_node_port_taken_is_refused(http, namespace):
    port = free_node_port(http)
    body = lambda n: {"metadata": {"name": n}, "spec": {"type": "NodePort", "selector": {"a": "b"},  # noqa: E731
                                                       "ports": [{"port": 80, "nodePort": port}]}}
    r = http.post(f"/api/v1/namespaces/{namespace}/services", json=body("a"))
    assert r.status_code == 201, r.text
    r = http.post(f"/api/v1/namespaces/{namespace}/services", json=body("b"))
    assert r.status_code == 422
    assert str(port) in r.json()["message"]


def test_service_put_without_cluster_ip_keeps_the_allocated_one(http, namespace):
    r = http.post(f"/api/v1/namespaces/{namespace}/services",
                  json={"metadata": {"name": "keep"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}})
    created = r.json()
    r = http.put(f"/api/v1/namespaces/{namespace}/services/keep",
                 json={"metadata": {"name": "keep"}, "spec": {"type": "NodePort", "ports": [{"port": 80}],
                                                             "selector": {"x": "y"}}})
    assert r.status_code == 200, r.text
    assert r.json()["spec"]["clusterIP"] == created["spec"]["clusterIP"]
    assert r.json()["spec"]["ports"][0]["nodePort"] == created["spec"]["ports"][0]["nodePort"]


@pytest.mark.parametrize("n", [3])
def test_generate_name_creates_distinct_objects(http, namespace, n):
    names = set()
    for _ in range(n):
        r = http.post(f"/api/v1/namespaces/{namespace}/configmaps", json={"metadata": {"generateName": "gen-"}})
        assert r.status_code == 201, r.text
        names.add(r.json()["metadata"]["name"])
    assert len(names) == n
    assert all(name.startswith("gen-") and len(name) == 9 for name in names)
