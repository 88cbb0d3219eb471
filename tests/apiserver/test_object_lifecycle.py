"""Object lifecycle through the real apiserver: defaults, generation, status, scale, binding, deletion."""
MERGE = {"Content-Type": "application/merge-patch+json"}
SMP = {"Content-Type": "application/strategic-merge-patch+json"}


def pod(name, node=None):
    spec = {"containers": [{"name": "c", "image": "busybox:1.36"}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name}, "spec": spec}


def deployment(name, replicas=2):
    return {"metadata": {"name": name}, "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                                                 "template": {"metadata": {"labels": {"app": name}},
                                                              "spec": {"containers": [{"name": "c", "image": "web"}]}}}}


def test_pod_defaults_are_applied(http, namespace):
    p = http.post(f"/api/v1/namespaces/{namespace}/pods", json=pod("d")).json()
    assert p["spec"]["restartPolicy"] == "Always"
    assert p["spec"]["terminationGracePeriodSeconds"] == 30
    assert p["spec"]["dnsPolicy"] == "ClusterFirst"
    assert p["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert p["status"]["phase"] == "Pending"
    latest = http.post(f"/api/v1/namespaces/{namespace}/pods",
                       json={"metadata": {"name": "l"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}).json()
    assert latest["spec"]["containers"][0]["imagePullPolicy"] == "Always"


def test_deployment_and_service_defaults(http, namespace):
    d = http.post(f"/apis/apps/v1/namespaces/{namespace}/deployments", json=deployment("web")).json()
    assert d["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
    assert d["spec"]["revisionHistoryLimit"] == 10
    s = http.post(f"/api/v1/namespaces/{namespace}/services",
                  json={"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}], "selector": {"a": "b"}}}).json()
    assert s["spec"]["type"] == "ClusterIP"
    assert s["spec"]["ports"][0]["protocol"] == "TCP"
    assert s["spec"]["ports"][0]["targetPort"] == 80


def test_generation_bumps_on_spec_change_only_and_status_goes_through_status(http, namespace):
    base = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    d = http.post(base, json=deployment("g")).json()
    assert d["metadata"]["generation"] == 1
    d = http.patch(f"{base}/g", json={"metadata": {"labels": {"x": "y"}}}, headers=MERGE).json()
    assert d["metadata"]["generation"] == 1
    # status written through the main resource is ignored ...
    d = http.patch(f"{base}/g", json={"spec": {"replicas": 3}, "status": {"replicas": 99}}, headers=MERGE).json()
    assert d["metadata"]["generation"] == 2
    assert d["status"].get("replicas") != 99
    # ... and spec written through /status is ignored.
    d = http.patch(f"{base}/g/status", json={"spec": {"replicas": 7}, "status": {"replicas": 3, "observedGeneration": 2}},
                   headers=MERGE).json()
    assert d["status"]["replicas"] == 3
    assert d["spec"]["replicas"] == 3
    assert d["metadata"]["generation"] == 2


def test_scale_subresource(http, namespace):
    base = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    http.post(base, json=deployment("sc"))
    scale = http.get(f"{base}/sc/scale").json()
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"]["replicas"] == 2
    assert scale["status"]["selector"] == "app=sc"
    scale["spec"]["replicas"] = 5
    r = http.put(f"{base}/sc/scale", json=scale)
    assert r.status_code == 200, r.text
    assert http.get(f"{base}/sc").json()["spec"]["replicas"] == 5
    r = http.patch(f"{base}/sc/scale", json={"spec": {"replicas": 1}}, headers=MERGE)
    assert r.json()["spec"]["replicas"] == 1
    r = http.patch(f"{base}/sc/scale", json={"spec": {"replicas": -1}}, headers=MERGE)
    assert r.status_code == 422


def test_binding_assigns_once_and_refuses_rebinding(http, namespace):
    http.post(f"/api/v1/namespaces/{namespace}/pods", json=pod("b"))
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "b"}, "target": {"kind": "Node", "name": "n1"}}
    r = http.post(f"/api/v1/namespaces/{namespace}/pods/b/binding", json=binding)
    assert r.status_code == 201, r.text
    p = http.get(f"/api/v1/namespaces/{namespace}/pods/b").json()
    assert p["spec"]["nodeName"] == "n1"
    assert any(c["type"] == "PodScheduled" and c["status"] == "True" for c in p["status"]["conditions"])
    binding["target"]["name"] = "n2"
    r = http.post(f"/api/v1/namespaces/{namespace}/pods/b/binding", json=binding)
    assert r.status_code == 409 and r.json()["reason"] == "Conflict"


def test_finalizers_hold_deletion_until_removed(http, namespace):
    url = f"/api/v1/namespaces/{namespace}/configmaps/f"
    http.post(f"/api/v1/namespaces/{namespace}/configmaps",
              json={"metadata": {"name": "f", "finalizers": ["example.com/hold"]}})
    r = http.delete(url)
    assert r.status_code == 200
    assert r.json()["metadata"]["deletionTimestamp"]
    assert http.get(url).status_code == 200
    r = http.patch(url, json={"metadata": {"finalizers": None}}, headers=MERGE)
    assert r.status_code == 200
    assert http.get(url).status_code == 404


def test_graceful_pod_deletion_waits_for_the_kubelet(http, namespace):
    base = f"/api/v1/namespaces/{namespace}/pods"
    http.post(base, json=pod("g", node="node-a"))
    r = http.delete(f"{base}/g")
    assert r.status_code == 200
    meta = r.json()["metadata"]
    assert meta["deletionGracePeriodSeconds"] == 30 and meta["deletionTimestamp"]
    assert http.get(f"{base}/g").status_code == 200
    # The kubelet, having stopped the containers, deletes with grace 0.
    assert http.delete(f"{base}/g", params={"gracePeriodSeconds": "0"}).status_code == 200
    assert http.get(f"{base}/g").status_code == 404
    # An unscheduled pod has nothing to stop: it goes at once.
    http.post(base, json=pod("u"))
    http.delete(f"{base}/u")
    assert http.get(f"{base}/u").status_code == 404


def test_propagation_policy_is_recorded_as_finalizer(http, namespace):
    base = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    for name, policy, finalizer in (("fg", "Foreground", "foregroundDeletion"), ("or", "Orphan", "orphan")):
        http.post(base, json=deployment(name))
        r = http.request("DELETE", f"{base}/{name}", json={"kind": "DeleteOptions", "apiVersion": "v1",
                                                           "propagationPolicy": policy})
        assert r.status_code == 200
        assert finalizer in r.json()["metadata"]["finalizers"]
    http.post(base, json=deployment("bg"))
    assert http.delete(f"{base}/bg", params={"propagationPolicy": "Background"}).status_code == 200
    assert http.get(f"{base}/bg").status_code == 404


def test_delete_preconditions(http, namespace):
    url = f"/api/v1/namespaces/{namespace}/configmaps/pc"
    cm = http.post(f"/api/v1/namespaces/{namespace}/configmaps", json={"metadata": {"name": "pc"}}).json()
    r = http.request("DELETE", url, json={"preconditions": {"uid": "not-the-uid"}})
    assert r.status_code == 409
    r = http.request("DELETE", url, json={"preconditions": {"uid": cm["metadata"]["uid"]}})
    assert r.status_code == 200
    assert http.get(url).status_code == 404


def test_deletecollection_with_label_selector(http, namespace):
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    for i in range(4):
        http.post(base, json={"metadata": {"name": f"c{i}", "labels": {"drop": "yes" if i % 2 else "no"}}})
    r = http.delete(base, params={"labelSelector": "drop=yes"})
    assert r.status_code == 200
    assert sorted(o["metadata"]["name"] for o in r.json()["items"]) == ["c1", "c3"]
    left = sorted(o["metadata"]["name"] for o in http.get(base).json()["items"])
    assert left == ["c0", "c2"]


def test_list_pagination_with_limit_and_continue(http, namespace):
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    for i in range(7):
        http.post(base, json={"metadata": {"name": f"p{i}"}})
    names, cont, pages = [], None, 0
    while True:
        params = {"limit": "3"} | ({"continue": cont} if cont else {})
        page = http.get(base, params=params).json()
        pages += 1
        names += [o["metadata"]["name"] for o in page["items"]]
        cont = page["metadata"].get("continue")
        if not cont:
            break
    assert pages == 3
    assert names == [f"p{i}" for i in range(7)]


def test_strategic_merge_patch_merges_containers_by_name(http, namespace):
    base = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    d = deployment("smp")
    d["spec"]["template"]["spec"]["containers"].append({"name": "side", "image": "side:1"})
    http.post(base, json=d)
    r = http.patch(f"{base}/smp", headers=SMP,
                   json={"spec": {"template": {"spec": {"containers": [{"name": "side", "image": "side:2"}]}}}})
    assert r.status_code == 200, r.text
    containers = {c["name"]: c["image"] for c in r.json()["spec"]["template"]["spec"]["containers"]}
    assert containers == {"c": "web", "side": "side:2"}


def test_json_patch_and_immutable_pod_spec(http, namespace):
    base = f"/api/v1/namespaces/{namespace}/pods"
    http.post(base, json=pod("jp"))
    r = http.patch(f"{base}/jp", headers={"Content-Type": "application/json-patch+json"},
                   json=[{"op": "replace", "path": "/spec/containers/0/image", "value": "busybox:1.37"}])
    assert r.status_code == 200 and r.json()["spec"]["containers"][0]["image"] == "busybox:1.37"
    r = http.patch(f"{base}/jp", headers=MERGE, json={"spec": {"restartPolicy": "Never"}})
    assert r.status_code == 422


def test_discovery_documents(http):
    api = http.get("/api").json()
    assert api["kind"] == "APIVersions" and api["versions"] == ["v1"]
    core = {r["name"]: r for r in http.get("/api/v1").json()["resources"]}
    assert {"pods", "pods/status", "pods/binding", "services", "endpoints", "nodes", "configmaps", "secrets",
            "serviceaccounts", "events", "namespaces"} <= set(core)
    assert core["pods"]["namespaced"] and not core["nodes"]["namespaced"]
    assert "all" in core["pods"]["categories"] and "po" in core["pods"]["shortNames"]
    groups = {g["name"]: g for g in http.get("/apis").json()["groups"]}
    assert {"apps", "batch", "coordination.k8s.io"} <= set(groups)
    apps = {r["name"]: r for r in http.get("/apis/apps/v1").json()["resources"]}
    assert apps["deployments/scale"]["kind"] == "Scale" and apps["deployments/scale"]["group"] == "autoscaling"
    assert {"deployments", "replicasets", "statefulsets", "daemonsets", "controllerrevisions"} <= set(apps)
    batch = {r["name"] for r in http.get("/apis/batch/v1").json()["resources"]}
    assert {"jobs", "cronjobs", "jobs/status", "cronjobs/status"} <= batch
    assert http.get("/apis/coordination.k8s.io/v1").json()["resources"][0]["name"] == "leases"


def test_cluster_scoped_and_all_namespace_lists(http, namespace):
    r = http.post("/api/v1/nodes", json={"metadata": {"name": f"node-{namespace}"}})
    assert r.status_code == 201, r.text
    assert "namespace" not in r.json()["metadata"]
    http.post(f"/api/v1/namespaces/{namespace}/configmaps", json={"metadata": {"name": "everywhere"}})
    all_cms = http.get("/api/v1/configmaps").json()["items"]
    assert any(c["metadata"]["namespace"] == namespace for c in all_cms)
    assert http.delete(f"/api/v1/nodes/node-{namespace}").status_code == 200
