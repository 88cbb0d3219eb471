"""deploy/compose end to end: the locally built node image, `docker-compose up`, two Docker-in-Docker
nodes Ready, a 2-replica Deployment spread over both, pod -> pod across nodes, a ClusterIP from a pod,
network isolation, then `docker-compose down -v` leaving nothing behind.

Runtime: ~1-2 min with the image cached (tag minik8s/node:src-<hash of the sources>); the first build of
the Debian base (debootstrap) adds ~50 s, a rebuild of the minik8s layer ~20-30 s. Skipped (with the
reason) only without root, a running dockerd, docker-compose, or the pod images of deploy/images.
"""
from __future__ import annotations

import ipaddress
import json
import os
import shutil
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "deploy" / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
POD_IMAGES = ("minik8s/pause:3.9", "minik8s/busybox:1.36", "minik8s/myapp:v1")


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (docker, debootstrap)"
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        return "no running dockerd (bash deploy/ensure-dockerd.sh)"
    if shutil.which("docker-compose") is None:
        return "docker-compose is not installed (apt-get install docker-compose)"
    for image in POD_IMAGES:
        if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode != 0:
            return f"{image} is missing (bash deploy/images/build.sh)"
    base = subprocess.run(["docker", "images", "-q", "minik8s/node-base"], capture_output=True, text=True).stdout
    if not base.strip() and shutil.which("debootstrap") is None:
        return "no cached minik8s/node-base image and no debootstrap to build one (apt-get install debootstrap)"
    return None


def free_net() -> str:
    """The first 10.79.N.0/24 no host route or address overlaps: the lab's MINIK8S_NET prefix."""
    taken = []
    for args in (["ip", "-j", "-4", "route", "show", "table", "all"], ["ip", "-j", "-4", "addr", "show"]):
        for entry in json.loads(subprocess.run(args, capture_output=True, text=True).stdout or "[]"):
            if entry.get("dst") not in (None, "default"):
                try:
                    taken.append(ipaddress.ip_network(entry["dst"], strict=False))
                except ValueError:
                    pass
            taken += [ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False)
                      for a in entry.get("addr_info", [])]
    for n in range(0, 256):
        net = ipaddress.ip_network(f"10.79.{n}.0/24")
        if not any(net.overlaps(t) for t in taken if t.prefixlen):
            return f"10.79.{n}"
    raise RuntimeError("no free 10.79.N.0/24")


class ComposeLab:
    def __init__(self, image: str):
        self.project = f"mkc{os.urandom(3).hex()}"
        self.net = free_net()
        self.env = {**os.environ, "MINIK8S_IMAGE": image, "MINIK8S_NET": self.net}

    def compose(self, *args: str, timeout: float = 180, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(["docker-compose", "-p", self.project, "-f", str(COMPOSE_FILE), *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"docker-compose {' '.join(args)}: {done.stderr[-3000:]}")
        return done

    def exec(self, service: str, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return self.compose("exec", "-T", service, *cmd, timeout=timeout, check=False)

    def credentials(self) -> Path:
        out = subprocess.run(["docker", "volume", "inspect", f"{self.project}_credentials", "-f", "{{.Mountpoint}}"],
                             capture_output=True, text=True, check=True).stdout.strip()
        return Path(out)

    def http(self) -> httpx.Client:
        creds = self.credentials()
        token = next(line.split()[-1] for line in (creds / "admin.kubeconfig").read_text().splitlines()
                     if "token:" in line)
        return httpx.Client(base_url=f"https://{self.net}.2:6443", timeout=10,
                            verify=ssl.create_default_context(cafile=str(creds / "pki/ca.crt")),
                            headers={"Authorization": f"Bearer {token}"})

    def logs(self) -> str:
        return self.compose("logs", "--no-color", "--tail", "40", check=False).stdout[-6000:]

    def pod_exec(self, pod: dict, *cmd: str, timeout: float = 20) -> subprocess.CompletedProcess:
        """Run `cmd` in the pod's app container, through the node's inner dockerd."""
        node = pod["spec"]["nodeName"]
        ids = self.exec(node, "docker", "ps", "-q", "--filter", f"label=io.kubernetes.pod.uid={pod['metadata']['uid']}",
                        "--filter", "label=io.kubernetes.container.name=web").stdout.split()
        assert ids, f"no container of pod {pod['metadata']['name']} on {node}"
        return self.exec(node, "docker", "exec", ids[0], *cmd, timeout=timeout)

    def leftovers(self) -> list[str]:
        label = f"label=com.docker.compose.project={self.project}"
        found = []
        for kind in (["ps", "-a"], ["network", "ls"], ["volume", "ls"]):
            out = subprocess.run(["docker", *kind, "-q", "--filter", label], capture_output=True, text=True).stdout
            found += [f"{kind[0]} {x}" for x in out.split()]
        return found


def wait(fn, timeout: float, what: str, lab: ComposeLab):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = fn()
        except httpx.TransportError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{lab.logs()}")
        time.sleep(1)


@pytest.fixture(scope="module")
def image() -> str:
    problem = _missing()
    if problem:
        pytest.skip(problem)
    started = time.monotonic()
    done = subprocess.run(["bash", str(COMPOSE_DIR / "build-image.sh")], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    print(f"node image {done.stdout.strip()} ready in {time.monotonic() - started:.0f}s")
    return done.stdout.strip().splitlines()[-1]


def test_compose_lab(image):
    lab = ComposeLab(image)
    started = time.monotonic()
    node_cgroups: list[str] = []
    try:
        lab.compose("up", "-d")
        node_cgroups = [f"/sys/fs/cgroup/memory/docker/{cid}" for cid in lab.compose("ps", "-q", "node1", "node2").stdout.split()]
        with lab.http() as http:
            def nodes_ready():
                r = http.get("/api/v1/nodes")
                if r.status_code != 200:
                    return False
                ready = {n["metadata"]["name"] for n in r.json()["items"] if n["spec"].get("podCIDR") and any(
                    c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))}
                return ready == {"node1", "node2"}
            wait(nodes_ready, 120, "node1 and node2 Ready", lab)
            ready_after = time.monotonic() - started
            env = {**lab.env, "COMPOSE": f"-p {lab.project} -f {COMPOSE_FILE}"}
            loaded = subprocess.run(["bash", str(COMPOSE_DIR / "load-images.sh"), *POD_IMAGES], env=env,
                                    capture_output=True, text=True, timeout=300)
            assert loaded.returncode == 0, loaded.stderr

            # network safety: no node has a route out of the lab; pods' egress goes nowhere either
            for node in ("node1", "node2", "control-plane"):
                routes = lab.exec(node, "ip", "route").stdout
                assert "default" not in routes, f"{node} has a default route:\n{routes}"
                probe = lab.exec(node, "ip", "route", "get", "192.0.2.1")
                assert probe.returncode != 0 and "unreachable" in probe.stderr, probe

            labels = {"app": "web"}
            anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": labels}, "topologyKey": "kubernetes.io/hostname"}]}}
            assert http.post("/api/v1/namespaces", json={"metadata": {"name": "demo"}}).status_code == 201
            deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                          "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                                   "template": {"metadata": {"labels": labels}, "spec": {"affinity": anti, "containers": [
                                       {"name": "web", "image": "minik8s/myapp:v1", "imagePullPolicy": "Never"}]}}}}
            r = http.post("/apis/apps/v1/namespaces/demo/deployments", json=deployment)
            assert r.status_code == 201, r.text
            r = http.post("/api/v1/namespaces/demo/services", json={
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 80}]}})
            assert r.status_code == 201, r.text
            cluster_ip = r.json()["spec"]["clusterIP"]

            def running():
                pods = [p for p in http.get("/api/v1/namespaces/demo/pods").json()["items"]
                        if p["status"].get("phase") == "Running" and p["status"].get("podIP")]
                return pods if len(pods) == 2 else None
            pods = wait(running, 120, "2 web pods Running", lab)
            assert {p["spec"]["nodeName"] for p in pods} == {"node1", "node2"}
            # the pods' containers live in cgroups under their node container's own (removed with it)
            assert all(os.path.isdir(f"{c}/minik8s") for c in node_cgroups), node_cgroups
            a, b = pods

            # pod -> pod across nodes (VXLAN between the node containers), by pod IP
            def fetch(pod, url):
                done = lab.pod_exec(pod, "timeout", "5", "wget", "-qO-", url)
                return done.stdout if done.returncode == 0 else None
            assert b["metadata"]["name"] in wait(lambda: fetch(a, f"http://{b['status']['podIP']}/hostname.html"), 30,
                                                 f"{a['metadata']['name']} -> {b['metadata']['name']}", lab)
            assert a["metadata"]["name"] in wait(lambda: fetch(b, f"http://{a['status']['podIP']}/hostname.html"), 30,
                                                 f"{b['metadata']['name']} -> {a['metadata']['name']}", lab)
            # a ClusterIP from a pod reaches both backends (kube-proxy iptables in each node)
            names = {p["metadata"]["name"] for p in pods}
            seen: set[str] = set()

            def spread():
                out = fetch(a, f"http://{cluster_ip}/hostname.html")
                if out:
                    seen.add(out.strip())
                return seen >= names
            wait(spread, 60, f"both backends through ClusterIP {cluster_ip} (saw {seen})", lab)
            # a pod's packets to an outside address would die on its node: asked without sending any
            probe = lab.exec(a["spec"]["nodeName"], "ip", "route", "get", "192.0.2.1", "from", a["status"]["podIP"],
                             "iif", "mk0")
            assert probe.returncode != 0 and "unreachable" in probe.stderr, probe
        print(f"compose lab: nodes Ready {ready_after:.0f}s after `up`, test done in {time.monotonic() - started:.0f}s")
    finally:
        down = lab.compose("down", "-v", "--remove-orphans", "-t", "30", timeout=240, check=False)
        left = lab.leftovers()
        assert down.returncode == 0 and not left, f"down: {down.stderr[-2000:]}; left behind: {left}"
        lingering = [c for c in node_cgroups if os.path.exists(c)]
        assert not lingering, f"cgroups left behind: {lingering}"
