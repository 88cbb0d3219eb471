"""`compute_pod_status`: the pod's API status from what the kubelet observed, as Kubernetes derives it.

Pure: it takes the pod, its containers (`observed.PodObserved`), why containers wait (`waiting`: name ->
(reason, message), e.g. ErrImagePull, CrashLoopBackOff, CreateContainerConfigError — the executor knows
those), probe results per container id, and the pod/host IPs; it returns the whole `status` dict.

- Container statuses: the newest incarnation gives `state` (running / terminated with Completed, Error,
  OOMKilled or StartError, and the termination message by container id from `messages` / waiting),
  the one before it `lastState`; `restartCount` is the newest attempt.
  A dead container that is going to be restarted shows the waiting reason it waits for, with its last
  termination in `lastState`. Before anything ran: ContainerCreating, or PodInitializing when the pod
  has init containers.
- Phase: kubelet's getPhase over those statuses; Succeeded and Failed are final.
- Conditions: PodScheduled (kept, else True), PodReadyToStartContainers, Initialized, ContainersReady,
  Ready (with readiness gates); `lastTransitionTime` only moves when a condition's status changes.
- `startTime` is set once, when the kubelet first reports on the pod.
"""
from __future__ import annotations

import time
from typing import Any

from kubelet.observed import ContainerInfo, PodObserved

Obj = dict[str, Any]

TERMINAL = ("Succeeded", "Failed")


def rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def terminated_state(c: ContainerInfo, message: str = "") -> Obj:
    if c.oom_killed:
        reason = "OOMKilled"
    elif c.error:
        reason = "StartError"
    elif c.exit_code == 0:
        reason = "Completed"
    else:
        reason = "Error"
    exit_code = c.exit_code if c.exit_code is not None else 128
    state: Obj = {"exitCode": exit_code, "reason": reason, "containerID": f"docker://{c.id}"}
    if c.error or message:
        state["message"] = c.error or message
    if c.started_at:
        state["startedAt"] = rfc3339(c.started_at)
    if c.finished_at:
        state["finishedAt"] = rfc3339(c.finished_at)
    return {"terminated": state}


def container_status(spec: Obj, observed: PodObserved, *, default_reason: str, waiting: tuple[str, str] | None,
                     ready: dict[str, bool], started: dict[str, bool], done: bool,
                     messages: dict[str, str] | None = None) -> Obj:
    name = spec["name"]
    messages = messages or {}
    c, prev = observed.latest(name), observed.previous(name)
    status: Obj = {"name": name, "image": spec.get("image", ""), "imageID": "", "restartCount": 0,
                   "ready": False, "started": False, "state": {}, "lastState": {}}
    if c is None:
        reason, message = waiting or (default_reason, "")
        status["state"] = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        return status
    status.update(imageID=c.image_id, containerID=f"docker://{c.id}", restartCount=c.attempt)
    if c.running:
        status["state"] = {"running": {"startedAt": rfc3339(c.started_at)}}
        status["ready"] = bool(ready.get(c.id)) and not done
        status["started"] = bool(started.get(c.id))
        if prev is not None and not prev.running:
            status["lastState"] = terminated_state(prev, messages.get(prev.id, ""))
    elif waiting is not None and not done:
        reason, message = waiting
        status["state"] = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        status["lastState"] = terminated_state(c, messages.get(c.id, ""))
    else:
        status["state"] = terminated_state(c, messages.get(c.id, ""))
        if prev is not None and not prev.running:
            status["lastState"] = terminated_state(prev, messages.get(prev.id, ""))
    return status


def get_phase(spec: Obj, init_statuses: list[Obj], statuses: list[Obj]) -> str:
    """kubelet's getPhase."""
    policy = spec.get("restartPolicy") or "Always"
    pending_init = failed_init = 0
    for s in init_statuses:
        state, last = s["state"], s["lastState"]
        if "running" in state:
            pending_init += 1
        elif "terminated" in state:
            failed_init += state["terminated"]["exitCode"] != 0
        elif "terminated" in last:
            failed_init += last["terminated"]["exitCode"] != 0
        else:
            pending_init += 1
    if failed_init and policy == "Never":
        return "Failed"
    if pending_init or failed_init:
        return "Pending"
    running = waiting = stopped = succeeded = 0
    for s in statuses:
        state = s["state"]
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            succeeded += state["terminated"]["exitCode"] == 0
        elif "terminated" in s["lastState"]:
            stopped += 1
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        return "Failed" if policy == "Never" else "Running"
    return "Pending"


def _condition(ctype: str, ok: bool, reason: str = "", message: str = "") -> Obj:
    cond: Obj = {"type": ctype, "status": "True" if ok else "False", "lastProbeTime": None}
    if not ok and reason:
        cond["reason"] = reason
    if not ok and message:
        cond["message"] = message
    return cond


def _conditions(pod: Obj, phase: str, init_statuses: list[Obj], statuses: list[Obj], sandbox_ready: bool,
                now: float) -> list[Obj]:
    spec, old = pod.get("spec") or {}, pod.get("status") or {}
    old_conditions = {c.get("type"): c for c in old.get("conditions") or [] if isinstance(c, dict)}
    completed = phase == "Succeeded"

    not_init = [s["name"] for s in init_statuses
                if not ("terminated" in s["state"] and s["state"]["terminated"]["exitCode"] == 0)]
    initialized = not not_init
    unready = [s["name"] for s in statuses if not s["ready"]]
    containers_ready = not unready
    gates = [g.get("conditionType") for g in spec.get("readinessGates") or [] if isinstance(g, dict)]
    gates_false = [g for g in gates if (old_conditions.get(g) or {}).get("status") != "True"]

    ready_reason = "PodCompleted" if completed else "ContainersNotReady"
    ready_message = "" if completed else f"containers with unready status: [{' '.join(unready)}]"
    ready = _condition("Ready", containers_ready and not gates_false, ready_reason, ready_message)
    if containers_ready and gates_false:
        ready.update(reason="ReadinessGatesNotReady",
                     message=f"corresponding condition of pod readiness gate \"{gates_false[0]}\" does not exist.")
    mine = [
        _condition("PodReadyToStartContainers", sandbox_ready),
        _condition("Initialized", initialized, "PodCompleted" if completed else "ContainersNotInitialized",
                   "" if completed else f"containers with incomplete status: [{' '.join(not_init)}]"),
        ready,
        _condition("ContainersReady", containers_ready, ready_reason, ready_message),
        old_conditions.get("PodScheduled") or _condition("PodScheduled", True),
    ]
    ours = {c["type"] for c in mine}
    out = mine + [c for t, c in old_conditions.items() if t not in ours]
    for cond in out:
        previous = old_conditions.get(cond["type"])
        if previous is not None and previous.get("status") == cond["status"] and previous.get("lastTransitionTime"):
            cond["lastTransitionTime"] = previous["lastTransitionTime"]
        else:
            cond.setdefault("lastTransitionTime", rfc3339(now))
    return out


def compute_pod_status(pod: Obj, observed: PodObserved, *, now: float, waiting: dict[str, tuple[str, str]],
                       ready: dict[str, bool], started: dict[str, bool], pod_ip: str | None, host_ip: str,
                       sandbox_ready: bool, done: bool = False, messages: dict[str, str] | None = None) -> Obj:
    spec, old = pod.get("spec") or {}, pod.get("status") or {}
    inits: list[Obj] = spec.get("initContainers") or []
    default_reason = "PodInitializing" if inits else "ContainerCreating"
    kw = {"default_reason": default_reason, "ready": ready, "started": started, "done": done, "messages": messages}
    init_statuses = [container_status(c, observed, waiting=waiting.get(c["name"]), **kw) for c in inits]
    for s in init_statuses:
        # An init container that finished is "ready" in Kubernetes' sense (it did its job).
        s["ready"] = "terminated" in s["state"] and s["state"]["terminated"]["exitCode"] == 0
    statuses = [container_status(c, observed, waiting=waiting.get(c["name"]), **kw)
                for c in spec.get("containers") or []]

    phase = old.get("phase") if old.get("phase") in TERMINAL else get_phase(spec, init_statuses, statuses)
    status: Obj = {
        "phase": phase,
        "conditions": _conditions(pod, phase, init_statuses, statuses, sandbox_ready and phase not in TERMINAL,
                                  now),
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": old.get("startTime") or rfc3339(now),
        "containerStatuses": statuses,
    }
    if inits:
        status["initContainerStatuses"] = init_statuses
    pod_ip = pod_ip or old.get("podIP")
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    return status
