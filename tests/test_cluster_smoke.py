"""The end-to-end harness itself: two nodes register, get podCIDRs, and run scheduled pods."""
from tests.cluster import wait_for


def test_two_node_cluster_schedules_and_runs_pods(cluster):
    with cluster.http() as http:
        ns = cluster.new_namespace(http)
        nodes = {n["metadata"]["name"]: n["spec"]["podCIDR"] for n in http.get("/api/v1/nodes").json()["items"]}
        assert len(nodes) == 2 and len(set(nodes.values())) == 2
        for i in range(4):
            pod = {"metadata": {"name": f"p{i}"}, "spec": {"containers": [{"name": "c", "image": "minik8s/myapp:v1"}]}}
            assert http.post(f"/api/v1/namespaces/{ns}/pods", json=pod).status_code == 201

        def running():
            items = http.get(f"/api/v1/namespaces/{ns}/pods").json()["items"]
            return items if all(p["status"].get("phase") == "Running" for p in items) else None
        pods = wait_for(running, 60, what="4 pods Running")
        assert {p["spec"]["nodeName"] for p in pods} == set(nodes)  # spread over both nodes
        http.delete(f"/api/v1/namespaces/{ns}/pods")
