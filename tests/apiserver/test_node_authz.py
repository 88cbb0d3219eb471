"""The node authorizer and NodeRestriction against the real apiserver: a kubelet's identity reaches only what
the pods bound to its node use, and writes only its own Node, Lease and pods."""
from __future__ import annotations

import os

import httpx
import pytest

from apiserver.pki import NODES_GROUP, node_identity


@pytest.fixture
def nodes(apiserver):
    """Two fresh node identities, added to the token file of the running apiserver (it re-reads it)."""
    names = [f"na-{os.urandom(3).hex()}", f"nb-{os.urandom(3).hex()}"]
    for name in names:
        apiserver.add_identity(node_identity(name), [NODES_GROUP])
    clients = [apiserver.http(node_identity(name)) for name in names]
    yield list(zip(names, clients))
    for c in clients:
        c.close()
    with apiserver.http() as admin:
        for name in names:
            admin.delete(f"/api/v1/nodes/{name}")


def bound_pod(name, node, **spec):
    return {"metadata": {"name": name}, "spec": {"nodeName": node, "containers": [
        {"name": "c", "image": "x", "env": [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}}]}],
        "volumes": [{"name": "conf", "configMap": {"name": "settings"}},
                    {"name": "data", "persistentVolumeClaim": {"claimName": "data"}}], **spec}}


def reason(r: httpx.Response) -> str:
    return r.json().get("message", "")


def test_a_node_reads_only_the_objects_its_pods_use(http, namespace, nodes):
    (a, node_a), (b, node_b) = nodes
    ns = f"/api/v1/namespaces/{namespace}"
    assert http.post(f"{ns}/secrets", json={"metadata": {"name": "db"}, "stringData": {"pw": "x"}}).status_code == 201
    assert http.post(f"{ns}/secrets", json={"metadata": {"name": "other"}}).status_code == 201
    assert http.post(f"{ns}/configmaps", json={"metadata": {"name": "settings"}}).status_code == 201

    r = node_a.get(f"{ns}/secrets/db")
    assert r.status_code == 403 and f"no relationship found between node '{a}' and this object" in reason(r)
    assert http.post(f"{ns}/pods", json=bound_pod("web", a)).status_code == 201

    assert node_a.get(f"{ns}/secrets/db").json()["data"]["pw"] == "eA=="
    assert node_a.get(f"{ns}/configmaps/settings").status_code == 200
    assert node_a.get(f"{ns}/persistentvolumeclaims/data").status_code == 404   # allowed; it does not exist
    # One object by name as a list or watch (how the kubelet watches it) — never the whole collection.
    r = node_a.get(f"{ns}/secrets", params={"fieldSelector": "metadata.name=db"})
    assert r.status_code == 200 and [s["metadata"]["name"] for s in r.json()["items"]] == ["db"]
    with node_a.stream("GET", f"{ns}/secrets", params={"fieldSelector": "metadata.name=db", "watch": "1",
                                                        "timeoutSeconds": "1"}) as w:
        assert w.status_code == 200
    r = node_a.get(f"{ns}/secrets")
    assert r.status_code == 403 and "can only get individual resources of this type" in reason(r)
    assert node_a.get("/api/v1/secrets").status_code == 403
    assert node_a.get(f"{ns}/secrets/other").status_code == 403                    # not used by its pods
    assert node_a.delete(f"{ns}/secrets/db").status_code == 403                     # read only
    assert node_b.get(f"{ns}/secrets/db").status_code == 403                        # another node's pod

    assert http.delete(f"{ns}/pods/web", params={"gracePeriodSeconds": "0"}).status_code == 200
    assert node_a.get(f"{ns}/secrets/db").status_code == 403                        # the pod is gone


def test_tokens_only_for_own_pods(http, namespace, nodes):
    (a, node_a), (b, node_b) = nodes
    ns = f"/api/v1/namespaces/{namespace}"
    http.post(f"{ns}/serviceaccounts", json={"metadata": {"name": "app"}})
    mine = http.post(f"{ns}/pods", json=bound_pod("mine", a, serviceAccountName="app")).json()
    theirs = http.post(f"{ns}/pods", json=bound_pod("theirs", b, serviceAccountName="app")).json()

    def token(client, pod):
        ref = {"kind": "Pod", "apiVersion": "v1", "name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]} \
            if pod else None
        return client.post(f"{ns}/serviceaccounts/app/token", json={
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"audiences": [], "expirationSeconds": 3600, **({"boundObjectRef": ref} if ref else {})}})

    assert token(node_a, mine).status_code == 201
    r = token(node_a, theirs)
    assert r.status_code == 403 and "bound to pods scheduled on it" in reason(r)
    r = token(node_a, None)
    assert r.status_code == 403 and "only request tokens bound to a pod" in reason(r)
    r = node_a.post(f"{ns}/serviceaccounts/default/token", json={"spec": {}})     # no pod of its runs as it
    assert r.status_code == 403


def test_a_node_writes_only_its_own_node_lease_and_pods(http, namespace, nodes):
    (a, node_a), (b, node_b) = nodes
    node = lambda name, **labels: {"metadata": {"name": name, "labels": labels}}  # noqa: E731
    r = node_a.post("/api/v1/nodes", json=node(b))
    assert r.status_code == 403 and f'node "{a}" is not allowed to modify node "{b}"' in reason(r)
    assert node_a.post("/api/v1/nodes", json=node(a)).status_code == 201
    assert node_b.post("/api/v1/nodes", json=node(b)).status_code == 201
    merge = {"Content-Type": "application/merge-patch+json"}
    assert node_a.patch(f"/api/v1/nodes/{a}/status", json={"status": {"phase": "Running"}}, headers=merge).status_code == 200
    r = node_a.patch(f"/api/v1/nodes/{b}/status", json={"status": {"phase": "Running"}}, headers=merge)
    assert r.status_code == 403 and f"node '{a}' cannot modify node '{b}'" in reason(r)
    assert node_a.delete(f"/api/v1/nodes/{b}").status_code == 403
    r = node_a.patch(f"/api/v1/nodes/{a}", json={"metadata": {"labels": {"node-restriction.kubernetes.io/pool": "x"}}},
                     headers=merge)
    assert r.status_code == 403 and "not allowed to modify labels: node-restriction.kubernetes.io/pool" in reason(r)
    assert node_a.patch(f"/api/v1/nodes/{a}", json={"metadata": {"labels": {"disk": "ssd"}}},
                        headers=merge).status_code == 200

    leases = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
    lease = lambda name: {"metadata": {"name": name}, "spec": {"holderIdentity": name}}  # noqa: E731
    assert node_a.post(leases, json=lease(a)).status_code == 201
    assert node_b.post(leases, json=lease(b)).status_code == 201
    assert node_a.put(f"{leases}/{b}", json=node_a.get(f"{leases}/{b}").json()).status_code == 403
    for name in (a, b):
        http.delete(f"{leases}/{name}")

    ns = f"/api/v1/namespaces/{namespace}"
    mine = http.post(f"{ns}/pods", json=bound_pod("mine", a)).json()
    theirs = http.post(f"{ns}/pods", json=bound_pod("theirs", b)).json()
    mine["status"] = {"phase": "Running"}
    assert node_a.put(f"{ns}/pods/mine/status", json=mine).status_code == 200
    theirs["status"] = {"phase": "Running"}
    r = node_a.put(f"{ns}/pods/theirs/status", json=theirs)
    assert r.status_code == 403 and "can only change pods bound to it" in reason(r)
    assert node_a.delete(f"{ns}/pods/theirs").status_code == 403
    assert node_a.delete(f"{ns}/pods/mine").status_code == 200
    r = node_a.post(f"{ns}/pods", json=bound_pod("static", a))
    assert r.status_code == 403 and "can only create mirror pods" in reason(r)
    mirror = bound_pod("static", a)
    mirror["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "hash"}
    assert node_a.post(f"{ns}/pods", json=mirror).status_code == 201
    # Reading is not restricted: a kubelet may look at any pod, node or service.
    assert node_a.get(f"{ns}/pods/theirs").status_code == 200


def test_authorization_mode_rbac_alone_has_no_node_authorizer(etcd, tmp_path):
    from tests.conftest import start_apiserver

    server = start_apiserver(etcd, tmp_path, "--authorization-mode", "RBAC")
    try:
        with server.http() as admin, server.http("system:node:node-a") as node:
            ns = f"nodeauthz-{os.urandom(2).hex()}"
            admin.post("/api/v1/namespaces", json={"metadata": {"name": ns}})
            admin.post(f"/api/v1/namespaces/{ns}/secrets", json={"metadata": {"name": "db"}})
            admin.post(f"/api/v1/namespaces/{ns}/pods", json=bound_pod("web", "node-a"))
            # Without the Node authorizer only RBAC's system:node role speaks, and it holds no Secrets.
            assert node.get(f"/api/v1/namespaces/{ns}/secrets/db").status_code == 403
            assert node.get("/api/v1/nodes").status_code == 200
    finally:
        server.kill()
