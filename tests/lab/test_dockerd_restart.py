"""A node's dockerd restarts (its containers die with it): the kubelet brings pods back per restartPolicy."""
import time

LAB_OPTIONS = {"nodes": 2}


def wait_for(fn, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def pod(name: str, node: str, policy: str) -> dict:
    return {"metadata": {"name": name},
            "spec": {"nodeName": node, "restartPolicy": policy,
                     "containers": [{"name": "web", "image": "minik8s/myapp:v1"}]}}


def test_restarted_dockerd_brings_pods_back_per_restart_policy(lab):
    node = lab.nodes[0].name
    with lab.http() as http:
        ns = f"dockerd-{int(time.time())}"
        assert http.post("/api/v1/namespaces", json={"metadata": {"name": ns}}).status_code == 201
        for name, policy in (("always", "Always"), ("never", "Never")):
            assert http.post(f"/api/v1/namespaces/{ns}/pods", json=pod(name, node, policy)).status_code == 201

        def get(name):
            return http.get(f"/api/v1/namespaces/{ns}/pods/{name}").json()

        wait_for(lambda: all(get(n)["status"].get("phase") == "Running" for n in ("always", "never")), 60,
                 "both pods Running")
        before = get("always")["status"]["containerStatuses"][0]["containerID"]

        lab.restart_dockerd(node)

        def came_back():
            p = get("always")
            statuses = p["status"].get("containerStatuses") or []
            return p["status"].get("phase") == "Running" and statuses and statuses[0].get("ready") and \
                statuses[0].get("containerID") != before and p
        back = wait_for(came_back, 90, "the Always pod running again in new containers")
        assert back["status"]["containerStatuses"][0]["restartCount"] >= 1 or \
            back["status"]["containerStatuses"][0]["containerID"] != before
        ip = back["status"]["podIP"]
        answer = lab.exec(node, ["curl", "-s", "-m", "5", f"http://{ip}/hostname.html"]).stdout.strip()
        assert answer == "always"
        # restartPolicy Never: the pod whose containers died is finished, not restarted.
        wait_for(lambda: get("never")["status"].get("phase") in ("Failed", "Succeeded"), 60,
                 "the Never pod finished")
        http.delete(f"/api/v1/namespaces/{ns}")
