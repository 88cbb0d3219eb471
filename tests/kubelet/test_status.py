"""compute_pod_status with plain data: phases, reasons, conditions and their transition times."""
from __future__ import annotations

from kubelet.observed import APP, EXITED, INIT, RUNNING, SANDBOX, ContainerInfo, PodObserved
from kubelet.status import compute_pod_status, get_phase

T0 = 1_700_000_000.0


def pod(policy="Always", inits=None, status=None):
    spec = {"restartPolicy": policy, "containers": [{"name": "app", "image": "img:1"}]}
    if inits:
        spec["initContainers"] = [{"name": n, "image": "img:1"} for n in inits]
    return {"metadata": {"uid": "u", "name": "p", "namespace": "ns"}, "spec": spec, "status": status or {}}


def c(name="app", attempt=0, state=RUNNING, exit_code=None, kind=APP, oom=False):
    return ContainerInfo(id=f"{name}{attempt}", name=name, kind=kind, attempt=attempt, state=state,
                         exit_code=exit_code, started_at=T0, finished_at=None if state == RUNNING else T0 + 5,
                         oom_killed=oom, image_id="docker://sha256:abc")


def status(p, *infos, waiting=None, ready=None, **kw):
    observed = PodObserved.from_list([ContainerInfo(id="s", name="POD", kind=SANDBOX), *infos])
    return compute_pod_status(p, observed, now=T0 + 10, waiting=waiting or {}, ready=ready or {},
                              started={i.id: True for i in infos}, pod_ip="10.244.1.2", host_ip="10.0.0.1",
                              sandbox_ready=True, **kw)


def cs(st, name="app"):
    return next(s for s in st["containerStatuses"] + st.get("initContainerStatuses", []) if s["name"] == name)


def test_nothing_started_yet_is_container_creating_or_pod_initializing():
    st = status(pod())
    assert st["phase"] == "Pending"
    assert cs(st)["state"] == {"waiting": {"reason": "ContainerCreating"}}
    st = status(pod(inits=["i"]))
    assert cs(st)["state"]["waiting"]["reason"] == "PodInitializing"
    assert cs(st, "i")["state"]["waiting"]["reason"] == "PodInitializing"


def test_running_ready_pod():
    st = status(pod(), c(), ready={"app0": True})
    assert st["phase"] == "Running"
    s = cs(st)
    assert s["ready"] and s["started"] and s["restartCount"] == 0
    assert s["containerID"] == "docker://app0" and s["imageID"] == "docker://sha256:abc" and s["image"] == "img:1"
    conds = {x["type"]: x["status"] for x in st["conditions"]}
    assert conds["Ready"] == conds["ContainersReady"] == conds["Initialized"] == "True"
    assert st["podIPs"] == [{"ip": "10.244.1.2"}] and st["hostIPs"] == [{"ip": "10.0.0.1"}]


def test_terminated_reasons():
    assert cs(status(pod("Never"), c(state=EXITED, exit_code=0)))["state"]["terminated"]["reason"] == "Completed"
    assert cs(status(pod("Never"), c(state=EXITED, exit_code=3)))["state"]["terminated"]["reason"] == "Error"
    oom = cs(status(pod("Never"), c(state=EXITED, exit_code=137, oom=True)))["state"]["terminated"]
    assert oom["reason"] == "OOMKilled" and oom["exitCode"] == 137


def test_crash_loop_shows_waiting_with_last_state_and_restart_count():
    st = status(pod(), c(attempt=0, state=EXITED, exit_code=1), c(attempt=1, state=EXITED, exit_code=1),
                waiting={"app": ("CrashLoopBackOff", "back-off 20s restarting failed container=app")})
    s = cs(st)
    assert s["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert s["lastState"]["terminated"]["exitCode"] == 1
    assert s["restartCount"] == 1
    assert st["phase"] == "Running"


def test_restarted_container_shows_previous_termination_as_last_state():
    s = cs(status(pod(), c(attempt=0, state=EXITED, exit_code=137), c(attempt=1)))
    assert "running" in s["state"] and s["lastState"]["terminated"]["exitCode"] == 137


def test_phases():
    assert status(pod("Never"), c(state=EXITED, exit_code=0))["phase"] == "Succeeded"
    assert status(pod("Never"), c(state=EXITED, exit_code=1))["phase"] == "Failed"
    assert status(pod("OnFailure"), c(state=EXITED, exit_code=0))["phase"] == "Succeeded"
    st = status(pod("Never", inits=["i"]), c("i", kind=INIT, state=EXITED, exit_code=1))
    assert st["phase"] == "Failed"
    st = status(pod(inits=["i"]), c("i", kind=INIT))
    assert st["phase"] == "Pending"
    assert {x["type"]: x.get("reason") for x in st["conditions"]}["Initialized"] == "ContainersNotInitialized"


def test_terminal_phase_is_final():
    st = status(pod("Never", status={"phase": "Succeeded"}), c())
    assert st["phase"] == "Succeeded"


def test_waiting_reasons_from_the_executor_are_reported():
    st = status(pod(), waiting={"app": ("ErrImagePull", "no registry")})
    assert cs(st)["state"] == {"waiting": {"reason": "ErrImagePull", "message": "no registry"}}


def test_transition_time_moves_only_on_change():
    first = status(pod(), c(), ready={"app0": True})
    again = status(pod(status={"conditions": first["conditions"]}), c(), ready={"app0": True})
    assert again["conditions"] == first["conditions"]
    old = {x["type"]: x for x in first["conditions"]}
    for cond in old.values():
        cond["lastTransitionTime"] = "2000-01-01T00:00:00Z"
    flipped = status(pod(status={"conditions": list(old.values())}), c(), ready={"app0": False})
    times = {x["type"]: x["lastTransitionTime"] for x in flipped["conditions"]}
    assert times["Ready"] != "2000-01-01T00:00:00Z"
    assert times["Initialized"] == "2000-01-01T00:00:00Z"
    assert times["PodScheduled"] == "2000-01-01T00:00:00Z"


def test_get_phase_restarting_always_pod_is_running():
    statuses = [{"state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"exitCode": 1}}}]
    assert get_phase({"restartPolicy": "Always"}, [], statuses) == "Running"
