"""What the kubelet observed in the container runtime about one pod, as plain data.

The pure parts of the kubelet (`plan.compute_pod_actions`, `status.compute_pod_status`) take these
values and nothing else from Docker, so they can be tested with hand-written data. `runtime.py` builds
them from `docker inspect` output; the labels of `labels.py` give the pod uid, the container name and
the attempt (the restart count of that incarnation).
"""
from __future__ import annotations

from dataclasses import dataclass, field

RUNNING = "running"
EXITED = "exited"
CREATED = "created"     # created but never started (a start failure leaves containers here too)

SANDBOX = "sandbox"
INIT = "init"
APP = "app"


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str                       # the pod spec's container name; labels.SANDBOX_NAME for the sandbox
    kind: str                       # SANDBOX | INIT | APP
    attempt: int = 0
    state: str = RUNNING
    exit_code: int | None = None
    started_at: float | None = None    # epoch seconds
    finished_at: float | None = None
    oom_killed: bool = False
    error: str = ""                 # Docker's State.Error: why the container could not start
    image: str = ""                 # the image as the pod spec names it
    image_id: str = ""              # "sha256:..."
    spec_hash: str = ""
    pid: int = 0
    pod_uid: str = ""
    created_at: float | None = None

    @property
    def running(self) -> bool:
        return self.state == RUNNING

    @property
    def succeeded(self) -> bool:
        return self.state != RUNNING and self.exit_code == 0 and not self.error


@dataclass
class PodObserved:
    """All containers of one pod (every attempt the runtime still keeps), sandboxes apart."""
    sandboxes: list[ContainerInfo] = field(default_factory=list)
    containers: list[ContainerInfo] = field(default_factory=list)

    @classmethod
    def from_list(cls, infos: list[ContainerInfo]) -> "PodObserved":
        return cls([c for c in infos if c.kind == SANDBOX], [c for c in infos if c.kind != SANDBOX])

    def sandbox(self) -> ContainerInfo | None:
        """The newest sandbox (highest attempt; a running one wins a tie)."""
        if not self.sandboxes:
            return None
        return max(self.sandboxes, key=lambda c: (c.attempt, c.running))

    def attempts(self, name: str) -> list[ContainerInfo]:
        """Every incarnation of container `name`, newest first."""
        return sorted((c for c in self.containers if c.name == name), key=lambda c: (c.attempt, c.running),
                      reverse=True)

    def latest(self, name: str) -> ContainerInfo | None:
        found = self.attempts(name)
        return found[0] if found else None

    def previous(self, name: str) -> ContainerInfo | None:
        found = self.attempts(name)
        return found[1] if len(found) > 1 else None

    def all(self) -> list[ContainerInfo]:
        return self.sandboxes + self.containers
