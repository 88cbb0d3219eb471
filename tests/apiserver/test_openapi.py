"""OpenAPI v3 discovery and server-side field validation, and kubectl apply against them."""


def test_openapi_v3_root_lists_group_versions_and_patch_takes_field_validation(http):
    root = http.get("/openapi/v3").json()["paths"]
    assert {"api/v1", "apis/apps/v1", "apis/batch/v1", "apis/coordination.k8s.io/v1"} <= set(root)
    doc = http.get(root["apis/apps/v1"]["serverRelativeURL"]).json()
    patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {"group": "apps", "version": "v1", "kind": "Deployment"}
    assert "fieldValidation" in {p["name"] for p in patch["parameters"]}
    assert http.get("/openapi/v3/apis/nothing/v1").status_code == 404


def test_strict_field_validation_rejects_unknown_and_duplicate_fields(http, namespace):
    url = f"/api/v1/namespaces/{namespace}/configmaps"
    r = http.post(url, params={"fieldValidation": "Strict"}, json={"metadata": {"name": "a"}, "bogus": 1})
    assert r.status_code == 400 and 'unknown field "bogus"' in r.json()["message"]
    raw = b'{"metadata": {"name": "b", "name": "c"}}'
    r = http.post(url, params={"fieldValidation": "Strict"}, content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and 'duplicate field "name"' in r.json()["message"]
    assert http.get(url).json()["items"] == []
    r = http.post(url, params={"fieldValidation": "Warn"}, json={"metadata": {"name": "w"}, "bogus": 1})
    assert r.status_code == 201 and 'unknown field "bogus"' in r.headers["warning"]
    r = http.post(url, params={"fieldValidation": "Sometimes"}, json={"metadata": {"name": "x"}})
    assert r.status_code == 400


def test_kubectl_apply_create_and_get(kubectl, tmp_path):
    manifest = tmp_path / "dep.yaml"

    def write(image: str) -> None:
        manifest.write_text(f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: web, image: "{image}"}}]
""")
    write("minik8s/myapp:v1")
    r = kubectl("apply", "-f", str(manifest))
    assert r.returncode == 0, r.stderr
    assert "created" in r.stdout
    write("minik8s/myapp:v2")
    r = kubectl("apply", "-f", str(manifest))
    assert r.returncode == 0 and "configured" in r.stdout, r.stderr
    r = kubectl("get", "deployment", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}")
    assert r.stdout == "minik8s/myapp:v2"
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad}\nbogus: 1\n")
    r = kubectl("apply", "-f", str(bad))
    assert r.returncode != 0 and 'unknown field "bogus"' in r.stderr
    r = kubectl("get", "configmaps")
    assert "bad" not in r.stdout


def test_table_output_for_kubectl_get(http, namespace):
    http.post(f"/api/v1/namespaces/{namespace}/pods",
              json={"metadata": {"name": "t"}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}})
    accept = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
    t = http.get(f"/api/v1/namespaces/{namespace}/pods", headers=accept).json()
    assert t["kind"] == "Table"
    names = [c["name"] for c in t["columnDefinitions"]]
    assert names == ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node", "Readiness Gates"]
    assert t["rows"][0]["cells"][:3] == ["t", "0/1", "Pending"]
    assert t["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    one = http.get(f"/api/v1/namespaces/{namespace}/pods/t", headers=accept).json()
    assert one["kind"] == "Table" and len(one["rows"]) == 1
    plain = http.get(f"/api/v1/namespaces/{namespace}/pods/t").json()
    assert plain["kind"] == "Pod"
