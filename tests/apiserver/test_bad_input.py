"""Bad input of every class gets a Kubernetes Status with the right code and reason, and changes nothing."""
import pytest

JSON = {"Content-Type": "application/json"}


def status(r, code, reason):
    assert r.status_code == code, r.text
    body = r.json()
    assert body["kind"] == "Status" and body["status"] == "Failure"
    assert body["code"] == code
    assert body["reason"] == reason
    return body


def good_pod(name="p"):
    return {"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}


def count(http, ns, plural="pods"):
    return len(http.get(f"/api/v1/namespaces/{ns}/{plural}").json()["items"])


def test_malformed_json_is_400(http, namespace):
    assert status(http.post(f"/api/v1/namespaces/{namespace}/pods", content=b'{"metadata": ', headers=JSON), 400, "BadRequest")
    assert count(http, namespace) == 0


def test_malformed_yaml_is_400(http, namespace):
    r = http.post(f"/api/v1/namespaces/{namespace}/pods", content=b"metadata: [unclosed",
                  headers={"Content-Type": "application/yaml"})
    assert "could not be decoded" in status(r, 400, "BadRequest")["message"]


def test_yaml_body_is_accepted(http, namespace):
    doc = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  a: b\n"
    r = http.post(f"/api/v1/namespaces/{namespace}/configmaps", content=doc, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 201, r.text
    assert r.json()["data"] == {"a": "b"}


@pytest.mark.parametrize("body", [b"[]", b'"a string"', b"42", b"null"])
def test_body_that_is_not_an_object_is_400(http, namespace, body):
    body = status(http.post(f"/api/v1/namespaces/{namespace}/pods", content=body, headers=JSON), 400, "BadRequest")
    assert body["message"]


@pytest.mark.parametrize("spec", [
    {"containers": "not-a-list"},
    {"containers": [{"name": 5, "image": "x"}]},
    {"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": "eighty"}]}]},
    {"containers": [{"name": "c", "image": "x"}], "restartPolicy": 7},
    {"containers": []},
    {"containers": [{"name": "Bad_Name", "image": "x"}]},
    {"containers": [{"name": "c"}]},
])
def test_wrong_types_and_invalid_fields_are_422_with_causes(http, namespace, spec):
    r = http.post(f"/api/v1/namespaces/{namespace}/pods", json={"metadata": {"name": "bad"}, "spec": spec})
    body = status(r, 422, "Invalid")
    assert body["details"]["causes"], body
    assert all("field" in c for c in body["details"]["causes"])
    assert count(http, namespace) == 0


def test_metadata_of_wrong_type_is_400(http, namespace):
    assert status(http.post(f"/api/v1/namespaces/{namespace}/pods", json={"metadata": "x", "spec": {}}), 400, "BadRequest")


@pytest.mark.parametrize("name", ["UPPER", "under_score", "-lead", "a" * 254, ""])
def test_invalid_names_are_422(http, namespace, name):
    assert status(http.post(f"/api/v1/namespaces/{namespace}/configmaps", json={"metadata": {"name": name}}), 422, "Invalid")


def test_unknown_kind_and_group_are_404(http):
    assert status(http.get("/api/v1/widgets"), 404, "NotFound")
    assert status(http.get("/apis/example.com/v1/widgets"), 404, "NotFound")
    assert status(http.get("/apis/apps/v9/deployments"), 404, "NotFound")


def test_body_kind_mismatch_is_400(http, namespace):
    body = {"apiVersion": "v1", "kind": "Service", **good_pod()}
    assert status(http.post(f"/api/v1/namespaces/{namespace}/pods", json=body), 400, "BadRequest")


def test_namespace_mismatch_is_400(http, namespace):
    body = good_pod()
    body["metadata"]["namespace"] = "somewhere-else"
    assert status(http.post(f"/api/v1/namespaces/{namespace}/pods", json=body), 400, "BadRequest")


@pytest.mark.parametrize("selector", ["a in (b", "a=b,=c", "!!a", "a notin b"])
def test_bad_label_selector_is_400(http, namespace, selector):
    assert status(http.get(f"/api/v1/namespaces/{namespace}/pods", params={"labelSelector": selector}), 400, "BadRequest")


def test_unsupported_field_selector_is_400(http, namespace):
    assert status(http.get(f"/api/v1/namespaces/{namespace}/pods", params={"fieldSelector": "spec.bogus=x"}), 400, "BadRequest")
    assert status(http.get(f"/api/v1/namespaces/{namespace}/pods", params={"fieldSelector": "nonsense"}), 400, "BadRequest")


def test_supported_field_selector_filters(http, namespace):
    for n in ("one", "two"):
        assert http.post(f"/api/v1/namespaces/{namespace}/pods", json=good_pod(n)).status_code == 201
    r = http.get(f"/api/v1/namespaces/{namespace}/pods", params={"fieldSelector": "metadata.name=two"})
    assert [p["metadata"]["name"] for p in r.json()["items"]] == ["two"]
    r = http.get(f"/api/v1/namespaces/{namespace}/pods", params={"fieldSelector": "status.phase=Pending,metadata.name!=two"})
    assert [p["metadata"]["name"] for p in r.json()["items"]] == ["one"]


def test_body_over_3_mib_is_413(http, namespace):
    big = {"metadata": {"name": "big"}, "data": {"blob": "x" * (3 * 1024 * 1024 + 10)}}
    assert status(http.post(f"/api/v1/namespaces/{namespace}/configmaps", json=big), 413, "RequestEntityTooLarge")
    assert status(http.get(f"/api/v1/namespaces/{namespace}/configmaps/big"), 404, "NotFound")


def test_missing_or_wrong_token_is_401_and_health_is_public(apiserver):
    import ssl

    import httpx
    ctx = ssl.create_default_context(cafile=str(apiserver.ca))
    with httpx.Client(base_url=apiserver.url, verify=ctx) as anon:
        status(anon.get("/api/v1/pods"), 401, "Unauthorized")
        status(anon.get("/api/v1/pods", headers={"Authorization": "Bearer nope"}), 401, "Unauthorized")
        for path in ("/healthz", "/livez", "/readyz"):
            assert anon.get(path).text == "ok"
        v = anon.get("/version").json()
        assert {"major", "minor", "gitVersion", "gitCommit", "gitTreeState", "buildDate", "goVersion", "compiler",
                "platform"} <= set(v)


def test_missing_namespace_is_404_and_terminating_namespace_is_403(http):
    assert status(http.post("/api/v1/namespaces/does-not-exist/pods", json=good_pod()), 404, "NotFound")
    http.post("/api/v1/namespaces", json={"metadata": {"name": "going-away"}})
    r = http.delete("/api/v1/namespaces/going-away")
    assert r.status_code == 200
    assert r.json()["status"]["phase"] == "Terminating"
    body = status(http.post("/api/v1/namespaces/going-away/pods", json=good_pod()), 403, "Forbidden")
    assert body["message"] == "unable to create new content in namespace going-away because it is being terminated"
    # Controllers recognise this refusal by its cause, as Kubernetes' do, and stop creating instead of retrying.
    assert body["details"]["causes"] == [{"field": "metadata.namespace", "reason": "NamespaceTerminating",
                                          "message": "namespace going-away is being terminated"}]


def test_get_of_missing_object_is_404_with_details(http, namespace):
    body = status(http.get(f"/api/v1/namespaces/{namespace}/pods/ghost"), 404, "NotFound")
    assert body["details"] == {"name": "ghost", "kind": "pods"}
    body = status(http.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/ghost"), 404, "NotFound")
    assert body["details"]["group"] == "apps"


def test_update_of_immutable_selector_is_422(http, namespace):
    dep = {"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"app": "a"}}, "template": {
        "metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}}}}
    r = http.post(f"/apis/apps/v1/namespaces/{namespace}/deployments", json=dep)
    assert r.status_code == 201, r.text
    r = http.patch(f"/apis/apps/v1/namespaces/{namespace}/deployments/d",
                   json={"spec": {"selector": {"matchLabels": {"app": "b"}},
                                  "template": {"metadata": {"labels": {"app": "b"}}}}},
                   headers={"Content-Type": "application/merge-patch+json"})
    assert status(r, 422, "Invalid")
    assert http.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/d").json()["spec"]["selector"] == {
        "matchLabels": {"app": "a"}}


def test_bad_patches(http, namespace):
    http.post(f"/api/v1/namespaces/{namespace}/configmaps", json={"metadata": {"name": "p"}, "data": {"a": "1"}})
    url = f"/api/v1/namespaces/{namespace}/configmaps/p"
    assert status(http.patch(url, content=b"{}", headers={"Content-Type": "text/plain"}), 415, "UnsupportedMediaType")
    assert status(http.patch(url, json={"op": "add"}, headers={"Content-Type": "application/json-patch+json"}), 400, "BadRequest")
    assert status(http.patch(url, json=[{"op": "remove", "path": "/data/missing"}],
                      headers={"Content-Type": "application/json-patch+json"}), 400, "BadRequest")
    r = http.patch(url, json=[{"op": "test", "path": "/data/a", "value": "2"}],
                   headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code in (409, 422) and r.json()["kind"] == "Status"
    assert status(http.patch(url, content=b"{nope", headers={"Content-Type": "application/merge-patch+json"}), 400, "BadRequest")
    assert http.get(url).json()["data"] == {"a": "1"}


def test_stale_resource_version_update_is_409_conflict(http, namespace):
    r = http.post(f"/api/v1/namespaces/{namespace}/configmaps", json={"metadata": {"name": "s"}, "data": {"a": "1"}})
    stale = r.json()
    http.patch(f"/api/v1/namespaces/{namespace}/configmaps/s", json={"data": {"a": "2"}},
               headers={"Content-Type": "application/merge-patch+json"})
    stale["data"] = {"a": "3"}
    assert status(http.put(f"/api/v1/namespaces/{namespace}/configmaps/s", json=stale), 409, "Conflict")
    assert http.get(f"/api/v1/namespaces/{namespace}/configmaps/s").json()["data"] == {"a": "2"}


def test_bad_query_parameters_are_400(http, namespace):
    assert status(http.get(f"/api/v1/namespaces/{namespace}/pods", params={"limit": "many"}), 400, "BadRequest")
    assert status(http.get(f"/api/v1/namespaces/{namespace}/pods", params={"limit": "1", "continue": "garbage!"}), 400, "BadRequest")
    assert status(http.delete(f"/api/v1/namespaces/{namespace}/pods/x", params={"propagationPolicy": "Sideways"}), 422, "Invalid")


def test_method_not_allowed_is_405(http, namespace):
    assert status(http.put(f"/api/v1/namespaces/{namespace}/pods"), 405, "MethodNotAllowed")
