"""Endpoints follow a pod's readiness end to end (exec readiness probe on a real container)."""
from tests.cluster import wait_for

# Not ready for ~3 s, ready for ~8 s, then not ready again.
SCRIPT = "sleep 3; touch /tmp/ready; sleep 8; rm /tmp/ready; sleep 3600"


def test_endpoints_track_readiness_named_ports_and_pod_deletion(cluster):
    with cluster.http() as http:
        ns = cluster.new_namespace(http, "ep")
        base = f"/api/v1/namespaces/{ns}"
        try:
            svc = {"metadata": {"name": "web", "labels": {"tier": "front"}},
                   "spec": {"selector": {"app": "web"},
                            "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}
            assert http.post(f"{base}/services", json=svc).status_code == 201
            pod = {"metadata": {"name": "web-0", "labels": {"app": "web"}},
                   "spec": {"terminationGracePeriodSeconds": 1,
                            "containers": [{"name": "c", "image": "minik8s/busybox:1.36",
                                            "command": ["sh", "-c", SCRIPT],
                                            "ports": [{"name": "http", "containerPort": 8080}],
                                            "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]},
                                                               "periodSeconds": 1}}]}}
            assert http.post(f"{base}/pods", json=pod).status_code == 201

            def subsets():
                r = http.get(f"{base}/endpoints/web")
                return r.json().get("subsets") or [] if r.status_code == 200 else None

            def addresses(kind):
                def check():
                    s = subsets()
                    return s and s[0].get(kind) and s[0]
                return check

            first = wait_for(addresses("notReadyAddresses"), 60, 0.2, what="pod listed as not ready")
            assert first["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
            address = first["notReadyAddresses"][0]
            running = http.get(f"{base}/pods/web-0").json()
            assert address["ip"] == running["status"]["podIP"]
            assert address["nodeName"] == running["spec"]["nodeName"]
            assert address["targetRef"] == {"kind": "Pod", "namespace": ns, "name": "web-0",
                                            "uid": running["metadata"]["uid"]}
            ep = http.get(f"{base}/endpoints/web").json()
            assert ep["metadata"]["labels"] == {"tier": "front"}
            assert "endpoints.kubernetes.io/last-change-trigger-time" in ep["metadata"]["annotations"]

            wait_for(addresses("addresses"), 30, 0.2, what="pod listed as ready")
            wait_for(lambda: (s := subsets()) and not s[0].get("addresses") and s[0].get("notReadyAddresses"),
                     30, 0.2, what="pod listed as not ready again")

            assert http.delete(f"{base}/pods/web-0").status_code == 200
            wait_for(lambda: subsets() == [], 30, 0.2, what="terminating pod removed from endpoints")
            assert http.delete(f"{base}/services/web").status_code == 200
            wait_for(lambda: http.get(f"{base}/endpoints/web").status_code == 404, 30, what="endpoints deleted")
        finally:
            http.delete(base)
