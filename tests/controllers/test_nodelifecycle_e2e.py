"""A stopped kubelet: its node goes Unknown and is tainted, its pods are evicted (and a ReplicaSet's come
back on the other node); restarted, the node is Ready and untainted again.

Needs the controller-manager started with small node-lifecycle timings (tests/conftest.py takes them from
MINIK8S_E2E_CM_FLAGS), e.g. `--node-monitor-grace-period 15 --node-monitor-period 1
--default-unreachable-toleration-seconds 2 --podgc-period 1 --podgc-terminating-delay 2`; with
Kubernetes' defaults (40 s, 300 s) the test skips rather than wait for minutes.
"""
import importlib.util

import pytest

from tests.cluster import wait_for

UNREACHABLE = "node.kubernetes.io/unreachable"
POD_SPEC = {"terminationGracePeriodSeconds": 1, "containers": [{"name": "c", "image": "minik8s/myapp:v1"}]}


def flag(cluster, name: str, default: float) -> float:
    flags = cluster.controller_manager_flags
    return float(flags[flags.index(name) + 1]) if name in flags else default


def node_state(http, name: str) -> tuple[str | None, set]:
    node = http.get(f"/api/v1/nodes/{name}").json()
    ready = next((c["status"] for c in node["status"].get("conditions") or [] if c["type"] == "Ready"), None)
    return ready, {(t["key"], t["effect"]) for t in node["spec"].get("taints") or []}


def test_stopped_kubelet_gets_its_pods_evicted_and_recovers(cluster):
    grace = flag(cluster, "--node-monitor-grace-period", 40)
    toleration = flag(cluster, "--default-unreachable-toleration-seconds", 300)
    if grace > 20 or toleration > 10:
        pytest.skip("the controller-manager runs with slow node-lifecycle defaults; set MINIK8S_E2E_CM_FLAGS")
    has_rs = importlib.util.find_spec("controllers.replicaset") is not None
    victim, survivor = cluster.kubelets[0], cluster.kubelets[1]
    with cluster.http() as http:
        ns = cluster.new_namespace(http, "evict")
        base = f"/api/v1/namespaces/{ns}"
        try:
            bare = {"metadata": {"name": "bare"}, "spec": {**POD_SPEC, "nodeName": victim.name}}
            assert http.post(f"{base}/pods", json=bare).status_code == 201
            if has_rs:
                rs = {"metadata": {"name": "web"},
                      "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                               "template": {"metadata": {"labels": {"app": "web"}}, "spec": POD_SPEC}}}
                assert http.post(f"/apis/apps/v1/namespaces/{ns}/replicasets", json=rs).status_code == 201

            def running():
                pods = http.get(f"{base}/pods").json()["items"]
                ok = len(pods) == (3 if has_rs else 1) and all(p["status"].get("phase") == "Running" for p in pods)
                return pods if ok else None
            pods = wait_for(running, 60, what="pods running")
            # The bare pod is on the victim; ReplicaSet pods are wherever the scheduler put them.
            on_victim = {p["metadata"]["name"] for p in pods if p["spec"]["nodeName"] == victim.name}

            victim.proc.stop()
            ready = wait_for(lambda: (s := node_state(http, victim.name))[0] == "Unknown" and s, grace + 20, 0.5,
                             what=f"node {victim.name} Ready=Unknown")
            wait_for(lambda: (UNREACHABLE, "NoExecute") in node_state(http, victim.name)[1], 10, 0.5,
                     what="unreachable NoExecute taint")
            assert (UNREACHABLE, "NoSchedule") in node_state(http, victim.name)[1], ready

            def evicted() -> bool:
                names = {p["metadata"]["name"] for p in http.get(f"{base}/pods").json()["items"]}
                return not (names & on_victim)
            wait_for(evicted, toleration + 30, 0.5, what="pods on the stopped node evicted and removed")
            reasons = {e["reason"] for e in http.get(f"{base}/events").json()["items"]}
            assert "TaintManagerEviction" in reasons
            if has_rs:
                def replaced():
                    pods = [p for p in http.get(f"{base}/pods").json()["items"]
                            if p["metadata"].get("labels", {}).get("app") == "web"]
                    return len(pods) == 2 and all(p["spec"].get("nodeName") == survivor.name and
                                                  p["status"].get("phase") == "Running" for p in pods)
                wait_for(replaced, 60, 0.5, what="ReplicaSet pods running on the surviving node")
        finally:
            if not victim.proc.running:
                victim.proc.start()

            def healthy() -> bool:
                ready, taints = node_state(http, victim.name)
                return ready == "True" and not {t for t in taints if t[0] in (UNREACHABLE,
                                                                               "node.kubernetes.io/not-ready")}
            wait_for(healthy, 60, 0.5, what=f"node {victim.name} Ready and untainted again")
            http.delete(base)
