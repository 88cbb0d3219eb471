"""Cascading deletion of a real Deployment: Background removes its ReplicaSets and pods, Orphan keeps them."""
from tests.cluster import wait_for


def deployment(name: str) -> dict:
    return {"metadata": {"name": name}, "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                                                 "template": {"metadata": {"labels": {"app": name}},
                                                              "spec": {"containers": [{"name": "web",
                                                                                       "image": "minik8s/myapp:v1"}]}}}}


def owned(http, ns: str, app: str) -> tuple[list, list]:
    rs = http.get(f"/apis/apps/v1/namespaces/{ns}/replicasets", params={"labelSelector": f"app={app}"}).json()["items"]
    pods = [p for p in http.get(f"/api/v1/namespaces/{ns}/pods", params={"labelSelector": f"app={app}"}).json()["items"]
            if not p["metadata"].get("deletionTimestamp")]
    return rs, pods


def test_background_deletes_replicasets_and_pods_and_orphan_keeps_them(cluster):
    with cluster.http() as http:
        ns = cluster.new_namespace(http, "cascade")
        for name in ("bg", "orph"):
            assert http.post(f"/apis/apps/v1/namespaces/{ns}/deployments", json=deployment(name)).status_code == 201
            wait_for(lambda: (lambda rs, pods: len(rs) == 1 and len(pods) == 2)(*owned(http, ns, name)), 60,
                     what=f"{name}: one ReplicaSet with two pods")

        assert http.delete(f"/apis/apps/v1/namespaces/{ns}/deployments/bg",
                           params={"propagationPolicy": "Background"}).status_code == 200
        wait_for(lambda: owned(http, ns, "bg") == ([], []), 60, what="bg's ReplicaSet and pods deleted")

        assert http.delete(f"/apis/apps/v1/namespaces/{ns}/deployments/orph",
                           params={"propagationPolicy": "Orphan"}).status_code == 200
        wait_for(lambda: http.get(f"/apis/apps/v1/namespaces/{ns}/deployments/orph").status_code == 404, 30,
                 what="orphaning Deployment gone")
        rs, pods = owned(http, ns, "orph")
        assert len(rs) == 1 and len(pods) == 2
        assert not rs[0]["metadata"].get("ownerReferences")  # released, not deleted
        assert all(p["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet" for p in pods)

        http.delete(f"/apis/apps/v1/namespaces/{ns}/replicasets/{rs[0]['metadata']['name']}")
        http.delete(f"/api/v1/namespaces/{ns}")
