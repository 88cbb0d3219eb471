#!/usr/bin/env python3
"""Pod startup latency through minik8s vs. the same containers started directly with the Docker SDK.

    python bench/podstartup.py [--pods 30] [--rounds 1] [--keep]

Starts its own etcd, apiserver and one kubelet (unique node, bridge and pod CIDR) in a temporary
directory, then:

  1. minik8s: creates a burst of N pods at once (a sandbox + one minik8s/myapp container each,
     spec.nodeName set, so no scheduler is involved) and measures, per pod, the time from its create
     request until a watch reports it Running with every container running;
  2. raw: the same N sandbox+app pairs through the Docker SDK — create the sandbox (network none),
     start it, create the app joined to it (network/ipc container:<sandbox>), start it — with the same
     parallelism the kubelet uses for Docker calls, per pair from submission to the app's start;
  3. prints p50/p99 of both and the ratios minik8s/raw (target: <= 1.3x).

Everything started here is stopped and removed afterwards (containers by the node label, the bridge,
the temporary directory unless --keep).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import ControlPlane, cpu_seconds, scratch_dir, stop_process  # noqa: E402
from cli.etcd import free_port  # noqa: E402
from kubelet import labels as L  # noqa: E402
from kubelet.kubelet import DOCKER_PARALLELISM  # noqa: E402

APP_IMAGE = "minik8s/myapp:v1"
SANDBOX_IMAGE = "minik8s/pause:3.9"


def pids_named(*names: str) -> dict[str, int]:
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                comm = (d / "comm").read_text().strip()
            except OSError:
                continue
            if comm in names and comm not in out:
                out[comm] = int(d.name)
    return out


class CpuMeter:
    """CPU seconds spent by each process of interest between start() and stop()."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.used: dict[str, float] = {}

    def __enter__(self) -> "CpuMeter":
        self._start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        return self

    def __exit__(self, *exc: object) -> None:
        self.used = {name: cpu_seconds(pid) - self._start[name] for name, pid in self.pids.items()}

    def line(self) -> str:
        return "  ".join(f"{name} {sec:.2f}s" for name, sec in self.used.items())


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


class Cluster(ControlPlane):
    """The control plane plus one kubelet (its own node, bridge and pod CIDR) in a temporary directory."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.kubelet: subprocess.Popen | None = None
        self.client: httpx.Client | None = None
        suffix = os.urandom(3).hex()
        self.node, self.bridge, self.sink = f"bench-{suffix}", f"mkb{suffix}", f"mkbs{suffix}"
        self.pod_cidr = f"10.244.{int(suffix[:2], 16) % 100 + 100}.0/24"

    def start(self) -> "Cluster":
        super().start()
        self.client = self.http(timeout=30)
        with open(self.dir / "kubelet.log", "ab") as out:
            self.kubelet = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "kubelet", "--kubeconfig", str(self.node_kubeconfig(self.node)),
                 "--node-name", self.node, "--node-ip", "127.0.0.1", "--root-dir", str(self.dir / "kubelet"),
                 "--bridge", self.bridge, "--service-sink", self.sink, "--port", str(free_port()),
                 "--address", "127.0.0.1"], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        self.wait(lambda: self.client.patch(f"/api/v1/nodes/{self.node}", json={"spec": {"podCIDR": self.pod_cidr}},
                                            headers={"Content-Type": "application/merge-patch+json"}).status_code
                  == 200, "node registration")
        self.wait(self._node_ready, "node Ready")
        return self

    def _node_ready(self) -> bool:
        conds = self.client.get(f"/api/v1/nodes/{self.node}").json().get("status", {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

    def wait(self, fn, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in (self.apiserver, self.kubelet):
                if p.poll() is not None:
                    raise RuntimeError(f"a child exited while waiting for {what}; logs in {self.dir}")
            try:
                if fn():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"timed out waiting for {what}; logs in {self.dir}")

    def stop(self) -> None:
        stop_process(self.kubelet, timeout=15)
        if self.client is not None:
            self.client.close()
        super().stop()
        client = docker.from_env()
        for c in client.api.containers(all=True, filters=L.selector(self.node)):
            client.api.remove_container(c["Id"], force=True)
        client.close()
        try:
            from kubelet.network import PodNetwork
            PodNetwork(bridge=self.bridge, state_dir=self.dir / "kubelet" / "network",
                       service_sink=self.sink).teardown()
        except Exception as e:
            print(f"network teardown: {e}", file=sys.stderr)


async def minik8s_burst(cluster: Cluster, namespace: str, n: int) -> list[float]:
    """Create n pods at once; per pod, seconds from its create request to Running with all containers up."""
    created: dict[str, float] = {}
    done: dict[str, float] = {}
    ctx = ssl.create_default_context(cafile=str(cluster.ca))
    headers = {"Authorization": f"Bearer {cluster.token}"}
    async with httpx.AsyncClient(base_url=cluster.url, verify=ctx, headers=headers, timeout=None) as client:
        listed = (await client.get(f"/api/v1/namespaces/{namespace}/pods")).json()
        rv = listed["metadata"]["resourceVersion"]
        all_running = asyncio.Event()

        async def watch() -> None:
            params = {"watch": "1", "resourceVersion": rv, "timeoutSeconds": "300"}
            async with client.stream("GET", f"/api/v1/namespaces/{namespace}/pods", params=params) as resp:
                async for line in resp.aiter_lines():
                    if not line.strip():
                        continue
                    obj = orjson.loads(line)["object"]
                    name, status = obj["metadata"]["name"], obj.get("status") or {}
                    statuses = status.get("containerStatuses") or []
                    if name not in done and status.get("phase") == "Running" and statuses and \
                            all("running" in s.get("state", {}) for s in statuses):
                        done[name] = time.monotonic()
                        if len(done) == n:
                            all_running.set()
                            return

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.2)

        async def create(i: int) -> None:
            name = f"p{i:03d}"
            body = {"metadata": {"name": name}, "spec": {"nodeName": cluster.node, "terminationGracePeriodSeconds": 0,
                                                         "containers": [{"name": "app", "image": APP_IMAGE}]}}
            created[name] = time.monotonic()
            r = await client.post(f"/api/v1/namespaces/{namespace}/pods", json=body)
            r.raise_for_status()

        await asyncio.gather(*(create(i) for i in range(n)))
        await asyncio.wait_for(all_running.wait(), 300)
        watcher.cancel()
    return [done[name] - created[name] for name in created]


def raw_burst(n: int, parallelism: int) -> list[float]:
    """The same n sandbox+app pairs through the Docker SDK, `parallelism` Docker calls at a time."""
    client = docker.from_env(max_pool_size=parallelism * 2)
    api = client.api
    marker = f"podstartup-raw-{os.urandom(3).hex()}"
    labels = {"io.minik8s.bench": marker}

    def pair(i: int, submitted: float) -> float:
        sandbox = api.create_container(SANDBOX_IMAGE, name=f"{marker}-{i}-pod", hostname=f"raw{i}", labels=labels,
                                       host_config=api.create_host_config(network_mode="none", ipc_mode="shareable"))
        api.start(sandbox["Id"])
        app = api.create_container(APP_IMAGE, name=f"{marker}-{i}-app", labels=labels, host_config=api.create_host_config(
            network_mode=f"container:{sandbox['Id']}", ipc_mode=f"container:{sandbox['Id']}"))
        api.start(app["Id"])
        return time.monotonic() - submitted

    try:
        with ThreadPoolExecutor(parallelism) as pool:
            start = time.monotonic()
            futures = [pool.submit(pair, i, start) for i in range(n)]
            return [f.result() for f in futures]
    finally:
        for c in api.containers(all=True, filters={"label": f"io.minik8s.bench={marker}"}):
            api.remove_container(c["Id"], force=True)
        client.close()


def measure(cluster: Cluster, args: argparse.Namespace) -> None:
    ours: list[float] = []
    raw: list[float] = []
    pids = {"kubelet": cluster.kubelet.pid, "apiserver": cluster.apiserver.pid, "etcd": cluster.etcd.proc.pid,
            **pids_named("dockerd", "containerd")}
    cpu_raw, cpu_ours = CpuMeter(pids), CpuMeter(pids)
    for round_ in range(args.rounds):
        ns = f"bench-{round_}"
        cluster.client.post("/api/v1/namespaces", json={"metadata": {"name": ns}}).raise_for_status()
        with cpu_raw:
            raw += raw_burst(args.pods, DOCKER_PARALLELISM)
        with cpu_ours:
            ours += asyncio.run(minik8s_burst(cluster, ns, args.pods))
        cluster.client.delete(f"/api/v1/namespaces/{ns}/pods")
        # The next round must not race this round's graceful deletions.
        cluster.wait(lambda: not cluster.client.get(f"/api/v1/namespaces/{ns}/pods").json()["items"],
                     "the burst's pods to be deleted", timeout=120)
    print(f"pod startup, burst of {args.pods} pods (sandbox + 1 app container), {args.rounds} round(s), "
          f"Docker parallelism {DOCKER_PARALLELISM}, {os.cpu_count()} CPUs")
    print(f"{'':12}{'p50':>10}{'p99':>10}{'mean':>10}")
    for label, values in (("minik8s", ours), ("raw docker", raw)):
        print(f"{label:12}{pct(values, 50):>9.3f}s{pct(values, 99):>9.3f}s{statistics.mean(values):>9.3f}s")
    print(f"{'ratio':12}{pct(ours, 50) / pct(raw, 50):>9.2f}x{pct(ours, 99) / pct(raw, 99):>9.2f}x"
          f"{statistics.mean(ours) / statistics.mean(raw):>9.2f}x   (target <= 1.3x)")
    print(f"CPU during the minik8s burst: {cpu_ours.line()}")
    print(f"CPU during the raw burst:     {cpu_raw.line()}")



def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=1, help="bursts of each kind (results pooled)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    args = parser.parse_args()

    with scratch_dir("minik8s-podstartup-", keep=args.keep) as directory:
        cluster = Cluster(directory)
        try:
            cluster.start()
            measure(cluster, args)
        finally:
            cluster.stop()
    return 0

if __name__ == "__main__":
    sys.exit(main())
