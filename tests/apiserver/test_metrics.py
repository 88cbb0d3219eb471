"""The metrics API's pure parts: reading a kubelet's /metrics/resource, rates, wire formats, authorization."""
from __future__ import annotations

from api.rbac import Policy, UserInfo
from apiserver.authz import request_attributes
from apiserver.metrics import (Point, Scrape, format_cpu, format_memory, go_duration, parse_resource_metrics,
                               pod_usage, rate)
from apiserver.policy import cluster_roles
from kubelet.stats import ContainerUsage, Usage, render


def test_parses_what_the_kubelet_renders():
    text = render(Usage(10.0, 1 << 30, 1000.0),
                  [ContainerUsage("ns", "web", "app", 900.0, Usage(2.5, 1 << 20, 1000.25))], 0)
    s = parse_resource_metrics(text, at=5.0)
    assert s.node == Point(10.0, 1 << 30, 1000.0)
    assert s.containers == {("ns", "web", "app"): Point(2.5, 1 << 20, 1000.25, 900.0)}


def test_rate_between_two_samples():
    u = rate(Point(1.0, 0, 100.0, 7.0), Point(1.5, 2048, 102.0, 7.0))
    assert (u.nanocores, u.memory_bytes, u.window) == (250_000_000, 2048, 2.0)
    assert rate(None, Point(1.0, 0, 1.0)) is None
    assert rate(Point(5.0, 0, 100.0, 7.0), Point(1.0, 0, 102.0, 8.0)) is None      # restarted container
    assert rate(Point(1.0, 0, 100.0), Point(1.0, 0, 100.0)) is None                 # same sample twice


def test_pod_usage_needs_every_running_container():
    pod = {"metadata": {"name": "p", "namespace": "n"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}}
    old = Scrape(0, containers={("n", "p", "a"): Point(1.0, 1, 10.0)})
    new = Scrape(1, containers={("n", "p", "a"): Point(2.0, 1, 11.0), ("n", "p", "b"): Point(1.0, 1, 11.0)})
    assert pod_usage(pod, old, new) is None          # b has no earlier sample yet
    new.containers.pop(("n", "p", "b"))
    assert [(name, u.nanocores) for name, u in pod_usage(pod, old, new)] == [("a", 1_000_000_000)]


def test_quantities_and_durations_as_kubernetes_prints_them():
    assert [format_cpu(n) for n in (0, 250_000_000, 2_000_000_000, 1_500_000, 12345)] == \
        ["0", "250m", "2", "1500u", "12345n"]
    assert [format_memory(n) for n in (0, 1024 * 1234, 64 << 20, 1000)] == ["0", "1234Ki", "64Mi", "1000"]
    assert [go_duration(s) for s in (15, 1.5021, 60.5)] == ["15s", "1.502s", "1m0.5s"]


def test_view_role_may_read_metrics_but_not_write():
    policy = Policy.from_objects(cluster_roles() + [{
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "v", "namespace": "shop"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "User", "name": "jane", "apiGroup": "rbac.authorization.k8s.io"}]}])
    jane = UserInfo("jane", ("system:authenticated",))
    listing = request_attributes("GET", "/apis/metrics.k8s.io/v1beta1/namespaces/shop/pods")
    assert (listing.api_group, listing.resource, listing.verb) == ("metrics.k8s.io", "pods", "list")
    assert policy.allows(jane, listing)
    assert not policy.allows(jane, request_attributes("GET", "/apis/metrics.k8s.io/v1beta1/namespaces/other/pods"))
    assert not policy.allows(jane, request_attributes("POST", "/apis/metrics.k8s.io/v1beta1/namespaces/shop/pods"))
