"""Filter plugins, one behaviour per test, on hand-built nodes and pods (no I/O)."""
from __future__ import annotations

from schedtest import info, make_node, make_pod, node_info, snapshot

from scheduler import filters
from scheduler.framework import schedule


def test_node_unschedulable_rejects_cordoned_node():
    assert filters.node_unschedulable(info(make_pod("p")), node_info(make_node("n", unschedulable=True))) \
        == "node(s) were unschedulable"


def test_node_unschedulable_toleration_admits_pod():
    pod = make_pod("p", tolerations=[{"key": "node.kubernetes.io/unschedulable", "operator": "Exists",
                                      "effect": "NoSchedule"}])
    assert filters.node_unschedulable(info(pod), node_info(make_node("n", unschedulable=True))) is None


def test_node_not_ready_is_rejected():
    assert filters.node_ready(info(make_pod("p")), node_info(make_node("n", ready="False"))) \
        == "node(s) were not ready"


def test_node_without_ready_condition_is_rejected():
    assert filters.node_ready(info(make_pod("p")), node_info(make_node("n", ready=None))) is not None


def test_ready_node_passes():
    assert filters.node_ready(info(make_pod("p")), node_info(make_node("n"))) is None


def test_untolerated_noschedule_taint_is_named():
    node = make_node("n", taints=[{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}])
    assert filters.taint_toleration(info(make_pod("p")), node_info(node)) \
        == "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"


def test_noexecute_taint_with_value_is_named():
    node = make_node("n", taints=[{"key": "dedicated", "value": "gpu", "effect": "NoExecute"}])
    assert filters.taint_toleration(info(make_pod("p")), node_info(node)) \
        == "node(s) had untolerated taint {dedicated: gpu}"


def test_prefer_no_schedule_taint_does_not_filter():
    node = make_node("n", taints=[{"key": "k", "value": "v", "effect": "PreferNoSchedule"}])
    assert filters.taint_toleration(info(make_pod("p")), node_info(node)) is None


def test_equal_toleration_matches_key_and_value():
    node = make_node("n", taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])
    pod = make_pod("p", tolerations=[{"key": "dedicated", "operator": "Equal", "value": "gpu"}])
    assert filters.taint_toleration(info(pod), node_info(node)) is None


def test_toleration_with_other_value_does_not_match():
    node = make_node("n", taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])
    pod = make_pod("p", tolerations=[{"key": "dedicated", "value": "cpu", "effect": "NoSchedule"}])
    assert filters.taint_toleration(info(pod), node_info(node)) is not None


def test_exists_toleration_without_key_tolerates_everything():
    node = make_node("n", taints=[{"key": "a", "effect": "NoSchedule"}, {"key": "b", "effect": "NoExecute"}])
    pod = make_pod("p", tolerations=[{"operator": "Exists"}])
    assert filters.taint_toleration(info(pod), node_info(node)) is None


def test_insufficient_cpu():
    node = node_info(make_node("n", cpu="1"), [make_pod("a", cpu="600m", node="n")])
    assert filters.node_resources_fit(info(make_pod("p", cpu="500m")), node) == "Insufficient cpu"


def test_insufficient_memory():
    node = node_info(make_node("n", memory="1Gi"))
    assert filters.node_resources_fit(info(make_pod("p", memory="2Gi")), node) == "Insufficient memory"


def test_insufficient_cpu_and_memory_reports_both():
    node = node_info(make_node("n", cpu="1", memory="1Gi"))
    assert filters.node_resources_fit(info(make_pod("p", cpu="2", memory="2Gi")), node) \
        == ("Insufficient cpu", "Insufficient memory")


def test_exact_fit_is_allowed():
    node = node_info(make_node("n", cpu="1500m"), [make_pod("a", cpu="1", node="n")])
    assert filters.node_resources_fit(info(make_pod("p", cpu="500m")), node) is None


def test_too_many_pods():
    node = node_info(make_node("n", pods="2"), [make_pod("a", node="n"), make_pod("b", node="n")])
    assert filters.node_resources_fit(info(make_pod("p")), node) == "Too many pods"


def test_limits_count_as_requests_when_requests_are_missing():
    pod = make_pod("p")
    pod["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "2"}}
    assert filters.node_resources_fit(info(pod), node_info(make_node("n", cpu="1"))) == "Insufficient cpu"


def test_init_container_rule_uses_larger_init_request():
    pod = make_pod("p", cpu="500m")
    pod["spec"]["initContainers"] = [{"name": "init", "image": "x", "resources": {"requests": {"cpu": "2"}}}]
    assert info(pod).cpu == 2000
    assert filters.node_resources_fit(info(pod), node_info(make_node("n", cpu="1500m"))) == "Insufficient cpu"


def test_init_container_rule_uses_sum_of_app_containers_when_larger():
    pod = make_pod("p", cpu="1")
    pod["spec"]["containers"].append({"name": "d", "image": "x", "resources": {"requests": {"cpu": "1"}}})
    pod["spec"]["initContainers"] = [{"name": "init", "image": "x", "resources": {"requests": {"cpu": "1500m"}}}]
    assert info(pod).cpu == 2000


def test_extended_resource_missing_on_node():
    pod = make_pod("p")
    pod["spec"]["containers"][0]["resources"] = {"requests": {"example.com/gpu": "1"}}
    assert filters.node_resources_fit(info(pod), node_info(make_node("n"))) == "Insufficient example.com/gpu"


def test_node_name_mismatch():
    pod = make_pod("p")
    pod["spec"]["nodeName"] = "other"
    assert filters.node_name(info(pod), node_info(make_node("n"))) == "node(s) didn't match the requested node name"


def test_node_selector_mismatch():
    pod = make_pod("p", nodeSelector={"disk": "ssd"})
    assert filters.node_affinity(info(pod), node_info(make_node("n", labels={"disk": "hdd"}))) \
        == "node(s) didn't match Pod's node affinity/selector"


def test_node_selector_match():
    pod = make_pod("p", nodeSelector={"disk": "ssd"})
    assert filters.node_affinity(info(pod), node_info(make_node("n", labels={"disk": "ssd"}))) is None


def _required(*terms):
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}}}


def _expr(key, op, *values):
    e = {"key": key, "operator": op}
    if values:
        e["values"] = list(values)
    return {"matchExpressions": [e]}


def _fits_affinity(term, labels, name="n"):
    pod = make_pod("p", affinity=_required(term))
    return filters.node_affinity(info(pod), node_info(make_node(name, labels=labels))) is None


def test_affinity_in():
    assert _fits_affinity(_expr("zone", "In", "a", "b"), {"zone": "b"})
    assert not _fits_affinity(_expr("zone", "In", "a", "b"), {"zone": "c"})


def test_affinity_not_in_admits_missing_label():
    assert _fits_affinity(_expr("zone", "NotIn", "a"), {})
    assert not _fits_affinity(_expr("zone", "NotIn", "a"), {"zone": "a"})


def test_affinity_exists_and_does_not_exist():
    assert _fits_affinity(_expr("gpu", "Exists"), {"gpu": ""})
    assert not _fits_affinity(_expr("gpu", "DoesNotExist"), {"gpu": ""})


def test_affinity_gt_and_lt_compare_integers():
    assert _fits_affinity(_expr("cores", "Gt", "4"), {"cores": "8"})
    assert not _fits_affinity(_expr("cores", "Lt", "4"), {"cores": "8"})
    assert not _fits_affinity(_expr("cores", "Gt", "4"), {"cores": "many"})


def test_affinity_match_fields_metadata_name():
    term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
    assert _fits_affinity(term, {}, name="n1")
    assert not _fits_affinity(term, {}, name="n2")


def test_affinity_terms_are_ored():
    pod = make_pod("p", affinity=_required(_expr("zone", "In", "a"), _expr("zone", "In", "b")))
    assert filters.node_affinity(info(pod), node_info(make_node("n", labels={"zone": "b"}))) is None


def test_empty_affinity_term_matches_nothing():
    assert not _fits_affinity({}, {"zone": "a"})


def test_host_port_conflict():
    ports = [{"containerPort": 80, "hostPort": 8080}]
    existing = make_pod("a", node="n")
    existing["spec"]["containers"][0]["ports"] = ports
    pod = make_pod("p")
    pod["spec"]["containers"][0]["ports"] = ports
    assert filters.node_ports(info(pod), node_info(make_node("n"), [existing])) \
        == "node(s) didn't have free ports for the requested pod ports"


def test_host_port_other_protocol_or_ip_is_free():
    existing = make_pod("a", node="n")
    existing["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.1"}]
    pod = make_pod("p")
    pod["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.2"},
                                             {"containerPort": 53, "hostPort": 8080, "protocol": "UDP"}]
    assert filters.node_ports(info(pod), node_info(make_node("n"), [existing])) is None


def _anti(selector, key="kubernetes.io/hostname"):
    return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": selector}, "topologyKey": key}]}}


def _aff(selector, key="kubernetes.io/hostname"):
    return {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": selector}, "topologyKey": key}]}}


def _inter_pod(pod, nodes, pods, node_name):
    snap = snapshot(nodes, pods)
    check = filters.inter_pod_affinity(info(pod), snap)
    return None if check is None else check(info(pod), snap.node(node_name))


def test_anti_affinity_rejects_node_with_matching_pod():
    nodes = [make_node("n1"), make_node("n2")]
    pods = [make_pod("web-1", labels={"app": "web"}, node="n1")]
    pod = make_pod("web-2", labels={"app": "web"}, affinity=_anti({"app": "web"}))
    assert _inter_pod(pod, nodes, pods, "n1") == "node(s) didn't match pod anti-affinity rules"
    assert _inter_pod(pod, nodes, pods, "n2") is None


def test_anti_affinity_by_zone_covers_every_node_in_zone():
    nodes = [make_node("n1", labels={"zone": "a"}), make_node("n2", labels={"zone": "a"}),
             make_node("n3", labels={"zone": "b"})]
    pods = [make_pod("web-1", labels={"app": "web"}, node="n1")]
    pod = make_pod("web-2", labels={"app": "web"}, affinity=_anti({"app": "web"}, "zone"))
    assert _inter_pod(pod, nodes, pods, "n2") is not None
    assert _inter_pod(pod, nodes, pods, "n3") is None


def test_anti_affinity_ignores_other_namespaces():
    nodes = [make_node("n1")]
    pods = [make_pod("web-1", namespace="other", labels={"app": "web"}, node="n1")]
    pod = make_pod("web-2", labels={"app": "web"}, affinity=_anti({"app": "web"}))
    assert _inter_pod(pod, nodes, pods, "n1") is None


def test_existing_pod_anti_affinity_repels_incoming_pod():
    nodes = [make_node("n1"), make_node("n2")]
    pods = [make_pod("db", labels={"app": "db"}, node="n1", affinity=_anti({"app": "web"}))]
    pod = make_pod("web", labels={"app": "web"})
    assert _inter_pod(pod, nodes, pods, "n1") == "node(s) didn't satisfy existing pods anti-affinity rules"
    assert _inter_pod(pod, nodes, pods, "n2") is None


def test_affinity_requires_matching_pod_in_domain():
    nodes = [make_node("n1", labels={"zone": "a"}), make_node("n2", labels={"zone": "b"})]
    pods = [make_pod("cache", labels={"app": "cache"}, node="n1")]
    pod = make_pod("web", affinity=_aff({"app": "cache"}, "zone"))
    assert _inter_pod(pod, nodes, pods, "n1") is None
    assert _inter_pod(pod, nodes, pods, "n2") == "node(s) didn't match pod affinity rules"


def test_affinity_without_any_match_rejects():
    pod = make_pod("web", affinity=_aff({"app": "cache"}))
    assert _inter_pod(pod, [make_node("n1")], [], "n1") == "node(s) didn't match pod affinity rules"


def test_first_pod_of_self_affine_group_may_go_anywhere():
    pod = make_pod("web-1", labels={"app": "web"}, affinity=_aff({"app": "web"}))
    assert _inter_pod(pod, [make_node("n1")], [], "n1") is None


def test_affinity_node_without_topology_key_rejects():
    nodes = [make_node("n1", labels={"zone": "a"}), make_node("n2")]
    pods = [make_pod("cache", labels={"app": "cache"}, node="n1")]
    pod = make_pod("web", affinity=_aff({"app": "cache"}, "zone"))
    assert _inter_pod(pod, nodes, pods, "n2") == "node(s) didn't match pod affinity rules"


def _spread(max_skew=1, key="zone", when="DoNotSchedule", selector=None):
    return [{"maxSkew": max_skew, "topologyKey": key, "whenUnsatisfiable": when,
             "labelSelector": {"matchLabels": selector or {"app": "web"}}}]


def _spread_check(pod, nodes, pods, node_name):
    snap = snapshot(nodes, pods)
    check = filters.pod_topology_spread(info(pod), snap)
    return None if check is None else check(info(pod), snap.node(node_name))


def test_topology_spread_rejects_domain_over_max_skew():
    nodes = [make_node("n1", labels={"zone": "a"}), make_node("n2", labels={"zone": "b"})]
    pods = [make_pod("w1", labels={"app": "web"}, node="n1")]
    pod = make_pod("w2", labels={"app": "web"}, topologySpreadConstraints=_spread())
    assert _spread_check(pod, nodes, pods, "n1") == "node(s) didn't match pod topology spread constraints"
    assert _spread_check(pod, nodes, pods, "n2") is None


def test_topology_spread_allows_within_max_skew():
    nodes = [make_node("n1", labels={"zone": "a"}), make_node("n2", labels={"zone": "b"})]
    pods = [make_pod("w1", labels={"app": "web"}, node="n1")]
    pod = make_pod("w2", labels={"app": "web"}, topologySpreadConstraints=_spread(max_skew=2))
    assert _spread_check(pod, nodes, pods, "n1") is None


def test_topology_spread_node_without_key():
    nodes = [make_node("n1", labels={"zone": "a"}), make_node("n2")]
    pod = make_pod("w", labels={"app": "web"}, topologySpreadConstraints=_spread())
    assert _spread_check(pod, nodes, [], "n2") \
        == "node(s) didn't match pod topology spread constraints (missing required label)"


def test_topology_spread_schedule_anyway_is_not_a_filter():
    pod = make_pod("w", labels={"app": "web"}, topologySpreadConstraints=_spread(when="ScheduleAnyway"))
    assert filters.pod_topology_spread(info(pod), snapshot([make_node("n1")])) is None


def test_fit_error_message_counts_and_sorts_reasons():
    nodes = [make_node("a", cpu="1"), make_node("b", cpu="1"),
             make_node("c", taints=[{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}])]
    result = schedule(info(make_pod("p", cpu="2")), snapshot(nodes))
    assert result.node is None
    assert result.message == ("0/3 nodes are available: 1 node(s) had untolerated taint "
                              "{node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu.")


def test_fit_error_message_without_nodes():
    assert schedule(info(make_pod("p")), snapshot([])).message == "no nodes available to schedule pods"
