"""Resource metrics and the HPA end to end: real kubelets reading cgroups, the apiserver's metrics API,
`minik8s ctl top` and `kubectl top`, and the HPA controller scaling a Deployment of CPU burners.

The burners are capped by a CPU limit (200m each, at most 3 of them) so the two cores stay usable."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.cluster import ROOT, wait_for

APPS = "/apis/apps/v1/namespaces/{ns}"
HPAS = "/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers"
METRICS = "/apis/metrics.k8s.io/v1beta1"
BURN = ["sh", "-c", "while :; do :; done"]


def burner(name: str, replicas: int) -> dict:
    container = {"name": "burn", "image": "minik8s/busybox:1.36", "command": BURN,
                 "resources": {"requests": {"cpu": "100m", "memory": "16Mi"}, "limits": {"cpu": "200m"}}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [container], "terminationGracePeriodSeconds": 0}}}}


def hpa(name: str, *, target: int, down_window: int) -> dict:
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": name},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                     "minReplicas": 1, "maxReplicas": 3,
                     "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                         "type": "Utilization", "averageUtilization": target}}}],
                     "behavior": {"scaleDown": {"stabilizationWindowSeconds": down_window}}}}


def conditions(obj: dict) -> dict[str, dict]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def ctl(cluster, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", "ctl", "--kubeconfig", cluster.kubeconfig(), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


def kubectl(cluster, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["kubectl", "--kubeconfig", cluster.kubeconfig(), *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "KUBECACHEDIR": str(cluster.dir / "kubectl-cache")})


@pytest.fixture(scope="module")
def burning(cluster):
    """A namespace with one burner pod running, deleted afterwards."""
    with cluster.http() as http:
        ns = cluster.new_namespace(http, "hpa")
        assert http.post(f"{APPS.format(ns=ns)}/deployments", json=burner("burn", 1)).status_code == 201

        def running():
            pods = http.get(f"/api/v1/namespaces/{ns}/pods", params={"labelSelector": "app=burn"}).json()["items"]
            return [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
        wait_for(running, 60, 0.2, "the burner pod running")
        yield http, ns
        http.delete(f"/api/v1/namespaces/{ns}")


def test_metrics_api_reports_pods_and_nodes(cluster, burning):
    http, ns = burning
    groups = http.get("/apis").json()["groups"]
    assert {"name": "metrics.k8s.io", "versions": [{"groupVersion": "metrics.k8s.io/v1beta1", "version": "v1beta1"}],
            "preferredVersion": {"groupVersion": "metrics.k8s.io/v1beta1", "version": "v1beta1"}} in groups
    kinds = {r["name"]: r["kind"] for r in http.get(METRICS).json()["resources"]}
    assert kinds == {"nodes": "NodeMetrics", "pods": "PodMetrics"}

    def pod_metrics():
        items = http.get(f"{METRICS}/namespaces/{ns}/pods", params={"labelSelector": "app=burn"}).json()["items"]
        return items or None
    items = wait_for(pod_metrics, 30, 0.5, "pod metrics of the burner")
    (item,) = items
    assert item["kind"] == "PodMetrics" and item["metadata"]["namespace"] == ns
    assert item["metadata"]["labels"]["app"] == "burn"
    usage = item["containers"][0]["usage"]
    assert item["containers"][0]["name"] == "burn"
    from api.quantity import cpu_millis, memory_bytes
    assert 100 <= cpu_millis(usage["cpu"]) <= 260, usage      # capped at 200m by its limit
    assert memory_bytes(usage["memory"]) > 0
    assert item["window"].endswith("s")
    one = http.get(f"{METRICS}/namespaces/{ns}/pods/{item['metadata']['name']}")
    assert one.status_code == 200 and one.json()["kind"] == "PodMetrics"
    assert http.get(f"{METRICS}/namespaces/{ns}/pods/nope").json()["reason"] == "NotFound"
    everywhere = http.get(f"{METRICS}/pods", params={"labelSelector": "app=burn"}).json()
    assert everywhere["kind"] == "PodMetricsList" and len(everywhere["items"]) == 1

    nodes = http.get(f"{METRICS}/nodes").json()["items"]
    assert {n["metadata"]["name"] for n in nodes} == {k.name for k in cluster.kubelets}
    for n in nodes:
        assert cpu_millis(n["usage"]["cpu"]) > 0 and memory_bytes(n["usage"]["memory"]) > 0


def test_ctl_top_pods_and_nodes(cluster, burning):
    http, ns = burning
    wait_for(lambda: http.get(f"{METRICS}/namespaces/{ns}/pods").json()["items"], 30, 0.5, "pod metrics")
    top = ctl(cluster, "top", "pods", "-n", ns)
    assert top.returncode == 0, top.stderr
    header, row = top.stdout.splitlines()
    assert header.split() == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    name, cpu, mem = row.split()
    assert name.startswith("burn-") and cpu.endswith("m") and int(cpu[:-1]) >= 100 and mem.endswith("Mi")
    containers = ctl(cluster, "top", "pods", "-A", "-l", "app=burn", "--containers")
    assert containers.returncode == 0, containers.stderr
    lines = containers.stdout.splitlines()
    assert lines[0].split() == ["NAMESPACE", "POD", "NAME", "CPU(cores)", "MEMORY(bytes)"]
    assert lines[1].split()[:3] == [ns, name, "burn"]
    nodes = ctl(cluster, "top", "nodes")
    assert nodes.returncode == 0, nodes.stderr
    lines = nodes.stdout.splitlines()
    assert lines[0].split() == ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
    assert sorted(line.split()[0] for line in lines[1:]) == sorted(k.name for k in cluster.kubelets)
    assert all(line.split()[2].endswith("%") for line in lines[1:])


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed on this machine")
def test_kubectl_top(cluster, burning):
    http, ns = burning
    wait_for(lambda: http.get(f"{METRICS}/namespaces/{ns}/pods").json()["items"], 30, 0.5, "pod metrics")
    pods = kubectl(cluster, "top", "pod", "-n", ns)
    assert pods.returncode == 0, pods.stderr
    header, row = pods.stdout.splitlines()
    assert header.split() == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    assert row.split()[0].startswith("burn-") and int(row.split()[1].rstrip("m")) >= 100
    nodes = kubectl(cluster, "top", "node")
    assert nodes.returncode == 0, nodes.stderr
    lines = nodes.stdout.splitlines()
    assert lines[0].split()[:2] == ["NAME", "CPU(cores)"]
    assert sorted(line.split()[0] for line in lines[1:]) == sorted(k.name for k in cluster.kubelets)


def test_hpa_scales_burners_up_then_down_after_the_window(cluster, burning):
    http, ns = burning
    window = 4
    assert http.post(HPAS.format(ns=ns), json=hpa("burn", target=50, down_window=window)).status_code == 201
    deployment = f"{APPS.format(ns=ns)}/deployments/burn"
    wait_for(lambda: http.get(deployment).json()["spec"]["replicas"] == 3, 60, 0.25, "the HPA scaling to 3")

    def says_why():
        h = http.get(f"{HPAS.format(ns=ns)}/burn").json()
        c = conditions(h)
        return h if (h["status"].get("desiredReplicas") == 3 and h["status"].get("lastScaleTime")
                     and c.get("ScalingActive", {}).get("reason") == "ValidMetricFound") else None
    h = wait_for(says_why, 20, 0.25, "HPA status after the rescale")
    c = conditions(h)
    assert c["AbleToScale"]["status"] == "True"
    assert c["ScalingActive"]["message"] == ("the HPA was able to successfully calculate a replica count from cpu "
                                             "resource utilization (percentage of request)")
    current = h["status"]["currentMetrics"][0]["resource"]
    assert current["name"] == "cpu" and current["current"]["averageUtilization"] > 50
    events = http.get(f"/api/v1/namespaces/{ns}/events", params={
        "fieldSelector": "involvedObject.kind=HorizontalPodAutoscaler,reason=SuccessfulRescale"}).json()["items"]
    assert any(e["message"] == "New size: 3; reason: cpu resource utilization (percentage of request) above target"
               for e in events), [e["message"] for e in events]
    table = http.get(HPAS.format(ns=ns), headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}).json()
    assert [col["name"] for col in table["columnDefinitions"]] == ["Name", "Reference", "Targets", "MinPods",
                                                                   "MaxPods", "Replicas", "Age"]
    assert table["rows"][0]["cells"][1] == "Deployment/burn"
    assert table["rows"][0]["cells"][2].startswith("cpu: ")

    # The same load is far below a 1000% target: the HPA wants 1 replica, but only once the higher
    # recommendations have left the scale-down stabilization window.
    patched = time.monotonic()
    r = http.patch(f"{HPAS.format(ns=ns)}/burn", headers={"Content-Type": "application/merge-patch+json"},
                   json={"spec": {"metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                       "type": "Utilization", "averageUtilization": 1000}}}]}})
    assert r.status_code == 200, r.text
    seen_stabilized = []

    def scaled_down():
        h = http.get(f"{HPAS.format(ns=ns)}/burn").json()
        if conditions(h).get("AbleToScale", {}).get("reason") == "ScaleDownStabilized":
            seen_stabilized.append(time.monotonic())
        return http.get(deployment).json()["spec"]["replicas"] == 1
    wait_for(scaled_down, 60, 0.25, "the HPA scaling down to 1")
    elapsed = time.monotonic() - patched
    assert elapsed >= window - 1.5, f"scaled down after {elapsed:.1f}s, inside the {window}s stabilization window"
    assert seen_stabilized, "the HPA never reported ScaleDownStabilized while waiting out the window"
    events = http.get(f"/api/v1/namespaces/{ns}/events", params={
        "fieldSelector": "involvedObject.kind=HorizontalPodAutoscaler,reason=SuccessfulRescale"}).json()["items"]
    assert any(e["message"] == "New size: 1; reason: All metrics below target" for e in events)
