"""End to end: pods run on a real kubelet with the host's dockerd, reachable on their pod IP."""
from __future__ import annotations

import time

import docker
import httpx

from tests.kubelet.conftest import status_of

MYAPP = "minik8s/myapp:v1"
BUSYBOX = "minik8s/busybox:1.36"


def test_pod_runs_and_serves_on_its_ip(pods):
    pods.create("web", [{"name": "app", "image": MYAPP, "ports": [{"containerPort": 80}]}])
    pod = pods.wait_running("web")
    status = pod["status"]
    ip = status["podIP"]
    assert status["podIPs"] == [{"ip": ip}]
    assert status["hostIP"] == "127.0.0.1"
    assert status["startTime"]
    app = status_of(pod, "app")
    assert app["ready"] and app["started"] and app["restartCount"] == 0
    assert app["containerID"].startswith("docker://")
    assert app["imageID"].startswith("docker://sha256:") or app["imageID"].startswith("docker-pullable://")
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions == {"PodScheduled": "True", "Initialized": "True", "ContainersReady": "True",
                          "Ready": "True", "PodReadyToStartContainers": "True"}
    # Network safety: the only address contacted is the pod's own IP on the node bridge.
    assert ip.startswith(pods.kubelet.pod_cidr.rsplit(".", 2)[0])
    r = httpx.get(f"http://{ip}/hostname.html", timeout=5, trust_env=False)
    assert r.status_code == 200 and r.text.strip() == "web"


def test_official_python_client_reads_the_pod(pods, apiserver):
    import kubernetes.client

    pods.create("pyclient", [{"name": "app", "image": MYAPP}])
    pods.wait_running("pyclient")
    cfg = kubernetes.client.Configuration()
    cfg.host = apiserver.url
    cfg.ssl_ca_cert = str(apiserver.ca)
    cfg.api_key = {"authorization": f"Bearer {apiserver.admin_token}"}
    with kubernetes.client.ApiClient(cfg) as api:
        pod = kubernetes.client.CoreV1Api(api).read_namespaced_pod("pyclient", pods.namespace)
    assert pod.status.phase == "Running"
    status = pod.status.container_statuses[0]
    assert status.ready and status.state.running.started_at and status.image_id
    assert {c.type for c in pod.status.conditions} >= {"Ready", "Initialized", "ContainersReady", "PodScheduled"}


def test_init_containers_run_in_order_before_app_containers(pods):
    shared = [{"name": "work", "mountPath": "/work"}]
    pods.create("init", [{"name": "app", "image": BUSYBOX, "command": ["sh", "-c", "echo app >> /work/log; exec sleep 3600"],
                          "volumeMounts": shared}],
                initContainers=[
                    {"name": "first", "image": BUSYBOX, "command": ["sh", "-c", "echo first >> /work/log"],
                     "volumeMounts": shared},
                    {"name": "second", "image": BUSYBOX, "command": ["sh", "-c", "sleep 1; echo second >> /work/log"],
                     "volumeMounts": shared}],
                volumes=[{"name": "work", "emptyDir": {}}])
    pod = pods.wait(pods_name := "init", lambda p: status_of(p, "first")["state"].get("terminated")
                    and status_of(p, "app")["state"].get("waiting"))
    assert status_of(pod, "app")["state"]["waiting"]["reason"] == "PodInitializing"
    assert pod["status"]["phase"] == "Pending"
    pod = pods.wait_running(pods_name)
    for name in ("first", "second"):
        assert status_of(pod, name)["state"]["terminated"]["reason"] == "Completed"
    uid = pod["metadata"]["uid"]
    log = pods.kubelet.root_dir / "pods" / uid / "volumes" / "kubernetes.io~empty-dir" / "work" / "log"
    assert log.read_text().split() == ["first", "second", "app"]


def test_failed_init_container_with_restart_policy_never_fails_the_pod(pods):
    pods.create("initfail", [{"name": "app", "image": BUSYBOX, "command": ["true"]}], restartPolicy="Never",
                initContainers=[{"name": "broken", "image": BUSYBOX, "command": ["sh", "-c", "exit 3"]}])
    pod = pods.wait("initfail", lambda p: p["status"].get("phase") == "Failed")
    assert status_of(pod, "broken")["state"]["terminated"]["exitCode"] == 3
    assert status_of(pod, "app")["state"]["waiting"]["reason"] == "PodInitializing"


def test_resource_limits_reach_docker(pods):
    pods.create("limits", [{"name": "app", "image": MYAPP, "resources": {
        "limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "250m", "memory": "32Mi"}}}])
    pods.wait_running("limits")
    [c] = pods.containers("limits", **{"io.kubernetes.container.name": "app"})
    client = docker.from_env()
    host = client.api.inspect_container(c["Id"])["HostConfig"]
    client.close()
    assert host["Memory"] == 64 * 2**20
    assert host["NanoCpus"] == 500_000_000
    assert host["CpuShares"] == 256
    assert host["RestartPolicy"]["Name"] in ("", "no")
    assert pods.get("limits")["status"]["qosClass"] == "Burstable"


def test_graceful_delete_runs_pre_stop_then_stops_and_removes_everything(pods, tmp_path):
    marks = tmp_path / "marks"
    trap = "trap 'echo term >> /marks/log; exit 0' TERM; echo up >> /marks/log; while true; do sleep 0.2; done"
    pods.create("graceful", [{"name": "app", "image": BUSYBOX, "command": ["sh", "-c", trap],
                              "volumeMounts": [{"name": "marks", "mountPath": "/marks"}],
                              "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "echo prestop >> /marks/log"]}},
                                            "postStart": {"exec": {"command": ["sh", "-c",
                                                                               "echo poststart >> /marks/post"]}}}}],
                volumes=[{"name": "marks", "hostPath": {"path": str(marks), "type": "DirectoryOrCreate"}}],
                terminationGracePeriodSeconds=20)
    pod = pods.wait_running("graceful")
    assert (marks / "post").read_text() == "poststart\n"
    uid = pod["metadata"]["uid"]
    started = time.monotonic()
    r = pods.delete("graceful")
    assert r.status_code == 200, r.text
    assert pods.get("graceful")["metadata"]["deletionTimestamp"]
    pods.wait_gone("graceful")
    assert time.monotonic() - started < 10      # the app honours SIGTERM: no need to wait out the 20 s grace
    assert (marks / "log").read_text().split() == ["up", "prestop", "term"]
    assert pods.containers("graceful", uid=uid) == []
    assert not (pods.kubelet.root_dir / "pods" / uid).exists()


def test_grace_period_bounds_a_container_that_ignores_sigterm(pods):
    # sh as PID 1 ignores SIGTERM: the kubelet must SIGKILL it when the grace period is over.
    pods.create("stubborn", [{"name": "app", "image": BUSYBOX, "command": ["sh", "-c", "sleep 3600"]}],
                terminationGracePeriodSeconds=2)
    pods.wait_running("stubborn")
    started = time.monotonic()
    pods.delete("stubborn")
    pods.wait_gone("stubborn")
    assert 1.5 <= time.monotonic() - started < 8


def test_failed_post_start_hook_kills_the_container(pods):
    pods.create("poststart", [{"name": "app", "image": BUSYBOX, "command": ["sh", "-c", "sleep 3600"],
                               "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "exit 7"]}}}}],
                terminationGracePeriodSeconds=1)
    pods.wait("poststart", lambda p: status_of(p, "app")["restartCount"] >= 1, timeout=30)
    reasons = {e["reason"] for e in pods.events("poststart")}
    assert "FailedPostStartHook" in reasons
