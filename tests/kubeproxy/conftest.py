"""A scratch network for the proxy's real-kernel tests, made of namespaces this test creates.

    client netns  10.77.0.2 ──veth── 10.77.0.1  node netns  (the proxy's rules live here)
                                                  kpbr0 10.244.1.1/24 ── veth ── backend b1 10.244.1.2
                                                                      └─ veth ── backend b2 10.244.1.3
                                                  kube-svc0 (port-less bridge): 10.96.0.0/12 routed here

Only the backends have a default route, and it leads into the node namespace, which has none: every
address a test sends to lives in one of these namespaces, and
the service range is routed to the local sink in the node namespace before any traffic flows (DESIGN §6).
Each backend runs a tiny Python server answering TCP with "<name> <peer ip>" and echoing UDP likewise.
Helpers run commands inside a namespace with `ip netns exec`; the proxy backends get a runner that
does the same, so their `iptables-restore` / `nft -f` land in the node namespace only.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NODE_IP, CLIENT_IP = "10.77.0.1", "10.77.0.2"
BACKENDS = {"b1": "10.244.1.2", "b2": "10.244.1.3"}

SERVER = textwrap.dedent('''
    import socket, sys, threading
    name, port = sys.argv[1], int(sys.argv[2])
    def tcp():
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port)); s.listen(64)
        while True:
            c, addr = s.accept()
            try:
                c.sendall(f"{name} {addr[0]}".encode())
            finally:
                c.close()
    def udp():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", port))
        while True:
            data, addr = s.recvfrom(2048)
            s.sendto(f"{name} {addr[0]}".encode(), addr)
    threading.Thread(target=udp, daemon=True).start()
    print("ready", flush=True)
    tcp()
''')

CLIENT = textwrap.dedent('''
    import json, socket, sys, time
    ip, port, count, proto = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    out = []
    for _ in range(count):
        start = time.monotonic()
        try:
            if proto == "tcp":
                s = socket.create_connection((ip, port), timeout=3)
                out.append(s.recv(200).decode())
            else:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
                s.sendto(b"hi", (ip, port)); out.append(s.recv(200).decode())
            s.close()
        except OSError as e:
            out.append(f"error {type(e).__name__} {round(time.monotonic() - start, 2)}")
    print(json.dumps(out))
''')


def sh(*cmd: str, check: bool = True, input: str | None = None) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, input=input)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {p.stderr.strip()}")
    return p.stdout


@dataclass
class ProxyNet:
    tag: str
    node: str
    client: str
    backends: dict[str, str]
    procs: list[subprocess.Popen] = field(default_factory=list)

    def exec(self, ns: str, *cmd: str, check: bool = True) -> str:
        return sh("ip", "netns", "exec", ns, *cmd, check=check)

    def runner(self, cmd, input=None, *, check=True, timeout=300):
        """A `kubeproxy.runner.run` twin that runs the tool inside the node namespace."""
        from kubeproxy.runner import run
        return run(["ip", "netns", "exec", self.node, *cmd], input=input, check=check, timeout=timeout)

    def connect(self, ns: str, ip: str, port: int, count: int = 1, proto: str = "tcp") -> list[str]:
        return json.loads(self.exec(ns, sys.executable, "-c", CLIENT, ip, str(port), str(count), proto))


def _ns(name: str) -> None:
    sh("ip", "netns", "add", name)
    sh("ip", "-n", name, "link", "set", "lo", "up")


@pytest.fixture
def proxy_net():
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("needs root and iproute2 to create network namespaces")
    tag = os.urandom(3).hex()
    node, client = f"kpn-{tag}", f"kpc-{tag}"
    backends = {name: f"kp{name}-{tag}" for name in BACKENDS}
    net = ProxyNet(tag, node, client, backends)
    created = []
    try:
        for ns in (node, client, *backends.values()):
            _ns(ns)
            created.append(ns)
        n = lambda *a: sh("ip", "-n", node, *a)  # noqa: E731
        # The service range goes to a local sink first: nothing can follow a route out.
        n("link", "add", "kube-svc0", "type", "bridge")
        n("link", "set", "kube-svc0", "up")
        n("route", "add", "10.96.0.0/12", "dev", "kube-svc0")
        n("link", "add", "kpbr0", "type", "bridge")
        n("addr", "add", "10.244.1.1/24", "dev", "kpbr0")
        n("link", "set", "kpbr0", "up")
        n("link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", client)
        n("addr", "add", f"{NODE_IP}/24", "dev", "eth0")
        n("link", "set", "eth0", "up")
        sh("ip", "-n", client, "addr", "add", f"{CLIENT_IP}/24", "dev", "eth0")
        sh("ip", "-n", client, "link", "set", "eth0", "up")
        # External and LB addresses of the tests live in 10.77.1.0/24, reachable through the node.
        sh("ip", "-n", client, "route", "add", "10.77.1.0/24", "via", NODE_IP)
        for i, (name, ns) in enumerate(backends.items()):
            host = f"veth{name}"
            n("link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns)
            n("link", "set", host, "master", "kpbr0")
            # As a bridge CNI plugin with hairpinMode does (the kubelet's job): with bridge-nf-call-iptables,
            # a pod's packet DNATed back to itself is bridged out of the port it came in on.
            n("link", "set", host, "type", "bridge_slave", "hairpin", "on")
            n("link", "set", host, "up")
            sh("ip", "-n", ns, "addr", "add", f"{BACKENDS[name]}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "route", "add", "default", "via", "10.244.1.1")
        net.exec(node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for name, ns in backends.items():
            for port in (8080, 9090):
                p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, name, str(port)],
                                     stdout=subprocess.PIPE, text=True)
                net.procs.append(p)
                assert p.stdout.readline().strip() == "ready"
        yield net
    finally:
        for p in net.procs:
            p.kill()
            p.wait()
        for ns in created:
            sh("ip", "netns", "del", ns, check=False)
