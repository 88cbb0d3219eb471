"""Score plugins and the selection step, on hand-built snapshots in name order (no I/O)."""
from __future__ import annotations

import random

from schedtest import info, make_node, make_pod, node_info, snapshot

from scheduler import framework, scores


def test_least_allocated_empty_node_scores_by_pod_share():
    node = node_info(make_node("n", cpu="4", memory="4Gi"))
    assert scores.least_allocated(info(make_pod("p", cpu="1", memory="1Gi")), node) == 75


def test_least_allocated_prefers_emptier_node():
    pod = info(make_pod("p", cpu="1", memory="1Gi"))
    busy = node_info(make_node("a"), [make_pod("x", cpu="2", memory="4Gi", node="a")])
    empty = node_info(make_node("b"))
    assert scores.least_allocated(pod, empty) > scores.least_allocated(pod, busy)


def test_least_allocated_counts_default_request_for_pods_without_requests():
    node = node_info(make_node("n", cpu="1000m", memory="2000Mi"))
    # 100m of 1000m and 200Mi of 2000Mi in use: 90 each.
    assert scores.least_allocated(info(make_pod("p")), node) == 90


def test_balanced_allocation_perfect_balance_is_100():
    node = node_info(make_node("n", cpu="4", memory="4Gi"))
    assert scores.balanced_allocation(info(make_pod("p", cpu="2", memory="2Gi")), node) == 100


def test_balanced_allocation_penalises_imbalance():
    node = node_info(make_node("n", cpu="4", memory="4Gi"))
    # cpu 100%, memory 0.x%: std ≈ 0.5 → ~50.
    assert 49 <= scores.balanced_allocation(info(make_pod("p", cpu="4", memory="1Mi")), node) <= 51


def test_resource_scores_memo_follows_node_changes_and_pod_shape():
    node = node_info(make_node("n", cpu="4", memory="4Gi"))
    small, big = info(make_pod("s", cpu="1", memory="1Gi")), info(make_pod("b", cpu="2", memory="1Gi"))
    assert scores.least_allocated(small, node) == 75
    # Another shape is not answered from the first one's memo.
    assert scores.resource_scores(big, node) == (62, 87)
    assert scores.least_allocated(small, node) == 75
    # A pod placed on the node changes its totals: the memo is dropped, the score follows.
    node.add_pod(info(make_pod("x", cpu="2", memory="2Gi", node="n")))
    assert scores.least_allocated(small, node) == 25
    node.remove_pod("default/x")
    assert scores.least_allocated(small, node) == 75
    # So does a change of allocatable.
    node.set_node(make_node("n", cpu="8", memory="8Gi"))
    assert scores.least_allocated(small, node) == 87


def test_normalize_scales_best_to_100():
    assert scores.normalize([0, 5, 10]) == [0, 50, 100]


def test_normalize_reverse_prefers_fewest():
    assert scores.normalize([0, 1, 2], reverse=True) == [100, 50, 0]


def test_normalize_all_zero():
    assert scores.normalize([0, 0]) == [0, 0]
    assert scores.normalize([0, 0], reverse=True) == [100, 100]


def _preferred(weight, key, *values):
    return {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": weight, "preference": {"matchExpressions": [{"key": key, "operator": "In",
                                                                 "values": list(values)}]}}]}}


def test_preferred_node_affinity_normalised_by_weight():
    nodes = [make_node("a", labels={"disk": "ssd"}), make_node("b")]
    pod = make_pod("p", affinity=_preferred(30, "disk", "ssd"))
    snap = snapshot(nodes)
    assert scores.run_node_affinity(info(pod), snap.node_infos(), snap) == [100, 0]


def test_preferred_node_affinity_skipped_without_preferences():
    snap = snapshot([make_node("a")])
    assert scores.run_node_affinity(info(make_pod("p")), snap.node_infos(), snap) is None


def test_prefer_no_schedule_taint_scores_lower():
    nodes = [make_node("a", taints=[{"key": "k", "effect": "PreferNoSchedule"}]), make_node("b")]
    snap = snapshot(nodes)
    assert scores.run_taint_toleration(info(make_pod("p")), snap.node_infos(), snap) == [0, 100]


def test_tolerated_prefer_no_schedule_taint_is_not_penalised():
    nodes = [make_node("a", taints=[{"key": "k", "effect": "PreferNoSchedule"}]), make_node("b")]
    pod = make_pod("p", tolerations=[{"key": "k", "operator": "Exists"}])
    snap = snapshot(nodes)
    assert scores.run_taint_toleration(info(pod), snap.node_infos(), snap) == [100, 100]


def test_selector_spread_prefers_node_without_siblings():
    nodes = [make_node("a"), make_node("b")]
    pods = [make_pod("rs-1", owner="rs", node="a")]
    snap = snapshot(nodes, pods)
    assert scores.run_selector_spread(info(make_pod("rs-2", owner="rs")), snap.node_infos(), snap) == [0, 100]


def test_selector_spread_weighs_zones():
    nodes = [make_node("a", labels={"topology.kubernetes.io/zone": "z1"}),
             make_node("b", labels={"topology.kubernetes.io/zone": "z1"}),
             make_node("c", labels={"topology.kubernetes.io/zone": "z2"})]
    pods = [make_pod("rs-1", owner="rs", node="a")]
    snap = snapshot(nodes, pods)
    a, b, c = scores.run_selector_spread(info(make_pod("rs-2", owner="rs")), snap.node_infos(), snap)
    assert a == 0 and b == 33 and c == 100


def test_selector_spread_ignores_pods_without_controller():
    snap = snapshot([make_node("a")])
    assert scores.run_selector_spread(info(make_pod("p")), snap.node_infos(), snap) is None


def test_topology_spread_schedule_anyway_prefers_emptier_domain():
    nodes = [make_node("a", labels={"zone": "1"}), make_node("b", labels={"zone": "2"})]
    pods = [make_pod("w1", labels={"app": "web"}, node="a")]
    pod = make_pod("w2", labels={"app": "web"}, topologySpreadConstraints=[
        {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway",
         "labelSelector": {"matchLabels": {"app": "web"}}}])
    snap = snapshot(nodes, pods)
    low, high = scores.run_topology_spread(info(pod), snap.node_infos(), snap)
    assert high == 100 and low < high


def test_num_feasible_nodes_follows_kubernetes():
    assert framework.num_feasible_nodes_to_find(50) == 50
    assert framework.num_feasible_nodes_to_find(500) == 230
    assert framework.num_feasible_nodes_to_find(5000) == 500
    assert framework.num_feasible_nodes_to_find(150) == 100
    assert framework.num_feasible_nodes_to_find(500, percentage=100) == 500


def test_schedule_picks_least_loaded_node():
    nodes = [make_node("a"), make_node("b"), make_node("c")]
    pods = [make_pod("x", cpu="3", memory="6Gi", node="a"), make_pod("y", cpu="1", memory="1Gi", node="c")]
    result = framework.schedule(info(make_pod("p", cpu="500m", memory="512Mi")), snapshot(nodes, pods))
    assert result.node == "b"


def test_schedule_ties_resolve_to_first_name_without_rng():
    nodes = [make_node("c"), make_node("a"), make_node("b")]
    assert framework.schedule(info(make_pod("p")), snapshot(nodes), start=2).node == "a"


def test_schedule_ties_with_rng_pick_among_best():
    nodes = [make_node("a"), make_node("b"), make_node("c")]
    picked = {framework.schedule(info(make_pod("p")), snapshot(nodes), rng=random.Random(seed)).node
              for seed in range(20)}
    assert picked == {"a", "b", "c"}


def test_schedule_spreads_replicas_of_one_owner():
    cache = snapshot([make_node("a"), make_node("b"), make_node("c")])
    placed = []
    for i in range(3):
        pi = info(make_pod(f"rs-{i}", owner="rs"))
        node = framework.schedule(pi, cache).node
        cache.assume(pi, node)
        placed.append(node)
    assert sorted(placed) == ["a", "b", "c"]


def test_assumed_pods_count_against_capacity():
    cache = snapshot([make_node("a", cpu="1")])
    first = info(make_pod("p1", cpu="800m"))
    cache.assume(first, framework.schedule(first, cache).node)
    assert framework.schedule(info(make_pod("p2", cpu="800m")), cache).message \
        == "0/1 nodes are available: 1 Insufficient cpu."


def test_forgotten_assumption_frees_capacity():
    cache = snapshot([make_node("a", cpu="1")])
    first = info(make_pod("p1", cpu="800m"))
    cache.assume(first, "a")
    cache.forget(first.key)
    assert framework.schedule(info(make_pod("p2", cpu="800m")), cache).node == "a"


def test_bound_pod_confirms_assumption_without_double_counting():
    cache = snapshot([make_node("a", cpu="1")])
    first = info(make_pod("p1", cpu="600m"))
    cache.assume(first, "a")
    cache.add_pod(make_pod("p1", cpu="600m", node="a"))
    assert cache.node("a").req_cpu == 600
    assert not cache.is_assumed(first.key)


def test_search_stops_after_enough_feasible_nodes():
    nodes = [make_node(f"n{i:03d}") for i in range(500)]
    result = framework.schedule(info(make_pod("p")), snapshot(nodes))
    assert result.feasible == 230 and result.evaluated == 230
