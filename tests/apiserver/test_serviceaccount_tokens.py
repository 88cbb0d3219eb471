"""ServiceAccount tokens through the real apiserver: TokenRequest, authentication with the token, revocation
by deleting the ServiceAccount or the bound pod, RBAC for ServiceAccounts, the pod admission that mounts
API credentials, and pods/eviction."""
from __future__ import annotations

import ssl
import time

import httpx
import jwt
import pytest

from tests.conftest import start_apiserver


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def request_token(http, namespace, sa="robot", **spec):
    return http.post(f"/api/v1/namespaces/{namespace}/serviceaccounts/{sa}/token",
                     json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec})


def as_token(apiserver, token):
    return httpx.Client(base_url=apiserver.url, verify=ssl.create_default_context(cafile=str(apiserver.ca)), headers={"Authorization": f"Bearer {token}"},
                        timeout=10)


def pod(name, **spec):
    return {"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "minik8s/busybox:1.36"}],
                                                 **spec}}


def test_token_request_issues_a_bound_token_that_authenticates(apiserver, http, namespace):
    assert http.post(f"/api/v1/namespaces/{namespace}/serviceaccounts",
                     json={"metadata": {"name": "robot"}}).status_code == 201
    r = request_token(http, namespace, expirationSeconds=1200)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["kind"] == "TokenRequest" and body["status"]["expirationTimestamp"].endswith("Z")
    claims = jwt.decode(body["status"]["token"], options={"verify_signature": False})
    assert claims["sub"] == f"system:serviceaccount:{namespace}:robot"
    assert claims["exp"] - claims["iat"] == 1200
    with as_token(apiserver, body["status"]["token"]) as robot:
        # Authenticated (discovery is open to everyone authenticated), but holds no rights yet.
        assert robot.get("/api/v1").status_code == 200
        r = robot.get(f"/api/v1/namespaces/{namespace}/pods")
        assert r.status_code == 403
        assert f'User "system:serviceaccount:{namespace}:robot"' in r.json()["message"]
        # A RoleBinding to the ServiceAccount subject grants it.
        http.post(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings", json={
            "metadata": {"name": "robot-view"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                                           "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": namespace}]})
        wait_for(lambda: robot.get(f"/api/v1/namespaces/{namespace}/pods").status_code == 200)
        # Deleting the ServiceAccount revokes every token issued for it.
        http.delete(f"/api/v1/namespaces/{namespace}/serviceaccounts/robot")
        wait_for(lambda: robot.get("/api/v1").status_code == 401)


def test_token_bound_to_a_pod_dies_with_the_pod(apiserver, http, namespace):
    http.post(f"/api/v1/namespaces/{namespace}/serviceaccounts", json={"metadata": {"name": "robot"}})
    created = http.post(f"/api/v1/namespaces/{namespace}/pods", json=pod("p", nodeName="nowhere")).json()
    uid = created["metadata"]["uid"]
    r = request_token(http, namespace, boundObjectRef={"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": uid})
    assert r.status_code == 201, r.text
    claims = jwt.decode(r.json()["status"]["token"], options={"verify_signature": False})
    assert claims["kubernetes.io"]["pod"] == {"name": "p", "uid": uid}
    with as_token(apiserver, r.json()["status"]["token"]) as robot:
        assert robot.get("/api/v1").status_code == 200
        http.delete(f"/api/v1/namespaces/{namespace}/pods/p", params={"gracePeriodSeconds": "0"})
        wait_for(lambda: robot.get("/api/v1").status_code == 401)


def test_bad_token_requests_are_refused_and_forged_tokens_do_not_authenticate(apiserver, http, namespace):
    assert request_token(http, namespace).status_code == 404  # no such ServiceAccount
    http.post(f"/api/v1/namespaces/{namespace}/serviceaccounts", json={"metadata": {"name": "robot"}})
    r = request_token(http, namespace, expirationSeconds=60)
    assert r.status_code == 422 and r.json()["details"]["causes"][0]["field"] == "spec.expirationSeconds"
    r = request_token(http, namespace, boundObjectRef={"kind": "Node", "name": "n"})
    assert r.status_code == 422
    r = request_token(http, namespace, boundObjectRef={"kind": "Pod", "name": "missing", "uid": "x"})
    assert r.status_code == 404
    good = request_token(http, namespace).json()["status"]["token"]
    claims = jwt.decode(good, options={"verify_signature": False})
    from cryptography.hazmat.primitives.asymmetric import ec
    forged = jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256")
    with as_token(apiserver, forged) as c:
        assert c.get("/api/v1").status_code == 401
    with as_token(apiserver, good + "x") as c:
        assert c.get("/api/v1").status_code == 401
    # Only those allowed to create serviceaccounts/token get tokens.
    with apiserver.http("jane") as jane:
        assert request_token(jane, namespace).status_code == 403


@pytest.fixture(scope="module")
def admitting(etcd, tmp_path_factory):
    """A second apiserver on the same etcd, with ServiceAccount admission switched on."""
    server = start_apiserver(etcd, tmp_path_factory.mktemp("sa-admission"), "--enable-admission-plugins",
                             "ServiceAccount")
    with server.http() as http:
        yield http
    server.proc.terminate()
    server.proc.wait(10)


def test_without_the_plugin_pods_are_left_as_they_are(http, namespace):
    created = http.post(f"/api/v1/namespaces/{namespace}/pods", json=pod("a", nodeName="nowhere")).json()
    assert not created["spec"].get("volumes")


def test_new_pods_get_the_api_access_volume_unless_opted_out(admitting, namespace):
    http = admitting
    created = http.post(f"/api/v1/namespaces/{namespace}/pods", json=pod("a", nodeName="nowhere")).json()
    spec = created["spec"]
    assert spec["serviceAccountName"] == "default"
    [volume] = [v for v in spec["volumes"] if v["name"].startswith("kube-api-access-")]
    sources = volume["projected"]["sources"]
    assert sources[0]["serviceAccountToken"]["path"] == "token"
    assert sources[1]["configMap"]["name"] == "kube-root-ca.crt"
    assert {"name": volume["name"], "readOnly": True, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"} \
        in spec["containers"][0]["volumeMounts"]
    off = http.post(f"/api/v1/namespaces/{namespace}/pods",
                    json=pod("b", nodeName="nowhere", automountServiceAccountToken=False)).json()
    assert not off["spec"].get("volumes")
    http.post(f"/api/v1/namespaces/{namespace}/serviceaccounts",
              json={"metadata": {"name": "quiet"}, "automountServiceAccountToken": False})
    wait_for(lambda: http.get(f"/api/v1/namespaces/{namespace}/serviceaccounts/quiet").status_code == 200)
    quiet = http.post(f"/api/v1/namespaces/{namespace}/pods",
                      json=pod("c", nodeName="nowhere", serviceAccountName="quiet")).json()
    assert not quiet["spec"].get("volumes")


def test_eviction_deletes_the_pod(http, namespace):
    http.post(f"/api/v1/namespaces/{namespace}/pods", json=pod("e", nodeName="nowhere"))
    r = http.post(f"/api/v1/namespaces/{namespace}/pods/e/eviction",
                  json={"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "e"},
                        "deleteOptions": {"gracePeriodSeconds": 0}})
    assert r.status_code == 201 and r.json()["status"] == "Success"
    assert http.get(f"/api/v1/namespaces/{namespace}/pods/e").status_code == 404
    assert http.post(f"/api/v1/namespaces/{namespace}/pods/e/eviction",
                     json={"metadata": {"name": "e"}}).status_code == 404
    r = http.post(f"/api/v1/namespaces/{namespace}/pods/e/eviction", json={"metadata": {"name": "other"}})
    assert r.status_code == 400
