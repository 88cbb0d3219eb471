"""Filter plugins: can this pod run on this node? Each answers None (fits) or a named reason.

Every filter is a small function `fits(pod, node) -> reason | None` on a parsed `PodInfo` and
`NodeInfo`; the reasons are Kubernetes' own strings, because users grep for them and the
`FailedScheduling` message counts nodes per reason. NodeResourcesFit may name several reasons at once
(a tuple), as Kubernetes reports every insufficient resource of a node.

Filters that need the whole cluster (inter-pod affinity, topology spread) are built per pod by a
*prefilter* `(pod, snapshot) -> fits | None`: it counts matching pods per topology domain once, and the
returned closure answers per node in O(labels). None means the plugin has nothing to check for this pod.

`filters_for(pod, snapshot)` returns the ordered list of checks that apply to a pod (Kubernetes' order:
cheap node checks first, cluster-wide ones last), so pods without ports, affinity or constraints pay
nothing for those plugins.
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from api.nodeaffinity import term_matches
from api.tolerations import tolerated as tolerations_tolerate
from scheduler.nodeinfo import ALL_IPS, AffinityTerm, NodeInfo, PodInfo

logger = logging.getLogger(__name__)

Reason = str | tuple[str, ...] | None
Fits = Callable[[PodInfo, NodeInfo], Reason]

UNSCHEDULABLE = "node(s) were unschedulable"
NOT_READY = "node(s) were not ready"
NODE_NAME = "node(s) didn't match the requested node name"
NODE_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
NODE_PORTS = "node(s) didn't have free ports for the requested pod ports"
TOO_MANY_PODS = "Too many pods"
POD_AFFINITY = "node(s) didn't match pod affinity rules"
POD_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"
SPREAD = "node(s) didn't match pod topology spread constraints"
SPREAD_MISSING_LABEL = "node(s) didn't match pod topology spread constraints (missing required label)"

UNSCHEDULABLE_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
NOT_READY_TAINT = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}
UNREACHABLE_TAINT = {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}


class Snapshot(Protocol):
    """What cluster-wide plugins read: every node (deterministic order) and pods with anti-affinity."""

    def node_infos(self) -> list[NodeInfo]: ...
    def pods_with_required_anti_affinity(self) -> Iterable[tuple[PodInfo, NodeInfo]]: ...


# --- tolerations ----------------------------------------------------------------------------------


def tolerated(pod: PodInfo, taint: dict) -> bool:
    return tolerations_tolerate(pod.tolerations, taint)


# --- node-local filters ---------------------------------------------------------------------------


def node_unschedulable(pod: PodInfo, node: NodeInfo) -> Reason:
    if node.unschedulable and not tolerated(pod, UNSCHEDULABLE_TAINT):
        return UNSCHEDULABLE
    return None


def node_ready(pod: PodInfo, node: NodeInfo) -> Reason:
    """A node whose Ready condition is not True takes only pods tolerating the not-ready taints."""
    if node.ready == "True":
        return None
    taint = UNREACHABLE_TAINT if node.ready == "Unknown" else NOT_READY_TAINT
    return None if tolerated(pod, taint) else NOT_READY


def node_name(pod: PodInfo, node: NodeInfo) -> Reason:
    if pod.node_name and pod.node_name != node.name:
        return NODE_NAME
    return None


def taint_toleration(pod: PodInfo, node: NodeInfo) -> Reason:
    for taint in node.taints:
        if not tolerated(pod, taint):
            return f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '')}}}"
    return None


def node_selector_term_matches(term: dict, node: NodeInfo) -> bool:
    """matchExpressions (labels) AND matchFields (metadata.name); an empty term matches nothing."""
    return term_matches(term, node.labels, node.name)


def matches_node_affinity(pod: PodInfo, node: NodeInfo) -> bool:
    """nodeSelector AND (any of the required nodeSelectorTerms)."""
    for key, value in pod.node_selector.items():
        if node.labels.get(key) != value:
            return False
    if pod.required_node_terms is None:
        return True
    return any(node_selector_term_matches(t, node) for t in pod.required_node_terms)


def node_affinity(pod: PodInfo, node: NodeInfo) -> Reason:
    return None if matches_node_affinity(pod, node) else NODE_AFFINITY


def _ports_conflict(want: tuple[str, str, int], used: tuple[str, str, int]) -> bool:
    ip, proto, port = want
    uip, uproto, uport = used
    return port == uport and proto == uproto and (ip == uip or ALL_IPS in (ip, uip))


def node_ports(pod: PodInfo, node: NodeInfo) -> Reason:
    for want in pod.host_ports:
        if any(_ports_conflict(want, used) for used in node.used_ports):
            return NODE_PORTS
    return None


def node_resources_fit(pod: PodInfo, node: NodeInfo) -> Reason:
    """Every resource the pod requests must fit in allocatable minus what the node's pods request."""
    if (len(node.pods) < node.alloc_pods and node.req_cpu + pod.cpu <= node.alloc_cpu
            and node.req_memory + pod.memory <= node.alloc_memory and not pod.scalars):
        return None  # the common case, answered without building the list of reasons
    reasons = []
    if len(node.pods) + 1 > node.alloc_pods:
        reasons.append(TOO_MANY_PODS)
    if pod.cpu and node.req_cpu + pod.cpu > node.alloc_cpu:
        reasons.append("Insufficient cpu")
    if pod.memory and node.req_memory + pod.memory > node.alloc_memory:
        reasons.append("Insufficient memory")
    for name, amount in pod.scalars.items():
        if node.req_scalars[name] + amount > node.alloc_scalars.get(name, 0):
            reasons.append(f"Insufficient {name}")
    if not reasons:
        return None
    return reasons[0] if len(reasons) == 1 else tuple(reasons)


# --- cluster-wide filters (prefilter → per-node check) --------------------------------------------


def _pairs(node: NodeInfo, terms: Iterable[AffinityTerm]) -> Iterator[tuple[str, str]]:
    for term in terms:
        value = node.labels.get(term.topology_key)
        if value is not None:
            yield term.topology_key, value


def inter_pod_affinity(pod: PodInfo, snapshot: Snapshot) -> Fits | None:
    """Required pod affinity / anti-affinity of the pod, and existing pods' anti-affinity against it."""
    existing_anti: Counter[tuple[str, str]] = Counter()
    for other, node in snapshot.pods_with_required_anti_affinity():
        for term in other.anti_affinity:
            if term.matches(pod):
                existing_anti.update(_pairs(node, (term,)))
    if not pod.affinity and not pod.anti_affinity and not existing_anti:
        return None
    affinity_counts: list[Counter[tuple[str, str]]] = [Counter() for _ in pod.affinity]
    anti_counts: Counter[tuple[str, str]] = Counter()
    if pod.affinity or pod.anti_affinity:
        for node in snapshot.node_infos():
            for other in node.pods.values():
                if other.key == pod.key:
                    continue
                for i, term in enumerate(pod.affinity):
                    if term.matches(other):
                        affinity_counts[i].update(_pairs(node, (term,)))
                for term in pod.anti_affinity:
                    if term.matches(other):
                        anti_counts.update(_pairs(node, (term,)))
    # The first pod of a group that selects itself may go anywhere its topology keys exist,
    # otherwise a set of mutually-affine pods could never start.
    first_of_group = (pod.affinity and not any(affinity_counts)
                      and all(term.matches(pod) for term in pod.affinity))

    def fits(pod: PodInfo, node: NodeInfo) -> Reason:
        if existing_anti and any(existing_anti[(k, v)] for k, v in node.labels.items()):
            return EXISTING_ANTI_AFFINITY
        for term in pod.anti_affinity:
            value = node.labels.get(term.topology_key)
            if value is not None and anti_counts[(term.topology_key, value)]:
                return POD_ANTI_AFFINITY
        for i, term in enumerate(pod.affinity):
            value = node.labels.get(term.topology_key)
            if value is None:
                return POD_AFFINITY
            if not first_of_group and not affinity_counts[i][(term.topology_key, value)]:
                return POD_AFFINITY
        return None

    return fits


def spread_counts(pod: PodInfo, snapshot: Snapshot, constraints) -> list[Counter[tuple[str, str]]]:
    """Per constraint: matching pods per (topologyKey, value) over eligible nodes, every domain present.

    Eligible nodes carry every constraint's topology key and match the pod's node affinity/selector
    (Kubernetes' default nodeAffinityPolicy: Honor); terminating pods do not count.
    """
    counts: list[Counter[tuple[str, str]]] = [Counter() for _ in constraints]
    for node in snapshot.node_infos():
        if any(c.topology_key not in node.labels for c in constraints):
            continue
        if pod.has_node_affinity and not matches_node_affinity(pod, node):
            continue
        for i, c in enumerate(constraints):
            pair = (c.topology_key, node.labels[c.topology_key])
            counts[i][pair] += sum(1 for other in node.pods.values()
                                   if other.namespace == pod.namespace and not other.terminating
                                   and c.selector.matches(other.labels))
    return counts


def pod_topology_spread(pod: PodInfo, snapshot: Snapshot) -> Fits | None:
    """DoNotSchedule constraints: placing the pod must keep (count + 1 - global minimum) <= maxSkew."""
    hard = [c for c in pod.spread if c.hard]
    if not hard:
        return None
    counts = spread_counts(pod, snapshot, hard)
    minimums = []
    for c, per_domain in zip(hard, counts):
        # Fewer domains than minDomains: the global minimum is taken as 0.
        low = min(per_domain.values()) if per_domain else 0
        minimums.append(0 if len(per_domain) < c.min_domains else low)
    self_match = [1 if c.selector.matches(pod.labels) else 0 for c in hard]

    def fits(pod: PodInfo, node: NodeInfo) -> Reason:
        for i, c in enumerate(hard):
            value = node.labels.get(c.topology_key)
            if value is None:
                return SPREAD_MISSING_LABEL
            if counts[i][(c.topology_key, value)] + self_match[i] - minimums[i] > c.max_skew:
                return SPREAD
        return None

    return fits


# --- assembly -------------------------------------------------------------------------------------

# (plugin name, does it apply to this pod?, check) in Kubernetes' order.
NODE_FILTERS: list[tuple[str, Callable[[PodInfo], bool], Fits]] = [
    ("NodeUnschedulable", lambda p: True, node_unschedulable),
    ("NodeReady", lambda p: True, node_ready),
    ("NodeName", lambda p: bool(p.node_name), node_name),
    ("TaintToleration", lambda p: True, taint_toleration),
    ("NodeAffinity", lambda p: p.has_node_affinity, node_affinity),
    ("NodePorts", lambda p: bool(p.host_ports), node_ports),
    ("NodeResourcesFit", lambda p: True, node_resources_fit),
]
# Filters that can only reject a node that is cordoned, not Ready or tainted; a "clean" node
# (NodeInfo.clean) passes them whatever the pod, so the hot loop skips them there.
NODE_STATE_FILTERS = {"NodeUnschedulable", "NodeReady", "TaintToleration"}

CLUSTER_FILTERS: list[tuple[str, Callable[[PodInfo, Snapshot], Fits | None]]] = [
    ("PodTopologySpread", pod_topology_spread),
    ("InterPodAffinity", inter_pod_affinity),
]


def filters_for(pod: PodInfo, snapshot: Snapshot) -> list[tuple[str, Fits]]:
    chosen = [(name, fn) for name, applies, fn in NODE_FILTERS if applies(pod)]
    for name, prefilter in CLUSTER_FILTERS:
        check = prefilter(pod, snapshot)
        if check is not None:
            chosen.append((name, check))
    return chosen
