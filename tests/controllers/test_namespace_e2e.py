"""Namespace deletion end to end: content (a running pod, a service, config) goes first, then the namespace."""
from tests.cluster import wait_for


def test_deleting_a_namespace_removes_its_content_then_itself(cluster):
    with cluster.http() as http:
        ns = cluster.new_namespace(http, "nsdel")
        base = f"/api/v1/namespaces/{ns}"
        pod = {"metadata": {"name": "p", "labels": {"app": "p"}},
               "spec": {"terminationGracePeriodSeconds": 1,
                        "containers": [{"name": "c", "image": "minik8s/myapp:v1"}]}}
        assert http.post(f"{base}/pods", json=pod).status_code == 201
        assert http.post(f"{base}/configmaps", json={"metadata": {"name": "cfg"}}).status_code == 201
        assert http.post(f"{base}/services", json={"metadata": {"name": "svc"},
                                                   "spec": {"selector": {"app": "p"},
                                                            "ports": [{"port": 80}]}}).status_code == 201
        wait_for(lambda: http.get(f"{base}/pods/p").json()["status"].get("phase") == "Running", 60,
                 what="pod running")

        assert http.delete(base).status_code == 200
        assert http.get(base).json()["status"]["phase"] == "Terminating"
        assert http.post(f"{base}/configmaps", json={"metadata": {"name": "late"}}).status_code == 403

        wait_for(lambda: http.get(base).status_code == 404, 60, 0.2, what="namespace deleted")
        for kind in ("pods", "configmaps", "services", "endpoints", "serviceaccounts"):
            assert http.get(f"{base}/{kind}").json()["items"] == [], kind
