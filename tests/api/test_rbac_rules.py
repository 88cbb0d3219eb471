"""RBAC rule evaluation and the escalation check, on plain objects (no server)."""
from __future__ import annotations

from api.rbac import Attributes, Policy, UserInfo, covers, rule_allows

JANE = UserInfo("jane", ("system:authenticated",))
BOB = UserInfo("bob", ("dev-team", "system:authenticated"))
SA = UserInfo("system:serviceaccount:shop:builder", ("system:serviceaccounts",))


def res(verb, resource, *, group="", sub="", name="", namespace="shop"):
    return Attributes(verb=verb, api_group=group, resource=resource, subresource=sub, name=name, namespace=namespace)


def test_rule_matches_verbs_groups_resources_and_names():
    rule = {"verbs": ["get", "list"], "apiGroups": ["apps"], "resources": ["deployments"]}
    assert rule_allows(rule, res("get", "deployments", group="apps"))
    assert not rule_allows(rule, res("delete", "deployments", group="apps"))
    assert not rule_allows(rule, res("get", "deployments"))  # core group is not apps
    assert not rule_allows(rule, res("get", "deployments", group="apps", sub="scale"))
    named = {**rule, "resourceNames": ["web"]}
    assert rule_allows(named, res("get", "deployments", group="apps", name="web"))
    assert not rule_allows(named, res("get", "deployments", group="apps", name="api"))
    assert not rule_allows(named, res("list", "deployments", group="apps"))  # a list names nothing


def test_wildcards_and_subresources():
    assert rule_allows({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}, res("patch", "pods", sub="status"))
    scale = {"verbs": ["update"], "apiGroups": ["apps"], "resources": ["*/scale"]}
    assert rule_allows(scale, res("update", "deployments", group="apps", sub="scale"))
    assert not rule_allows(scale, res("update", "deployments", group="apps"))
    log = {"verbs": ["get"], "apiGroups": [""], "resources": ["pods/log"]}
    assert rule_allows(log, res("get", "pods", sub="log")) and not rule_allows(log, res("get", "pods"))


def test_non_resource_urls_match_exactly_or_by_prefix():
    rule = {"verbs": ["get"], "nonResourceURLs": ["/version", "/apis/*"]}
    nr = lambda path, verb="get": Attributes(verb=verb, resource_request=False, path=path)  # noqa: E731
    assert rule_allows(rule, nr("/version")) and rule_allows(rule, nr("/apis/apps/v1"))
    assert not rule_allows(rule, nr("/api")) and not rule_allows(rule, nr("/version", "post"))
    # A resource rule never grants a path and the other way round.
    assert not rule_allows({"verbs": ["get"], "apiGroups": ["*"], "resources": ["*"]}, nr("/version"))
    assert not rule_allows(rule, res("get", "pods"))


def policy():
    role = lambda kind, name, rules, ns=None: {"kind": kind, "metadata": {"name": name, **({"namespace": ns} if ns else {})},  # noqa: E731
                                                "rules": rules}
    bind = lambda kind, name, ref_kind, ref, subjects, ns=None: {  # noqa: E731
        "kind": kind, "metadata": {"name": name, **({"namespace": ns} if ns else {})},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": ref_kind, "name": ref}, "subjects": subjects}
    read_pods = [{"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["pods"]}]
    return Policy.from_objects([
        role("ClusterRole", "pod-reader", read_pods),
        role("Role", "deployer", [{"verbs": ["*"], "apiGroups": ["apps"], "resources": ["deployments"]}], "shop"),
        bind("RoleBinding", "jane-reads", "ClusterRole", "pod-reader", [{"kind": "User", "name": "jane"}], "shop"),
        bind("RoleBinding", "devs-deploy", "Role", "deployer", [{"kind": "Group", "name": "dev-team"}], "shop"),
        bind("ClusterRoleBinding", "builder-reads", "ClusterRole", "pod-reader",
             [{"kind": "ServiceAccount", "name": "builder", "namespace": "shop"}]),
        bind("RoleBinding", "dangling", "Role", "missing", [{"kind": "User", "name": "jane"}], "shop"),
    ])


def test_role_binding_grants_only_in_its_namespace():
    p = policy()
    assert p.allows(JANE, res("list", "pods"))
    assert not p.allows(JANE, res("list", "pods", namespace="other"))
    assert not p.allows(JANE, res("list", "pods", namespace=""))  # cluster-wide list
    assert not p.allows(JANE, res("delete", "pods", name="x"))


def test_groups_service_accounts_and_cluster_bindings():
    p = policy()
    assert p.allows(BOB, res("create", "deployments", group="apps"))
    assert not p.allows(BOB, res("create", "deployments", group="apps", namespace="other"))
    assert p.allows(SA, res("list", "pods", namespace="anywhere"))  # ClusterRoleBinding: every namespace
    assert not p.allows(UserInfo("system:serviceaccount:other:builder"), res("list", "pods"))
    assert p.allows(UserInfo("root", ("system:masters",)), res("delete", "nodes", name="n1", namespace=""))


def test_covers_splits_rules_and_honours_wildcards():
    held = [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]},
            {"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["settings"]},
            {"verbs": ["*"], "apiGroups": ["apps"], "resources": ["*/scale"]}]
    assert covers(held, {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]})
    assert not covers(held, {"verbs": ["get", "delete"], "apiGroups": [""], "resources": ["pods"]})
    assert not covers(held, {"verbs": ["get"], "apiGroups": ["*"], "resources": ["pods"]})
    assert covers(held, {"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"],
                         "resourceNames": ["settings"]})
    assert not covers(held, {"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"]})
    assert covers(held, {"verbs": ["update"], "apiGroups": ["apps"], "resources": ["deployments/scale"]})
    assert covers([{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                  {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})
    assert covers([{"verbs": ["get"], "nonResourceURLs": ["/api*"]}], {"verbs": ["get"], "nonResourceURLs": ["/apis/*"]})
    assert not covers([{"verbs": ["get"], "nonResourceURLs": ["/apis"]}],
                      {"verbs": ["get"], "nonResourceURLs": ["/apis/*"]})
