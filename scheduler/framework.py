"""One scheduling decision, as a pure function of a pod and a snapshot: filter → score → select.

`schedule(pod, snapshot)` does no I/O and mutates nothing (save a score memo on NodeInfos), so tests
drive it with hand-built NodeInfos and the scheduler drives it with its live cache (which includes pods
it has assumed but not yet seen bound). The steps follow Kubernetes' framework:

1. Filter. Nodes are visited in name order starting at a rotating offset; each node goes through the
   pod's filters until the first rejection, whose reason(s) are counted. Like Kubernetes'
   percentageOfNodesToScore, the search stops once enough feasible nodes are found (all nodes below
   100; 50% − nodes/125, at least 5% and at least 100 nodes above), which bounds the work per pod in
   large clusters; the offset rotation keeps every node in play.
2. Score. Each score plugin gives 0..100 per feasible node; totals are weight-summed.
3. Select the highest total; ties go to the first node in name order when no random generator is
   given (tests), or to a uniformly random one among the best (production, like Kubernetes).

When nothing fits, `fit_error_message` renders Kubernetes' message:
"0/5 nodes are available: 2 Insufficient cpu, 3 node(s) were unschedulable." — one "count reason"
entry per reason, sorted as strings.
"""
from __future__ import annotations

import logging
import random
from collections import Counter
from dataclasses import dataclass, field

from scheduler.filters import NODE_STATE_FILTERS, Snapshot, filters_for
from scheduler.nodeinfo import NodeInfo, PodInfo
from scheduler.scores import SCORERS

logger = logging.getLogger(__name__)

MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_NODES_PERCENTAGE = 5
NO_NODES = "no nodes available to schedule pods"


@dataclass
class ScheduleResult:
    node: str | None
    num_nodes: int
    reasons: Counter[str] = field(default_factory=Counter)  # reason -> number of nodes rejected for it
    failed_plugins: set[str] = field(default_factory=set)
    evaluated: int = 0
    feasible: int = 0

    @property
    def message(self) -> str:
        return fit_error_message(self.num_nodes, self.reasons)


def num_feasible_nodes_to_find(num_nodes: int, percentage: int = 0) -> int:
    """Kubernetes' numFeasibleNodesToFind; percentage 0 means adaptive."""
    if num_nodes < MIN_FEASIBLE_NODES_TO_FIND or percentage >= 100:
        return num_nodes
    if percentage <= 0:
        percentage = max(50 - num_nodes // 125, MIN_FEASIBLE_NODES_PERCENTAGE)
    wanted = num_nodes * percentage // 100
    return max(wanted, MIN_FEASIBLE_NODES_TO_FIND)


def fit_error_message(num_nodes: int, reasons: Counter[str]) -> str:
    if not num_nodes:
        return NO_NODES
    parts = sorted(f"{count} {reason}" for reason, count in reasons.items())
    return f"0/{num_nodes} nodes are available: {', '.join(parts)}."


def find_feasible(pod: PodInfo, snapshot: Snapshot, *, start: int = 0, limit: int | None = None,
                  result: ScheduleResult) -> list[NodeInfo]:
    nodes = snapshot.node_infos()
    n = len(nodes)
    limit = n if limit is None else limit
    filters = filters_for(pod, snapshot)
    clean_filters = [(name, fits) for name, fits in filters if name not in NODE_STATE_FILTERS]
    feasible: list[NodeInfo] = []
    reasons = result.reasons
    for i in range(n):
        node = nodes[(start + i) % n]
        for name, fits in clean_filters if node.clean else filters:
            reason = fits(pod, node)
            if reason:
                if isinstance(reason, tuple):
                    reasons.update(reason)
                else:
                    reasons[reason] += 1
                result.failed_plugins.add(name)
                break
        else:
            feasible.append(node)
            if len(feasible) >= limit:
                result.evaluated = i + 1
                break
    else:
        result.evaluated = n
    # Score in name order whatever the starting offset, so ties resolve the same way every time.
    feasible.sort(key=lambda node: node.name)
    return feasible


def prioritize(pod: PodInfo, nodes: list[NodeInfo], snapshot: Snapshot) -> list[int]:
    totals = [0] * len(nodes)
    for _name, weight, run in SCORERS:
        scores = run(pod, nodes, snapshot)
        if scores is not None:
            totals = [t + weight * s for t, s in zip(totals, scores)]
    return totals


def select_host(nodes: list[NodeInfo], totals: list[int], rng: random.Random | None = None) -> NodeInfo:
    best = max(totals)
    candidates = [node for node, total in zip(nodes, totals) if total == best]
    return candidates[0] if rng is None else rng.choice(candidates)


def schedule(pod: PodInfo, snapshot: Snapshot, *, start: int = 0, percentage: int = 0,
             rng: random.Random | None = None) -> ScheduleResult:
    num_nodes = len(snapshot.node_infos())
    result = ScheduleResult(None, num_nodes)
    if not num_nodes:
        return result
    feasible = find_feasible(pod, snapshot, start=start, result=result,
                             limit=num_feasible_nodes_to_find(num_nodes, percentage))
    result.feasible = len(feasible)
    if not feasible:
        return result
    if len(feasible) == 1:
        result.node = feasible[0].name
        return result
    result.node = select_host(feasible, prioritize(pod, feasible, snapshot), rng).name
    return result
