"""The apiserver keeps `kubernetes.io/metadata.name` on every Namespace: set on create, restored on update."""
import uuid

from apiserver.storage import Store, encode

LABEL = "kubernetes.io/metadata.name"


def labels(http, name):
    r = http.get(f"/api/v1/namespaces/{name}")
    assert r.status_code == 200, r.text
    return r.json()["metadata"].get("labels")


def test_create_sets_the_name_label(http):
    name = f"ns-label-{uuid.uuid4().hex[:6]}"
    r = http.post("/api/v1/namespaces", json={"metadata": {"name": name, "labels": {LABEL: "spoofed"}}})
    assert r.status_code == 201, r.text
    assert r.json()["metadata"]["labels"] == {LABEL: name}
    generated = http.post("/api/v1/namespaces", json={"metadata": {"generateName": "ns-gen-"}}).json()
    assert generated["metadata"]["labels"] == {LABEL: generated["metadata"]["name"]}


def test_updates_cannot_remove_or_change_it(http):
    name = f"ns-label-{uuid.uuid4().hex[:6]}"
    ns = http.post("/api/v1/namespaces", json={"metadata": {"name": name}}).json()
    ns["metadata"]["labels"] = {"team": "a"}
    r = http.put(f"/api/v1/namespaces/{name}", json=ns)
    assert r.status_code == 200, r.text
    assert labels(http, name) == {"team": "a", LABEL: name}
    r = http.patch(f"/api/v1/namespaces/{name}", json={"metadata": {"labels": {LABEL: "x"}}},
                   headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200 and r.json()["metadata"]["labels"][LABEL] == name
    r = http.patch(f"/api/v1/namespaces/{name}", json=[{"op": "remove", "path": "/metadata/labels"}],
                   headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 200 and r.json()["metadata"]["labels"] == {LABEL: name}


async def test_a_namespace_stored_without_it_gets_it_on_its_next_write(http, etcd):
    name = f"ns-old-{uuid.uuid4().hex[:6]}"
    store = Store([("127.0.0.1", etcd.client_port)])
    await store.connect()
    try:
        await store.put_raw(f"/registry/namespaces/{name}", encode(
            {"kind": "Namespace", "apiVersion": "v1", "spec": {"finalizers": ["kubernetes"]},
             "metadata": {"name": name, "uid": str(uuid.uuid4()), "creationTimestamp": "2024-01-01T00:00:00Z"},
             "status": {"phase": "Active"}}))
    finally:
        await store.close()
    assert labels(http, name) is None
    r = http.patch(f"/api/v1/namespaces/{name}", json={"metadata": {"annotations": {"a": "b"}}},
                   headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    assert labels(http, name) == {LABEL: name}
