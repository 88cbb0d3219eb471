"""A StatefulSet end to end: OrderedReady creates web-0, web-1, web-2 in order and scales down from the top."""
import time

from tests.cluster import wait_for


def test_statefulset_orders_creation_and_scale_down(cluster):
    with cluster.http() as http:
        ns = cluster.new_namespace(http, "sts")
        base = f"/apis/apps/v1/namespaces/{ns}/statefulsets"
        try:
            body = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
                    "spec": {"replicas": 3, "serviceName": "web", "selector": {"matchLabels": {"app": "web"}},
                             "template": {"metadata": {"labels": {"app": "web"}},
                                          "spec": {"terminationGracePeriodSeconds": 0,
                                                   "containers": [{"name": "c", "image": "minik8s/myapp:v1"}]}}}}
            assert http.post(base, json=body).status_code == 201
            seen: list[list[str]] = []

            def sample():
                pods = http.get(f"/api/v1/namespaces/{ns}/pods").json()["items"]
                names = sorted(p["metadata"]["name"] for p in pods)
                if not seen or seen[-1] != names:
                    seen.append(names)
                return pods

            def all_ready():
                pods = sample()
                return len(pods) == 3 and all(any(c["type"] == "Ready" and c["status"] == "True"
                                                  for c in p["status"].get("conditions") or []) for p in pods)
            wait_for(all_ready, 90, 0.2, "web-0..2 Ready")
            # Every observed state is a prefix of the ordinals: web-1 never before web-0, web-2 never before web-1.
            assert all(names == [f"web-{i}" for i in range(len(names))] for names in seen), seen
            created = {p["metadata"]["name"]: p["metadata"]["creationTimestamp"] for p in sample()}
            assert created["web-0"] <= created["web-1"] <= created["web-2"]
            pod = http.get(f"/api/v1/namespaces/{ns}/pods/web-1").json()
            assert pod["spec"]["hostname"] == "web-1" and pod["spec"]["subdomain"] == "web"
            assert pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"] == "1"

            seen.clear()
            http.patch(f"{base}/web", json={"spec": {"replicas": 1}},
                       headers={"Content-Type": "application/merge-patch+json"})
            start = time.monotonic()
            wait_for(lambda: [p["metadata"]["name"] for p in sample()] == ["web-0"], 60, 0.1, "scaled down to web-0")
            assert all(names == [f"web-{i}" for i in range(len(names))] for names in seen), seen
            assert time.monotonic() - start < 60
            st = wait_for(lambda: (s := http.get(f"{base}/web").json()["status"]).get("replicas") == 1 and s, 20, 0.2,
                          "status.replicas 1")
            assert st["readyReplicas"] == 1 and st["currentRevision"] == st["updateRevision"]
        finally:
            http.delete(f"{base}/web")
            http.delete(f"/apis/apps/v1/namespaces/{ns}/controllerrevisions")
            http.delete(f"/api/v1/namespaces/{ns}/pods")
            http.delete(f"/api/v1/namespaces/{ns}")
