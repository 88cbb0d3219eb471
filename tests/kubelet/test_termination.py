"""Termination messages: the per-container file, its tail, the logs fallback, and where status shows them."""
from __future__ import annotations

from kubelet import termination
from kubelet.observed import APP, EXITED, ContainerInfo, PodObserved
from kubelet.status import compute_pod_status


def test_prepare_makes_an_empty_world_writable_file_per_attempt(tmp_path):
    spec = {"name": "app", "terminationMessagePath": "/dev/termination-log"}
    bind = termination.prepare(tmp_path, spec, 2)
    path = tmp_path / "containers/app/2"
    assert bind == f"{path}:/dev/termination-log"
    assert path.read_bytes() == b"" and path.stat().st_mode & 0o777 == 0o666
    assert termination.prepare(tmp_path, {"name": "app"}, 0) is None
    mounted = {**spec, "volumeMounts": [{"name": "v", "mountPath": "/dev/termination-log"}]}
    assert termination.prepare(tmp_path, mounted, 3) is None


def test_read_tail_keeps_the_last_4096_bytes(tmp_path):
    path = tmp_path / "msg"
    path.write_bytes(b"a" * 10 + b"b" * 4096)
    assert termination.read_tail(path) == b"b" * 4096
    assert termination.read_tail(tmp_path / "absent") == b""


def test_logs_fallback_only_for_failed_containers_with_an_empty_file():
    spec = {"terminationMessagePolicy": "FallbackToLogsOnError"}
    assert termination.wants_logs(spec, b"", 1)
    assert not termination.wants_logs(spec, b"written", 1)
    assert not termination.wants_logs(spec, b"", 0)
    assert not termination.wants_logs({"terminationMessagePolicy": "File"}, b"", 1)
    assert termination.from_logs(b"x" * 5000) == b"x" * 2048


def test_status_shows_messages_in_state_and_last_state():
    pod = {"metadata": {"uid": "u"}, "spec": {"restartPolicy": "Always",
                                              "containers": [{"name": "app", "image": "busybox"}]}}
    old = ContainerInfo(id="c0", name="app", kind=APP, attempt=0, state=EXITED, exit_code=1, started_at=1.0,
                        finished_at=2.0)
    new = ContainerInfo(id="c1", name="app", kind=APP, attempt=1, state=EXITED, exit_code=2, started_at=3.0,
                        finished_at=4.0)
    status = compute_pod_status(pod, PodObserved.from_list([old, new]), now=5.0, waiting={}, ready={}, started={},
                                pod_ip=None, host_ip="127.0.0.1", sandbox_ready=False,
                                messages={"c0": "first", "c1": "second"})
    [cs] = status["containerStatuses"]
    assert cs["state"]["terminated"]["message"] == "second"
    assert cs["lastState"]["terminated"]["message"] == "first"
    status = compute_pod_status(pod, PodObserved.from_list([new]), now=5.0, waiting={}, ready={}, started={},
                                pod_ip=None, host_ip="127.0.0.1", sandbox_ready=False)
    assert "message" not in status["containerStatuses"][0]["state"]["terminated"]
