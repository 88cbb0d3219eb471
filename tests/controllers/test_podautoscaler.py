"""The HPA's replica calculation and normalization (pure functions), against Kubernetes' own cases."""
from __future__ import annotations

import pytest

from controllers.podautoscaler import (History, MetricError, Sample, calculate_scale_up_limit, format_milli,
                                       normalize_with_behavior, normalize_without_behavior, parse_go_duration,
                                       record_scale_event, resource_replicas, scale_down_limit, scale_up_limit)

NOW = 1_000_000.0
START = "1970-01-12T13:30:00Z"        # NOW - 6400 s: long past the CPU initialization period
READY_SINCE = "1970-01-12T13:31:00Z"


def pod(name, *, cpu="1", phase="Running", ready="True", started=START, ready_since=READY_SINCE, deleting=False):
    p = {"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]},
         "status": {"phase": phase, "startTime": started,
                    "conditions": [{"type": "Ready", "status": ready, "lastTransitionTime": ready_since}]}}
    if deleting:
        p["metadata"]["deletionTimestamp"] = START
    return p


def samples(**millis):
    return {name: Sample(v, NOW - 1, 15.0) for name, v in millis.items()}


def replicas(current, pods, got, **kw):
    kw.setdefault("target_utilization", 50)
    return resource_replicas(current, pods, got, "cpu", now=NOW, **kw)


def test_scale_up_is_ceil_of_ratio_times_ready_pods():
    # 3 pods requesting 1 core at 90%, 80%, 70% of a 50% target: utilization 80, ratio 1.6, ceil(4.8) = 5
    p = replicas(3, [pod("a"), pod("b"), pod("c")], samples(a=900, b=800, c=700))
    assert (p.replicas, p.utilization, p.average) == (5, 80, 800)


def test_within_tolerance_changes_nothing():
    assert replicas(3, [pod("a"), pod("b"), pod("c")], samples(a=540, b=540, c=540)).replicas == 3   # 108%
    assert replicas(3, [pod("a"), pod("b"), pod("c")], samples(a=560, b=560, c=560)).replicas == 4   # 112%


def test_scale_down():
    assert replicas(5, [pod(n) for n in "abcde"], samples(a=100, b=100, c=100, d=100, e=100)).replicas == 1


def test_unready_pods_count_as_zero_on_scale_up():
    # c is not ready: the ready two run at 100% (ratio 2); with c at 0% the ratio is 1.33 → ceil(4.0) = 4
    got = replicas(3, [pod("a"), pod("b"), pod("c", ready="False", ready_since=START)], samples(a=1000, b=1000, c=1000))
    assert got.replicas == 4


def test_pending_pods_are_unready_and_hold_back_a_scale_up():
    got = replicas(2, [pod("a"), pod("b", phase="Pending")], samples(a=600))
    assert got.replicas == 2   # 60% alone would scale up; with b at 0% it is 30%, the other way: no change


def test_missing_pods_count_as_full_request_on_scale_down():
    # a and b at 10% want a scale down; c has no sample and counts as 100%: (10+10+100)/3 = 40% → 3×0.8 → 3
    got = replicas(3, [pod("a"), pod("b"), pod("c")], samples(a=100, b=100))
    assert got.replicas == 3


def test_missing_pods_count_as_zero_on_scale_up():
    # a at 200%, b missing → (200 + 0)/2 = 100% of a 50% target: ceil(2 × 2) = 4
    assert replicas(2, [pod("a"), pod("b")], samples(a=2000)).replicas == 4


def test_deleted_and_failed_pods_are_ignored():
    pods = [pod("a"), pod("b", deleting=True), pod("c", phase="Failed")]
    assert replicas(1, pods, samples(a=1000, b=0, c=0)).replicas == 2


def test_cpu_samples_of_a_pod_still_starting_are_skipped():
    # started 60 s ago (inside the 300 s initialization period) and Ready only 0.5 s before the sample
    recent = pod("b", started="1970-01-12T13:45:40Z", ready_since="1970-01-12T13:46:38Z")
    got = replicas(2, [pod("a"), recent], samples(a=1000, b=5000))
    # b's 500% start-up burst does not count: a alone (100%) asks for a scale-up, on which the unready b counts
    # as 0%, so the pair averages 50%, exactly the target: no change
    assert (got.replicas, got.utilization) == (2, 100)


def test_errors_have_kubernetes_messages():
    with pytest.raises(MetricError, match="no metrics returned from resource metrics API"):
        replicas(1, [pod("a")], {})
    with pytest.raises(MetricError, match="did not receive metrics for targeted pods"):
        replicas(1, [pod("a", ready="False", ready_since=START)], samples(a=10))
    no_request = pod("a")
    del no_request["spec"]["containers"][0]["resources"]
    with pytest.raises(MetricError, match="missing request for cpu in container c of Pod a"):
        replicas(1, [no_request], samples(a=10))


def test_average_value_target():
    # 300m average against a 100m target: 3 × 3 = 9
    got = resource_replicas(3, [pod("a"), pod("b"), pod("c")], samples(a=300, b=300, c=300), "cpu",
                            target_average=100, now=NOW)
    assert (got.replicas, got.utilization, got.average) == (9, None, 300)


def test_legacy_normalization_stabilizes_scale_down_and_caps_scale_up():
    h = History()
    args = dict(min_replicas=1, max_replicas=10, downscale_stabilization=300)
    assert normalize_without_behavior(h, current=5, desired=5, now=0, **args).replicas == 5
    d = normalize_without_behavior(h, current=5, desired=2, now=100, **args)
    assert (d.replicas, d.able_reason) == (5, "ScaleDownStabilized")
    assert normalize_without_behavior(h, current=5, desired=2, now=301, **args).replicas == 2
    up = normalize_without_behavior(History(), current=2, desired=9, now=0, **args)
    assert (up.replicas, up.limited, up.limited_reason) == (4, True, "ScaleUpLimit")
    assert calculate_scale_up_limit(3) == 6
    low = normalize_without_behavior(History(), current=3, desired=0, now=0, **args)
    assert (low.replicas, low.limited_reason) == (1, "TooFewReplicas")


DEFAULT_BEHAVIOR = {"scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                                "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15},
                                             {"type": "Percent", "value": 100, "periodSeconds": 15}]},
                    "scaleDown": {"selectPolicy": "Max", "policies": [{"type": "Percent", "value": 100,
                                                                        "periodSeconds": 15}]}}


def test_behavior_scale_up_policies_and_their_period():
    h = History()
    args = dict(min_replicas=1, max_replicas=100, downscale_stabilization=300)
    d = normalize_with_behavior(h, DEFAULT_BEHAVIOR, current=10, desired=50, now=0, **args)
    assert (d.replicas, d.limited_reason) == (20, "ScaleUpLimit")      # max(10 + 4, 10 × 2)
    record_scale_event(h, DEFAULT_BEHAVIOR, 10, 20, now=0)
    # 5 s later the period still holds the +10: it started at 10, so 20 is already the limit
    assert normalize_with_behavior(h, DEFAULT_BEHAVIOR, current=20, desired=50, now=5, **args).replicas == 20
    assert normalize_with_behavior(h, DEFAULT_BEHAVIOR, current=20, desired=50, now=16, **args).replicas == 40
    small = normalize_with_behavior(History(), DEFAULT_BEHAVIOR, current=1, desired=9, now=0, **args)
    assert small.replicas == 5                                           # max(1 + 4, 1 × 2)


def test_behavior_select_policy_min_and_disabled():
    rules = {"selectPolicy": "Min", "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15},
                                                 {"type": "Percent", "value": 100, "periodSeconds": 15}]}
    assert scale_up_limit(10, History(), rules, 0) == 14
    assert scale_up_limit(10, History(), {**rules, "selectPolicy": "Disabled"}, 0) == 10
    down = {"selectPolicy": "Max", "policies": [{"type": "Pods", "value": 2, "periodSeconds": 60},
                                                {"type": "Percent", "value": 10, "periodSeconds": 60}]}
    assert scale_down_limit(10, History(), down, 0) == 8                 # the bigger change: -2 over -1
    assert scale_down_limit(10, History(), {**down, "selectPolicy": "Min"}, 0) == 9


def test_behavior_scale_down_window_keeps_the_highest_recommendation():
    behavior = {**DEFAULT_BEHAVIOR, "scaleDown": {**DEFAULT_BEHAVIOR["scaleDown"], "stabilizationWindowSeconds": 60}}
    h = History()
    args = dict(min_replicas=1, max_replicas=10, downscale_stabilization=300)
    normalize_with_behavior(h, behavior, current=6, desired=6, now=0, **args)
    d = normalize_with_behavior(h, behavior, current=6, desired=2, now=30, **args)
    assert (d.replicas, d.able_reason) == (6, "ScaleDownStabilized")
    assert normalize_with_behavior(h, behavior, current=6, desired=2, now=61, **args).replicas == 2


def test_behavior_scale_up_window_keeps_the_lowest_recommendation():
    behavior = {**DEFAULT_BEHAVIOR, "scaleUp": {**DEFAULT_BEHAVIOR["scaleUp"], "stabilizationWindowSeconds": 30}}
    h = History()
    args = dict(min_replicas=1, max_replicas=10, downscale_stabilization=0)
    normalize_with_behavior(h, behavior, current=2, desired=2, now=0, **args)
    d = normalize_with_behavior(h, behavior, current=2, desired=6, now=10, **args)
    assert (d.replicas, d.able_reason) == (2, "ScaleUpStabilized")
    assert normalize_with_behavior(h, behavior, current=2, desired=6, now=31, **args).replicas == 6


def test_scale_down_window_defaults_to_the_controller_flag():
    h = History()
    args = dict(min_replicas=1, max_replicas=10, downscale_stabilization=120)
    normalize_with_behavior(h, DEFAULT_BEHAVIOR, current=4, desired=4, now=0, **args)
    assert normalize_with_behavior(h, DEFAULT_BEHAVIOR, current=4, desired=1, now=100, **args).replicas == 4
    assert normalize_with_behavior(h, DEFAULT_BEHAVIOR, current=4, desired=1, now=121, **args).replicas == 1


def test_quantity_and_duration_formats():
    assert [format_milli(v) for v in (0, 250, 1000, 1500, 2_000_000)] == ["0", "250m", "1", "1500m", "2k"]
    assert parse_go_duration("15s") == 15 and parse_go_duration("1m0.5s") == 60.5
    assert parse_go_duration("250ms") == 0.25
