"""`minik8s up`: a whole single-node cluster as child processes of one command.

It makes the cluster's certificates and per-component tokens on first start (kept in the data
directory, so a second `up` on the same directory keeps every object and credential), starts etcd,
then the apiserver and every other component (controller-manager, scheduler, a kubelet, a kube-proxy
and cluster DNS for this machine), waits for the API to be ready, writes
`admin.kubeconfig`, and supervises: a child that dies is restarted; Ctrl-C or SIGTERM stops all of them
in reverse order.
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from cli.bootstrap import ensure_credentials
from cli.etcd import EtcdProcess


def default_data_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/minik8s")
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local/share")) / "minik8s"


class Child:
    def __init__(self, name: str, cmd: list[str], log: Path):
        self.name, self.cmd, self.log = name, cmd, log
        self.proc: subprocess.Popen | None = None
        self.restarts = 0

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self, timeout: float = 10) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class ClusterDNS:
    """Cluster DNS for `up`, started once pods can reach it.

    Pods reach the host at their bridge's gateway (the first address of the node's podCIDR), so DNS
    listens there and the selector-less `kube-system/kube-dns` Service (10.96.0.10) gets that address as
    its endpoint (clusterdns/manifest.py). Both exist only after the controller-manager gave the node a
    podCIDR and the kubelet put the address on the bridge; `poll()` checks at most once a second and
    returns the DNS child when it has started it."""

    def __init__(self, cmd: list[str], admin_kubeconfig: Path, node_name: str, port: int, log: Path) -> None:
        self.cmd, self.admin_kubeconfig, self.node_name, self.port, self.log = cmd, admin_kubeconfig, node_name, port, log
        self.started = False
        self._next_check = 0.0

    def poll(self) -> Child | None:
        if self.started or time.monotonic() < self._next_check:
            return None
        self._next_check = time.monotonic() + 1.0
        from api.errors import APIError
        from client.kubeconfig import Config
        from client.rest import TRANSPORT_ERRORS, Client
        from clusterdns.manifest import ensure_kube_dns_service

        try:
            with Client(Config.from_kubeconfig(self.admin_kubeconfig)) as client:
                node = client.get_or_none("nodes", self.node_name)
                cidr = ((node or {}).get("spec") or {}).get("podCIDR")
                if not cidr:
                    return None
                gateway = str(next(ipaddress.ip_network(cidr, strict=False).hosts()))
                if not _local_address(gateway):
                    return None
                ensure_kube_dns_service(client, [gateway], port=self.port)
        except (APIError, *TRANSPORT_ERRORS) as e:
            print(f"cluster DNS not started yet: {e}", flush=True)
            return None
        child = Child("dns", self.cmd + ["--bind", gateway, "--port", str(self.port), "--health-port", "0"], self.log)
        child.start()
        self.started = True
        return child


def _local_address(ip: str) -> bool:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return bool(ipr.get_addr(address=ip))


def wait_ready(url: str, ca: Path, timeout: float = 30) -> None:
    ctx = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/readyz", context=ctx, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError as e:
            last = e
        time.sleep(0.1)
    raise RuntimeError(f"apiserver not ready after {timeout}s: {last}")


HELP = "run a single-node cluster with a local etcd"


def add_arguments(u: argparse.ArgumentParser) -> None:
    u.add_argument("--data-dir", default=None, help="where etcd data, certificates and kubeconfigs live")
    u.add_argument("--etcd-port", type=int, default=2379)
    u.add_argument("--etcd-peer-port", type=int, default=2380)
    u.add_argument("--secure-port", type=int, default=6443)
    u.add_argument("--bind-address", default="127.0.0.1")
    u.add_argument("--controller-manager-health-port", type=int, default=10257)
    u.add_argument("--scheduler-health-port", type=int, default=10259)
    u.add_argument("--kubelet-port", type=int, default=10250)
    u.add_argument("--node-name", default=None, help="default: this machine's hostname")
    u.add_argument("--node-ip", default="127.0.0.1",
                   help="the node's InternalIP (loopback by default: nothing leaves this machine)")
    u.add_argument("--cluster-cidr", default="10.244.0.0/16")
    u.add_argument("--bridge", default="mk0", help="the node bridge pods attach to")
    u.add_argument("--service-cluster-ip-range", default="10.96.0.0/12")
    u.add_argument("--proxy-mode", choices=("iptables", "nftables", "none"), default="iptables",
                   help="how kube-proxy programs Services on this machine (none: no kube-proxy)")
    u.add_argument("--proxy-health-port", type=int, default=10256)
    u.add_argument("--cluster-dns", action=argparse.BooleanOptionalAction, default=True,
                   help="run cluster DNS (kube-dns at 10.96.0.10) on the node bridge's gateway address")
    u.add_argument("--dns-port", type=int, default=53)


def run(args: argparse.Namespace) -> int:
    data = Path(args.data_dir) if args.data_dir else default_data_dir()
    data.mkdir(parents=True, exist_ok=True)
    logs = data / "logs"
    logs.mkdir(exist_ok=True)
    host = args.bind_address if args.bind_address not in ("0.0.0.0", "::") else "127.0.0.1"
    node_name = args.node_name or socket.gethostname().lower()
    server = f"https://{host}:{args.secure_port}"
    creds = ensure_credentials(data, server, apiserver_hosts=[host],
                               kubelet_hosts=[args.node_ip, node_name], nodes=[node_name])

    etcd = EtcdProcess(data / "etcd", args.etcd_port, args.etcd_peer_port, log_path=logs / "etcd.log")
    etcd.start()
    py = sys.executable
    minik8s = [py, "-m", "cli.main"]
    cfg = lambda identity: str(creds.kubeconfig(identity))  # noqa: E731
    api_cert, api_key = creds.cert("apiserver")
    kubelet_cert, kubelet_key = creds.cert("kubelet")
    children = [
        Child("apiserver", minik8s + [
            "apiserver", "--etcd-servers", etcd.url, "--secure-port", str(args.secure_port),
            "--bind-address", args.bind_address, "--advertise-address", host,
            "--tls-cert-file", str(api_cert), "--tls-private-key-file", str(api_key),
            "--token-auth-file", str(creds.token_file), "--kubelet-certificate-authority", str(creds.ca),
            "--service-account-signing-key-file", str(creds.service_account_key),
            "--enable-admission-plugins", "ServiceAccount",
            "--service-cluster-ip-range", args.service_cluster_ip_range],
            logs / "apiserver.log"),
        Child("controller-manager", minik8s + [
            "controller-manager", "--kubeconfig", cfg("kube-controller-manager"),
            "--health-port", str(args.controller_manager_health_port), "--cluster-cidr", args.cluster_cidr,
            "--root-ca-file", str(creds.ca)],
            logs / "controller-manager.log"),
        Child("scheduler", minik8s + [
            "scheduler", "--kubeconfig", cfg("kube-scheduler"), "--health-port", str(args.scheduler_health_port)],
            logs / "scheduler.log"),
        Child("kubelet", minik8s + [
            "kubelet", "--kubeconfig", str(creds.node_kubeconfig(node_name)), "--node-name", node_name, "--node-ip", args.node_ip,
            "--root-dir", str(data / "kubelet"), "--address", args.node_ip, "--port", str(args.kubelet_port),
            "--tls-cert-file", str(kubelet_cert), "--tls-private-key-file", str(kubelet_key),
            "--authentication-token-webhook", "--cluster-cidr", args.cluster_cidr,
            "--service-cluster-ip-range", args.service_cluster_ip_range, "--bridge", args.bridge],
            logs / "kubelet.log"),
    ]
    proxy_cmd = minik8s + ["proxy", "--kubeconfig", cfg("kube-proxy"), "--hostname-override", node_name,
                           "--proxy-mode", args.proxy_mode, "--cluster-cidr", args.cluster_cidr,
                           "--service-cluster-ip-range", args.service_cluster_ip_range]
    if args.proxy_mode != "none":
        children.append(Child("proxy", proxy_cmd + ["--healthz-port", str(args.proxy_health_port),
                                                    "--healthz-bind-address", "127.0.0.1"], logs / "proxy.log"))
    dns = ClusterDNS(minik8s + ["dns", "--kubeconfig", cfg("minik8s-dns")], creds.admin_kubeconfig, node_name,
                     args.dns_port, logs / "dns.log") if args.cluster_dns and args.proxy_mode != "none" else None
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        children[0].start()
        wait_ready(server, creds.ca)
        for c in children[1:]:
            c.start()
        admin = creds.admin_kubeconfig
        token_cmd = f"$(awk '/token:/{{print $2}}' {admin})"
        print(f"minik8s ready: API {server}, kubeconfig {admin}, logs {logs}; try: curl --cacert {creds.ca} "
              f"-H \"Authorization: Bearer {token_cmd}\" {server}/api/v1/namespaces", flush=True)
        while not stopping:
            time.sleep(0.2)
            started = dns.poll() if dns is not None else None
            if started is not None:
                children.append(started)
            for c in children:
                if c.proc and c.proc.poll() is not None and not stopping:
                    c.restarts += 1
                    print(f"{c.name} exited with {c.proc.returncode}; restarting (see {c.log})", flush=True)
                    time.sleep(min(5, 0.5 * c.restarts))
                    c.start()
            if etcd.proc and etcd.proc.poll() is not None and not stopping:
                print("etcd exited; restarting", flush=True)
                etcd.start()
    finally:
        for c in reversed(children):
            c.stop()
        if args.proxy_mode != "none":
            # Service rules outlive kube-proxy by design (traffic keeps flowing across its restarts);
            # when the whole cluster stops, they go.
            subprocess.run(proxy_cmd + ["--cleanup"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=60, check=False)
        etcd.stop()
        print("minik8s stopped", flush=True)
    return 0
