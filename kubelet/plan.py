"""`compute_pod_actions`: what to do to one pod's containers, as plain data (kuberuntime's computePodActions).

Given the pod (spec and uid), what runs for it (`observed.PodObserved`), the restart backoff, and which
running containers failed their liveness/startup probe, it answers: kill the whole pod? create a new
sandbox (which attempt)? which init container runs next? which app containers start (which attempt, why)?
which containers are killed (and why)? which wait in CrashLoopBackOff (and for how long)? which dead
containers are no longer needed? is the pod done for good? The executor (`podworker.py`) carries that out
with Docker; this module never touches Docker, the clock or the network, so every rule is a unit test.

Rules, as Kubernetes has them:

- No running sandbox (or its network is gone): kill whatever still runs and make a new sandbox, then start
  from the first init container (or every app container). A pod with restartPolicy Never whose sandbox
  died after it started containers is not given a new one — it is finished.
- Init containers run one at a time, in order, each to success; only init containers started in the
  current sandbox count. A failed one is restarted (with backoff) unless restartPolicy is Never, which
  fails the pod.
- App containers start together once init is done. An exited one restarts per restartPolicy (Always;
  OnFailure when it failed; never for Never), after its backoff. A running one is killed when its
  liveness/startup probe failed or its spec changed; the next sync restarts it per policy.
- When no app container runs or will run again, the pod is done: the sandbox is stopped and the dead
  containers stay for their status.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from kubelet.backoff import Backoff
from kubelet.observed import APP, INIT, ContainerInfo, PodObserved

Obj = dict[str, Any]

# Dead incarnations kept per container name: the latest (its state) and the one before (lastState).
KEEP_ATTEMPTS = 2


@dataclass(frozen=True)
class Start:
    name: str
    kind: str        # INIT | APP
    attempt: int
    reason: str


@dataclass(frozen=True)
class Kill:
    id: str
    name: str
    reason: str      # Kubernetes event reason words: "Unhealthy", "SpecChanged", "PodDone", ...
    message: str


@dataclass
class PodActions:
    kill_pod: bool = False
    create_sandbox: bool = False
    sandbox_attempt: int = 0
    start: list[Start] = field(default_factory=list)
    kill: list[Kill] = field(default_factory=list)
    backoff: dict[str, float] = field(default_factory=dict)
    remove: list[str] = field(default_factory=list)
    done: bool = False

    @property
    def idle(self) -> bool:
        return not (self.kill_pod or self.create_sandbox or self.start or self.kill or self.remove)


def container_hash(container: Obj) -> str:
    """Hash of a container's spec; a running container created from another spec is restarted."""
    return hashlib.sha256(json.dumps(container, sort_keys=True).encode()).hexdigest()[:16]


def backoff_key(uid: str, name: str) -> str:
    return f"{uid}/{name}"


def should_restart(policy: str, c: ContainerInfo) -> bool:
    return policy == "Always" or (policy == "OnFailure" and not c.succeeded)


def _next_attempt(observed: PodObserved, name: str) -> int:
    latest = observed.latest(name)
    return latest.attempt + 1 if latest else 0


def _failed_at(c: ContainerInfo) -> float:
    return c.finished_at or c.started_at or c.created_at or 0.0


def compute_pod_actions(pod: Obj, observed: PodObserved, *, now: float, backoff: Backoff,
                        unhealthy: dict[str, str] | None = None, network_ready: bool = True) -> PodActions:
    """`unhealthy` maps running container ids whose liveness/startup probe failed to the failure message."""
    spec = pod.get("spec") or {}
    uid = (pod.get("metadata") or {}).get("uid", "")
    policy = spec.get("restartPolicy") or "Always"
    inits: list[Obj] = spec.get("initContainers") or []
    apps: list[Obj] = spec.get("containers") or []
    unhealthy = unhealthy or {}
    actions = PodActions(remove=_superseded(observed))

    sandbox = observed.sandbox()
    running_sandboxes = [s for s in observed.sandboxes if s.running]
    if sandbox is None or not sandbox.running or not network_ready or len(running_sandboxes) > 1:
        return _new_sandbox(actions, spec, observed, sandbox, policy)

    # Init containers, one at a time, each to success.
    current = [c for c in observed.containers if c.kind != INIT or _in_sandbox(c, sandbox)]
    in_sandbox = PodObserved(observed.sandboxes, current)
    for init in inits:
        name = init["name"]
        c = in_sandbox.latest(name)
        if c is None:
            actions.start.append(Start(name, INIT, _next_attempt(observed, name), "init container not run yet"))
            return actions
        if c.running:
            return actions
        if c.succeeded:
            continue
        if policy == "Never":
            return _finish(actions, observed)
        wait = backoff.remaining(backoff_key(uid, name), _failed_at(c), now)
        if wait > 0:
            actions.backoff[name] = wait
        else:
            actions.start.append(Start(name, INIT, c.attempt + 1, f"init container exited with {c.exit_code}"))
        return actions

    alive = False
    for app in apps:
        name = app["name"]
        c = observed.latest(name)
        if c is None:
            actions.start.append(Start(name, APP, 0, "not created yet"))
            alive = True
        elif c.running:
            alive = True
            if c.id in unhealthy:
                actions.kill.append(Kill(c.id, name, "Unhealthy", unhealthy[c.id]))
            elif c.spec_hash and c.spec_hash != container_hash(app):
                actions.kill.append(Kill(c.id, name, "SpecChanged",
                                         f"Container {name} definition changed, will be restarted"))
        elif should_restart(policy, c):
            alive = True
            wait = backoff.remaining(backoff_key(uid, name), _failed_at(c), now)
            if wait > 0:
                actions.backoff[name] = wait
            else:
                actions.start.append(Start(name, APP, c.attempt + 1, f"container exited with {c.exit_code}"))
    if not alive:
        return _finish(actions, observed)
    return actions


def _in_sandbox(c: ContainerInfo, sandbox: ContainerInfo) -> bool:
    """Whether `c` was started within `sandbox` (init containers of an older sandbox must run again)."""
    return (c.started_at or float("inf")) >= (sandbox.started_at or 0.0)


def _new_sandbox(actions: PodActions, spec: Obj, observed: PodObserved, sandbox: ContainerInfo | None,
                 policy: str) -> PodActions:
    if any(c.running for c in observed.all()):
        actions.kill_pod = True
    if policy == "Never" and sandbox is not None and observed.containers:
        actions.done = True
        return actions
    apps = []
    for app in spec.get("containers") or []:
        c = observed.latest(app["name"])
        if c is None or c.running or should_restart(policy, c):
            apps.append(app["name"])
    if not apps:
        actions.done = True
        return actions
    why = "pod sandbox changed" if sandbox is not None else "new pod"
    inits: list[Obj] = spec.get("initContainers") or []
    if inits:
        name = inits[0]["name"]
        actions.start.append(Start(name, INIT, _next_attempt(observed, name), why))
    else:
        actions.start += [Start(name, APP, _next_attempt(observed, name), why) for name in apps]
    actions.create_sandbox = True
    actions.sandbox_attempt = sandbox.attempt + 1 if sandbox else 0
    return actions


def _finish(actions: PodActions, observed: PodObserved) -> PodActions:
    actions.done = True
    actions.kill_pod = any(c.running for c in observed.all())
    return actions


def _superseded(observed: PodObserved) -> list[str]:
    """Dead containers older than the last KEEP_ATTEMPTS incarnations of their name, and dead old sandboxes."""
    out: list[str] = []
    names = {c.name for c in observed.containers}
    for name in names:
        out += [c.id for c in observed.attempts(name)[KEEP_ATTEMPTS:] if not c.running]
    newest = observed.sandbox()
    out += [s.id for s in observed.sandboxes if s is not newest and not s.running]
    return out
