"""Node lifecycle: notice dead kubelets, taint their nodes, and evict what does not tolerate the taints.

Health. A kubelet proves it is alive by renewing its Lease `kube-node-lease/<node>` (and by writing node
status). For every node we remember when we last *observed* a change of either — the lease's
`renewTime` or the Ready condition's `lastHeartbeatTime` — on our own clock, as Kubernetes does, so
clocks of different machines never need to agree. A node not heard from for `--node-monitor-grace-period`
(`--node-startup-grace-period` while it has never reported Ready) gets Ready and the other kubelet-owned
conditions set to Unknown, reason `NodeStatusUnknown`, "Kubelet stopped posting node status."; the event
`NodeNotReady` is recorded and the Ready condition of its pods is set to False, so Endpoints drop them.

Taints (Kubernetes' TaintNodesByCondition and NoExecute taint managers, in one place): the controller owns
the taints `node.kubernetes.io/{not-ready,unreachable}` (NoSchedule and NoExecute, from Ready False /
Unknown), `{memory,disk,pid}-pressure` and `network-unavailable` (NoSchedule, from those conditions) and
`unschedulable` (NoSchedule, from `spec.unschedulable`). `desired_taints(node)` computes them; other taints
are never touched, and a taint already present keeps its `timeAdded`. A recovered node (lease renewed,
kubelet reports Ready) thus loses them. When every node is unhealthy at once (full disruption — more
likely our own view is broken than every kubelet), no NoExecute taints are set, as in Kubernetes.

Eviction: `eviction_deadline(pod, taints, ...)` is when a pod on a node with NoExecute taints must go: at
once for a taint it does not tolerate, else at the taint's `timeAdded` plus the smallest
`tolerationSeconds` of the tolerations it uses, never when those tolerate forever. Pods without their own
toleration for not-ready/unreachable get the ones Kubernetes' DefaultTolerationSeconds admission would
add (`--default-not-ready-toleration-seconds`, `--default-unreachable-toleration-seconds`). Eviction is a
graceful delete with the event `TaintManagerEviction`; if the kubelet is dead the pod stays terminating
until PodGC force-deletes it (controllers/podgc.py).

Every node is reconciled every `--node-monitor-period` and whenever it or its lease changes; the clock
is injectable (`clock=` option) so tests drive time.
"""
from __future__ import annotations

import copy
import datetime
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

from api.errors import APIError
from api.tolerations import tolerating
from client.rest import is_conflict
from controllers.base import Controller
from controllers.common import parse_time

logger = logging.getLogger(__name__)

Obj = dict[str, Any]

LEASE_NAMESPACE = "kube-node-lease"
NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
CONDITION_TAINTS = {
    "MemoryPressure": "node.kubernetes.io/memory-pressure",
    "DiskPressure": "node.kubernetes.io/disk-pressure",
    "PIDPressure": "node.kubernetes.io/pid-pressure",
    "NetworkUnavailable": "node.kubernetes.io/network-unavailable",
}
MANAGED = {(k, "NoSchedule") for k in (NOT_READY, UNREACHABLE, UNSCHEDULABLE, *CONDITION_TAINTS.values())} | \
          {(NOT_READY, "NoExecute"), (UNREACHABLE, "NoExecute")}
KUBELET_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")
BY_NODE = "nodelifecycle-byNode"
CONFLICT_RETRY = 0.2


def rfc3339(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(obj: Obj, ctype: str) -> Obj | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None


def ready_status(node: Obj) -> str | None:
    c = condition(node, "Ready")
    return c.get("status") if c else None


# -- taints ------------------------------------------------------------------------------------------

def desired_taints(node: Obj, *, evict: bool, now: float) -> list[Obj]:
    """The node's taints with the controller-owned ones recomputed from its conditions."""
    wanted: list[tuple[str, str]] = []
    ready = ready_status(node)
    for key, status in ((NOT_READY, "False"), (UNREACHABLE, "Unknown")):
        if ready == status:
            wanted.append((key, "NoSchedule"))
            if evict:
                wanted.append((key, "NoExecute"))
    for ctype, key in CONDITION_TAINTS.items():
        c = condition(node, ctype)
        if c is not None and c.get("status") == "True":
            wanted.append((key, "NoSchedule"))
    if (node.get("spec") or {}).get("unschedulable"):
        wanted.append((UNSCHEDULABLE, "NoSchedule"))
    current = [t for t in (node.get("spec") or {}).get("taints") or [] if isinstance(t, dict)]
    kept = [t for t in current if (t.get("key"), t.get("effect")) not in MANAGED]
    have = {(t.get("key"), t.get("effect")): t for t in current}
    for key, effect in wanted:
        if (key, effect) in have:
            kept.append(have[(key, effect)])
        elif effect == "NoExecute":
            kept.append({"key": key, "effect": effect, "timeAdded": rfc3339(now)})
        else:
            kept.append({"key": key, "effect": effect})
    return kept


def with_default_tolerations(tolerations: list[Obj], not_ready_seconds: int, unreachable_seconds: int) -> list[Obj]:
    """What Kubernetes' DefaultTolerationSeconds admission adds to a pod lacking its own tolerations."""
    out = list(tolerations)
    for key, seconds in ((NOT_READY, not_ready_seconds), (UNREACHABLE, unreachable_seconds)):
        if not any(t.get("key") in (key, None, "") and t.get("effect") in ("NoExecute", None, "") for t in tolerations):
            out.append({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds})
    return out


def eviction_deadline(pod: Obj, taints: list[Obj], *, not_ready_seconds: int, unreachable_seconds: int,
                      first_seen: Callable[[Obj], float]) -> float | None:
    """When the pod must leave a node with these taints (a time, possibly past), or None for never.

    `first_seen(taint)` gives a start time for a NoExecute taint that carries no timeAdded."""
    tolerations = with_default_tolerations([t for t in (pod.get("spec") or {}).get("tolerations") or []
                                            if isinstance(t, dict)], not_ready_seconds, unreachable_seconds)
    deadline: float | None = None
    for taint in taints:
        if taint.get("effect") != "NoExecute":
            continue
        used = tolerating(tolerations, taint)
        if used is None:
            return float("-inf")
        seconds = used.get("tolerationSeconds")
        if seconds is None:
            continue
        start = parse_time(taint.get("timeAdded"))
        if start is None:
            start = first_seen(taint)
        candidate = start + max(0, int(seconds))
        deadline = candidate if deadline is None else min(deadline, candidate)
    return deadline


@dataclass
class Health:
    probe: float              # our clock's time of the last sign of life
    heartbeat: str | None     # Ready.lastHeartbeatTime last seen
    renew: str | None         # lease renewTime last seen


class NodeLifecycleController(Controller):
    name = "nodelifecycle"
    workers = 2

    @classmethod
    def add_arguments(cls, group) -> None:
        group.add_argument("--node-monitor-grace-period", type=float, default=40,
                           help="seconds without a lease renewal or status update before a node is Unknown")
        group.add_argument("--node-startup-grace-period", type=float, default=60,
                           help="the same for a node that has never reported Ready")
        group.add_argument("--node-monitor-period", type=float, default=5, help="how often each node is checked")
        group.add_argument("--default-not-ready-toleration-seconds", type=int, default=300)
        group.add_argument("--default-unreachable-toleration-seconds", type=int, default=300)

    def setup(self) -> None:
        o = self.options
        self.clock: Callable[[], float] = o.get("clock") or time.time
        self.grace = float(o.get("node_monitor_grace_period") or 40)
        self.startup_grace = float(o.get("node_startup_grace_period") or 60)
        self.period = float(o.get("node_monitor_period") or 5)
        self.not_ready_seconds = int(o.get("default_not_ready_toleration_seconds", 300))
        self.unreachable_seconds = int(o.get("default_unreachable_toleration_seconds", 300))
        self.health: dict[str, Health] = {}
        self._taint_seen: dict[tuple[str, str, str], float] = {}
        self._full_disruption = False
        self.nodes = self.factory.informer("nodes")
        self.nodes.add_handler(**self.enqueue_handlers())
        self.leases = self.factory.informer("leases", namespace=LEASE_NAMESPACE)
        self.leases.add_handler(on_add=self._lease_changed, on_update=lambda old, new: self._lease_changed(new))
        self.pods = self.factory.informer("pods")
        self.pods.add_index(BY_NODE, lambda p: [n] if (n := (p.get("spec") or {}).get("nodeName")) else [])

    def _lease_changed(self, lease: Obj) -> None:
        if lease["metadata"]["name"] in self.nodes.store:
            self.queue.add(lease["metadata"]["name"])

    # -- reconcile -------------------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        node = self.nodes.store.get(key)
        if node is None:
            self.health.pop(key, None)
            return
        now = self.clock()
        self._observe(node, now)
        delay = self.period
        try:
            node = await self._check_health(node, now)
            self._update_disruption(now)
            node = await self._sync_taints(node, now)
            next_check = await self._evict(node, now)
            if next_check is not None:
                delay = max(0.0, min(self.period, next_check - now))
        except APIError as e:
            if not is_conflict(e):
                raise
            # The kubelet or another controller wrote the node meanwhile: look again once the cache has it.
            logger.debug("node %s changed while we wrote it; retrying", key)
            delay = CONFLICT_RETRY
        self.queue.add_after(key, delay)

    def _observe(self, node: Obj, now: float) -> None:
        name = node["metadata"]["name"]
        ready = condition(node, "Ready")
        heartbeat = ready.get("lastHeartbeatTime") if ready else None
        lease = self.leases.store.get(f"{LEASE_NAMESPACE}/{name}")
        renew = (lease.get("spec") or {}).get("renewTime") if lease else None
        h = self.health.get(name)
        if h is None:
            # Everyone gets a full grace period from the moment we start watching.
            self.health[name] = Health(now, heartbeat, renew)
        elif heartbeat != h.heartbeat or renew != h.renew:
            h.probe, h.heartbeat, h.renew = now, heartbeat, renew

    async def _check_health(self, node: Obj, now: float) -> Obj:
        name = node["metadata"]["name"]
        h = self.health[name]
        ready = condition(node, "Ready")
        grace = self.grace if ready is not None else self.startup_grace
        if now <= h.probe + grace:
            return node
        if ready is None or ready.get("status") != "Unknown":
            node = await self._mark_unknown(node, now)
            h.heartbeat = (condition(node, "Ready") or {}).get("lastHeartbeatTime")
        await self._mark_pods_not_ready(name, now)
        return node

    async def _mark_unknown(self, node: Obj, now: float) -> Obj:
        name = node["metadata"]["name"]
        stamp = rfc3339(now)
        conditions = copy.deepcopy((node.get("status") or {}).get("conditions") or [])
        by_type = {c.get("type"): c for c in conditions}
        was_ready = (by_type.get("Ready") or {}).get("status") == "True"
        for ctype in KUBELET_CONDITIONS:
            c = by_type.get(ctype)
            if c is None:
                if ctype != "Ready":
                    continue
                c = {"type": "Ready", "lastHeartbeatTime": node["metadata"].get("creationTimestamp")}
                conditions.append(c)
                c.update(reason="NodeStatusNeverUpdated", message="Kubelet never posted node status.")
            else:
                c.update(reason="NodeStatusUnknown", message="Kubelet stopped posting node status.")
            if c.get("status") != "Unknown":
                c["lastTransitionTime"] = stamp
            c.update(status="Unknown", lastProbeTime=stamp)
        patch = {"metadata": {"resourceVersion": node["metadata"]["resourceVersion"]},
                 "status": {"conditions": conditions}}
        updated = await self.client.patch("nodes", name, patch, subresource="status")
        logger.warning("node %s: no heartbeat for %.0fs; Ready=Unknown", name, now - self.health[name].probe)
        if was_ready:
            self.recorder.event(updated, "Normal", "NodeNotReady", f"Node {name} status is now: NodeNotReady")
        return updated

    async def _mark_pods_not_ready(self, node_name: str, now: float) -> None:
        for pod in self.pods.store.by_index(BY_NODE, node_name):
            ready = condition(pod, "Ready")
            if ready is None or ready.get("status") != "True":
                continue
            conditions = copy.deepcopy(pod["status"]["conditions"])
            for c in conditions:
                if c.get("type") == "Ready":
                    c.update(status="False", lastTransitionTime=rfc3339(now))
            patch = {"metadata": {"resourceVersion": pod["metadata"]["resourceVersion"]},
                     "status": {"conditions": conditions}}
            try:
                await self.client.patch("pods", pod["metadata"]["name"], patch, pod["metadata"]["namespace"],
                                        subresource="status")
            except APIError as e:
                if e.code == 404:
                    continue
                raise
            logger.info("pod %s/%s on unreachable node %s: Ready=False", pod["metadata"]["namespace"],
                        pod["metadata"]["name"], node_name)

    def _healthy(self, node: Obj, now: float) -> bool:
        h = self.health.get(node["metadata"]["name"])
        return ready_status(node) == "True" and (h is None or now <= h.probe + self.grace)

    def _update_disruption(self, now: float) -> None:
        nodes = self.nodes.store.list()
        full = bool(nodes) and not any(self._healthy(n, now) for n in nodes)
        if full != self._full_disruption:
            self._full_disruption = full
            if full:
                logger.warning("every node is unhealthy: full disruption, evictions stop")
            else:
                logger.info("some node is healthy again: evictions resume")
            for n in nodes:
                self.queue.add(n["metadata"]["name"])

    async def _sync_taints(self, node: Obj, now: float) -> Obj:
        taints = desired_taints(node, evict=not self._full_disruption, now=now)
        current = (node.get("spec") or {}).get("taints") or []
        if taints == current:
            return node
        patch = {"metadata": {"resourceVersion": node["metadata"]["resourceVersion"]},
                 "spec": {"taints": taints or None}}
        updated = await self.client.patch("nodes", node["metadata"]["name"], patch)
        added = [f'{t["key"]}:{t["effect"]}' for t in taints if t not in current]
        removed = [f'{t.get("key")}:{t.get("effect")}' for t in current if t not in taints]
        logger.info("node %s: taints added %s, removed %s", node["metadata"]["name"], added or "none",
                    removed or "none")
        return updated

    async def _evict(self, node: Obj, now: float) -> float | None:
        """Delete pods whose tolerations ran out; the earliest future deadline, if any."""
        name = node["metadata"]["name"]
        taints = [t for t in (node.get("spec") or {}).get("taints") or [] if t.get("effect") == "NoExecute"]
        self._taint_seen = {k: v for k, v in self._taint_seen.items()
                            if k[0] != name or any((t.get("key"), t.get("value") or "") == k[1:] for t in taints)}
        if not taints:
            return None

        def first_seen(taint: Obj) -> float:
            return self._taint_seen.setdefault((name, taint.get("key", ""), taint.get("value") or ""), now)

        upcoming: float | None = None
        for pod in self.pods.store.by_index(BY_NODE, name):
            if pod["metadata"].get("deletionTimestamp") or \
                    (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            deadline = eviction_deadline(pod, taints, not_ready_seconds=self.not_ready_seconds,
                                         unreachable_seconds=self.unreachable_seconds, first_seen=first_seen)
            if deadline is None:
                continue
            if deadline <= now:
                await self._evict_pod(pod, name)
            elif upcoming is None or deadline < upcoming:
                upcoming = deadline
        return upcoming

    async def _evict_pod(self, pod: Obj, node_name: str) -> None:
        meta = pod["metadata"]
        try:
            await self.client.delete("pods", meta["name"], meta["namespace"], preconditions={"uid": meta["uid"]})
        except APIError as e:
            if e.code in (404, 409):
                return
            raise
        logger.info("evicted pod %s/%s from tainted node %s", meta["namespace"], meta["name"], node_name)
        self.recorder.event(pod, "Normal", "TaintManagerEviction",
                            f"Marking for deletion Pod {meta['namespace']}/{meta['name']}")
