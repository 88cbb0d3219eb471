"""Cascading deletion end to end: a ConfigMap owner with ConfigMap and Pod dependents (the collector is
kind-agnostic), deleted with each propagation policy, on the real-process `cluster`."""
from tests.cluster import wait_for

POD_SPEC = {"terminationGracePeriodSeconds": 1, "containers": [{"name": "c", "image": "minik8s/myapp:v1"}]}


def make_family(http, ns: str, owner: str) -> tuple[dict, list[str]]:
    r = http.post(f"/api/v1/namespaces/{ns}/configmaps", json={"metadata": {"name": owner}})
    assert r.status_code == 201, r.text
    o = r.json()
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": owner, "uid": o["metadata"]["uid"],
           "blockOwnerDeletion": True}
    paths = []
    for i in range(2):
        name = f"{owner}-cm-{i}"
        assert http.post(f"/api/v1/namespaces/{ns}/configmaps",
                         json={"metadata": {"name": name, "ownerReferences": [ref]}}).status_code == 201
        paths.append(f"/api/v1/namespaces/{ns}/configmaps/{name}")
    name = f"{owner}-pod"
    assert http.post(f"/api/v1/namespaces/{ns}/pods",
                     json={"metadata": {"name": name, "ownerReferences": [ref]}, "spec": POD_SPEC}).status_code == 201
    paths.append(f"/api/v1/namespaces/{ns}/pods/{name}")
    return o, paths


def gone(http, path: str) -> bool:
    return http.get(path).status_code == 404


def test_cascading_deletion_background_orphan_foreground(cluster):
    with cluster.http() as http:
        ns = cluster.new_namespace(http, "gc")
        try:
            # Background: the owner goes at once, the collector deletes the dependents after it.
            _, deps = make_family(http, ns, "bg")
            wait_for(lambda: http.get(deps[-1]).json().get("status", {}).get("phase") == "Running", 60,
                     what="background pod running")
            r = http.delete(f"/api/v1/namespaces/{ns}/configmaps/bg", params={"propagationPolicy": "Background"})
            assert r.status_code == 200
            wait_for(lambda: all(gone(http, p) for p in deps), 30, what="background dependents deleted")

            # Orphan: the owner goes, dependents stay without the reference.
            _, deps = make_family(http, ns, "orph")
            r = http.delete(f"/api/v1/namespaces/{ns}/configmaps/orph", params={"propagationPolicy": "Orphan"})
            assert r.status_code == 200
            wait_for(lambda: gone(http, f"/api/v1/namespaces/{ns}/configmaps/orph"), 30, what="orphaned owner gone")
            for p in deps:
                obj = http.get(p).json()
                assert obj["metadata"].get("deletionTimestamp") is None
                assert not obj["metadata"].get("ownerReferences"), p

            # Foreground: the owner waits (deletionTimestamp, finalizer) until its dependents are gone.
            _, deps = make_family(http, ns, "fg")
            wait_for(lambda: http.get(deps[-1]).json().get("status", {}).get("phase") == "Running", 60,
                     what="foreground pod running")
            r = http.delete(f"/api/v1/namespaces/{ns}/configmaps/fg", params={"propagationPolicy": "Foreground"})
            assert r.status_code == 200
            owner_path = f"/api/v1/namespaces/{ns}/configmaps/fg"
            held = http.get(owner_path).json()
            assert held["metadata"]["deletionTimestamp"] and "foregroundDeletion" in held["metadata"]["finalizers"]

            def owner_gone_last() -> bool:
                if not gone(http, owner_path):
                    return False
                assert all(gone(http, p) for p in deps), "the owner went before its dependents"
                return True
            wait_for(owner_gone_last, 30, 0.05, what="foreground owner deleted after its dependents")
        finally:
            http.delete(f"/api/v1/namespaces/{ns}")
