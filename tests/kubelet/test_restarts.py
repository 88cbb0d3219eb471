"""End to end: restartPolicy, CrashLoopBackOff with growing backoff, image pull failures, OOMKilled.

The kubelet under test runs with --crash-loop-backoff-base 0.5 (Kubernetes: 10 s), so the backoff
sequence 0.5, 1, 2, 4 s can be observed in seconds.
"""
from __future__ import annotations

import docker
import pytest

from kubelet.runtime import parse_docker_time
from tests.kubelet.conftest import status_of, wait_for

BUSYBOX = "minik8s/busybox:1.36"


def state(pod, name="app"):
    return status_of(pod, name)["state"]


@pytest.mark.parametrize("policy,code,phase", [
    ("Never", 0, "Succeeded"), ("Never", 1, "Failed"), ("OnFailure", 0, "Succeeded"),
])
def test_completed_pods_stay_stopped(pods, policy, code, phase):
    name = f"done-{policy.lower()}-{code}"
    pods.create(name, [{"name": "app", "image": BUSYBOX, "command": ["sh", "-c", f"exit {code}"]}],
                restartPolicy=policy)
    pod = pods.wait(name, lambda p: p["status"].get("phase") == phase)
    term = state(pod)["terminated"]
    assert term["exitCode"] == code and term["reason"] == ("Completed" if code == 0 else "Error")
    assert term["startedAt"] and term["finishedAt"]
    assert status_of(pod, "app")["restartCount"] == 0
    conds = {c["type"]: c for c in pod["status"]["conditions"]}
    assert conds["Ready"]["status"] == "False"
    # The containers stay, stopped, for their logs and status; the sandbox is stopped too.
    wait_for(lambda: all(c["State"] == "exited" for c in pods.containers(name)))
    assert len(pods.containers(name)) == 2


@pytest.mark.parametrize("policy,code", [("Always", 0), ("OnFailure", 3)])
def test_exited_containers_restart_per_policy(pods, policy, code):
    name = f"restart-{policy.lower()}"
    pods.create(name, [{"name": "app", "image": BUSYBOX, "command": ["sh", "-c", f"sleep 1; exit {code}"]}],
                restartPolicy=policy)
    pod = pods.wait(name, lambda p: status_of(p, "app")["restartCount"] >= 1)
    assert status_of(pod, "app")["lastState"]["terminated"]["exitCode"] == code
    assert pod["status"]["phase"] in ("Running", "Pending")


def test_crash_loop_backoff_reason_and_growing_delay(pods):
    pods.create("crashloop", [{"name": "app", "image": BUSYBOX, "command": ["sh", "-c", "exit 1"]}])
    pod = pods.wait("crashloop", lambda p: state(p).get("waiting", {}).get("reason") == "CrashLoopBackOff",
                    timeout=30)
    assert "back-off" in state(pod)["waiting"]["message"]
    assert status_of(pod, "app")["lastState"]["terminated"]["exitCode"] == 1
    assert pod["status"]["phase"] == "Running"
    pods.wait("crashloop", lambda p: status_of(p, "app")["restartCount"] >= 4, timeout=40)
    client = docker.from_env()
    try:
        infos = [client.api.inspect_container(c["Id"]) for c in pods.containers("crashloop")
                 if c["Labels"]["io.kubernetes.container.name"] == "app"]
    finally:
        client.close()
    # Only the last two attempts are kept; the gap between them is the backoff in force (>= 2 s by now).
    infos.sort(key=lambda i: int(i["Config"]["Labels"]["io.kubernetes.container.attempt"]))
    prev, last = infos[-2], infos[-1]
    gap = parse_docker_time(last["State"]["StartedAt"]) - parse_docker_time(prev["State"]["FinishedAt"])
    assert gap >= 1.5, gap
    assert any(e["reason"] == "BackOff" for e in pods.events("crashloop"))


def test_missing_image_is_err_image_pull_then_image_pull_back_off(pods):
    # No registry may be contacted here (network safety): the pull fails at once, never crashes the kubelet.
    pods.create("noimage", [{"name": "app", "image": "minik8s/does-not-exist:v1"}])
    pod = pods.wait("noimage", lambda p: state(p).get("waiting", {}).get("reason") == "ImagePullBackOff", timeout=40)
    assert state(pod)["waiting"]["message"] == 'Back-off pulling image "minik8s/does-not-exist:v1"'
    assert pod["status"]["phase"] == "Pending"
    events = pods.events("noimage")
    assert any(e["reason"] == "Failed" and e["message"] == "Error: ErrImagePull" for e in events)
    assert {"Pulling", "BackOff"} <= {e["reason"] for e in events}


def test_pull_policy_never_with_missing_image(pods):
    pods.create("neverpull", [{"name": "app", "image": "minik8s/does-not-exist:v1", "imagePullPolicy": "Never"}])
    pod = pods.wait("neverpull", lambda p: state(p).get("waiting", {}).get("reason") == "ErrImageNeverPull")
    assert "not present with pull policy of Never" in state(pod)["waiting"]["message"]


def test_oom_killed(pods):
    pods.create("oom", [{"name": "app", "image": BUSYBOX,
                         "command": ["sh", "-c", "head -c 200m /dev/zero | tail"],
                         "resources": {"limits": {"memory": "32Mi"}}}], restartPolicy="Never")
    pod = pods.wait("oom", lambda p: p["status"].get("phase") == "Failed", timeout=60)
    term = state(pod)["terminated"]
    assert term["reason"] == "OOMKilled", term
