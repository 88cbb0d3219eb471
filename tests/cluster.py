"""A whole cluster of real processes for end-to-end tests: its own etcd and apiserver, the
controller-manager, the scheduler and N kubelets on the host's dockerd.

Each kubelet is a "node" with its own bridge, service sink and root dir; the controller-manager's node
IPAM gives them podCIDRs from a range no route on the host uses yet (10.250-255.0.0/16), so pods of
different nodes reach each other through the host's routes between the bridges. Everything started is
torn down in `stop()`: processes, containers (by the kubelets' node labels), bridges, iptables chains,
mounts and directories.
"""
from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import httpx

from client.kubeconfig import write_kubeconfig
from cli.etcd import EtcdProcess, free_port

ROOT = Path(__file__).resolve().parent.parent


def free_cluster_cidr() -> str:
    """A /16 for pod CIDRs that no route on this host touches yet: a killed earlier run may have left
    bridges behind whose routes would shadow this cluster's pods."""
    import ipaddress
    import json
    routes = json.loads(subprocess.run(["ip", "-j", "-4", "route"], capture_output=True, text=True).stdout or "[]")
    used = [ipaddress.ip_network(r["dst"], strict=False) for r in routes if r.get("dst", "default") != "default"]
    for second in range(250, 256):
        candidate = ipaddress.ip_network(f"10.{second}.0.0/16")
        if not any(candidate.overlaps(u) for u in used):
            return str(candidate)
    raise RuntimeError("no free 10.250-255.0.0/16 for an e2e cluster: clean up old bridges (ip -br link | grep mk)")


def wait_for(fn: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Proc:
    name: str
    cmd: list[str]
    log: Path
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)

    def stop(self, sig_kill: bool = False) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        if sig_kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


@dataclass
class Node:
    name: str
    bridge: str
    sink: str
    root: Path
    proc: Proc


@dataclass
class Cluster:
    dir: Path
    nodes: int = 2
    # Short timings so e2e tests see backoffs and node failures in seconds, not minutes.
    # (The grace period must exceed the kubelet's 10 s lease renewal; the not-ready toleration outlasts a
    # kubelet restart, whose node is briefly NotReady until its network is configured.)
    controller_manager_flags: list[str] = field(default_factory=lambda: [
        "--job-backoff-base", "1", "--node-monitor-grace-period", "15", "--node-monitor-period", "1",
        "--default-unreachable-toleration-seconds", "2", "--default-not-ready-toleration-seconds", "30",
        "--podgc-period", "1", "--podgc-terminating-delay", "2", "--horizontal-pod-autoscaler-sync-period", "1"])
    etcd: EtcdProcess | None = None
    url: str = ""
    ca: Path | None = None
    tokens: dict[str, str] = field(default_factory=dict)
    procs: dict[str, Proc] = field(default_factory=dict)
    kubelets: list[Node] = field(default_factory=list)
    cluster_cidr: str = ""

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> "Cluster":
        from cli.bootstrap import ensure_credentials

        self.dir.mkdir(parents=True, exist_ok=True)
        self.cluster_cidr = free_cluster_cidr()
        self.etcd = EtcdProcess(self.dir / "etcd", free_port(), free_port(), log_path=self.dir / "etcd.log").start()
        port = free_port()
        self.url = f"https://127.0.0.1:{port}"
        suffix = os.urandom(2).hex()
        names = [f"node-{suffix}-{i}" for i in range(self.nodes)]
        # The same credentials `minik8s bootstrap` makes: a CA, serving certs, one token per component and
        # one per node (system:node:<name>, which the node authorizer tells apart).
        creds = ensure_credentials(self.dir, self.url, nodes=names)
        self.ca, self.tokens = creds.ca, creds.tokens
        api_cert, api_key = creds.cert("apiserver")
        py = [sys.executable, "-m", "cli.main"]
        self._add("apiserver", py + ["apiserver", "--etcd-servers", self.etcd.url, "--secure-port", str(port),
                                     "--bind-address", "127.0.0.1", "--tls-cert-file", str(api_cert),
                                     "--tls-private-key-file", str(api_key),
                                     "--token-auth-file", str(creds.token_file),
                                     "--kubelet-certificate-authority", str(creds.ca),
                                     "--service-account-signing-key-file", str(creds.service_account_key),
                                     "--enable-admission-plugins", "ServiceAccount"])
        self._wait_ready()
        self._add("controller-manager", py + ["controller-manager", "--kubeconfig",
                                              self.kubeconfig("system:kube-controller-manager"),
                                              "--health-port", str(free_port()), "--cluster-cidr", self.cluster_cidr,
                                              "--root-ca-file", str(creds.ca), "--leader-elect-lease-duration", "4", "--leader-elect-renew-deadline",
                                              "3", "--leader-elect-retry-period", "0.5",
                                              *self.controller_manager_flags])
        self._add("scheduler", py + ["scheduler", "--kubeconfig", self.kubeconfig("system:kube-scheduler"),
                                     "--health-port", "0", "--leader-elect-lease-duration", "4",
                                     "--leader-elect-renew-deadline", "3", "--leader-elect-retry-period", "0.5"])
        kubelet_cert, kubelet_key = creds.cert("kubelet")
        for i, name in enumerate(names):
            root = self.dir / name
            proc = Proc(name, py + ["kubelet", "--kubeconfig", str(creds.node_kubeconfig(name)), "--node-name", name,
                                    "--node-ip", "127.0.0.1", "--address", "127.0.0.1", "--port", str(free_port()),
                                    "--root-dir", str(root), "--bridge", f"mkc{suffix}{i}",
                                    "--service-sink", f"mks{suffix}{i}", "--cluster-cidr", self.cluster_cidr,
                                    "--tls-cert-file", str(kubelet_cert), "--tls-private-key-file", str(kubelet_key),
                                    "--authentication-token-webhook",
                                    "--crash-loop-backoff-base", "0.5", "--relist-period", "2",
                                    "--node-status-update-frequency", "2"],
                        self.dir / f"{name}.log")
            proc.start()
            self.kubelets.append(Node(name, f"mkc{suffix}{i}", f"mks{suffix}{i}", root, proc))
        with self.http() as http:
            for node in self.kubelets:
                wait_for(lambda: self.node_ready(http, node.name), 60, what=f"node {node.name} Ready "
                         f"(log tail: {node.proc.tail(800)})")
        return self

    def _add(self, name: str, cmd: list[str]) -> Proc:
        p = Proc(name, cmd, self.dir / f"{name}.log")
        p.start()
        self.procs[name] = p
        return p

    def _wait_ready(self) -> None:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        api = self.procs["apiserver"]

        def ready() -> bool:
            if not api.running:
                raise RuntimeError(f"apiserver exited: {api.tail()}")
            try:
                return httpx.get(self.url + "/readyz", verify=ctx, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False
        wait_for(ready, 30, 0.05, "apiserver ready")

    def stop(self) -> None:
        for node in self.kubelets:
            node.proc.stop()
        for name in ("scheduler", "controller-manager", "apiserver"):
            if name in self.procs:
                self.procs[name].stop()
        for node in self.kubelets:
            remove_node_leftovers(node)
        if self.etcd:
            self.etcd.stop()
        keep = os.environ.get("MINIK8S_KEEP_LOGS")  # a directory to keep the component logs in, for debugging
        if keep:
            target = Path(keep) / f"{self.dir.name}-{int(time.time())}"
            target.mkdir(parents=True, exist_ok=True)
            for log in self.dir.rglob("*.log"):
                shutil.copy(log, target / log.name)
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers for tests ----------------------------------------------------------------------------

    def kubeconfig(self, identity: str = "admin") -> str:
        path = self.dir / f"{identity.replace(':', '-')}.kubeconfig"
        if not path.exists():
            write_kubeconfig(path, server=self.url, ca_pem=self.ca.read_bytes(), token=self.tokens[identity],
                             user=identity)
        return str(path)

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=ssl.create_default_context(cafile=str(self.ca)),
                            headers={"Authorization": f"Bearer {self.tokens['admin']}"}, timeout=30)

    @staticmethod
    def node_ready(http: httpx.Client, name: str) -> bool:
        r = http.get(f"/api/v1/nodes/{name}")
        if r.status_code != 200:
            return False
        conds = {c["type"]: c["status"] for c in (r.json().get("status") or {}).get("conditions") or []}
        return conds.get("Ready") == "True" and bool((r.json().get("spec") or {}).get("podCIDR"))

    def new_namespace(self, http: httpx.Client, prefix: str = "e2e") -> str:
        name = f"{prefix}-{os.urandom(3).hex()}"
        assert http.post("/api/v1/namespaces", json={"metadata": {"name": name}}).status_code == 201
        return name


def remove_node_leftovers(node: Node) -> None:
    """Containers, network and mounts a stopped kubelet leaves behind (kubelets leave pods running)."""
    import docker

    from kubelet import labels
    from kubelet.network import PodNetwork

    client = docker.from_env()
    for c in client.api.containers(all=True, filters=labels.selector(node.name)):
        client.api.remove_container(c["Id"], force=True)
    client.close()
    try:
        PodNetwork(bridge=node.bridge, state_dir=node.root / "network", service_sink=node.sink).teardown()
    except Exception as e:  # cleanup must not hide the test's own result
        print(f"network teardown of {node.name} failed: {e}")
    for mount in reversed(Path("/proc/mounts").read_text().splitlines()):
        target = mount.split()[1]
        if target.startswith(str(node.root)):
            subprocess.run(["umount", "-l", target], capture_output=True)
