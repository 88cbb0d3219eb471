"""A multi-node cluster on one machine: nodes are network namespaces, each with its own dockerd.

Topology (all names carry the lab name, e.g. `t1a2`, so several labs and other tests can coexist):

    root ns  ── mk-<lab> 10.77.K.1 ─┐            (the host: admin.kubeconfig, NodePorts, node IPs)
    mk-<lab>-cp    eth0 10.77.K.2 ──┤ br0 in      etcd (127.0.0.1), apiserver :6443, controller-manager,
                                    │ mk-<lab>-sw scheduler
    mk-<lab>-node1 eth0 10.77.K.11 ─┤            dockerd, kubelet, kube-proxy, cluster DNS (:53), route agent
    mk-<lab>-node2 eth0 10.77.K.12 ─┘            ...
                   10.77.K.240/28                LoadBalancer pool (`--lb-pool`): the host routes it to the nodes

Network safety (DESIGN §6) is the first concern, so the order of `up()` is fixed:

1. the host gets `unreachable` routes for the cluster and service ranges (with a high metric: anything
   more specific another test set up still wins) before it joins the lab, so a host tool aiming at a pod
   or service IP fails locally instead of following the default route; the host's FORWARD chain drops
   whatever would cross its lab link, so the host never routes for the lab;
2. no lab namespace has a default route: nodes know the lab subnet, their own pod network (the kubelet's
   bridge and local sinks for the cluster and service ranges) and the other nodes' podCIDRs (the pod
   network backend, `kubelet/routes.py`); the control-plane namespace gets `podCIDR via node` routes once
   the nodes have podCIDRs, so pods can reach the apiserver;
3. `net.ipv4.ip_forward=1` in each node before its dockerd starts (else Docker sets FORWARD to DROP);
   dockerd runs with `--bridge=none --iptables=false`: the kubelet owns the pod network.

Processes start through `nsenter --net=/run/netns/<ns>` (not `ip netns exec`, which remounts /sys and hides
the cgroup mounts from dockerd) in their own sessions, so `lab up` can return while the lab keeps running.
Every namespace, host link, route, iptables rule, process (pid + start time, so a reused pid is never
signalled), dockerd and cgroup parent is recorded in `<dir>/lab.json` as soon as it exists; `down()` — from
this process or a fresh one (`Lab.attach(dir)`) — undoes exactly that, in LAB.md's order: components,
containers, dockerds, leftovers in the lab's namespaces, mounts under the lab dir, namespaces, host routes
and rules, cgroup folders. A failed `up()` is torn down the same way.

Each kubelet runs the pod network backend (`--network-backend host-gw|vxlan`); kube-proxy
(`minik8s proxy`) starts in every node with the flags its parser knows, with `--lb-pool` set to the top /28
of the lab subnet (nothing else there: host .1, control plane .2, nodes from .11), which the host routes to
the nodes (ECMP), so LoadBalancer IPs answer from the host like node IPs do. Cluster DNS (`minik8s dns`,
identity system:minik8s-dns, never an upstream: nothing is forwarded outside the lab) listens on every
node IP, port 53; once the apiserver is ready the lab writes `kube-system/kube-dns` (10.96.0.10) with the
node IPs as its Endpoints (`clusterdns.manifest.ensure_kube_dns_service`), so pods' resolv.conf works.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib
import importlib.util
import ipaddress
import json
import logging
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from cli.bootstrap import Credentials, ensure_credentials

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
STATE_FILE = "lab.json"
DEFAULT_IMAGES = ("minik8s/pause:3.9", "minik8s/busybox:1.36", "minik8s/myapp:v1", "minik8s/myapp:v2")
PROXY_MODES = ("iptables", "nftables", "ipvs")
NETWORK_BACKENDS = ("host-gw", "vxlan")
LAB_SUBNETS = "10.77.0.0/16"         # each lab takes the first /24 of it no host route touches
HOST_ROUTE_METRIC = 4097             # + the lab's /24 index: above the kubelet sinks' 4096, one per lab
LINK_MTU = 1550                      # room for vxlan's 50 bytes under a 1500-byte pod MTU
APISERVER_PORT = 6443
ETCD_PORT = 2379
KUBELET_PORT = 10250
CLONE_NEWNET = 0x40000000
NAME_RE = re.compile(r"^[a-z0-9]{1,8}$")
LB_POOL_PREFIX = 28                  # the top /28 of the lab's /24 is the LoadBalancer pool
MAX_NODES = 200                      # node IPs .11-.210 stay below the pool
DNS_PORT = 53
CLUSTER_DOMAIN = "cluster.local"


@dataclass
class LabNode:
    name: str          # the Node object's name
    netns: str
    ip: str
    dir: str

    @property
    def socket(self) -> str:
        return f"{self.dir}/docker.sock"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"


@dataclass
class ProcRecord:
    role: str
    pid: int
    start: int         # /proc/<pid>/stat start time: tells our process from a later one with its pid
    netns: str | None = None


@dataclass
class State:
    name: str
    dir: str
    subnet: str
    cluster_cidr: str
    service_cidr: str
    network_backend: str
    proxy_mode: str | None
    nodes: list[LabNode] = field(default_factory=list)
    netns: list[str] = field(default_factory=list)
    host_links: list[str] = field(default_factory=list)
    host_routes: list[dict] = field(default_factory=list)
    host_rules: list[list[str]] = field(default_factory=list)     # iptables -t filter args after -I/-D
    cgroups: list[str] = field(default_factory=list)
    procs: list[ProcRecord] = field(default_factory=list)
    cp_routes_done: bool = False
    lb_pool: str | None = None
    up: bool = False

    @classmethod
    def load(cls, path: Path) -> "State":
        raw = json.loads(path.read_text())
        raw["nodes"] = [LabNode(**n) for n in raw.get("nodes", [])]
        raw["procs"] = [ProcRecord(**p) for p in raw.get("procs", [])]
        return cls(**raw)


class Lab:
    """`Lab(dir, nodes=2).up()`; then `.kubeconfig`, `.node_ips`, `.exec(node, cmd)`, `.docker(node, ...)`."""

    def __init__(self, dir: str | Path, *, nodes: int = 2, name: str | None = None,
                 proxy_mode: str | None = None, network_backend: str = "host-gw", subnet: str | None = None,
                 cluster_cidr: str = "10.244.0.0/16", service_cidr: str = "10.96.0.0/12",
                 images: tuple[str, ...] | list[str] = DEFAULT_IMAGES, kubelet_flags: list[str] | None = None,
                 proxy_flags: list[str] | None = None) -> None:
        self.dir = Path(dir).resolve()
        self.node_count = nodes
        self.name = name or os.urandom(2).hex()
        if not NAME_RE.match(self.name):
            raise ValueError(f"lab name {self.name!r}: 1-8 characters of [a-z0-9] (it goes into link names)")
        if proxy_mode is not None and proxy_mode not in PROXY_MODES:
            raise ValueError(f"proxy mode {proxy_mode!r}: one of {', '.join(PROXY_MODES)}")
        if not 1 <= nodes <= MAX_NODES:
            raise ValueError(f"nodes: 1-{MAX_NODES} (node addresses stay below the LoadBalancer pool)")
        if network_backend not in NETWORK_BACKENDS:
            raise ValueError(f"network backend {network_backend!r}: one of {', '.join(NETWORK_BACKENDS)}")
        self.proxy_mode = proxy_mode
        self.network_backend = network_backend
        self.requested_subnet = subnet
        self.cluster_cidr = cluster_cidr
        self.service_cidr = service_cidr
        self.images = tuple(images)
        self.kubelet_flags = list(kubelet_flags if kubelet_flags is not None else
                                  ["--node-status-update-frequency", "2", "--relist-period", "2",
                                   "--crash-loop-backoff-base", "0.5"])
        self.proxy_flags = list(proxy_flags or [])
        self.state: State | None = None
        self._children: dict[int, subprocess.Popen] = {}
        self.timings: dict[str, float] = {}

    # ---- public API ---------------------------------------------------------------------------------

    @classmethod
    def attach(cls, dir: str | Path) -> "Lab":
        """The lab recorded in `dir` (made by another process): for `down()`, `load()`, `exec()`."""
        path = Path(dir).resolve() / STATE_FILE
        if not path.exists():
            raise FileNotFoundError(f"no lab in {dir} ({STATE_FILE} is missing)")
        st = State.load(path)
        lab = cls(st.dir, nodes=len(st.nodes), name=st.name, proxy_mode=st.proxy_mode,
                  network_backend=st.network_backend, subnet=st.subnet, cluster_cidr=st.cluster_cidr,
                  service_cidr=st.service_cidr)
        lab.state = st
        return lab

    @property
    def nodes(self) -> list[LabNode]:
        return self._st.nodes

    @property
    def node_ips(self) -> dict[str, str]:
        return {n.name: n.ip for n in self._st.nodes}

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "admin.kubeconfig"

    @property
    def ca(self) -> Path:
        return self.dir / "pki" / "ca.crt"

    @property
    def api_server(self) -> str:
        return f"https://{self._cp_ip}:{APISERVER_PORT}"

    @property
    def lb_pool(self) -> str | None:
        """The LoadBalancer pool (kube-proxy `--lb-pool`), routed from the host to the nodes."""
        return self._st.lb_pool

    @property
    def host_ip(self) -> str:
        return str(self._subnet.network_address + 1)

    def node(self, name_or_index: str | int) -> LabNode:
        if isinstance(name_or_index, int):
            return self._st.nodes[name_or_index]
        for n in self._st.nodes:
            if name_or_index in (n.name, n.netns, n.ip):
                return n
        raise KeyError(f"no node {name_or_index!r} in lab {self.name}")

    def exec(self, node: str | int | LabNode, cmd: list[str] | str, *, check: bool = False,
             timeout: float | None = 60, **kwargs: Any) -> subprocess.CompletedProcess:
        """Run `cmd` in the node's network namespace (host filesystem and tools)."""
        n = node if isinstance(node, LabNode) else self.node(node)
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        return subprocess.run(["nsenter", f"--net=/run/netns/{n.netns}", "--", *argv], capture_output=True,
                              text=True, check=check, timeout=timeout, **kwargs)

    def docker(self, node: str | int | LabNode, *args: str, check: bool = False, timeout: float | None = 60,
               **kwargs: Any) -> subprocess.CompletedProcess:
        """The docker CLI against the node's dockerd."""
        n = node if isinstance(node, LabNode) else self.node(node)
        return subprocess.run(["docker", "-H", n.docker_host, *args], capture_output=True, text=True,
                              check=check, timeout=timeout, **kwargs)

    def pod_exec(self, pod: dict, container: str, cmd: list[str], *,
                 timeout: float = 60) -> subprocess.CompletedProcess:
        """`docker exec` into a running pod's container on whichever node it is bound to."""
        meta = pod["metadata"]
        node = self.node(pod["spec"]["nodeName"])
        found = self.docker(node, "ps", "-q", "--filter", f"label=io.kubernetes.pod.uid={meta['uid']}",
                            "--filter", f"label=io.kubernetes.container.name={container}", check=True).stdout.split()
        if not found:
            raise LookupError(f"pod {meta.get('namespace')}/{meta['name']}: no running container {container!r} "
                              f"on {node.name}")
        return self.docker(node, "exec", found[0], *cmd, timeout=timeout)

    def http(self) -> "Any":
        import httpx
        return httpx.Client(base_url=self.api_server, verify=ssl.create_default_context(cafile=str(self.ca)),
                            headers={"Authorization": f"Bearer {self._tokens()['admin']}"}, timeout=30)

    def load(self, images: list[str] | tuple[str, ...]) -> list[str]:
        """Copy images from the host's dockerd into every node's (like `kind load docker-image`)."""
        present = [i for i in images if subprocess.run(["docker", "image", "inspect", i],
                                                       capture_output=True).returncode == 0]
        missing = sorted(set(images) - set(present))
        if missing:
            logger.warning("not in the host's dockerd (run `make images`?): %s", ", ".join(missing))
        if not present:
            return []
        tar = self.dir / "images.tar"
        subprocess.run(["docker", "save", "-o", str(tar), *present], check=True, capture_output=True)
        try:
            def load_into(node: LabNode) -> None:
                done = subprocess.run(["docker", "-H", node.docker_host, "load", "-q", "-i", str(tar)],
                                      capture_output=True, text=True)
                if done.returncode != 0:
                    raise RuntimeError(f"loading images into {node.name}: {done.stderr.strip()}")
            _parallel(load_into, self._st.nodes)
        finally:
            tar.unlink(missing_ok=True)
        logger.info("lab %s: loaded %s into %d nodes", self.name, ", ".join(present), len(self._st.nodes))
        return present

    # ---- up -----------------------------------------------------------------------------------------

    def up(self, timeout: float = 90) -> "Lab":
        if os.geteuid() != 0:
            raise PermissionError("the lab needs root (network namespaces, dockerd, iptables)")
        if (self.dir / STATE_FILE).exists():
            raise FileExistsError(f"a lab is recorded in {self.dir}; `minik8s lab down --data-dir {self.dir}` first")
        started = time.monotonic()
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "logs").mkdir(exist_ok=True)
        subnet = ipaddress.IPv4Network(self.requested_subnet) if self.requested_subnet else _free_subnet()
        self.state = State(name=self.name, dir=str(self.dir), subnet=str(subnet), cluster_cidr=self.cluster_cidr,
                           service_cidr=self.service_cidr, network_backend=self.network_backend,
                           proxy_mode=self.proxy_mode,
                           lb_pool=str(list(subnet.subnets(new_prefix=LB_POOL_PREFIX))[-1]))
        for i in range(1, self.node_count + 1):
            self.state.nodes.append(LabNode(f"node{i}", f"mk-{self.name}-node{i}", str(subnet.network_address + 10 + i),
                                            str(self.dir / f"node{i}")))
        pool = ipaddress.IPv4Network(self.state.lb_pool)
        if any(ipaddress.IPv4Address(n.ip) in pool or ipaddress.IPv4Address(n.ip) not in subnet
               for n in self.state.nodes):
            raise ValueError(f"subnet {subnet}: too small for {self.node_count} nodes below the LB pool {pool}")
        self._save()
        try:
            self._step("network", self._network)
            self._step("dockerd", self._start_dockerds)
            self._step("images", lambda: self.load(self.images))
            self._step("control plane", self._start_control_plane)
            self._step("cluster dns service", self._ensure_dns_service)
            self._step("nodes", self._start_nodes)
            self._step("nodes ready", lambda: self._wait_nodes_ready(timeout))
            self._step("control-plane routes", self._route_control_plane)
        except BaseException:
            logger.error("lab %s: up failed; tearing down (logs in %s)", self.name, self.dir / "logs")
            self.down(keep_logs=True)
            raise
        self.state.up = True
        self._save()
        self.timings["up"] = time.monotonic() - started
        logger.info("lab %s up in %.1fs: API %s, kubeconfig %s, nodes %s", self.name, self.timings["up"],
                    self.api_server, self.kubeconfig, ", ".join(f"{n.name}={n.ip}" for n in self.nodes))
        return self

    def _step(self, what: str, fn: Callable[[], Any]) -> None:
        t = time.monotonic()
        fn()
        self.timings[what] = time.monotonic() - t
        logger.debug("lab %s: %s in %.2fs", self.name, what, self.timings[what])

    def _network(self) -> None:
        st = self._st
        subnet = self._subnet
        prefix = subnet.prefixlen
        # 1. the host must never send the lab's cluster or service traffic out of its default route; each
        # lab's metric is its own, so labs running at once never share (and never delete) a route
        metric = HOST_ROUTE_METRIC + int(subnet.network_address) % 65536 // 256
        for cidr in (st.cluster_cidr, st.service_cidr):
            _sh("ip", "route", "add", "unreachable", cidr, "metric", str(metric))
            st.host_routes.append({"type": "unreachable", "dst": cidr, "metric": metric})
            self._save()
        host_link = f"mk-{st.name}"
        for direction in ("-i", "-o"):
            rule = ["FORWARD", direction, host_link, "-m", "comment", "--comment", f"minik8s lab {st.name}",
                    "-j", "DROP"]
            _sh("iptables", "-w", "-I", *rule)
            st.host_rules.append(rule)
            self._save()
        # 2. namespaces: the switch, the control plane, the nodes
        switch, cp = f"mk-{st.name}-sw", f"mk-{st.name}-cp"
        for ns in (switch, cp, *(n.netns for n in st.nodes)):
            _sh("ip", "netns", "add", ns)
            st.netns.append(ns)
            self._save()
        _ip_batch(switch, ["link add br0 type bridge", f"link set br0 mtu {LINK_MTU} up", "link set lo up"])
        _sh("ip", "link", "add", host_link, "mtu", str(LINK_MTU), "type", "veth", "peer", "name", "vh",
            "mtu", str(LINK_MTU), "netns", switch)
        st.host_links.append(host_link)
        self._save()
        _ip_batch(switch, ["link set vh master br0 up"])
        _sh("ip", "addr", "add", f"{self.host_ip}/{prefix}", "dev", host_link)
        _sh("ip", "link", "set", host_link, "up")
        members = [("vcp", cp, self._cp_ip)] + [(f"vn{i}", n.netns, n.ip) for i, n in enumerate(st.nodes, 1)]
        for port, ns, ip in members:
            _sh("ip", "link", "add", "eth0", "mtu", str(LINK_MTU), "netns", ns, "type", "veth", "peer", "name", port,
                "mtu", str(LINK_MTU), "netns", switch)
            _ip_batch(switch, [f"link set {port} master br0 up"])
            _ip_batch(ns, ["link set lo up", f"addr add {ip}/{prefix} dev eth0", "link set eth0 up"])
        # the LoadBalancer pool: the host reaches it through the nodes (whose proxies DNAT it)
        if st.lb_pool:
            nexthops = [x for n in st.nodes for x in ("nexthop", "via", n.ip)] if len(st.nodes) > 1 \
                else ["via", st.nodes[0].ip]
            _sh("ip", "route", "add", st.lb_pool, "metric", str(metric), *nexthops)
            st.host_routes.append({"type": "unicast", "dst": st.lb_pool, "metric": metric})
            self._save()
        # the control plane: unmatched cluster and service addresses fail there too
        _ip_batch(cp, [f"route add unreachable {st.cluster_cidr}", f"route add unreachable {st.service_cidr}"])
        # 3. forwarding on before any dockerd looks at it
        for n in st.nodes:
            self.exec(n, ["sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True)

    def _start_dockerds(self) -> None:
        st = self._st
        for n in st.nodes:
            st.cgroups.append(f"/mk-{st.name}-{n.name}")
            self._spawn_dockerd(n)
        _parallel(self._wait_dockerd, st.nodes)

    def _spawn_dockerd(self, n: LabNode) -> None:
        st, d = self._st, Path(n.dir)
        for sub in ("docker", "exec"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        self._spawn(f"dockerd/{n.name}", n.netns, [
            "dockerd", "--data-root", str(d / "docker"), "--exec-root", str(d / "exec"),
            "--pidfile", str(d / "docker.pid"), "-H", n.docker_host, "--bridge=none", "--iptables=false",
            "--ip6tables=false", "--ip-masq=false", "--userland-proxy=false", "--cgroup-parent",
            f"/mk-{st.name}-{n.name}", "--exec-opt", "native.cgroupdriver=cgroupfs",
            "--containerd-namespace", f"mk-{st.name}-{n.name}",
            "--containerd-plugins-namespace", f"mk-{st.name}-{n.name}-plugins", "--log-level", "warn"])

    def _wait_dockerd(self, n: LabNode) -> None:
        _wait(lambda: subprocess.run(["docker", "-H", n.docker_host, "version", "-f", "{{.Server.Version}}"],
                                     capture_output=True).returncode == 0, 30, f"dockerd of {n.name}",
              self._log_tail(f"dockerd-{n.name}"))

    def restart_dockerd(self, node: str | int | LabNode) -> None:
        """Stop a node's dockerd (its containers die with it: no live-restore) and start it again, as a
        crashed or upgraded container runtime would; the kubelet must bring its pods back."""
        n = node if isinstance(node, LabNode) else self.node(node)
        role = f"dockerd/{n.name}"
        self._stop_procs([p for p in self._st.procs if p.role == role], grace=20)
        self._st.procs = [p for p in self._st.procs if p.role != role]
        self._save()
        self._spawn_dockerd(n)
        self._wait_dockerd(n)

    def _start_control_plane(self) -> None:
        st = self._st
        creds = ensure_credentials(self.dir, self.api_server, apiserver_hosts=[self._cp_ip],
                                   kubelet_hosts=[n.ip for n in st.nodes], nodes=[n.name for n in st.nodes])
        cp = f"mk-{st.name}-cp"
        etcd_url = f"http://127.0.0.1:{ETCD_PORT}"
        peer = f"http://127.0.0.1:{ETCD_PORT + 1}"
        self._spawn("etcd", cp, [shutil.which("etcd") or "/usr/bin/etcd", "--name", "lab",
                                 "--data-dir", str(self.dir / "etcd"), "--listen-client-urls", etcd_url,
                                 "--advertise-client-urls", etcd_url, "--listen-peer-urls", peer,
                                 "--initial-advertise-peer-urls", peer, "--initial-cluster", f"lab={peer}",
                                 "--log-level", "warn"])
        _wait(lambda: in_netns(f"/run/netns/{cp}", lambda: _http_ok(etcd_url + "/health")), 30, "etcd",
              self._log_tail("etcd"))
        py = [sys.executable, "-m", "cli.main"]
        cert, key = creds.cert("apiserver")
        self._spawn("apiserver", cp, py + [
            "apiserver", "--etcd-servers", etcd_url, "--secure-port", str(APISERVER_PORT), "--bind-address",
            self._cp_ip, "--advertise-address", self._cp_ip, "--tls-cert-file", str(cert),
            "--tls-private-key-file", str(key), "--token-auth-file", str(creds.token_file),
            "--kubelet-certificate-authority", str(creds.ca), "--service-cluster-ip-range", st.service_cidr,
            "--service-account-signing-key-file", str(creds.service_account_key),
            "--enable-admission-plugins", "ServiceAccount"])
        ctx = ssl.create_default_context(cafile=str(creds.ca))
        _wait(lambda: self._alive("apiserver") and _http_ok(self.api_server + "/readyz", ctx), 60, "apiserver ready",
              self._log_tail("apiserver"))
        election = ["--leader-elect-lease-duration", "4", "--leader-elect-renew-deadline", "3",
                    "--leader-elect-retry-period", "0.5"]
        self._spawn("controller-manager", cp, py + [
            "controller-manager", "--kubeconfig", str(creds.kubeconfig("kube-controller-manager")),
            "--root-ca-file", str(creds.ca),
            "--cluster-cidr", st.cluster_cidr, *election])
        self._spawn("scheduler", cp, py + ["scheduler", "--kubeconfig", str(creds.kubeconfig("kube-scheduler")),
                                           *election])

    def _start_nodes(self) -> None:
        st = self._st
        py = [sys.executable, "-m", "cli.main"]
        creds = Credentials(self.dir)
        proxy_flags = _flags_of("kubeproxy.cmd") if importlib.util.find_spec("kubeproxy.cmd") else None
        if proxy_flags is None:
            logger.info("lab %s: kubeproxy/cmd.py does not exist yet: no kube-proxy on the nodes", st.name)
        dns = importlib.util.find_spec("clusterdns.cmd") is not None
        for n in st.nodes:
            cmd = py + ["kubelet", "--kubeconfig", str(creds.node_kubeconfig(n.name)), "--node-name", n.name,
                        "--node-ip", n.ip, "--docker-host", n.docker_host, "--root-dir", str(Path(n.dir) / "kubelet"),
                        "--address", n.ip, "--port", str(KUBELET_PORT),
                        "--tls-cert-file", str(creds.cert("kubelet")[0]),
                        "--tls-private-key-file", str(creds.cert("kubelet")[1]),
                        "--authentication-token-webhook",
                        "--cluster-cidr", st.cluster_cidr, "--service-cluster-ip-range", st.service_cidr,
                        "--bridge", "mk0", "--service-sink", "kube-svc0", "--network-backend", st.network_backend,
                        *self.kubelet_flags]
            self._spawn(f"kubelet/{n.name}", n.netns, cmd)
            if proxy_flags is not None:
                self._spawn(f"proxy/{n.name}", n.netns, py + ["proxy", *self._proxy_args(proxy_flags, n)])
            if dns:
                # no --upstream, ever: names outside the cluster domain are REFUSED, nothing leaves the lab
                self._spawn(f"dns/{n.name}", n.netns, py + [
                    "dns", "--kubeconfig", str(creds.kubeconfig("minik8s-dns")), "--bind", n.ip,
                    "--port", str(DNS_PORT), "--cluster-domain", CLUSTER_DOMAIN, "--health-port", "0"])

    def _proxy_args(self, known: set[str], n: LabNode) -> list[str]:
        st = self._st
        wanted = [("--kubeconfig", str(Credentials(self.dir).kubeconfig("kube-proxy"))),
                  ("--hostname-override", n.name), ("--node-name", n.name), ("--node-ip", n.ip),
                  ("--proxy-mode", st.proxy_mode or "iptables"), ("--cluster-cidr", st.cluster_cidr),
                  ("--service-cluster-ip-range", st.service_cidr)]
        if st.lb_pool:
            wanted.append(("--lb-pool", st.lb_pool))
        args = [x for flag, value in wanted if flag in known for x in (flag, value)]
        return args + self.proxy_flags

    def _ensure_dns_service(self) -> None:
        """`kube-system/kube-dns` (10.96.0.10) with every node's DNS server as an endpoint."""
        if importlib.util.find_spec("clusterdns.manifest") is None:
            return
        from client.kubeconfig import Config
        from client.rest import Client
        from clusterdns.manifest import ensure_kube_dns_service

        with Client(Config.from_kubeconfig(self.kubeconfig)) as client:
            ensure_kube_dns_service(client, [n.ip for n in self._st.nodes], port=DNS_PORT)

    def _wait_nodes_ready(self, timeout: float) -> None:
        with self.http() as http:
            def ready() -> bool:
                for role in self._roles():
                    if not self._alive(role):
                        raise RuntimeError(f"{role} exited: {self._log_tail(role.replace('/', '-'))()}")
                items = http.get("/api/v1/nodes").json().get("items") or []
                ok = {i["metadata"]["name"] for i in items if _node_ready(i)}
                return ok >= {n.name for n in self._st.nodes}
            _wait(ready, timeout, "every node Ready with a podCIDR")

    def _route_control_plane(self) -> None:
        """Pods reach the apiserver by its lab IP: the control plane answers them via their node."""
        cp = f"mk-{self._st.name}-cp"
        with self.http() as http:
            items = http.get("/api/v1/nodes").json()["items"]
        ips = self.node_ips
        cmds = [f"route replace {i['spec']['podCIDR']} via {ips[i['metadata']['name']]}" for i in items
                if i["metadata"]["name"] in ips and i["spec"].get("podCIDR")]
        _ip_batch(cp, cmds)
        self._st.cp_routes_done = True

    # ---- down ---------------------------------------------------------------------------------------

    def down(self, *, keep_logs: bool = True) -> None:
        """Remove everything `up()` made (idempotent; works on a half-made lab)."""
        started = time.monotonic()
        st = self._st
        # 1. components first (so nothing restarts pods), then the containers, then the dockerds, etcd last
        components = [p for p in st.procs if not p.role.startswith(("dockerd/", "etcd"))]
        self._stop_procs(components)
        _parallel(self._remove_containers, [n for n in st.nodes if self._alive(f"dockerd/{n.name}")])
        self._stop_procs([p for p in st.procs if p.role.startswith("dockerd/")], grace=20)
        self._stop_procs([p for p in st.procs if p.role == "etcd"])
        # 2. anything still running in a lab namespace is ours (shims, exec'd helpers)
        for ns in st.netns:
            for pid in _pids_in_netns(f"/run/netns/{ns}"):
                logger.warning("lab %s: killing leftover pid %d in %s", st.name, pid, ns)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for child in self._children.values():
            with contextlib.suppress(Exception):
                child.wait(5)
        # 3. mounts under the lab dir (after a killed dockerd), deepest first
        _unmount_under(self.dir)
        # 4. namespaces (their links, routes and rules go with them), then the host's own changes
        for ns in reversed(st.netns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for link in st.host_links:
            subprocess.run(["ip", "link", "del", link], capture_output=True)
        for route in st.host_routes:
            subprocess.run(["ip", "route", "del", route["type"], route["dst"], "metric", str(route["metric"])],
                           capture_output=True)
        for rule in st.host_rules:
            while subprocess.run(["iptables", "-w", "-D", *rule], capture_output=True).returncode == 0:
                pass
        # 5. the cgroup folders dockerd made for the nodes' containers
        for cgroup in st.cgroups:
            _remove_cgroup(cgroup)
        for n in st.nodes:
            shutil.rmtree(n.dir, ignore_errors=True)
        for sub in ("etcd", "pki", "kubeconfigs", "tokens.csv", "admin.kubeconfig", "images.tar", STATE_FILE):
            path = self.dir / sub
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        if not keep_logs:
            shutil.rmtree(self.dir / "logs", ignore_errors=True)
            with contextlib.suppress(OSError):
                self.dir.rmdir()
        self.timings["down"] = time.monotonic() - started
        logger.info("lab %s down in %.1fs", st.name, self.timings["down"])

    def processes(self) -> list[tuple[str, int, bool]]:
        """(role, pid, running) of every process the lab started: `kubelet/node1`, `apiserver`, ..."""
        self._reap()
        return [(p.role, p.pid, _same_process(p)) for p in self._st.procs]

    def leftovers(self) -> list[str]:
        """What of this lab still exists on the machine (empty after `down()`): for tests and `lab down`."""
        self._reap()
        st = self._st
        found = []
        netns = set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split())
        found += [f"netns {ns}" for ns in netns if ns.startswith(f"mk-{st.name}-")]
        found += [f"link {link}" for link in os.listdir("/sys/class/net") if link == f"mk-{st.name}"]
        found += [f"process {p.role} ({p.pid})" for p in st.procs if _same_process(p)]
        with open("/proc/mounts") as f:
            found += [f"mount {line.split()[1]}" for line in f if line.split()[1].startswith(str(self.dir) + "/")]
        rules = subprocess.run(["iptables", "-w", "-S", "FORWARD"], capture_output=True, text=True).stdout
        found += [f"iptables {line}" for line in rules.splitlines() if f"minik8s lab {st.name}\"" in line
                  or f"minik8s lab {st.name} " in line]
        for route in st.host_routes:
            shown = subprocess.run(["ip", "route", "show", "type", route["type"], "exact", route["dst"]],
                                   capture_output=True, text=True).stdout
            found += [f"route {r}" for r in shown.splitlines() if f" metric {route['metric']}" in f" {r} "]
        found += [f"cgroup {p}" for c in st.cgroups for p in _cgroup_dirs(c) if os.path.isdir(p)]
        return found

    # ---- process bookkeeping --------------------------------------------------------------------------

    def _spawn(self, role: str, netns: str, cmd: list[str]) -> ProcRecord:
        log = open(self.dir / "logs" / f"{role.replace('/', '-')}.log", "ab")
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        try:
            proc = subprocess.Popen(["nsenter", f"--net=/run/netns/{netns}", "--", *cmd], stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT, env=env,
                                    start_new_session=True)
        finally:
            log.close()
        self._children[proc.pid] = proc
        record = ProcRecord(role, proc.pid, _start_time(proc.pid) or 0, netns)
        self._st.procs.append(record)
        self._save()
        return record

    def _reap(self) -> None:
        """Collect our children that exited (a `lab down` in another process stopped them)."""
        for child in self._children.values():
            child.poll()

    def _roles(self) -> list[str]:
        return [p.role for p in self._st.procs]

    def _alive(self, role: str) -> bool:
        return any(p.role == role and _same_process(p) for p in self._st.procs)

    def _stop_procs(self, procs: list[ProcRecord], grace: float = 10) -> None:
        live = [p for p in procs if _same_process(p)]
        for p in live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while live and time.monotonic() < deadline:
            for p in live:
                if p.pid in self._children:
                    self._children[p.pid].poll()
            live = [p for p in live if _same_process(p)]
            time.sleep(0.05)
        for p in live:
            logger.warning("lab: %s (pid %d) ignored SIGTERM for %.0fs: killing it", p.role, p.pid, grace)
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGKILL)
            if p.pid in self._children:
                self._children[p.pid].wait()

    def _remove_containers(self, node: LabNode) -> None:
        ids = self.docker(node, "ps", "-aq").stdout.split()
        if ids:
            self.docker(node, "rm", "-f", *ids, timeout=120)

    def _log_tail(self, name: str) -> Callable[[], str]:
        def tail() -> str:
            path = self.dir / "logs" / f"{name}.log"
            return path.read_text(errors="replace")[-1500:] if path.exists() else ""
        return tail

    # ---- small things ---------------------------------------------------------------------------------

    @property
    def _st(self) -> State:
        if self.state is None:
            raise RuntimeError("the lab is not up (call up() or Lab.attach(dir))")
        return self.state

    @property
    def _subnet(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self._st.subnet)

    @property
    def _cp_ip(self) -> str:
        return str(self._subnet.network_address + 2)

    def _tokens(self) -> dict[str, str]:
        from apiserver.pki import read_token_file
        return {user: tok for tok, user, _uid, _groups in read_token_file(self.dir / "tokens.csv")}

    def _save(self) -> None:
        path = self.dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self._st), indent=1))
        os.replace(tmp, path)


# ---- helpers ----------------------------------------------------------------------------------------

def ipvs_available() -> bool:
    """Whether this kernel has IPVS (it is absent here: DESIGN §5); ipvs proxy tests skip without it."""
    return os.path.exists("/proc/net/ip_vs")


def _sh(*cmd: str) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip()}")
    return done.stdout


def _ip_batch(netns: str, commands: list[str]) -> None:
    if commands:
        done = subprocess.run(["ip", "-n", netns, "-batch", "-"], input="\n".join(commands) + "\n", text=True,
                              capture_output=True)
        if done.returncode != 0:
            raise RuntimeError(f"ip -n {netns}: {done.stderr.strip()}")


def _free_subnet() -> ipaddress.IPv4Network:
    """The first /24 of LAB_SUBNETS that no route (any table) and no address on the host overlaps."""
    taken = []
    for args in (["ip", "-j", "-4", "route", "show", "table", "all"], ["ip", "-j", "-4", "addr", "show"]):
        for entry in json.loads(_sh(*args) or "[]"):
            if "dst" in entry and entry["dst"] not in ("default", "0.0.0.0/0"):
                with contextlib.suppress(ValueError):
                    taken.append(ipaddress.IPv4Network(entry["dst"], strict=False))
            for a in entry.get("addr_info", []):
                taken.append(ipaddress.IPv4Network(f"{a['local']}/{a['prefixlen']}", strict=False))
    for candidate in ipaddress.IPv4Network(LAB_SUBNETS).subnets(new_prefix=24):
        if not any(candidate.overlaps(t) for t in taken if t.prefixlen > 0):
            return candidate
    raise RuntimeError(f"no free /24 left in {LAB_SUBNETS}")


def _flags_of(module_name: str) -> set[str]:
    """The option strings a subcommand's parser accepts (to pass only flags a component knows)."""
    parser = argparse.ArgumentParser(add_help=False)
    importlib.import_module(module_name).add_arguments(parser)
    return {s for action in parser._actions for s in action.option_strings}


def _node_ready(node: dict) -> bool:
    conds = {c["type"]: c["status"] for c in (node.get("status") or {}).get("conditions") or []}
    return conds.get("Ready") == "True" and bool((node.get("spec") or {}).get("podCIDR"))


def _http_ok(url: str, ctx: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def in_netns(path: str, fn: Callable[[], Any]) -> Any:
    """Run `fn` on a thread that entered the network namespace at `path` (the rest of the process stays)."""
    out: dict[str, Any] = {}

    def target() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(path, os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns({path})")
        finally:
            os.close(fd)
        try:
            out["value"] = fn()
        except BaseException as e:  # re-raised on the caller's thread
            out["error"] = e
    t = threading.Thread(target=target, name=f"netns-{os.path.basename(path)}")
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out.get("value")


def _wait(fn: Callable[[], Any], timeout: float, what: str, tail: Callable[[], str] | None = None) -> Any:
    deadline = time.monotonic() + timeout
    interval = 0.05
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}"
                               + (f"; log tail:\n{tail()}" if tail else ""))
        time.sleep(interval)
        interval = min(interval * 1.5, 0.5)


def _parallel(fn: Callable[[Any], Any], items: list[Any]) -> None:
    if not items:
        return
    with ThreadPoolExecutor(len(items)) as pool:
        for future in [pool.submit(fn, item) for item in items]:
            future.result()


def _start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _same_process(p: ProcRecord) -> bool:
    """Still running (not a zombie), and the very process we started, not a later one with its pid."""
    try:
        with open(f"/proc/{p.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z" and int(fields[19]) == p.start


def _pids_in_netns(path: str) -> list[int]:
    try:
        target = os.stat(path).st_ino
    except OSError:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{entry}/ns/net").st_ino == target:
                    pids.append(int(entry))
    return pids


def _unmount_under(directory: Path) -> None:
    prefix = str(directory) + "/"
    with open("/proc/mounts") as f:
        targets = [line.split()[1] for line in f if line.split()[1].startswith(prefix)]
    for target in sorted(targets, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True)


def _cgroup_dirs(cgroup: str) -> list[str]:
    base = Path("/sys/fs/cgroup")
    seen, out = set(), []
    for root in [base, *(p for p in base.iterdir() if p.is_dir())] if base.is_dir() else []:
        path = root / cgroup.lstrip("/")
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            out.append(str(path))
    return out


def _remove_cgroup(cgroup: str) -> None:
    for top in _cgroup_dirs(cgroup):
        if not os.path.isdir(top):
            continue
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: len(w[0]), reverse=True):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)
