"""A DaemonSet end to end: one running pod on each of the cluster's two nodes, bound by the scheduler."""
from tests.cluster import wait_for


def test_daemonset_runs_one_pod_on_each_node(cluster):
    with cluster.http() as http:
        ns = cluster.new_namespace(http, "ds")
        try:
            body = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
                    "spec": {"selector": {"matchLabels": {"app": "agent"}},
                             "template": {"metadata": {"labels": {"app": "agent"}},
                                          "spec": {"terminationGracePeriodSeconds": 0,
                                                   "containers": [{"name": "c", "image": "minik8s/myapp:v1"}]}}}}
            assert http.post(f"/apis/apps/v1/namespaces/{ns}/daemonsets", json=body).status_code == 201
            nodes = {n["metadata"]["name"] for n in http.get("/api/v1/nodes").json()["items"]}

            def running():
                pods = http.get(f"/api/v1/namespaces/{ns}/pods").json()["items"]
                ok = len(pods) == len(nodes) and all(p["status"].get("phase") == "Running" for p in pods)
                return pods if ok else None
            pods = wait_for(running, 60, 0.5, "a running pod per node")
            assert {p["spec"]["nodeName"] for p in pods} == nodes
            assert all(p["metadata"]["labels"].get("controller-revision-hash") for p in pods)

            def ready_status():
                st = http.get(f"/apis/apps/v1/namespaces/{ns}/daemonsets/agent").json().get("status") or {}
                return st if st.get("numberReady") == len(nodes) else None
            st = wait_for(ready_status, 30, 0.5, "DaemonSet status numberReady")
            assert st["desiredNumberScheduled"] == st["currentNumberScheduled"] == st["updatedNumberScheduled"] == 2
        finally:
            http.delete(f"/apis/apps/v1/namespaces/{ns}/daemonsets/agent")
            http.delete(f"/apis/apps/v1/namespaces/{ns}/controllerrevisions")
            http.delete(f"/api/v1/namespaces/{ns}/pods")
            http.delete(f"/api/v1/namespaces/{ns}")
