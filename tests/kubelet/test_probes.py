"""End to end: exec, httpGet and tcpSocket probes; liveness restarts, readiness flips Ready, startup gates."""
from __future__ import annotations

import docker

from tests.kubelet.conftest import status_of

BUSYBOX = "minik8s/busybox:1.36"
MYAPP = "minik8s/myapp:v1"
FAST = {"periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 1}


def run(pods, pod: str, *cmd: str) -> None:
    [c] = [c for c in pods.containers(pod, **{"io.kubernetes.container.name": "app"}) if c["State"] == "running"]
    client = docker.from_env()
    try:
        client.api.exec_start(client.api.exec_create(c["Id"], list(cmd))["Id"])
    finally:
        client.close()


def ready(pod) -> str:
    return {c["type"]: c["status"] for c in pod["status"].get("conditions") or []}.get("Ready")


def test_exec_readiness_flips_ready_both_ways(pods):
    pods.create("ready", [{"name": "app", "image": BUSYBOX, "command": ["sleep", "3600"],
                           "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, **FAST}}])
    pod = pods.wait("ready", lambda p: p["status"].get("phase") == "Running")
    assert ready(pod) == "False" and not status_of(pod, "app")["ready"]
    run(pods, "ready", "touch", "/tmp/ready")
    pod = pods.wait("ready", lambda p: ready(p) == "True")
    assert status_of(pod, "app")["ready"]
    run(pods, "ready", "rm", "/tmp/ready")
    pod = pods.wait("ready", lambda p: ready(p) == "False")
    assert {c["type"]: c.get("reason") for c in pod["status"]["conditions"]}["Ready"] == "ContainersNotReady"
    assert status_of(pod, "app")["restartCount"] == 0


def test_http_get_and_tcp_socket_probes_pass_on_a_healthy_app(pods):
    pods.create("healthy", [{"name": "app", "image": MYAPP, "ports": [{"name": "web", "containerPort": 80}],
                             "livenessProbe": {"httpGet": {"path": "/hostname.html", "port": "web",
                                                           "httpHeaders": [{"name": "X-Probe", "value": "1"}]},
                                               **FAST},
                             "readinessProbe": {"tcpSocket": {"port": 80}, **FAST}}])
    pods.wait("healthy", lambda p: ready(p) == "True")
    pod = pods.wait("healthy", lambda p: True)
    assert status_of(pod, "app")["restartCount"] == 0


def test_failing_http_liveness_restarts_the_container(pods):
    pods.create("unhealthy", [{"name": "app", "image": MYAPP,
                               "livenessProbe": {"httpGet": {"path": "/missing", "port": 80}, **FAST}}])
    pod = pods.wait("unhealthy", lambda p: status_of(p, "app")["restartCount"] >= 1, timeout=30)
    assert status_of(pod, "app")["lastState"]["terminated"]["exitCode"] in (0, 137, 143)
    reasons = [e["reason"] for e in pods.events("unhealthy")]
    assert "Unhealthy" in reasons and "Killing" in reasons
    messages = [e["message"] for e in pods.events("unhealthy") if e["reason"] == "Unhealthy"]
    assert any("Liveness probe failed: HTTP probe failed with statuscode: 404" in m for m in messages)


def test_failing_tcp_liveness_restarts_the_container(pods):
    pods.create("tcpdead", [{"name": "app", "image": BUSYBOX, "command": ["sleep", "3600"],
                             "livenessProbe": {"tcpSocket": {"port": 8080}, **FAST}}],
                terminationGracePeriodSeconds=1)
    pod = pods.wait("tcpdead", lambda p: status_of(p, "app")["restartCount"] >= 1, timeout=30)
    assert status_of(pod, "app")["restartCount"] >= 1


def test_startup_probe_gates_readiness_and_liveness(pods):
    pods.create("startup", [{"name": "app", "image": BUSYBOX, "command": ["sleep", "3600"],
                             "startupProbe": {"exec": {"command": ["cat", "/tmp/started"]}, "periodSeconds": 1,
                                              "failureThreshold": 60},
                             "livenessProbe": {"exec": {"command": ["cat", "/tmp/started"]}, **FAST},
                             "readinessProbe": {"exec": {"command": ["true"]}, **FAST}}])
    pod = pods.wait("startup", lambda p: p["status"].get("phase") == "Running")
    assert not status_of(pod, "app")["started"] and ready(pod) == "False"
    run(pods, "startup", "touch", "/tmp/started")
    pod = pods.wait("startup", lambda p: ready(p) == "True")
    assert status_of(pod, "app")["started"] and status_of(pod, "app")["restartCount"] == 0


def test_failing_startup_probe_restarts_the_container(pods):
    pods.create("nostart", [{"name": "app", "image": BUSYBOX, "command": ["sleep", "3600"],
                             "startupProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1,
                                              "failureThreshold": 2}}],
                terminationGracePeriodSeconds=1)
    pod = pods.wait("nostart", lambda p: status_of(p, "app")["restartCount"] >= 1, timeout=30)
    assert status_of(pod, "app")["restartCount"] >= 1
