"""End to end: service account tokens (TokenRequest) and downwardAPI in pods, and termination messages,
with a real apiserver, a real kubelet and dockerd."""
from __future__ import annotations

import ssl

import httpx
import pytest

from tests.conftest import start_apiserver
from tests.kubelet.conftest import status_of, wait_for
from tests.kubelet.test_volumes import BUSYBOX, run

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


@pytest.fixture(scope="module")
def admitting(etcd, tmp_path_factory):
    """A second apiserver on the same etcd with ServiceAccount admission: pods created through it get the
    kube-api-access volume; the kubelet still talks to the session apiserver."""
    server = start_apiserver(etcd, tmp_path_factory.mktemp("sa-admission"), "--enable-admission-plugins",
                             "ServiceAccount")
    with server.http() as http:
        yield http
    server.proc.terminate()
    server.proc.wait(10)


def service_account_and_root_ca(http, ns: str, sa: str = "default") -> None:
    # No controller-manager runs with these tests: make what its controllers would.
    assert http.post(f"/api/v1/namespaces/{ns}/serviceaccounts", json={"metadata": {"name": sa}}).status_code == 201
    http.post(f"/api/v1/namespaces/{ns}/configmaps", json={"metadata": {"name": "kube-root-ca.crt"},
                                                          "data": {"ca.crt": "root-ca-pem"}})


def test_kube_api_access_token_authenticates(pods, http, admitting, apiserver):
    ns = pods.namespace
    service_account_and_root_ca(http, ns)
    body = {"metadata": {"name": "sa-pod"}, "spec": {"nodeName": pods.kubelet.node, "terminationGracePeriodSeconds": 2,
                                                     "containers": [{"name": "app", "image": BUSYBOX,
                                                                     "command": ["sleep", "3600"]}]}}
    r = admitting.post(f"/api/v1/namespaces/{ns}/pods", json=body)
    assert r.status_code == 201, r.text
    assert any(v["name"].startswith("kube-api-access-") for v in r.json()["spec"]["volumes"])
    pods.wait_running("sa-pod")
    assert run(pods, "sa-pod", "app", "cat", f"{SA_DIR}/namespace") == ns
    assert run(pods, "sa-pod", "app", "cat", f"{SA_DIR}/ca.crt") == "root-ca-pem"
    token = run(pods, "sa-pod", "app", "cat", f"{SA_DIR}/token")
    assert token.count(".") == 2
    with httpx.Client(base_url=apiserver.url, verify=ssl.create_default_context(cafile=str(apiserver.ca)),
                      headers={"Authorization": f"Bearer {token}"}, timeout=10) as robot:
        assert robot.get("/api/v1").status_code == 200
        r = robot.get(f"/api/v1/namespaces/{ns}/pods")
        assert r.status_code == 403 and f"system:serviceaccount:{ns}:default" in r.json()["message"]


def test_failed_token_request_holds_the_container_until_it_succeeds(pods, http):
    ns = pods.namespace
    volume = {"name": "tok", "projected": {"sources": [{"serviceAccountToken": {"path": "token",
                                                                                 "audience": "vault"}}]}}
    pods.create("no-sa", [{"name": "app", "image": BUSYBOX, "command": ["sleep", "3600"],
                           "volumeMounts": [{"name": "tok", "mountPath": "/tok"}]}],
                serviceAccountName="ghost", volumes=[volume])
    pod = pods.wait("no-sa", lambda p: "failed to fetch token" in
                    status_of(p, "app")["state"]["waiting"].get("message", ""))
    assert status_of(pod, "app")["state"]["waiting"]["reason"] == "ContainerCreating"
    assert any(e["reason"] == "FailedMount" and "failed to fetch token" in e["message"]
               for e in pods.events("no-sa"))
    assert not pods.containers("no-sa")
    service_account_and_root_ca(http, ns, "ghost")
    pods.wait_running("no-sa")
    assert run(pods, "no-sa", "app", "cat", "/tok/token").count(".") == 2
    assert pods.kubelet.proc.poll() is None


def test_downward_api_volume_follows_label_changes(pods, http):
    items = [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
             {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
             {"path": "ip", "fieldRef": {"fieldPath": "status.podIP"}},
             {"path": "mem", "resourceFieldRef": {"containerName": "app", "resource": "limits.memory",
                                                  "divisor": "1Mi"}, "mode": 0o600}]
    pods.create("dapi", [{"name": "app", "image": BUSYBOX, "command": ["sleep", "3600"],
                          "resources": {"limits": {"memory": "32Mi"}},
                          "volumeMounts": [{"name": "info", "mountPath": "/info"}]}],
                metadata={"labels": {"app": "web", "tier": "front"}},
                volumes=[{"name": "info", "downwardAPI": {"items": items}}])
    pod = pods.wait_running("dapi")
    assert run(pods, "dapi", "app", "cat", "/info/labels") == 'app="web"\ntier="front"'
    assert run(pods, "dapi", "app", "cat", "/info/name") == "dapi"
    assert run(pods, "dapi", "app", "cat", "/info/ip") == pod["status"]["podIP"]
    assert run(pods, "dapi", "app", "cat", "/info/mem") == "32"
    assert run(pods, "dapi", "app", "stat", "-L", "-c", "%a", "/info/mem").strip() == "600"
    r = http.patch(f"/api/v1/namespaces/{pods.namespace}/pods/dapi", json={"metadata": {"labels": {"tier": None,
                                                                                                  "v": "2"}}},
                   headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    wait_for(lambda: run(pods, "dapi", "app", "cat", "/info/labels") == 'app="web"\nv="2"', 20)


def test_termination_messages(pods):
    pods.create("term", [
        {"name": "file", "image": BUSYBOX, "command": ["sh", "-c", "echo all done > /dev/termination-log; exit 3"]},
        {"name": "custom", "image": BUSYBOX, "terminationMessagePath": "/tmp/why",
         "command": ["sh", "-c", "printf custom > /tmp/why"]},
        {"name": "logs", "image": BUSYBOX, "terminationMessagePolicy": "FallbackToLogsOnError",
         "command": ["sh", "-c", "echo line1 >&2; echo oops >&2; exit 1"]},
        {"name": "quiet", "image": BUSYBOX, "terminationMessagePolicy": "FallbackToLogsOnError",
         "command": ["sh", "-c", "echo fine"]}],
        restartPolicy="Never")
    pod = pods.wait("term", lambda p: p["status"]["phase"] == "Failed", 60)
    terminated = {s["name"]: s["state"]["terminated"] for s in pod["status"]["containerStatuses"]}
    assert terminated["file"]["message"] == "all done\n" and terminated["file"]["exitCode"] == 3
    assert terminated["custom"]["message"] == "custom"
    assert terminated["logs"]["message"] == "line1\noops\n"
    assert "message" not in terminated["quiet"]
