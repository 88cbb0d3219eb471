"""End to end: emptyDir (disk and Memory), hostPath, configMap/secret volumes and their live updates."""
from __future__ import annotations

import base64

import docker

from tests.kubelet.conftest import wait_for

BUSYBOX = "minik8s/busybox:1.36"


def run(pods, pod: str, container: str, *cmd: str) -> str:
    [c] = pods.containers(pod, **{"io.kubernetes.container.name": container})
    client = docker.from_env()
    try:
        return client.api.exec_start(client.api.exec_create(c["Id"], list(cmd))["Id"]).decode()
    finally:
        client.close()


def test_empty_dir_is_shared_between_containers_and_memory_medium_is_tmpfs(pods):
    pods.create("shared", [
        {"name": "writer", "image": BUSYBOX, "command": ["sh", "-c", "echo hi > /out/msg; exec sleep 3600"],
         "volumeMounts": [{"name": "data", "mountPath": "/out"}, {"name": "mem", "mountPath": "/cache"}]},
        {"name": "reader", "image": BUSYBOX, "command": ["sleep", "3600"],
         "volumeMounts": [{"name": "data", "mountPath": "/in", "readOnly": True},
                          {"name": "mem", "mountPath": "/cache"},
                          {"name": "data", "mountPath": "/sub", "subPath": "nested"}]}],
        volumes=[{"name": "data", "emptyDir": {}}, {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}])
    pods.wait_running("shared")
    assert wait_for(lambda: run(pods, "shared", "reader", "cat", "/in/msg")) == "hi\n"
    assert "Read-only" in run(pods, "shared", "reader", "sh", "-c", "touch /in/x 2>&1")
    mounts = run(pods, "shared", "reader", "cat", "/proc/mounts")
    assert any(line.split()[1] == "/cache" and line.split()[2] == "tmpfs" for line in mounts.splitlines())
    run(pods, "shared", "writer", "sh", "-c", "echo mem > /cache/m")
    assert run(pods, "shared", "reader", "cat", "/cache/m") == "mem\n"
    run(pods, "shared", "reader", "sh", "-c", "echo deep > /sub/f")
    assert run(pods, "shared", "writer", "cat", "/out/nested/f") == "deep\n"


def test_host_path_types(pods, tmp_path):
    made = tmp_path / "made"
    pods.create("hostpath", [{"name": "app", "image": BUSYBOX,
                              "command": ["sh", "-c", "echo from-pod > /host/f; exec sleep 3600"],
                              "volumeMounts": [{"name": "h", "mountPath": "/host"}]}],
                volumes=[{"name": "h", "hostPath": {"path": str(made), "type": "DirectoryOrCreate"}}])
    pods.wait_running("hostpath")
    assert wait_for(lambda: (made / "f").exists() and (made / "f").read_text()) == "from-pod\n"
    pods.create("hostpath-missing", [{"name": "app", "image": BUSYBOX, "command": ["sleep", "3600"],
                                      "volumeMounts": [{"name": "h", "mountPath": "/host"}]}],
                volumes=[{"name": "h", "hostPath": {"path": str(tmp_path / "absent"), "type": "Directory"}}])
    wait_for(lambda: any(e["reason"] == "FailedMount" for e in pods.events("hostpath-missing")))
    pod = pods.get("hostpath-missing")
    assert pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ContainerCreating"


def test_config_map_and_secret_volumes_and_updates_reach_the_running_pod(pods, http):
    ns = pods.namespace
    http.post(f"/api/v1/namespaces/{ns}/configmaps", json={"metadata": {"name": "cfg"},
                                                          "data": {"key": "v1", "other": "o"}})
    http.post(f"/api/v1/namespaces/{ns}/secrets", json={"metadata": {"name": "sec"},
                                                       "data": {"token": base64.b64encode(b"t0k").decode()}})
    pods.create("cfgvol", [{"name": "app", "image": BUSYBOX, "command": ["sleep", "3600"],
                            "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"},
                                             {"name": "items", "mountPath": "/etc/items"},
                                             {"name": "sec", "mountPath": "/etc/sec", "readOnly": True}]}],
                volumes=[{"name": "cfg", "configMap": {"name": "cfg"}},
                         {"name": "items", "configMap": {"name": "cfg", "items": [
                             {"key": "key", "path": "dir/renamed", "mode": 0o600}]}},
                         {"name": "sec", "secret": {"secretName": "sec", "defaultMode": 0o400}}])
    pods.wait_running("cfgvol")
    assert run(pods, "cfgvol", "app", "cat", "/etc/cfg/key") == "v1"
    assert run(pods, "cfgvol", "app", "cat", "/etc/items/dir/renamed") == "v1"
    assert run(pods, "cfgvol", "app", "ls", "/etc/items").split() == ["dir"]
    assert run(pods, "cfgvol", "app", "stat", "-L", "-c", "%a", "/etc/items/dir/renamed").strip() == "600"
    assert run(pods, "cfgvol", "app", "cat", "/etc/sec/token") == "t0k"
    assert run(pods, "cfgvol", "app", "stat", "-L", "-c", "%a", "/etc/sec/token").strip() == "400"
    r = http.patch(f"/api/v1/namespaces/{ns}/configmaps/cfg", json={"data": {"key": "v2", "other": None}},
                   headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    wait_for(lambda: run(pods, "cfgvol", "app", "cat", "/etc/cfg/key") == "v2", 20)
    assert "other" not in run(pods, "cfgvol", "app", "ls", "/etc/cfg").split()
