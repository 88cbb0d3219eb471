"""Kubelet fixtures: a real `minik8s kubelet` process against the real apiserver and the host's dockerd.

Each kubelet gets a unique node name, bridge, service sink, pod CIDR and root dir, so it never touches
anything another kubelet (or a developer's `minik8s up`) owns; teardown stops it and removes exactly
its containers (by the node label), its bridge and chains, and its Node. No controller-manager runs, so
the fixture sets the Node's spec.podCIDR itself.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from apiserver.pki import NODES_GROUP, node_identity
from client.kubeconfig import write_kubeconfig
from kubelet import labels as L

ROOT = Path(__file__).resolve().parents[2]

Obj = dict[str, Any]


@dataclass
class KubeletProc:
    node: str
    bridge: str
    sink: str
    pod_cidr: str
    root_dir: Path
    cmd: list[str]
    log: Path
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-6000:] if self.log.exists() else ""


def _unique_cidr() -> str:
    return f"10.244.{random.randint(100, 250)}.0/24"


def make_kubelet(apiserver, tmp: Path, http: httpx.Client, *extra: str) -> KubeletProc:
    suffix = os.urandom(3).hex()
    node = f"kt-{suffix}"
    kubeconfig = tmp / "kubelet.kubeconfig"
    identity = node_identity(node)
    write_kubeconfig(kubeconfig, server=apiserver.url, ca_pem=apiserver.ca.read_bytes(),
                     token=apiserver.add_identity(identity, [NODES_GROUP]), user=identity)
    k = KubeletProc(node=node, bridge=f"mkt{suffix}", sink=f"mks{suffix}", pod_cidr=_unique_cidr(),
                    root_dir=tmp / "root", cmd=[], log=tmp / "kubelet.log")
    k.cmd = [sys.executable, "-m", "cli.main", "kubelet", "--kubeconfig", str(kubeconfig), "--node-name", node,
             "--node-ip", "127.0.0.1", "--root-dir", str(k.root_dir), "--bridge", k.bridge,
             "--service-sink", k.sink, "--port", str(_free_port()), "--address", "127.0.0.1",
             "--crash-loop-backoff-base", "0.5", "--relist-period", "2", "--node-status-update-frequency", "2",
             *extra]
    k.start()
    # No controller-manager here: give the Node its podCIDR once it registered.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if k.proc.poll() is not None:
            raise RuntimeError(f"kubelet exited:\n{k.logs()}")
        r = http.patch(f"/api/v1/nodes/{node}", json={"spec": {"podCIDR": k.pod_cidr, "podCIDRs": [k.pod_cidr]}},
                       headers={"Content-Type": "application/merge-patch+json"})
        if r.status_code == 200:
            break
        time.sleep(0.1)
    wait_for(lambda: _node_ready(http, node), 30, lambda: k.logs())
    return k


def _free_port() -> int:
    from cli.etcd import free_port
    return free_port()


def _node_ready(http: httpx.Client, node: str) -> bool:
    r = http.get(f"/api/v1/nodes/{node}")
    conds = {c["type"]: c["status"] for c in (r.json().get("status") or {}).get("conditions") or []}
    return r.status_code == 200 and conds.get("Ready") == "True"


def cleanup_kubelet(k: KubeletProc, http: httpx.Client) -> None:
    k.stop()
    client = docker.from_env()
    for c in client.api.containers(all=True, filters=L.selector(k.node)):
        client.api.remove_container(c["Id"], force=True)
    client.close()
    from kubelet.network import PodNetwork
    try:
        PodNetwork(bridge=k.bridge, state_dir=k.root_dir / "network", service_sink=k.sink).teardown()
    except Exception as e:  # teardown must not hide the test's result
        print(f"network teardown failed: {e}")
    subprocess.run(["umount", "-R", str(k.root_dir)], capture_output=True)
    for mount in Path("/proc/mounts").read_text().splitlines():
        target = mount.split()[1]
        if target.startswith(str(k.root_dir)):
            subprocess.run(["umount", target], capture_output=True)
    shutil.rmtree(k.root_dir, ignore_errors=True)
    http.delete(f"/api/v1/nodes/{k.node}")
    http.delete(f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{k.node}")


def wait_for(fn: Callable[[], Any], timeout: float = 30, describe: Callable[[], str] | None = None,
             interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s; last={last!r}\n{describe() if describe else ''}")


@pytest.fixture(scope="session")
def kubelet(apiserver, tmp_path_factory) -> Iterator[KubeletProc]:
    """One kubelet shared by the tests that do not restart it."""
    with apiserver.http() as http:
        k = make_kubelet(apiserver, tmp_path_factory.mktemp("kubelet"), http)
        yield k
        cleanup_kubelet(k, http)


@pytest.fixture
def fresh_kubelet(apiserver, tmp_path, http) -> Iterator[KubeletProc]:
    """A kubelet of its own, for tests that stop or restart it."""
    k = make_kubelet(apiserver, tmp_path, http)
    yield k
    cleanup_kubelet(k, http)


class Pods:
    """Small helpers for creating pods on a node and waiting for their status."""

    def __init__(self, http: httpx.Client, namespace: str, kubelet: KubeletProc) -> None:
        self.http, self.namespace, self.kubelet = http, namespace, kubelet

    def create(self, name: str, containers: list[Obj], **spec: Any) -> Obj:
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, **spec.pop("metadata", {})},
                "spec": {"nodeName": self.kubelet.node, "containers": containers,
                         "terminationGracePeriodSeconds": spec.pop("terminationGracePeriodSeconds", 2), **spec}}
        r = self.http.post(f"/api/v1/namespaces/{self.namespace}/pods", json=body)
        assert r.status_code == 201, r.text
        return r.json()

    def get(self, name: str) -> Obj | None:
        r = self.http.get(f"/api/v1/namespaces/{self.namespace}/pods/{name}")
        return r.json() if r.status_code == 200 else None

    def wait(self, name: str, predicate: Callable[[Obj], Any], timeout: float = 30) -> Obj:
        def check() -> Obj | None:
            pod = self.get(name)
            try:
                return pod if pod is not None and predicate(pod) else None
            except (KeyError, IndexError, TypeError):   # status not written that far yet
                return None
        return wait_for(check, timeout, lambda: f"pod: {self.get(name)}\nkubelet log:\n{self.kubelet.logs()}")

    def wait_running(self, name: str, timeout: float = 30) -> Obj:
        return self.wait(name, lambda p: p["status"].get("phase") == "Running" and all(
            "running" in s["state"] for s in p["status"].get("containerStatuses") or [{"state": {}}]), timeout)

    def delete(self, name: str, **params: Any) -> httpx.Response:
        return self.http.delete(f"/api/v1/namespaces/{self.namespace}/pods/{name}", params=params)

    def wait_gone(self, name: str, timeout: float = 30) -> None:
        wait_for(lambda: self.get(name) is None, timeout, lambda: f"pod: {self.get(name)}\n{self.kubelet.logs()}")

    def events(self, name: str) -> list[Obj]:
        r = self.http.get(f"/api/v1/namespaces/{self.namespace}/events",
                          params={"fieldSelector": f"involvedObject.name={name}"})
        return r.json()["items"]

    def containers(self, name: str, **labels: str) -> list[Obj]:
        pod = self.get(name)
        uid = pod["metadata"]["uid"] if pod else labels.pop("uid")
        client = docker.from_env()
        try:
            return client.api.containers(all=True, filters=L.selector(self.kubelet.node, **{L.POD_UID: uid},
                                                                      **labels))
        finally:
            client.close()


def status_of(pod: Obj, container: str) -> Obj:
    for s in (pod["status"].get("containerStatuses") or []) + (pod["status"].get("initContainerStatuses") or []):
        if s["name"] == container:
            return s
    raise KeyError(container)


@pytest.fixture
def pods(http, namespace, kubelet) -> Pods:
    return Pods(http, namespace, kubelet)
