"""RBAC through the real apiserver: bootstrap roles, 403s with Kubernetes' messages, bindings taking
effect at once, the escalation check, access reviews (`kubectl auth can-i`) and component identities."""
from __future__ import annotations

import time

RBAC = "/apis/rbac.authorization.k8s.io/v1"


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def binding(name, role, subjects, *, kind="RoleBinding", role_kind="ClusterRole"):
    return {"metadata": {"name": name}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind,
                                                    "name": role}, "subjects": subjects}


def test_bootstrap_policy_exists_and_discovery_lists_rbac(http):
    roles = {r["metadata"]["name"] for r in http.get(f"{RBAC}/clusterroles").json()["items"]}
    assert {"cluster-admin", "admin", "edit", "view", "system:kube-scheduler", "system:node"} <= roles
    binding = http.get(f"{RBAC}/clusterrolebindings/cluster-admin").json()
    assert binding["subjects"] == [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io",
                                    "name": "system:masters"}]
    plurals = {r["name"] for r in http.get(RBAC).json()["resources"]}
    assert plurals == {"roles", "rolebindings", "clusterroles", "clusterrolebindings"}
    groups = {g["name"] for g in http.get("/apis").json()["groups"]}
    assert {"rbac.authorization.k8s.io", "authorization.k8s.io"} <= groups


def test_a_user_without_bindings_is_forbidden_with_kubernetes_message(apiserver, namespace):
    with apiserver.http("jane") as jane:
        r = jane.get(f"/api/v1/namespaces/{namespace}/pods")
        assert r.status_code == 403
        status = r.json()
        assert status["reason"] == "Forbidden" and status["kind"] == "Status"
        assert status["message"] == (f'pods is forbidden: User "jane" cannot list resource "pods" in API group "" '
                                     f'in the namespace "{namespace}"')
        r = jane.get("/api/v1/nodes/n1")
        assert r.json()["message"] == ('nodes "n1" is forbidden: User "jane" cannot get resource "nodes" in API '
                                       'group "" at the cluster scope')
        assert r.json()["details"] == {"name": "n1", "kind": "nodes"}
        # Discovery and version stay open to every authenticated user.
        assert jane.get("/api/v1").status_code == 200 and jane.get("/apis").status_code == 200
        assert jane.get("/version").status_code == 200


def test_role_binding_takes_effect_at_once_and_only_in_its_namespace(apiserver, http, namespace):
    other = http.post("/api/v1/namespaces", json={"metadata": {"name": f"{namespace}-x"}}).json()["metadata"]["name"]
    with apiserver.http("jane") as jane:
        assert jane.get(f"/api/v1/namespaces/{namespace}/configmaps").status_code == 403
        r = http.post(f"{RBAC}/namespaces/{namespace}/rolebindings",
                      json=binding("jane-edit", "edit", [{"kind": "User", "name": "jane"}]))
        assert r.status_code == 201, r.text
        # User subjects are defaulted into the RBAC group, as Kubernetes does.
        assert r.json()["subjects"][0]["apiGroup"] == "rbac.authorization.k8s.io"
        wait_for(lambda: jane.get(f"/api/v1/namespaces/{namespace}/configmaps").status_code == 200)
        r = jane.post(f"/api/v1/namespaces/{namespace}/configmaps", json={"metadata": {"name": "c"}})
        assert r.status_code == 201, r.text
        assert jane.get(f"/api/v1/namespaces/{other}/configmaps").status_code == 403
        assert jane.get("/api/v1/configmaps").status_code == 403  # all namespaces = cluster scope
        # `edit` does not reach RBAC objects or nodes.
        assert jane.get(f"{RBAC}/namespaces/{namespace}/rolebindings").status_code == 403
        http.delete(f"{RBAC}/namespaces/{namespace}/rolebindings/jane-edit")
        wait_for(lambda: jane.get(f"/api/v1/namespaces/{namespace}/configmaps").status_code == 403)


def test_groups_and_watch_verb(apiserver, http, namespace):
    role = {"metadata": {"name": "pod-lister"}, "rules": [{"apiGroups": [""], "resources": ["pods"],
                                                          "verbs": ["list"]}]}
    assert http.post(f"{RBAC}/namespaces/{namespace}/roles", json=role).status_code == 201
    assert http.post(f"{RBAC}/namespaces/{namespace}/rolebindings", json=binding(
        "devs", "pod-lister", [{"kind": "Group", "name": "dev-team"}], role_kind="Role")).status_code == 201
    with apiserver.http("bob") as bob:
        wait_for(lambda: bob.get(f"/api/v1/namespaces/{namespace}/pods").status_code == 200)
        r = bob.get(f"/api/v1/namespaces/{namespace}/pods", params={"watch": "true", "timeoutSeconds": "1"})
        assert r.status_code == 403 and 'cannot watch resource "pods"' in r.json()["message"]


def test_escalation_is_refused_unless_held_or_bind_granted(apiserver, http, namespace):
    # jane may manage Roles and RoleBindings here (and holds `view`), nothing more. Not `*`: that would
    # include the `escalate` and `bind` verbs.
    role = {"metadata": {"name": "binder"}, "rules": [
        {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["rolebindings", "roles"],
         "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}]}
    assert http.post(f"{RBAC}/namespaces/{namespace}/roles", json=role).status_code == 201
    for name, ref, kind in (("jane-binder", "binder", "Role"), ("jane-view", "view", "ClusterRole")):
        r = http.post(f"{RBAC}/namespaces/{namespace}/rolebindings",
                      json=binding(name, ref, [{"kind": "User", "name": "jane"}], role_kind=kind))
        assert r.status_code == 201, r.text
    with apiserver.http("jane") as jane:
        wait_for(lambda: jane.get(f"{RBAC}/namespaces/{namespace}/rolebindings").status_code == 200)
        # Binding herself to `admin` would grant what she does not hold.
        r = jane.post(f"{RBAC}/namespaces/{namespace}/rolebindings",
                      json=binding("grab", "admin", [{"kind": "User", "name": "jane"}]))
        assert r.status_code == 403, r.text
        assert "attempting to grant RBAC permissions not currently held" in r.json()["message"]
        # A Role with more than she holds: refused; one within `view`: fine; binding it: fine.
        big = {"metadata": {"name": "big"}, "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}
        assert jane.post(f"{RBAC}/namespaces/{namespace}/roles", json=big).status_code == 403
        small = {"metadata": {"name": "small"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}
        assert jane.post(f"{RBAC}/namespaces/{namespace}/roles", json=small).status_code == 201
        r = jane.post(f"{RBAC}/namespaces/{namespace}/rolebindings",
                      json=binding("bob-small", "small", [{"kind": "User", "name": "bob"}], role_kind="Role"))
        assert r.status_code == 201, r.text
        assert http.get(f"{RBAC}/namespaces/{namespace}/rolebindings/grab").status_code == 404
        # With the `bind` verb on `admin`, she may hand it out after all (Kubernetes' escape hatch).
        bind_admin = {"metadata": {"name": "bind-admin"}, "rules": [{
            "apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["bind"],
            "resourceNames": ["admin"]}]}
        assert http.post(f"{RBAC}/namespaces/{namespace}/roles", json=bind_admin).status_code == 201
        assert http.post(f"{RBAC}/namespaces/{namespace}/rolebindings", json=binding(
            "jane-bind-admin", "bind-admin", [{"kind": "User", "name": "jane"}], role_kind="Role")).status_code == 201
        wait_for(lambda: jane.post(f"{RBAC}/namespaces/{namespace}/rolebindings", json=binding(
            "bob-admin", "admin", [{"kind": "User", "name": "bob"}])).status_code == 201)


def test_bad_rbac_objects_are_invalid_and_role_ref_is_immutable(http, namespace):
    bad = {"metadata": {"name": "bad"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": []}]}
    r = http.post(f"{RBAC}/namespaces/{namespace}/roles", json=bad)
    assert r.status_code == 422 and r.json()["details"]["causes"][0]["field"] == "rules[0].verbs"
    r = http.post(f"{RBAC}/namespaces/{namespace}/roles", json={"metadata": {"name": "bad"}, "rules": [
        {"verbs": ["get"], "nonResourceURLs": ["/version"]}]})
    assert r.status_code == 422
    r = http.post(f"{RBAC}/clusterrolebindings", json=binding("x", "view", [{"kind": "ServiceAccount", "name": "a"}]))
    assert r.status_code == 422 and any(c["field"] == "subjects[0].namespace" for c in r.json()["details"]["causes"])
    ok = http.post(f"{RBAC}/namespaces/{namespace}/rolebindings", json=binding("b", "view", []))
    assert ok.status_code == 201
    changed = ok.json()
    changed["roleRef"]["name"] = "edit"
    r = http.put(f"{RBAC}/namespaces/{namespace}/rolebindings/b", json=changed)
    assert r.status_code == 422 and r.json()["details"]["causes"][0]["field"] == "roleRef"


def test_access_reviews_answer_can_i(apiserver, http, namespace):
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
              "spec": {"resourceAttributes": {"verb": "list", "resource": "pods", "namespace": namespace}}}
    with apiserver.http("jane") as jane:
        r = jane.post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", json=review)
        assert r.status_code == 201 and r.json()["status"]["allowed"] is False
    r = http.post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", json=review)
    assert r.json()["status"]["allowed"] is True
    sar = {"spec": {"user": "system:kube-scheduler", "resourceAttributes": {
        "verb": "create", "resource": "pods", "subresource": "binding", "namespace": namespace}}}
    assert http.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", json=sar).json()["status"]["allowed"]
    sar["spec"]["resourceAttributes"] = {"verb": "delete", "group": "apps", "resource": "deployments",
                                         "namespace": namespace}
    assert not http.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", json=sar).json()["status"]["allowed"]
    # Only admins may ask about others.
    with apiserver.http("jane") as jane:
        assert jane.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", json=sar).status_code == 403
    assert http.post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                     json={"spec": {}}).status_code == 422


def test_component_identities_hold_what_they_need_and_no_more(apiserver, namespace):
    with apiserver.http("system:kube-scheduler") as sched:
        assert sched.get(f"/api/v1/namespaces/{namespace}/pods").status_code == 200
        assert sched.get("/api/v1/nodes").status_code == 200
        assert sched.get(f"/api/v1/namespaces/{namespace}/secrets").status_code == 403
        assert sched.post(f"/apis/apps/v1/namespaces/{namespace}/deployments", json={}).status_code == 403
    with apiserver.http("system:kube-proxy") as proxy:
        assert proxy.get("/api/v1/services").status_code == 200
        assert proxy.delete(f"/api/v1/namespaces/{namespace}/services/x").status_code == 403
    with apiserver.http("system:node:node-a") as node:
        # Secrets only one by one and only for its own pods (the node authorizer, tests/apiserver/test_node_authz.py).
        assert node.get(f"/api/v1/namespaces/{namespace}/secrets").status_code == 403
        assert node.get("/api/v1/nodes").status_code == 200
        assert node.post("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", json={}).status_code == 403


def test_impersonation_needs_the_impersonate_verb_and_then_acts_as_that_user(apiserver, http, namespace):
    review = {"spec": {"resourceAttributes": {"verb": "list", "resource": "pods", "namespace": namespace}}}
    path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
    # The admin (system:masters) asks as jane — `kubectl auth can-i list pods --as jane`.
    r = http.post(path, json=review, headers={"Impersonate-User": "jane"})
    assert r.status_code == 201 and r.json()["status"]["allowed"] is False
    assert http.get(f"/api/v1/namespaces/{namespace}/pods", headers={"Impersonate-User": "jane"}).status_code == 403
    r = http.get(f"/api/v1/namespaces/{namespace}/pods",
                 headers={"Impersonate-User": "jane", "Impersonate-Group": "system:masters"})
    assert r.status_code == 200
    # jane herself may not impersonate anyone.
    with apiserver.http("jane") as jane:
        r = jane.get(f"/api/v1/namespaces/{namespace}/pods", headers={"Impersonate-User": "admin"})
        assert r.status_code == 403
        assert r.json()["message"] == ('users "admin" is forbidden: User "jane" cannot impersonate resource "users" '
                                       'in API group "" at the cluster scope')
