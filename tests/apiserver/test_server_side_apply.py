"""Server-side apply and metadata.managedFields through the real apiserver (real etcd, HTTPS, tokens),
and kubectl's `apply --server-side` against it."""

import yaml

APPLY = {"Content-Type": "application/apply-patch+yaml"}
MERGE = {"Content-Type": "application/merge-patch+json"}


def deployment(replicas=2, image="minik8s/myapp:v1", labels=None):
    meta = {"name": "web", **({"labels": labels} if labels else {})}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": image}]}}}}


def dep_url(namespace, sub=""):
    return f"/apis/apps/v1/namespaces/{namespace}/deployments/web{sub}"


def apply(http, url, body, manager="alice", **params):
    content = body if isinstance(body, str) else yaml.safe_dump(body)
    return http.patch(url, content=content, headers=APPLY, params={"fieldManager": manager, **params})


def entry(obj, manager, operation="Apply"):
    found = [e for e in obj["metadata"].get("managedFields", [])
             if e["manager"] == manager and e["operation"] == operation]
    assert len(found) <= 1
    return found[0] if found else None


def test_apply_creates_then_reapplying_without_a_field_removes_it(http, namespace):
    r = apply(http, dep_url(namespace), deployment(labels={"tier": "web", "team": "a"}))
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["spec"]["strategy"]["type"] == "RollingUpdate"  # defaults still apply
    mine = entry(created, "alice")
    assert mine["apiVersion"] == "apps/v1" and mine["fieldsType"] == "FieldsV1" and mine["time"].endswith("Z")
    assert mine["fieldsV1"]["f:metadata"] == {"f:labels": {"f:team": {}, "f:tier": {}}}
    assert mine["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"] == {
        'k:{"name":"web"}': {".": {}, "f:image": {}, "f:name": {}}}
    assert "f:strategy" not in mine["fieldsV1"]["f:spec"]  # defaulted, owned by nobody
    assert [e["manager"] for e in created["metadata"]["managedFields"]] == ["alice"]

    r = apply(http, dep_url(namespace), deployment(labels={"tier": "web"}))
    assert r.status_code == 200, r.text
    assert r.json()["metadata"]["labels"] == {"tier": "web"}
    assert http.get(dep_url(namespace)).json()["metadata"]["labels"] == {"tier": "web"}


def test_reapplying_the_same_configuration_changes_nothing(http, namespace):
    first = apply(http, dep_url(namespace), deployment()).json()
    again = apply(http, dep_url(namespace), deployment()).json()
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert again["metadata"]["managedFields"] == first["metadata"]["managedFields"]


def test_apply_creates_cluster_scoped_objects(http):
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ssa-created", "labels": {"a": "b"}}}
    r = apply(http, "/api/v1/namespaces/ssa-created", ns)
    assert r.status_code == 201, r.text
    assert r.json()["status"]["phase"] == "Active"
    assert entry(r.json(), "alice")["fieldsV1"] == {"f:metadata": {"f:labels": {"f:a": {}}}}
    http.delete("/api/v1/namespaces/ssa-created")


def test_conflict_with_an_update_then_force(http, namespace):
    assert http.post(f"/apis/apps/v1/namespaces/{namespace}/deployments", json=deployment(),
                     params={"fieldManager": "kubectl-client-side-apply"}).status_code == 201
    r = apply(http, dep_url(namespace), deployment(replicas=5, image="minik8s/myapp:v2"))
    assert r.status_code == 409
    status = r.json()
    assert status["reason"] == "Conflict" and status["kind"] == "Status"
    assert status["message"].startswith('Apply failed with 2 conflicts: conflicts with "kubectl-client-side-apply" '
                                        'using apps/v1 at ')
    causes = status["details"]["causes"]
    assert {c["field"] for c in causes} == {".spec.replicas", '.spec.template.spec.containers[name="web"].image'}
    assert all(c["reason"] == "FieldManagerConflict" and
               c["message"].startswith('conflict with "kubectl-client-side-apply" using apps/v1') for c in causes)
    assert http.get(dep_url(namespace)).json()["spec"]["replicas"] == 2  # nothing changed

    r = apply(http, dep_url(namespace), deployment(replicas=5, image="minik8s/myapp:v2"), force="true")
    assert r.status_code == 200, r.text
    obj = r.json()
    assert obj["spec"]["replicas"] == 5
    other = entry(obj, "kubectl-client-side-apply", "Update")["fieldsV1"]
    assert "f:replicas" not in other["f:spec"]
    assert "f:image" not in other["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"web"}']
    assert "f:replicas" in entry(obj, "alice")["fieldsV1"]["f:spec"]


def test_two_appliers_share_a_field_with_the_same_value(http, namespace):
    assert apply(http, dep_url(namespace), deployment(replicas=3)).status_code == 201
    both = apply(http, dep_url(namespace), {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "metadata": {"name": "web"}, "spec": {"replicas": 3}}, manager="bob")
    assert both.status_code == 200, both.text
    assert "f:replicas" in entry(both.json(), "bob")["fieldsV1"]["f:spec"]
    assert "f:replicas" in entry(both.json(), "alice")["fieldsV1"]["f:spec"]
    # alice lets go: bob still owns replicas, so it stays
    without = deployment()
    del without["spec"]["replicas"]
    assert apply(http, dep_url(namespace), without).json()["spec"]["replicas"] == 3
    # bob changing it now conflicts with nobody
    r = apply(http, dep_url(namespace), {"apiVersion": "apps/v1", "kind": "Deployment",
                                          "metadata": {"name": "web"}, "spec": {"replicas": 4}}, manager="bob")
    assert r.status_code == 200 and r.json()["spec"]["replicas"] == 4


def test_updates_record_their_manager_from_field_manager_or_user_agent(http, namespace):
    apply(http, dep_url(namespace), deployment())
    r = http.patch(dep_url(namespace, "/scale"), json={"spec": {"replicas": 4}}, headers={
        **MERGE, "User-Agent": "kubectl/v1.32.0 (linux/amd64) kubernetes/abc"})
    assert r.status_code == 200, r.text
    obj = http.get(dep_url(namespace)).json()
    scale = entry(obj, "kubectl", "Update")
    assert scale["subresource"] == "scale" and scale["fieldsV1"] == {"f:spec": {"f:replicas": {}}}
    assert "f:replicas" not in entry(obj, "alice")["fieldsV1"]["f:spec"]
    r = apply(http, dep_url(namespace), deployment(replicas=2))
    assert r.status_code == 409
    assert r.json()["message"].startswith('Apply failed with 1 conflict: conflict with "kubectl" with subresource '
                                          '"scale" using apps/v1 at ')
    assert r.json()["message"].endswith(": .spec.replicas")
    r = http.put(dep_url(namespace), json={**obj, "metadata": {**obj["metadata"], "labels": {"x": "y"}}},
                 params={"fieldManager": "editor"})
    assert r.status_code == 200
    assert entry(r.json(), "editor", "Update")["fieldsV1"] == {"f:metadata": {"f:labels": {".": {}, "f:x": {}}}}


def test_status_subresource_apply(http, namespace):
    apply(http, dep_url(namespace), deployment())
    status = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
              "spec": {"replicas": 9},
              "status": {"observedGeneration": 1, "conditions": [{"type": "Available", "status": "True"}]}}
    r = apply(http, dep_url(namespace, "/status"), status, manager="status-writer")
    assert r.status_code == 200, r.text
    obj = r.json()
    assert obj["status"]["conditions"] == [{"type": "Available", "status": "True"}]
    assert obj["spec"]["replicas"] == 2  # /status ignores spec
    mine = entry(obj, "status-writer")
    assert mine["subresource"] == "status"
    assert mine["fieldsV1"] == {"f:status": {"f:observedGeneration": {}, "f:conditions": {
        'k:{"type":"Available"}': {".": {}, "f:status": {}, "f:type": {}}}}}
    assert "f:status" not in entry(obj, "alice")["fieldsV1"]
    missing = apply(http, f"/apis/apps/v1/namespaces/{namespace}/deployments/nope/status",
                    {**status, "metadata": {"name": "nope"}})
    assert missing.status_code == 404


def test_dry_run_apply_changes_nothing(http, namespace):
    r = apply(http, dep_url(namespace), deployment(), dryRun="All")
    assert r.status_code == 201 and entry(r.json(), "alice") is not None
    assert http.get(dep_url(namespace)).status_code == 404
    apply(http, dep_url(namespace), deployment())
    r = apply(http, dep_url(namespace), deployment(replicas=7), dryRun="All")
    assert r.status_code == 200 and r.json()["spec"]["replicas"] == 7
    assert http.get(dep_url(namespace)).json()["spec"]["replicas"] == 2
    r = http.patch(dep_url(namespace), json={"spec": {"replicas": 8}}, headers=MERGE, params={"dryRun": "All"})
    assert r.status_code == 200 and r.json()["spec"]["replicas"] == 8
    assert http.get(dep_url(namespace)).json()["spec"]["replicas"] == 2


def test_bad_apply_requests(http, namespace):
    url = dep_url(namespace)
    r = http.patch(url, content=yaml.safe_dump(deployment()), headers=APPLY)
    assert r.status_code == 422 and r.json()["details"]["causes"][0]["field"] == "fieldManager"
    assert "is required for apply patch" in r.json()["message"]
    r = http.patch(url, json={"spec": {}}, headers=MERGE, params={"force": "true"})
    assert r.status_code == 422 and "force: Forbidden: may not be specified for non-apply patch" in r.json()["message"]
    assert apply(http, url, {**deployment(), "apiVersion": "apps/v1beta1"}).status_code == 400
    assert apply(http, url, {**deployment(), "kind": "StatefulSet"}).status_code == 400
    assert apply(http, url, {**deployment(), "metadata": {"name": "other"}}).status_code == 400
    with_fields = deployment()
    with_fields["metadata"]["managedFields"] = []
    r = apply(http, url, with_fields)
    assert r.status_code == 400 and r.json()["message"] == "metadata.managedFields must be nil"
    nameless = deployment()
    nameless["spec"]["template"]["spec"]["containers"].append({"image": "x"})
    r = apply(http, url, nameless)
    assert r.status_code == 400 and 'omits key field "name"' in r.json()["message"]
    assert apply(http, url, "apiVersion: [unclosed").status_code == 400
    r = apply(http, url, deployment(replicas=-1))
    assert r.status_code == 422 and r.json()["reason"] == "Invalid"
    assert http.get(url).status_code == 404  # none of the above created anything
    assert apply(http, url, deployment(), dryRun="Some").status_code == 422
    assert http.patch(url, content=yaml.safe_dump(deployment()), headers=APPLY,
                      params={"fieldManager": "x" * 129}).status_code == 422


def test_apply_accepts_json_and_yaml_bodies(http, namespace):
    url = f"/api/v1/namespaces/{namespace}/configmaps/cm"
    r = http.patch(url, json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"},
                              "data": {"a": "1"}}, headers=APPLY, params={"fieldManager": "j"})
    assert r.status_code == 201, r.text
    r = http.patch(url, content="apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  b: '2'\n",
                   headers=APPLY, params={"fieldManager": "y"})
    assert r.status_code == 200 and r.json()["data"] == {"a": "1", "b": "2"}
    assert entry(r.json(), "y")["fieldsV1"] == {"f:data": {"f:b": {}}}


def test_managed_fields_can_be_cleared_and_survive_writes_that_omit_them(http, namespace):
    url = f"/api/v1/namespaces/{namespace}/configmaps/cm"
    created = http.post(f"/api/v1/namespaces/{namespace}/configmaps",
                        json={"metadata": {"name": "cm"}, "data": {"a": "1"}}, params={"fieldManager": "maker"})
    assert entry(created.json(), "maker", "Update")["fieldsV1"] == {"f:data": {".": {}, "f:a": {}}}
    body = created.json()
    del body["metadata"]["managedFields"]
    body["data"]["b"] = "2"
    kept = http.put(url, json=body, params={"fieldManager": "other"}).json()
    assert entry(kept, "maker", "Update") is not None
    assert entry(kept, "other", "Update")["fieldsV1"] == {"f:data": {"f:b": {}}}
    cleared = http.patch(url, json={"metadata": {"managedFields": [{}]}}, headers=MERGE)
    assert cleared.status_code == 200 and "managedFields" not in cleared.json()["metadata"]
    assert "managedFields" not in http.get(url).json()["metadata"]


def test_every_kind_takes_apply(http, namespace):
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
           "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}
    r = apply(http, f"/api/v1/namespaces/{namespace}/services/s", svc)
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["clusterIP"]
    ports = entry(r.json(), "alice")["fieldsV1"]["f:spec"]["f:ports"]
    assert list(ports) == ['k:{"port":80,"protocol":"TCP"}']
    svc["spec"]["ports"].append({"port": 443, "name": "https"})
    svc["spec"]["ports"][0]["name"] = "http"
    r = apply(http, f"/api/v1/namespaces/{namespace}/services/s", svc)
    assert r.status_code == 200, r.text
    assert [p["port"] for p in r.json()["spec"]["ports"]] == [80, 443]
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": f"{namespace}-r"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}
    r = apply(http, f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{namespace}-r", role)
    assert r.status_code == 201, r.text
    assert entry(r.json(), "alice")["fieldsV1"] == {"f:rules": {}}
    http.delete(f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{namespace}-r")


def test_kubectl_apply_server_side_twice_then_conflict_with_scale_and_force(kubectl, tmp_path):
    manifest = tmp_path / "dep.yaml"
    manifest.write_text(yaml.safe_dump(deployment(replicas=2)))

    r = kubectl("apply", "--server-side", "-f", str(manifest))
    assert r.returncode == 0 and "serverside-applied" in r.stdout, r.stderr
    r = kubectl("apply", "--server-side", "-f", str(manifest))
    assert r.returncode == 0 and "serverside-applied" in r.stdout, r.stderr
    r = kubectl("get", "deployment", "web", "-o", "yaml", "--show-managed-fields")
    live = yaml.safe_load(r.stdout)
    assert [(e["manager"], e["operation"]) for e in live["metadata"]["managedFields"]] == [("kubectl", "Apply")]
    r = kubectl("scale", "deployment/web", "--replicas=5")
    assert r.returncode == 0, r.stderr
    r = kubectl("apply", "--server-side", "-f", str(manifest))
    assert r.returncode != 0
    assert "Apply failed with 1 conflict" in r.stderr and ".spec.replicas" in r.stderr
    r = kubectl("apply", "--server-side", "--force-conflicts", "-f", str(manifest))
    assert r.returncode == 0, r.stderr
    r = kubectl("get", "deployment", "web", "-o", "jsonpath={.spec.replicas}")
    assert r.stdout == "2"


def test_kubectl_moves_from_client_side_to_server_side_apply(kubectl, tmp_path):
    manifest = tmp_path / "dep.yaml"

    manifest.write_text(yaml.safe_dump(deployment(replicas=2)))
    r = kubectl("apply", "-f", str(manifest))
    assert r.returncode == 0 and "created" in r.stdout, r.stderr
    live = yaml.safe_load(kubectl("get", "deployment", "web", "-o", "yaml", "--show-managed-fields").stdout)
    assert [(e["manager"], e["operation"]) for e in live["metadata"]["managedFields"]] == [
        ("kubectl-client-side-apply", "Update")]
    manifest.write_text(yaml.safe_dump(deployment(replicas=3)))
    # kubectl rewrites the client-side entry into its server-side one (a JSON patch of managedFields),
    # so its own earlier writes do not conflict
    r = kubectl("apply", "--server-side", "-f", str(manifest))
    assert r.returncode == 0 and "serverside-applied" in r.stdout, r.stderr
    live = yaml.safe_load(kubectl("get", "deployment", "web", "-o", "yaml", "--show-managed-fields").stdout)
    assert live["spec"]["replicas"] == 3
    # the client-side entry is gone; kubectl keeps the annotation under a manager of its own
    assert sorted((e["manager"], e["operation"]) for e in live["metadata"]["managedFields"]) == [
        ("kubectl", "Apply"), ("kubectl-last-applied", "Apply")]
