"""End to end: a restarted kubelet adopts running containers and removes those of pods deleted meanwhile."""
from __future__ import annotations

import httpx

from tests.kubelet.conftest import Pods, status_of, wait_for

MYAPP = "minik8s/myapp:v1"


def test_restarted_kubelet_adopts_running_pods_and_removes_orphans(fresh_kubelet, http, namespace):
    pods = Pods(http, namespace, fresh_kubelet)
    pods.create("keep", [{"name": "app", "image": MYAPP}])
    pods.create("gone", [{"name": "app", "image": MYAPP}])
    keep = pods.wait_running("keep")
    gone = pods.wait_running("gone")
    before = {c["Id"] for c in pods.containers("keep")}
    gone_uid = gone["metadata"]["uid"]

    fresh_kubelet.stop()
    # While the kubelet is down: force-delete one pod (the apiserver removes it at once).
    assert pods.delete("gone", gracePeriodSeconds=0).status_code == 200
    pods.wait_gone("gone")
    assert pods.containers("gone", uid=gone_uid)          # still there: nobody removed them yet

    fresh_kubelet.start()
    wait_for(lambda: pods.containers("gone", uid=gone_uid) == [], 30, fresh_kubelet.logs)
    after = pods.get("keep")
    assert {c["Id"] for c in pods.containers("keep")} == before
    assert status_of(after, "app")["restartCount"] == 0
    assert status_of(after, "app")["containerID"] == status_of(keep, "app")["containerID"]
    assert after["status"]["podIP"] == keep["status"]["podIP"]
    r = httpx.get(f"http://{after['status']['podIP']}/hostname.html", timeout=5, trust_env=False)
    assert r.text.strip() == "keep"
    # Still managed: deleting it now works through the restarted kubelet.
    pods.delete("keep")
    pods.wait_gone("keep")
    assert pods.containers("keep", uid=keep["metadata"]["uid"]) == []
