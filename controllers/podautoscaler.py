"""The HorizontalPodAutoscaler's arithmetic, as pure functions (Kubernetes' pkg/controller/podautoscaler).

Replica calculation (replica_calculator.go), for one Resource metric:

- Pods are grouped first. Pods being deleted or Failed are ignored. Pending pods are *unready*. For CPU a
  pod is also unready while it is within `cpu_initialization_period` of its start and either not Ready
  or its sample was taken less than one metric window after it became Ready; after that period only a
  pod that is not Ready and never was (its Ready condition last changed within `initial_readiness_delay`
  of the start) is unready. A Running pod without a sample is *missing*.
- The usage ratio is measured on the ready pods that have samples: for Utilization,
  `utilization = 100 * sum(usage) / sum(requests)` (integer percent), ratio = utilization / target;
  for AverageValue, ratio = average usage / target. With no unready or missing pods the answer is
  `ceil(ratio * ready pods)`, or the current count when |1 - ratio| <= tolerance (0.1).
- Otherwise the conservative rule: on a scale-up unready pods count as using 0 and missing ones 0; on a
  scale-down missing pods count as using their full request (or the target, if higher). The ratio is
  recomputed over all of them; if it is now within tolerance or flipped direction, nothing changes, and
  a proposal that would move against the new ratio is dropped.

Normalization (horizontal.go): without `spec.behavior`, a recommendation is the highest of the last
`downscale_stabilization` seconds (only scale-downs are delayed) and scale-ups are capped at
max(2 × current, 4). With `spec.behavior`, each direction has its stabilization window (scale up: the
lowest recent recommendation, scale down: the highest) and rate policies over the replicas added or
removed within each policy's period (selectPolicy Max: the policy allowing the biggest change; Min: the
smallest; Disabled: none). Both report Kubernetes' reasons for the AbleToScale and ScalingLimited
conditions.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from api import quantity
from controllers.common import parse_time, pod_condition

Obj = dict[str, Any]

DEFAULT_TOLERANCE = 0.1
SCALE_UP_LIMIT_FACTOR = 2.0
SCALE_UP_LIMIT_MINIMUM = 4


class MetricError(Exception):
    """The replica count could not be computed from a metric; the message is Kubernetes' wording."""


@dataclass(frozen=True)
class Sample:
    value: int              # milli-units: millicores, or bytes × 1000
    timestamp: float
    window: float


def milli_value(resource: str, raw: Any) -> int:
    """A quantity in milli-units, as Kubernetes' Quantity.MilliValue()."""
    return math.ceil(quantity.parse_quantity(raw) * 1000)


def format_milli(value: int) -> str:
    """A milli-value as a canonical decimal quantity: `250m`, `1`, `2k`, `12345`."""
    if value == 0:
        return "0"
    if value % 1000:
        return f"{value}m"
    whole = value // 1000
    for exp, suffix in ((18, "E"), (15, "P"), (12, "T"), (9, "G"), (6, "M"), (3, "k")):
        if whole % 10**exp == 0:
            return f"{whole // 10**exp}{suffix}"
    return str(whole)


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?)(h|ms|m|s|us|µs|ns)")
_UNIT_SECONDS = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_go_duration(text: str) -> float:
    """`15s`, `1m0.5s`, `250ms` → seconds (a metav1.Duration as Go prints it); 0 when unreadable."""
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text or ""))


# -- pods, requests ----------------------------------------------------------------------------------------

def pod_requests(pods: list[Obj], resource: str, container: str | None = None) -> dict[str, int]:
    """Each pod's request of `resource` in milli-units (the sum of its containers', or one container's)."""
    out: dict[str, int] = {}
    for pod in pods:
        name = pod["metadata"]["name"]
        total = 0
        for c in (pod.get("spec") or {}).get("containers") or []:
            if container and c.get("name") != container:
                continue
            raw = ((c.get("resources") or {}).get("requests") or {}).get(resource)
            if raw is None:
                raise MetricError(f"missing request for {resource} in container {c.get('name')} of Pod {name}")
            total += milli_value(resource, raw)
        out[name] = total
    return out


def group_pods(pods: list[Obj], samples: dict[str, Sample], resource: str, *, now: float,
               cpu_initialization_period: float, initial_readiness_delay: float
               ) -> tuple[int, set[str], set[str], set[str]]:
    """(ready pods with samples, unready, missing, ignored) as replica_calculator.go's groupPods."""
    ready = 0
    unready: set[str] = set()
    missing: set[str] = set()
    ignored: set[str] = set()
    for pod in pods:
        name = pod["metadata"]["name"]
        status = pod.get("status") or {}
        if pod["metadata"].get("deletionTimestamp") or status.get("phase") == "Failed":
            ignored.add(name)
            continue
        if status.get("phase") == "Pending":
            unready.add(name)
            continue
        sample = samples.get(name)
        if sample is None:
            missing.add(name)
            continue
        if resource == "cpu":
            condition = pod_condition(pod, "Ready")
            started = parse_time(status.get("startTime"))
            if condition is None or started is None:
                is_unready = True
            else:
                transition = parse_time(condition.get("lastTransitionTime")) or 0.0
                if started + cpu_initialization_period > now:
                    is_unready = condition.get("status") == "False" or sample.timestamp < transition + sample.window
                else:
                    is_unready = condition.get("status") == "False" and started + initial_readiness_delay > transition
            if is_unready:
                unready.add(name)
                continue
        ready += 1
    return ready, unready, missing, ignored


def utilization_ratio(samples: dict[str, int], requests: dict[str, int], target: int) -> tuple[float, int, int]:
    """(usage ratio, utilization %, average raw usage) over the pods with both a sample and a request."""
    total = requested = count = 0
    for name, value in samples.items():
        if name in requests:
            total += value
            requested += requests[name]
            count += 1
    if requested == 0:
        raise MetricError("no metrics returned matched known pods")
    utilization = total * 100 // requested
    return utilization / target, utilization, total // count


def average_ratio(samples: dict[str, int], target: int) -> tuple[float, int]:
    average = sum(samples.values()) / len(samples)
    return average / target, int(average)


@dataclass(frozen=True)
class Proposal:
    replicas: int
    utilization: int | None     # percent, for Utilization targets
    average: int                # milli-units
    timestamp: float


def resource_replicas(current: int, pods: list[Obj], samples: dict[str, Sample], resource: str, *,
                      target_utilization: int | None = None, target_average: int | None = None,
                      container: str | None = None, now: float, tolerance: float = DEFAULT_TOLERANCE,
                      cpu_initialization_period: float = 300.0, initial_readiness_delay: float = 30.0) -> Proposal:
    """The replica count one Resource metric asks for (GetResourceReplicas / GetRawResourceReplicas)."""
    if not pods:
        raise MetricError("No pods found")      # Kubernetes says so before asking for metrics
    if not samples:
        raise MetricError(f"unable to get metrics for resource {resource}: no metrics returned from resource "
                          f"metrics API")
    ready, unready, missing, ignored = group_pods(
        pods, samples, resource, now=now, cpu_initialization_period=cpu_initialization_period,
        initial_readiness_delay=initial_readiness_delay)
    names = {p["metadata"]["name"] for p in pods}
    values = {n: s.value for n, s in samples.items() if n in names and n not in ignored and n not in unready}
    if not values:
        raise MetricError("did not receive metrics for targeted pods (pods might be unready)")
    timestamp = max(s.timestamp for s in samples.values())
    requests = pod_requests(pods, resource, container) if target_utilization is not None else {}

    def ratio(vals: dict[str, int]) -> tuple[float, int | None, int]:
        if target_utilization is not None:
            return utilization_ratio(vals, requests, target_utilization)
        r, avg = average_ratio(vals, target_average or 1)
        return r, None, avg

    usage_ratio, utilization, average = ratio(values)
    scale_up_with_unready = bool(unready) and usage_ratio > 1.0
    if not scale_up_with_unready and not missing:
        if abs(1.0 - usage_ratio) <= tolerance:
            return Proposal(current, utilization, average, timestamp)
        return Proposal(math.ceil(usage_ratio * ready), utilization, average, timestamp)
    if missing:
        if usage_ratio < 1.0:
            for name in missing:
                if target_utilization is not None:
                    values[name] = requests[name] * max(100, target_utilization) // 100
                else:
                    values[name] = target_average or 0
        elif usage_ratio > 1.0:
            for name in missing:
                values[name] = 0
    if scale_up_with_unready:
        for name in unready:
            values[name] = 0
    new_ratio, _, _ = ratio(values)
    if abs(1.0 - new_ratio) <= tolerance or (usage_ratio < 1.0 < new_ratio) or (usage_ratio > 1.0 > new_ratio):
        return Proposal(current, utilization, average, timestamp)
    proposed = math.ceil(new_ratio * len(values))
    if (new_ratio < 1.0 and proposed > current) or (new_ratio > 1.0 and proposed < current):
        return Proposal(current, utilization, average, timestamp)
    return Proposal(proposed, utilization, average, timestamp)


# -- normalization: stabilization windows and rate limits ---------------------------------------------------

@dataclass
class History:
    """What the controller remembers per HPA between syncs (Kubernetes keeps the same in memory)."""

    recommendations: list[tuple[int, float]] = field(default_factory=list)   # (replicas, when)
    scale_up_events: list[tuple[int, float]] = field(default_factory=list)   # (replicas added, when)
    scale_down_events: list[tuple[int, float]] = field(default_factory=list)


@dataclass(frozen=True)
class Decision:
    replicas: int
    able_reason: str
    able_message: str
    limited: bool
    limited_reason: str
    limited_message: str


def _record(history: History, desired: int, now: float, keep_after: float) -> None:
    """Remember a recommendation, reusing one slot that fell out of every window (as Kubernetes does)."""
    for i, (_, when) in enumerate(history.recommendations):
        if when < keep_after:
            history.recommendations[i] = (desired, now)
            return
    history.recommendations.append((desired, now))


def calculate_scale_up_limit(current: int) -> int:
    return int(max(SCALE_UP_LIMIT_FACTOR * current, SCALE_UP_LIMIT_MINIMUM))


def normalize_without_behavior(history: History, *, current: int, desired: int, min_replicas: int,
                               max_replicas: int, downscale_stabilization: float, now: float) -> Decision:
    """normalizeDesiredReplicas: the highest recommendation of the window, then [min, scale-up limit ∧ max]."""
    cutoff = now - downscale_stabilization
    stabilized = max([desired] + [r for r, when in history.recommendations if when >= cutoff])
    _record(history, desired, now, cutoff)
    if stabilized != desired:
        able = ("ScaleDownStabilized", "recent recommendations were higher than current one, applying the highest "
                                       "recent recommendation")
    else:
        able = ("ReadyForNewScale", "recommended size matches current size")
    limit = calculate_scale_up_limit(current)
    if max_replicas > limit:
        upper, reason, message = limit, "ScaleUpLimit", "the desired replica count is increasing faster than the " \
                                                        "maximum scale rate"
    else:
        upper, reason, message = max_replicas, "TooManyReplicas", "the desired replica count is more than the " \
                                                                   "maximum replica count"
    if stabilized < min_replicas:
        final, reason, message = min_replicas, "TooFewReplicas", "the desired replica count is less than the " \
                                                                 "minimum replica count"
    elif stabilized > upper:
        final = upper
    else:
        final, reason, message = stabilized, "DesiredWithinRange", "the desired count is within the acceptable range"
    return Decision(final, *able, final != stabilized, reason, message)


def _changes_within(events: list[tuple[int, float]], period: float, now: float) -> int:
    return sum(change for change, when in events if when > now - period)


def scale_up_limit(current: int, history: History, rules: Obj, now: float) -> int:
    select = rules.get("selectPolicy") or "Max"
    if select == "Disabled":
        return current
    pick, result = (min, math.inf) if select == "Min" else (max, -math.inf)
    for policy in rules.get("policies") or []:
        period = policy.get("periodSeconds", 15)
        start = current - _changes_within(history.scale_up_events, period, now) + \
            _changes_within(history.scale_down_events, period, now)
        if policy.get("type") == "Pods":
            proposed = start + policy.get("value", 0)
        else:
            proposed = math.ceil(start * (1 + policy.get("value", 0) / 100))
        result = pick(result, proposed)
    return current if math.isinf(result) else int(result)


def scale_down_limit(current: int, history: History, rules: Obj, now: float) -> int:
    select = rules.get("selectPolicy") or "Max"
    if select == "Disabled":
        return current
    pick, result = (max, -math.inf) if select == "Min" else (min, math.inf)
    for policy in rules.get("policies") or []:
        period = policy.get("periodSeconds", 15)
        start = current - _changes_within(history.scale_up_events, period, now) + \
            _changes_within(history.scale_down_events, period, now)
        if policy.get("type") == "Pods":
            proposed = start - policy.get("value", 0)
        else:
            proposed = int(start * (1 - policy.get("value", 0) / 100))
        result = pick(result, proposed)
    return current if math.isinf(result) else int(result)


def normalize_with_behavior(history: History, behavior: Obj, *, current: int, desired: int, min_replicas: int,
                            max_replicas: int, downscale_stabilization: float, now: float) -> Decision:
    """normalizeDesiredReplicasWithBehaviors: stabilize within both windows, then apply the rate policies."""
    up, down = behavior.get("scaleUp") or {}, behavior.get("scaleDown") or {}
    up_window = up.get("stabilizationWindowSeconds") or 0
    down_window = down.get("stabilizationWindowSeconds")
    down_window = downscale_stabilization if down_window is None else down_window
    up_cutoff, down_cutoff = now - up_window, now - down_window
    up_rec = down_rec = desired
    for replicas, when in history.recommendations:
        if when > up_cutoff:
            up_rec = min(up_rec, replicas)
        if when > down_cutoff:
            down_rec = max(down_rec, replicas)
    stabilized = min(max(current, up_rec), down_rec)
    _record(history, desired, now, min(up_cutoff, down_cutoff))
    if stabilized != desired:
        if desired >= current:
            able = ("ScaleUpStabilized", "recent recommendations were lower than current one, applying the lowest "
                                         "recent recommendation")
        else:
            able = ("ScaleDownStabilized", "recent recommendations were higher than current one, applying the "
                                           "highest recent recommendation")
    else:
        able = ("ReadyForNewScale", "recommended size matches current size")
    final, reason, message = stabilized, "DesiredWithinRange", "the desired count is within the acceptable range"
    if stabilized > current:
        limit = max(scale_up_limit(current, history, up, now), current)
        if max_replicas > limit:
            upper, why, text = limit, "ScaleUpLimit", "the desired replica count is increasing faster than the " \
                                                      "maximum scale rate"
        else:
            upper, why, text = max_replicas, "TooManyReplicas", "the desired replica count is more than the " \
                                                                "maximum replica count"
        if stabilized > upper:
            final, reason, message = upper, why, text
    elif stabilized < current:
        limit = min(scale_down_limit(current, history, down, now), current)
        if min_replicas < limit:
            lower, why, text = limit, "ScaleDownLimit", "the desired replica count is decreasing faster than the " \
                                                        "maximum scale rate"
        else:
            lower, why, text = min_replicas, "TooFewReplicas", "the desired replica count is less than the " \
                                                               "minimum replica count"
        if stabilized < lower:
            final, reason, message = lower, why, text
    return Decision(final, *able, final != stabilized, reason, message)


def _longest_period(rules: Obj) -> int:
    return max((p.get("periodSeconds", 15) for p in rules.get("policies") or []), default=0)


def record_scale_event(history: History, behavior: Obj | None, previous: int, new: int, now: float) -> None:
    """Remember a rescale for the rate policies; events older than the longest period are dropped."""
    if behavior is None or previous == new:
        return
    if new > previous:
        keep = _longest_period(behavior.get("scaleUp") or {})
        history.scale_up_events = [(c, w) for c, w in history.scale_up_events if w > now - keep]
        history.scale_up_events.append((new - previous, now))
    else:
        keep = _longest_period(behavior.get("scaleDown") or {})
        history.scale_down_events = [(c, w) for c, w in history.scale_down_events if w > now - keep]
        history.scale_down_events.append((previous - new, now))
