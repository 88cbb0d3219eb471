"""The DaemonSet controller: one pod of the template on every eligible node.

Eligibility per node is Kubernetes' `NodeShouldRunDaemonPod`, answered as two booleans:
`should_run` (nodeSelector and required node affinity match, and every NoSchedule/NoExecute taint is
tolerated) and `should_continue_running` (false only if affinity fails or a NoExecute taint is not
tolerated: a new NoSchedule taint keeps the pod running but places no new one). The pod's
tolerations for this check include the defaults every DaemonSet pod gets (not-ready and unreachable
NoExecute; disk/memory/pid-pressure and unschedulable NoSchedule).

Placement: like Kubernetes since 1.12 the controller does not bind pods itself. Each pod gets a
required node affinity `matchFields metadata.name In [<node>]` (replacing the template's required
terms, which the controller has already evaluated), and the default scheduler binds it — so resource
fit, ports and scheduler events apply to daemon pods too.

`reconcile(ds key)`:

1. Sync ControllerRevisions (controllers/history.py): the current template's revision and its hash,
   which labels new pods (`controller-revision-hash`).
2. Manage: create a pod on eligible nodes that have none; delete pods on nodes that should not run
   them, pods of nodes that are gone, failed pods (recreated on the next sync), and extra pods on a
   node (keeping the oldest; with surge, the rules below decide which of new/old stays).
3. RollingUpdate, maxSurge 0: delete old pods, unavailable ones first, while at most maxUnavailable
   nodes are unavailable; manage recreates them with the new template. maxSurge > 0: start the new
   pod next to the old one on up to maxSurge nodes and delete the old one once the new is available.
   OnDelete: old pods stay until someone deletes them.
4. Status: desired/current/updated number scheduled, ready, available, unavailable, misscheduled,
   observedGeneration — written as a merge patch on /status guarded by resourceVersion.
5. Old revisions no pod uses are pruned beyond revisionHistoryLimit.

Creates and deletes go through Expectations, so a reconcile that runs before the pod watch has caught
up does not act twice. `minReadySeconds` availability is re-checked by a delayed requeue.
"""
from __future__ import annotations

import copy
import logging
import math
import time
from typing import Any, Callable

from api.errors import APIError
from api.nodeaffinity import term_matches
from api.selectors import selector_from_dict
from api.tolerations import tolerated
from client.resources import object_key
from client.rest import is_conflict, is_namespace_terminating, is_not_found
from controllers.base import Controller
from controllers.common import (Expectations, OwnedPodHandlers, claim, is_pod_available, is_pod_ready, merge_diff,
                                parse_time, pod_from_template)
from controllers.history import REVISION_HASH_LABEL, owned_revisions, sync_revisions, truncate_history

logger = logging.getLogger(__name__)

Obj = dict[str, Any]

DEFAULT_TOLERATIONS = (
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
)
NETWORK_UNAVAILABLE = {"key": "node.kubernetes.io/network-unavailable", "operator": "Exists", "effect": "NoSchedule"}


# -- eligibility -------------------------------------------------------------------------------------

def with_default_tolerations(spec: Obj) -> list[Obj]:
    tolerations = list(spec.get("tolerations") or [])
    extra = list(DEFAULT_TOLERATIONS) + ([NETWORK_UNAVAILABLE] if spec.get("hostNetwork") else [])
    for default in extra:
        if not any(t.get("key") == default["key"] and t.get("effect") == default["effect"] for t in tolerations):
            tolerations.append(dict(default))
    return tolerations


def node_matches(spec: Obj, node: Obj) -> bool:
    """nodeName, nodeSelector and required node affinity of a pod spec against a node."""
    if spec.get("nodeName") and spec["nodeName"] != node["metadata"]["name"]:
        return False
    labels = node["metadata"].get("labels") or {}
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution"))
    if required is not None:
        return any(term_matches(t, labels, node["metadata"]["name"])
                   for t in required.get("nodeSelectorTerms") or [])
    return True


def should_run(ds: Obj, node: Obj) -> tuple[bool, bool]:
    """(should_run, should_continue_running) for the DaemonSet's pod on `node`."""
    spec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
    if not node_matches(spec, node):
        return False, False
    tolerations = with_default_tolerations(spec)
    untolerated = [t for t in (node.get("spec") or {}).get("taints") or []
                   if t.get("effect") in ("NoSchedule", "NoExecute") and not tolerated(tolerations, t)]
    if untolerated:
        return False, not any(t.get("effect") == "NoExecute" for t in untolerated)
    return True, True


def target_node(pod: Obj) -> str | None:
    """The node a daemon pod is for: its nodeName, or before binding the name in its matchFields."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return spec["nodeName"]
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    for term in required.get("nodeSelectorTerms") or []:
        for f in term.get("matchFields") or []:
            if f.get("key") == "metadata.name" and f.get("operator") == "In" and len(f.get("values") or []) == 1:
                return f["values"][0]
    return None


def daemon_pod(ds: Obj, node_name: str, revision_hash: str) -> Obj:
    template = copy.deepcopy((ds.get("spec") or {}).get("template") or {})
    pod = pod_from_template(template, ds, extra_labels={REVISION_HASH_LABEL: revision_hash})
    spec = pod["spec"]
    spec["tolerations"] = with_default_tolerations(spec)
    affinity = spec.setdefault("affinity", {})
    node_affinity = affinity.setdefault("nodeAffinity", {})
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}]}
    return pod


def scaled_value(value: Any, total: int, *, round_up: bool) -> int:
    """An int-or-percent (maxUnavailable, maxSurge) against `total`."""
    if value is None:
        return 0
    if isinstance(value, str) and value.endswith("%"):
        amount = int(value[:-1]) * total / 100
        return math.ceil(amount) if round_up else math.floor(amount)
    return int(value)


def _created(pod: Obj) -> tuple:
    return (parse_time(pod["metadata"].get("creationTimestamp")) or 0.0, pod["metadata"]["name"])


def _is_terminating(pod: Obj) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def _hash_of(pod: Obj) -> str | None:
    return (pod["metadata"].get("labels") or {}).get(REVISION_HASH_LABEL)


def updated_pods_on_node(pods: list[Obj], digest: str) -> tuple[Obj | None, Obj | None, bool]:
    """(new pod, old pod, ok) among a node's non-terminating pods; ok is False with duplicates."""
    new = old = None
    for pod in pods:
        if _is_terminating(pod):
            continue
        if _hash_of(pod) == digest:
            if new is not None:
                return None, None, False
            new = pod
        else:
            if old is not None:
                return None, None, False
            old = pod
    return new, old, True


class DaemonSetController(Controller):
    name = "daemonset"
    workers = 2

    def setup(self) -> None:
        self.clock: Callable[[], float] = self.options.get("clock") or time.time
        self.expectations = Expectations()
        self.daemonsets = self.factory.informer("daemonsets")
        self.pods = self.factory.informer("pods")
        self.nodes = self.factory.informer("nodes")
        self.revisions = self.factory.informer("controllerrevisions")
        self.pods.add_index("daemonset:namespace", lambda p: [p["metadata"].get("namespace") or ""])
        self.revisions.add_index("daemonset:namespace", lambda r: [r["metadata"].get("namespace") or ""])
        self.daemonsets.add_handler(**self.enqueue_handlers())
        self.pod_events = OwnedPodHandlers("DaemonSet", self.daemonsets.store.list, self.queue.add, self.expectations)
        self.pods.add_handler(**self.pod_events.handlers())
        self.nodes.add_handler(on_add=lambda n: self._enqueue_all(), on_delete=lambda n: self._enqueue_all(),
                               on_update=self._node_updated)

    # -- events ------------------------------------------------------------------------------------

    def _enqueue_all(self) -> None:
        for ds in self.daemonsets.store.list():
            self.enqueue(ds)

    def _node_updated(self, old: Obj, new: Obj) -> None:
        # Heartbeats change status only; eligibility depends on labels and taints (and Ready for
        # the not-ready taint, which arrives as a taint).
        if (old["metadata"].get("labels"), (old.get("spec") or {}).get("taints")) != \
                (new["metadata"].get("labels"), (new.get("spec") or {}).get("taints")):
            self._enqueue_all()

    # -- reconcile ---------------------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        ds = self.daemonsets.store.get(key)
        if ds is None:
            self.expectations.forget(key)
            return
        try:
            await self._sync(key, ds)
        except APIError as e:
            if is_conflict(e):
                logger.debug("daemonset %s: cache behind the apiserver (%s); waiting for the watch", key, e)
                return
            raise

    async def _sync(self, key: str, ds: Obj) -> None:
        ns = ds["metadata"]["namespace"]
        now = self.clock()
        nodes = sorted(self.nodes.store.list(), key=lambda n: n["metadata"]["name"])
        pods = await claim(self.client, ds, selector_from_dict(ds["spec"].get("selector")),
                           self.pods.store.by_index("daemonset:namespace", ns))
        if ds["metadata"].get("deletionTimestamp"):
            return
        revisions = owned_revisions(self.revisions.store.by_index("daemonset:namespace", ns), ds)
        current, digest = await sync_revisions(self.client, ds, revisions, resource="daemonsets")

        by_node: dict[str, list[Obj]] = {}
        for pod in pods:
            by_node.setdefault(target_node(pod) or "", []).append(pod)
        for node_pods in by_node.values():
            node_pods.sort(key=_created)
        eligibility = {n["metadata"]["name"]: should_run(ds, n) for n in nodes}

        if self.expectations.satisfied(key):
            to_create, to_delete = self._manage(ds, by_node, eligibility, digest)
            strategy = (ds["spec"].get("updateStrategy") or {})
            if strategy.get("type", "RollingUpdate") == "RollingUpdate":
                create_more, delete_more = self._rolling_update(ds, by_node, eligibility, digest, now)
                to_create += [n for n in create_more if n not in to_create]
                to_delete += [p for p in delete_more if p not in to_delete]
            await self._apply(key, ds, to_create, to_delete, digest)

        await self._write_status(key, ds, by_node, eligibility, digest, now)
        live = {_hash_of(p) for p in pods if not _is_terminating(p)}
        await truncate_history(self.client, revisions, {h for h in live if h}, ds["spec"].get("revisionHistoryLimit"),
                               current)

    def _manage(self, ds: Obj, by_node: dict[str, list[Obj]], eligibility: dict[str, tuple[bool, bool]],
                digest: str) -> tuple[list[str], list[Obj]]:
        """Nodes needing a pod and pods to delete (Kubernetes' podsShouldBeOnNode over all nodes)."""
        to_create: list[str] = []
        to_delete: list[Obj] = []
        surge = self._max_surge(ds, sum(1 for run, _ in eligibility.values() if run)) > 0
        for node, (run, keep) in eligibility.items():
            node_pods = by_node.get(node, [])
            if not keep:
                to_delete += [p for p in node_pods if not _is_terminating(p)]
                continue
            running: list[Obj] = []
            for pod in node_pods:
                if _is_terminating(pod):
                    continue
                if (pod.get("status") or {}).get("phase") == "Failed":
                    self.recorder.event(ds, "Warning", "FailedDaemonPod",
                                        f"Found failed daemon pod {pod['metadata']['namespace']}/"
                                        f"{pod['metadata']['name']} on node {node}, will try to kill it")
                    to_delete.append(pod)
                else:
                    running.append(pod)
            if run and not running and not any(_is_terminating(p) for p in node_pods):
                to_create.append(node)
                continue
            if len(running) <= 1:
                continue
            if not surge:
                to_delete += running[1:]
                continue
            # With surge two pods may share a node only while the new one is not ready and the old one is.
            oldest_new = oldest_old = None
            for pod in running:
                if _hash_of(pod) == digest and oldest_new is None:
                    oldest_new = pod
                elif _hash_of(pod) != digest and oldest_old is None:
                    oldest_old = pod
                else:
                    to_delete.append(pod)
            if oldest_new is not None and oldest_old is not None and \
                    (not is_pod_ready(oldest_old) or is_pod_ready(oldest_new)):
                to_delete.append(oldest_old)
        # Pods for nodes that no longer exist.
        for node, node_pods in by_node.items():
            if node not in eligibility:
                to_delete += [p for p in node_pods if not _is_terminating(p)]
        return to_create, to_delete

    def _max_surge(self, ds: Obj, desired: int) -> int:
        strategy = ds["spec"].get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") != "RollingUpdate":
            return 0
        return scaled_value((strategy.get("rollingUpdate") or {}).get("maxSurge"), desired, round_up=True)

    def _rolling_update(self, ds: Obj, by_node: dict[str, list[Obj]], eligibility: dict[str, tuple[bool, bool]],
                        digest: str, now: float) -> tuple[list[str], list[Obj]]:
        """Kubernetes' DaemonSet rollingUpdate: which old pods go and which nodes get a new pod now."""
        desired = sum(1 for run, _ in eligibility.values() if run)
        rolling = (ds["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {}
        max_surge = self._max_surge(ds, desired)
        max_unavailable = scaled_value(rolling.get("maxUnavailable", 1 if not max_surge else 0), desired,
                                       round_up=False)
        if max_unavailable == 0 and max_surge == 0:
            max_unavailable = 1
        min_ready = int(ds["spec"].get("minReadySeconds") or 0)
        available = lambda p: is_pod_available(p, min_ready, now)  # noqa: E731
        to_delete: list[Obj] = []
        if max_surge == 0:
            unavailable = 0
            replace_now: list[Obj] = []
            candidates: list[Obj] = []
            for node, (run, keep) in eligibility.items():
                if not keep:
                    continue
                new, old, ok = updated_pods_on_node(by_node.get(node, []), digest)
                if not ok:
                    unavailable += 1
                elif new is None and old is None:
                    unavailable += 1  # manage creates it
                elif new is not None:
                    if not available(new):
                        unavailable += 1
                elif not available(old):
                    replace_now.append(old)
                    unavailable += 1
                elif unavailable < max_unavailable:
                    candidates.append(old)
            room = max(0, min(max_unavailable - unavailable, len(candidates)))
            return [], replace_now + candidates[:room]
        surged = 0
        create_now: list[str] = []
        create_candidates: list[str] = []
        for node, (run, keep) in eligibility.items():
            if not keep:
                continue
            new, old, ok = updated_pods_on_node(by_node.get(node, []), digest)
            if not ok or old is None:
                continue
            if new is None:
                if not available(old):
                    create_now.append(node)
                elif not run or surged >= max_surge:
                    continue
                else:
                    create_candidates.append(node)
            elif not available(new):
                surged += 1
            else:
                to_delete.append(old)
        room = max(0, min(max_surge - surged, len(create_candidates)))
        return create_now + create_candidates[:room], to_delete

    async def _apply(self, key: str, ds: Obj, to_create: list[str], to_delete: list[Obj], digest: str) -> None:
        ns = ds["metadata"]["namespace"]
        self.expectations.expect(key, creations=len(to_create), deletions=[object_key(p) for p in to_delete])
        for node in to_create:
            try:
                pod = await self.client.create("pods", daemon_pod(ds, node, digest), ns)
            except Exception as e:
                self.expectations.creation_observed(key)
                if is_namespace_terminating(e):
                    return  # the DaemonSet goes with its namespace
                self.recorder.event(ds, "Warning", "FailedCreate", f"Error creating pod on node {node}: {e}")
                raise
            logger.info("daemonset %s: created pod %s for node %s", key, pod["metadata"]["name"], node)
            self.recorder.event(ds, "Normal", "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}")
        for pod in to_delete:
            meta = pod["metadata"]
            try:
                await self.client.delete("pods", meta["name"], ns, preconditions={"uid": meta["uid"]})
            except APIError as e:
                self.expectations.deletion_observed(key, object_key(pod))
                if is_not_found(e) or is_conflict(e):
                    continue
                self.recorder.event(ds, "Warning", "FailedDelete", f"Error deleting pod {meta['name']}: {e}")
                raise
            logger.info("daemonset %s: deleted pod %s (node %s)", key, meta["name"], target_node(pod))
            self.recorder.event(ds, "Normal", "SuccessfulDelete", f"Deleted pod: {meta['name']}")

    async def _write_status(self, key: str, ds: Obj, by_node: dict[str, list[Obj]],
                            eligibility: dict[str, tuple[bool, bool]], digest: str, now: float) -> None:
        min_ready = int(ds["spec"].get("minReadySeconds") or 0)
        desired = current = ready = available = updated = misscheduled = 0
        recheck: float | None = None
        for node, (run, _) in eligibility.items():
            node_pods = [p for p in by_node.get(node, []) if not _is_terminating(p)]
            if run:
                desired += 1
                if node_pods:
                    current += 1
                    pod = node_pods[0]
                    if is_pod_ready(pod):
                        ready += 1
                        if is_pod_available(pod, min_ready, now):
                            available += 1
                        elif min_ready:
                            since = parse_time((next(c for c in pod["status"]["conditions"]
                                                     if c.get("type") == "Ready")).get("lastTransitionTime")) or now
                            wait = since + min_ready - now
                            recheck = wait if recheck is None else min(recheck, wait)
                    if any(_hash_of(p) == digest for p in node_pods):
                        updated += 1
            elif node_pods:
                misscheduled += 1
        old = ds.get("status") or {}
        status = {**old, "currentNumberScheduled": current, "numberMisscheduled": misscheduled,
                  "desiredNumberScheduled": desired, "numberReady": ready, "numberAvailable": available,
                  "numberUnavailable": desired - available, "updatedNumberScheduled": updated,
                  "observedGeneration": ds["metadata"].get("generation")}
        diff = merge_diff(old, status)
        if diff:
            meta = ds["metadata"]
            await self.client.patch("daemonsets", meta["name"], {"metadata": {"resourceVersion": meta["resourceVersion"]},
                                                                 "status": diff}, meta["namespace"], subresource="status")
        if recheck is not None:
            self.queue.add_after(key, max(recheck, 0.0))
