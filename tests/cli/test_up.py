"""`minik8s up`: one command starts etcd and the control plane, prints a ready line, stops cleanly, keeps data."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from cli.etcd import free_port

ROOT = Path(__file__).resolve().parents[2]


BRIDGE = f"mkup{os.getpid() % 10000}"


def start_up(data: Path, etcd_port: int, peer_port: int, api_port: int, *ports: int) -> tuple[subprocess.Popen, str]:
    kubelet, cm, sched, proxy, dns = ports
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "up", "--data-dir", str(data), "--etcd-port",
                             str(etcd_port), "--etcd-peer-port", str(peer_port), "--secure-port", str(api_port),
                             "--kubelet-port", str(kubelet), "--controller-manager-health-port", str(cm),
                             "--scheduler-health-port", str(sched), "--proxy-health-port", str(proxy),
                             "--dns-port", str(dns),
                             "--bridge", BRIDGE, "--node-name", "up-node",
                             "--cluster-cidr", "10.244.0.0/16"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            raise AssertionError(f"up exited with {proc.returncode}")
        if line.startswith("minik8s ready"):
            return proc, line
    raise AssertionError("no ready line within 60 s")


def client_from_kubeconfig(path: Path) -> httpx.Client:
    import base64
    import ssl
    import tempfile
    cfg = yaml.safe_load(path.read_text())
    cluster = cfg["clusters"][0]["cluster"]
    ca = tempfile.NamedTemporaryFile(delete=False, suffix=".crt")
    ca.write(base64.b64decode(cluster["certificate-authority-data"]))
    ca.close()
    token = cfg["users"][0]["user"]["token"]
    return httpx.Client(base_url=cluster["server"], verify=ssl.create_default_context(cafile=ca.name),
                        headers={"Authorization": f"Bearer {token}"})


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def wait_for(fn, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.2)
    return fn()


def remove_node_network(data: Path) -> None:
    from kubelet.network import PodNetwork
    PodNetwork(bridge=BRIDGE, state_dir=data / "kubelet", service_sink="kube-svc0").teardown()


def test_up_starts_a_cluster_stops_cleanly_and_keeps_objects(tmp_path):
    ports = [free_port() for _ in range(8)]
    proc, line = start_up(tmp_path, *ports)
    try:
        assert "curl" in line and f"https://127.0.0.1:{ports[2]}" in line
        kubeconfig = tmp_path / "admin.kubeconfig"
        assert kubeconfig.exists() and oct(kubeconfig.stat().st_mode & 0o777) == "0o600"
        assert (tmp_path / "pki" / "ca.crt").exists()
        tokens = [row.split(",")[1] for row in (tmp_path / "tokens.csv").read_text().splitlines()]
        assert {"admin", "system:kube-scheduler", "system:kube-controller-manager", "system:kube-proxy"} <= set(tokens)
        assert len([t for t in tokens if t.startswith("system:node:")]) == 1  # this machine's kubelet
        with client_from_kubeconfig(kubeconfig) as c:
            names = {n["metadata"]["name"] for n in c.get("/api/v1/namespaces").json()["items"]}
            assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names
            r = c.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": "survivor"}})
            assert r.status_code == 201
            # The copy-paste example in the ready line works as printed.
            curl = line.split("try: ", 1)[1].strip()
            out = subprocess.run(["bash", "-c", curl + " -s"], capture_output=True, text=True, timeout=20).stdout
            assert '"NamespaceList"' in out
            # Every component is up: the kubelet registered a Ready node that got a podCIDR from the
            # controller-manager, and a pod created without a node is scheduled and runs.
            node = wait_for(lambda: (lambda n: n if n.get("spec", {}).get("podCIDR") and any(
                c["type"] == "Ready" and c["status"] == "True" for c in n.get("status", {}).get("conditions", []))
                else None)(c.get("/api/v1/nodes/up-node").json()))
            assert node, c.get("/api/v1/nodes/up-node").text
            pod = {"metadata": {"name": "hello"}, "spec": {"containers": [{"name": "web", "image": "minik8s/myapp:v1"}]}}
            assert c.post("/api/v1/namespaces/default/pods", json=pod).status_code == 201
            running = wait_for(lambda: c.get("/api/v1/namespaces/default/pods/hello").json()["status"].get("phase")
                               == "Running")
            assert running, c.get("/api/v1/namespaces/default/pods/hello").text
            ip = c.get("/api/v1/namespaces/default/pods/hello").json()["status"]["podIP"]
            assert httpx.get(f"http://{ip}/hostname.html", timeout=5).text.strip() == "hello"
            # kube-proxy runs too: a Service's ClusterIP answers from this machine.
            svc = {"metadata": {"name": "hello"}, "spec": {"selector": {"app": "hello"},
                                                          "ports": [{"port": 8080, "targetPort": 80}]}}
            c.patch("/api/v1/namespaces/default/pods/hello", json={"metadata": {"labels": {"app": "hello"}}},
                    headers={"Content-Type": "application/merge-patch+json"})
            cluster_ip = c.post("/api/v1/namespaces/default/services", json=svc).json()["spec"]["clusterIP"]

            def via_service():
                try:
                    return httpx.get(f"http://{cluster_ip}:8080/hostname.html", timeout=2).text.strip()
                except httpx.HTTPError:
                    return None
            assert wait_for(via_service, 30) == "hello", (tmp_path / "logs" / "proxy.log").read_text()[-2000:]
            # Cluster DNS runs too: a pod resolves the Service by name through 10.96.0.10.
            probe = {"metadata": {"name": "dns"}, "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                "name": "c", "image": "minik8s/busybox:1.36", "command": ["sh", "-c",
                    "until nslookup hello.default.svc.cluster.local; do sleep 1; done; sleep 3600"]}]}}
            assert c.post("/api/v1/namespaces/default/pods", json=probe).status_code == 201
            resolved = wait_for(lambda: cluster_ip in c.get("/api/v1/namespaces/default/pods/dns/log").text, 60)
            assert resolved, (c.get("/api/v1/namespaces/default/pods/dns/log").text,
                              (tmp_path / "logs" / "dns.log").read_text()[-2000:])
            # Deleted gracefully: the kubelet removes the containers before the pod object goes.
            c.delete("/api/v1/namespaces/default/pods/dns")
            assert wait_for(lambda: c.get("/api/v1/namespaces/default/pods/dns").status_code == 404)
            c.delete("/api/v1/namespaces/default/services/hello")
            c.delete("/api/v1/namespaces/default/pods/hello")
            assert wait_for(lambda: c.get("/api/v1/namespaces/default/pods/hello").status_code == 404)
        kids = children_of(proc.pid)
        assert len(kids) >= 7  # etcd, apiserver, controller-manager, scheduler, kubelet, kube-proxy, DNS
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        remove_node_network(tmp_path)
    for pid in kids:
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read().lower()
    # The Service rules went with the cluster.
    rules = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
    assert "KUBE-SERVICES" not in rules, rules

    proc, _ = start_up(tmp_path, *ports)
    try:
        with client_from_kubeconfig(tmp_path / "admin.kubeconfig") as c:
            assert c.get("/api/v1/namespaces/default/configmaps/survivor").status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        remove_node_network(tmp_path)
