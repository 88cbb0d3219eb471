"""TokenReview (authentication.k8s.io/v1) against the real apiserver: how a kubelet learns who a bearer token
belongs to without holding the cluster's token file."""
from __future__ import annotations

REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"


def review(client, token, **spec):
    return client.post(REVIEWS, json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                      "spec": {"token": token, **spec}})


def test_static_service_account_and_bad_tokens(apiserver, http, namespace):
    r = review(http, apiserver.tokens["bob"])
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["kind"] == "TokenReview" and "token" not in body["spec"]          # the secret is not echoed
    assert body["status"]["authenticated"] is True
    assert body["status"]["user"]["username"] == "bob"
    assert set(body["status"]["user"]["groups"]) == {"dev-team", "system:authenticated"}

    assert review(http, "not-a-token").json()["status"] == {"authenticated": False, "error": "invalid bearer token"}

    http.post(f"/api/v1/namespaces/{namespace}/serviceaccounts", json={"metadata": {"name": "robot"}})
    issued = http.post(f"/api/v1/namespaces/{namespace}/serviceaccounts/robot/token", json={"spec": {}})
    assert issued.status_code == 201, issued.text
    status = review(http, issued.json()["status"]["token"]).json()["status"]
    assert status["authenticated"] and status["user"]["username"] == f"system:serviceaccount:{namespace}:robot"

    assert review(http, "").status_code == 422
    assert http.post(REVIEWS, json={"kind": "TokenReview"}).status_code == 400


def test_who_may_ask(apiserver):
    with apiserver.http("jane") as jane:
        r = review(jane, apiserver.tokens["bob"])
        assert r.status_code == 403 and 'cannot create resource "tokenreviews"' in r.json()["message"]
    with apiserver.http("system:node:node-a") as node:       # kubelets check their API's callers this way
        assert review(node, apiserver.tokens["jane"]).json()["status"]["user"]["username"] == "jane"
        access = node.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", json={"spec": {
            "user": "jane", "resourceAttributes": {"verb": "get", "resource": "nodes", "subresource": "proxy",
                                                   "name": "node-a"}}})
        assert access.status_code == 201 and access.json()["status"]["allowed"] is False
    with apiserver.http() as admin:
        groups = admin.get("/apis/authentication.k8s.io/v1").json()
        assert [r["name"] for r in groups["resources"]] == ["tokenreviews"]
