"""Score plugins: how good is each feasible node for the pod, 0 (worst) to 100 (best).

Per-node plugins are plain functions `score(pod, node) -> 0..100`. Plugins whose raw numbers only make
sense relative to the other candidates (counts, weights) compute raw values per node and then normalise
over the candidate list as Kubernetes does (`DefaultNormalizeScore`, reversed where fewer is better).
Every runner has the shape `(pod, nodes, snapshot) -> list[int] | None` — None when the plugin has
nothing to say about this pod, which skips it without cost.

`SCORERS` holds Kubernetes' default weights: resource plugins 1, NodeAffinity 1, TaintToleration 1,
SelectorSpread 1, PodTopologySpread 2. The framework sums weight × score per node.
"""
from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable

from scheduler.filters import Snapshot, matches_node_affinity, node_selector_term_matches, spread_counts, tolerated
from scheduler.nodeinfo import ZONE_LABEL, NodeInfo, PodInfo

logger = logging.getLogger(__name__)

MAX_SCORE = 100
ZONE_WEIGHTING = 2 / 3

Runner = Callable[[PodInfo, list[NodeInfo], Snapshot], list[int] | None]


# --- per-node scores ------------------------------------------------------------------------------


def resource_scores(pod: PodInfo, node: NodeInfo) -> tuple[int, int]:
    """NodeResourcesFit's LeastAllocated and NodeResourcesBalancedAllocation scores of one node.

    Both read the same numbers: cpu and memory requested on the node with this pod (non-zero
    requests) against allocatable.

    - least allocated: prefer the most room left. Per resource (allocatable − requested) × 100 /
      allocatable, 0 when over; the mean of cpu and memory.
    - balanced: prefer cpu and memory usage fractions that stay close: 100 × (1 − standard deviation),
      which for two resources is half their difference (fractions capped at 1).

    They run for every pod on every candidate node, so the result is memoised on the NodeInfo per pod
    *shape* (its non-zero cpu and memory) until the node's totals change: a burst of replicas of one
    template recomputes only the node the previous replica went to.
    """
    shape = (pod.nonzero_cpu, pod.nonzero_memory)
    if node.scored_for == shape:
        return node.scores
    cpu, alloc_cpu = node.nonzero_cpu + shape[0], node.alloc_cpu
    mem, alloc_mem = node.nonzero_memory + shape[1], node.alloc_memory
    least = 0
    if 0 < alloc_cpu and cpu <= alloc_cpu:
        least += (alloc_cpu - cpu) * MAX_SCORE // alloc_cpu
    if 0 < alloc_mem and mem <= alloc_mem:
        least += (alloc_mem - mem) * MAX_SCORE // alloc_mem
    cpu_fraction = min(cpu / alloc_cpu, 1.0) if alloc_cpu > 0 else 1.0
    mem_fraction = min(mem / alloc_mem, 1.0) if alloc_mem > 0 else 1.0
    balanced = int((1 - abs(cpu_fraction - mem_fraction) / 2) * MAX_SCORE)
    node.scored_for, node.scores = shape, (least // 2, balanced)
    return node.scores


def least_allocated(pod: PodInfo, node: NodeInfo) -> int:
    return resource_scores(pod, node)[0]


def balanced_allocation(pod: PodInfo, node: NodeInfo) -> int:
    return resource_scores(pod, node)[1]


def node_affinity_weight(pod: PodInfo, node: NodeInfo) -> int:
    """Sum of the weights of the preferred node affinity terms the node matches (raw, unnormalised)."""
    return sum(int(t.get("weight") or 0) for t in pod.preferred_node_terms
               if node_selector_term_matches(t.get("preference") or {}, node))


def intolerable_prefer_taints(pod: PodInfo, node: NodeInfo) -> int:
    """How many PreferNoSchedule taints of the node the pod does not tolerate (raw, fewer is better)."""
    return sum(1 for taint in node.prefer_taints if not tolerated(pod, taint))


# --- normalisation --------------------------------------------------------------------------------


def normalize(raw: list[int] | list[float], *, reverse: bool = False) -> list[int]:
    """Kubernetes' DefaultNormalizeScore: scale so the best raw value is 100 (or, reversed, the fewest)."""
    top = max(raw, default=0)
    if top == 0:
        return [MAX_SCORE if reverse else 0 for _ in raw]
    scaled = [int(MAX_SCORE * r // top) for r in raw]
    return [MAX_SCORE - s for s in scaled] if reverse else scaled


# --- runners --------------------------------------------------------------------------------------


def run_resource_scores(pod: PodInfo, nodes: list[NodeInfo], snapshot: Snapshot) -> list[int]:
    """LeastAllocated + BalancedAllocation (Kubernetes weighs both 1, so their sum is their share)."""
    shape = (pod.nonzero_cpu, pod.nonzero_memory)
    totals = []
    for node in nodes:
        # The memo check inline: this loop is the hottest in the scheduler.
        least, balanced = node.scores if node.scored_for == shape else resource_scores(pod, node)
        totals.append(least + balanced)
    return totals


def run_node_affinity(pod: PodInfo, nodes: list[NodeInfo], snapshot: Snapshot) -> list[int] | None:
    if not pod.preferred_node_terms:
        return None
    return normalize([node_affinity_weight(pod, n) for n in nodes])


def run_taint_toleration(pod: PodInfo, nodes: list[NodeInfo], snapshot: Snapshot) -> list[int] | None:
    if not any(n.prefer_taints for n in nodes):
        return None
    return normalize([intolerable_prefer_taints(pod, n) for n in nodes], reverse=True)


def run_selector_spread(pod: PodInfo, nodes: list[NodeInfo], snapshot: Snapshot) -> list[int] | None:
    """Spread pods of one controller (ownerReference) over nodes and, with 2/3 weight, over zones."""
    if not pod.owner_uid:
        return None
    owner = pod.owner_uid
    counts = [n.owner_counts.get(owner, 0) for n in nodes]
    top = max(counts, default=0)
    by_node = [MAX_SCORE * (top - c) / top if top else MAX_SCORE for c in counts]
    zones = [n.labels.get(ZONE_LABEL) for n in nodes]
    if not any(z is not None for z in zones):
        return [int(s) for s in by_node]
    zone_counts: Counter[str] = Counter()
    for zone, c in zip(zones, counts):
        if zone is not None:
            zone_counts[zone] += c
    top_zone = max(zone_counts.values())
    scores = []
    for score, zone in zip(by_node, zones):
        if zone is not None:
            zone_score = MAX_SCORE * (top_zone - zone_counts[zone]) / top_zone if top_zone else MAX_SCORE
            score = score * (1 - ZONE_WEIGHTING) + ZONE_WEIGHTING * zone_score
        scores.append(int(score))
    return scores


def run_topology_spread(pod: PodInfo, nodes: list[NodeInfo], snapshot: Snapshot) -> list[int] | None:
    """ScheduleAnyway constraints: fewer matching pods in the node's domains is better.

    As Kubernetes: raw = Σ count(domain) × log(domains + 2) + (maxSkew − 1) over the constraints; nodes
    missing a topology key score 0; the rest map to 100 × (max + min − raw) / max.
    """
    soft = [c for c in pod.spread if not c.hard]
    if not soft:
        return None
    counts = spread_counts(pod, snapshot, soft)
    weights = [math.log(len(per_domain) + 2) for per_domain in counts]
    raw: list[float | None] = []
    for n in nodes:
        if any(c.topology_key not in n.labels for c in soft) or (
                pod.has_node_affinity and not matches_node_affinity(pod, n)):
            raw.append(None)
            continue
        raw.append(sum(counts[i][(c.topology_key, n.labels[c.topology_key])] * weights[i] + c.max_skew - 1
                       for i, c in enumerate(soft)))
    present = [r for r in raw if r is not None]
    if not present:
        return [0] * len(nodes)
    low, high = min(present), max(present)
    if high == 0:
        return [0 if r is None else MAX_SCORE for r in raw]
    return [0 if r is None else int(MAX_SCORE * (high + low - r) / high) for r in raw]


# (plugin name, weight, runner)
SCORERS: list[tuple[str, int, Runner]] = [
    ("NodeResourcesLeastAllocated+BalancedAllocation", 1, run_resource_scores),
    ("NodeAffinity", 1, run_node_affinity),
    ("TaintToleration", 1, run_taint_toleration),
    ("SelectorSpread", 1, run_selector_spread),
    ("PodTopologySpread", 2, run_topology_spread),
]
