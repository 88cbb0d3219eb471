"""End to end: environment, command line and config errors of containers, as Docker receives them."""
from __future__ import annotations

import base64

import docker

from tests.kubelet.conftest import status_of

BUSYBOX = "minik8s/busybox:1.36"


def inspect(pods, pod: str, container: str) -> dict:
    [c] = pods.containers(pod, **{"io.kubernetes.container.name": container})
    client = docker.from_env()
    try:
        return client.api.inspect_container(c["Id"])
    finally:
        client.close()


def test_env_env_from_field_refs_and_expansion(pods, http):
    ns = pods.namespace
    assert http.post(f"/api/v1/namespaces/{ns}/configmaps", json={
        "metadata": {"name": "cfg"}, "data": {"greeting": "hello", "color": "blue"}}).status_code == 201
    assert http.post(f"/api/v1/namespaces/{ns}/secrets", json={
        "metadata": {"name": "sec"}, "data": {"password": base64.b64encode(b"s3cret").decode()}}).status_code == 201
    pods.create("env", [{
        "name": "app", "image": BUSYBOX, "workingDir": "/tmp",
        "command": ["sh", "-c"], "args": ["echo $(GREETING) $(MISSING) $$(ESCAPED); exec sleep 3600"],
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}, {"secretRef": {"name": "sec"}}],
        "env": [
            {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}}},
            {"name": "MESSAGE", "value": "$(GREETING) world"},
            {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}},
            {"name": "OPTIONAL", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k", "optional": True}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
            {"name": "TIER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}}},
        ]}], metadata={"labels": {"tier": "backend"}})
    pod = pods.wait_running("env")
    data = inspect(pods, "env", "app")
    env = dict(e.split("=", 1) for e in data["Config"]["Env"])
    assert env["CFG_greeting"] == "hello" and env["CFG_color"] == "blue"
    assert env["password"] == "s3cret" and env["PASS"] == "s3cret"
    assert env["GREETING"] == "hello" and env["MESSAGE"] == "hello world"
    assert "OPTIONAL" not in env
    assert env["POD_NAME"] == "env" and env["POD_NS"] == pods.namespace
    assert env["POD_IP"] == pod["status"]["podIP"]
    assert env["NODE"] == pods.kubelet.node and env["HOST_IP"] == "127.0.0.1"
    assert env["UID"] == pod["metadata"]["uid"] and env["TIER"] == "backend"
    assert data["Path"] == "sh"
    assert data["Args"] == ["-c", "echo hello $(MISSING) $(ESCAPED); exec sleep 3600"]
    assert data["Config"]["WorkingDir"] == "/tmp"


def test_args_alone_keep_the_image_entrypoint(pods):
    pods.create("args", [{"name": "app", "image": "minik8s/myapp:v1", "args": ["extra"]}])
    pods.wait_running("args")
    data = inspect(pods, "args", "app")
    assert data["Path"] == "/serve" and data["Args"] == ["extra"]


def test_missing_config_map_is_create_container_config_error_until_it_exists(pods, http):
    pods.create("cfgerr", [{"name": "app", "image": BUSYBOX, "command": ["sleep", "3600"],
                            "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "late", "key": "x"}}}]}])
    pod = pods.wait("cfgerr", lambda p: status_of(p, "app")["state"].get("waiting", {}).get("reason")
                    == "CreateContainerConfigError")
    assert status_of(pod, "app")["state"]["waiting"]["message"] == 'configmap "late" not found'
    assert pod["status"]["phase"] == "Pending"
    http.post(f"/api/v1/namespaces/{pods.namespace}/configmaps", json={"metadata": {"name": "late"},
                                                                       "data": {"x": "1"}})
    pods.wait_running("cfgerr")


def test_pod_gets_cluster_dns_resolv_conf_and_hosts(pods):
    pods.create("dns", [{"name": "app", "image": BUSYBOX, "command": ["sleep", "3600"]}])
    pod = pods.wait_running("dns")
    client = docker.from_env()
    try:
        [c] = pods.containers("dns", **{"io.kubernetes.container.name": "app"})
        resolv = client.api.exec_start(client.api.exec_create(c["Id"], ["cat", "/etc/resolv.conf"])["Id"]).decode()
        hosts = client.api.exec_start(client.api.exec_create(c["Id"], ["cat", "/etc/hosts"])["Id"]).decode()
        hostname = client.api.exec_start(client.api.exec_create(c["Id"], ["hostname"])["Id"]).decode().strip()
    finally:
        client.close()
    assert "nameserver 10.96.0.10" in resolv
    assert f"search {pods.namespace}.svc.cluster.local svc.cluster.local cluster.local" in resolv
    assert "options ndots:5" in resolv
    assert f"{pod['status']['podIP']}\tdns" in hosts
    assert hostname == "dns"


def test_service_environment_variables_are_injected(pods, http):
    svc = {"metadata": {"name": "my-db"}, "spec": {"selector": {"app": "db"},
                                                   "ports": [{"name": "sql", "port": 5432}]}}
    created = http.post(f"/api/v1/namespaces/{pods.namespace}/services", json=svc).json()
    ip = created["spec"]["clusterIP"]
    pods.create("envs", [{"name": "app", "image": BUSYBOX, "command": ["sleep", "3600"],
                          "env": [{"name": "MY_DB_SERVICE_PORT", "value": "overridden"}]}])
    pods.wait_running("envs")
    client = docker.from_env()
    try:
        [c] = pods.containers("envs", **{"io.kubernetes.container.name": "app"})
        env = client.api.exec_start(client.api.exec_create(c["Id"], ["env"])["Id"]).decode().splitlines()
    finally:
        client.close()
    assert f"MY_DB_SERVICE_HOST={ip}" in env
    assert "MY_DB_SERVICE_PORT_SQL=5432" in env
    assert f"MY_DB_PORT=tcp://{ip}:5432" in env
    assert "MY_DB_SERVICE_PORT=overridden" in env  # the container's own env wins
    assert "KUBERNETES_SERVICE_HOST=10.96.0.1" in env
