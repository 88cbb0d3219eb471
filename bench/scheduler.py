#!/usr/bin/env python3
"""Benchmark of the scheduler: pending pods onto Node objects (no kubelets), against a raw baseline.

    python bench/scheduler.py [--quick] [--nodes N] [--pods N] [--repeat N] [--profile PREFIX] [--keep]

Starts its own etcd and apiserver on free ports in a temporary directory, creates the Nodes (status
with allocatable and Ready) and the pending Pods with concurrent creates, then:

1. scheduler: starts `minik8s scheduler` as its own process (as in production) and measures from the
   moment it logs that its caches are synced until a watch in this process has seen every pod bound;
2. raw baseline, same run: another set of as many pending pods, bound by this process with direct
   `pods/<name>/binding` POSTs through the same AsyncClient at the same concurrency, round-robin over
   the nodes, without any scheduling logic — the pure API cost of binding.

Prints pods/s for both and their ratio (scheduler / raw), and checks that no node is overcommitted.
`--quick`: 100 nodes and 400 pods. Everything started here is stopped at the end.
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # first: this script's own folder would shadow apiserver/, scheduler/, kubeproxy/

from api.quantity import cpu_millis, memory_bytes  # noqa: E402
from bench.common import ControlPlane, cpu_seconds, scratch_dir  # noqa: E402
from client.rest import AsyncClient  # noqa: E402

CONCURRENCY = 32
SCHEDULER_NAME = "default-scheduler"
RAW_SCHEDULER_NAME = "bench-raw"  # nobody serves it: the baseline binds these pods itself


def node_body(i: int) -> dict:
    name = f"node-{i:04d}"
    alloc = {"cpu": "4", "memory": "16Gi", "pods": "110"}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"allocatable": alloc, "capacity": alloc,
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def pod_body(i: int, scheduler_name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"pod-{i:05d}", "labels": {"app": "bench"}},
            "spec": {"schedulerName": scheduler_name, "containers": [{
                "name": "app", "image": "busybox",
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}}


async def gather_bounded(coros, concurrency: int = CONCURRENCY) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(coro) -> None:
        async with gate:
            await coro

    await asyncio.gather(*(one(c) for c in coros))


async def populate(client: AsyncClient, nodes: int, pods: int) -> None:
    started = time.perf_counter()
    await gather_bounded(client.create("nodes", node_body(i)) for i in range(nodes))
    for ns in ("bench-sched", "bench-raw"):
        await client.create("namespaces", {"metadata": {"name": ns}})
    await gather_bounded(client.create("pods", pod_body(i, SCHEDULER_NAME), "bench-sched") for i in range(pods))
    await gather_bounded(client.create("pods", pod_body(i, RAW_SCHEDULER_NAME), "bench-raw") for i in range(pods))
    print(f"created {nodes} nodes and 2 x {pods} pending pods in {time.perf_counter() - started:.1f}s")


async def wait_all_bound(client: AsyncClient, namespace: str, total: int) -> dict[str, str]:
    """Watch until every pod in the namespace has a nodeName; returns pod -> node."""
    listed = await client.list("pods", namespace)
    placed = {p["metadata"]["name"]: p["spec"].get("nodeName") for p in listed["items"]}
    rv = listed["metadata"]["resourceVersion"]
    while sum(1 for n in placed.values() if n) < total:
        async for kind, obj in client.watch("pods", namespace, resource_version=rv, timeout_seconds=120):
            rv = obj["metadata"].get("resourceVersion", rv)
            if kind in ("ADDED", "MODIFIED"):
                placed[obj["metadata"]["name"]] = obj["spec"].get("nodeName")
                if sum(1 for n in placed.values() if n) >= total:
                    break
    return placed


async def wait_for_line(stream, needle: str, timeout: float = 60) -> None:
    async def scan() -> None:
        while True:
            line = await stream.readline()
            if not line:
                raise RuntimeError("scheduler exited before its caches synced")
            if needle in line.decode(errors="replace"):
                return

    await asyncio.wait_for(scan(), timeout)


async def drain(stream, log: Path) -> None:
    with open(log, "ab") as out:
        while line := await stream.readline():
            out.write(line)


async def bench_scheduler(cluster: ControlPlane, client: AsyncClient, pods: int, bind_concurrency: int,
                          profile: str | None = None) -> float:
    kubeconfig = cluster.kubeconfig("system:kube-scheduler")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli.main", "scheduler", "--kubeconfig", str(kubeconfig), "--health-port", "0",
        "--no-leader-elect", "--bind-concurrency", str(bind_concurrency), cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    profilers: list[subprocess.Popen] = []
    try:
        watcher = asyncio.create_task(wait_all_bound(client, "bench-sched", pods))
        await wait_for_line(proc.stderr, "caches synced")
        if profile:
            profilers = [start_profiler(proc.pid, f"{profile}.scheduler"),
                         start_profiler(cluster.apiserver.pid, f"{profile}.apiserver")]
        started = time.perf_counter()
        pids = (proc.pid, cluster.apiserver.pid, cluster.etcd.proc.pid)
        cpu_before = [cpu_seconds(pid) for pid in pids] + [time.process_time()]
        drainer = asyncio.create_task(drain(proc.stderr, cluster.dir / "scheduler.log"))
        placed = await asyncio.wait_for(watcher, 600)
        elapsed = time.perf_counter() - started
        sched_cpu, api_cpu, etcd_cpu = (cpu_seconds(pid) - before for pid, before in zip(pids, cpu_before))
        own_cpu = time.process_time() - cpu_before[3]
        print(f"CPU during scheduling: scheduler process {sched_cpu:.2f}s ({sched_cpu / elapsed:.0%}), "
              f"apiserver {api_cpu:.2f}s ({api_cpu / elapsed:.0%}), etcd {etcd_cpu:.2f}s ({etcd_cpu / elapsed:.0%}), "
              f"this process (watching) {own_cpu:.2f}s ({own_cpu / elapsed:.0%})")
    finally:
        for profiler in profilers:
            profiler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            profiler.wait()
        proc.terminate()
        await proc.wait()
    await drainer
    check_no_overcommit(placed)
    return elapsed


def start_profiler(pid: int, path: str) -> subprocess.Popen:
    """py-spy (installed in the venv by `make install`) sampling `pid` into raw collapsed stacks."""
    py_spy = str(Path(sys.executable).with_name("py-spy"))
    return subprocess.Popen([py_spy, "record", "--pid", str(pid), "-r", "250", "-f", "raw", "-o", path],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def check_no_overcommit(placed: dict[str, str]) -> None:
    per_node: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for node in placed.values():
        use = per_node[node]
        use[0] += cpu_millis("100m")
        use[1] += memory_bytes("128Mi")
        use[2] += 1
    alloc = (cpu_millis("4"), memory_bytes("16Gi"), 110)
    over = [n for n, use in per_node.items() if any(u > a for u, a in zip(use, alloc))]
    print(f"pods per node: min {min(u[2] for u in per_node.values())}, max {max(u[2] for u in per_node.values())}"
          f" over {len(per_node)} nodes; overcommitted nodes: {len(over)}")
    if over:
        raise SystemExit(f"overcommitted: {over[:5]}")


async def bench_raw(client: AsyncClient, nodes: int, pods: int, concurrency: int) -> float:
    async def bind(i: int) -> None:
        name = f"pod-{i:05d}"
        body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                "target": {"kind": "Node", "name": f"node-{i % nodes:04d}"}}
        await client.create_subresource("pods", name, "binding", body, "bench-raw")

    started = time.perf_counter()
    await gather_bounded((bind(i) for i in range(pods)), concurrency)
    return time.perf_counter() - started


async def main_async(args: argparse.Namespace, cluster: ControlPlane) -> tuple[float, float]:
    async with AsyncClient(cluster.config("admin")) as admin:
        await populate(admin, args.nodes, args.pods)
        sched = await bench_scheduler(cluster, admin, args.pods, args.bind_concurrency, args.profile)
    # A fresh client for the baseline, as the scheduler process had its own.
    async with AsyncClient(cluster.config("system:kube-scheduler")) as client:
        raw = await bench_raw(client, args.nodes, args.pods, args.bind_concurrency)
    sched_rate, raw_rate = args.pods / sched, args.pods / raw
    print(f"scheduler: {args.pods} pods onto {args.nodes} nodes in {sched:.2f}s = {sched_rate:.0f} pods/s")
    print(f"raw bind : {args.pods} binding POSTs (concurrency {args.bind_concurrency}) in {raw:.2f}s = {raw_rate:.0f} pods/s")
    print(f"ratio scheduler/raw: {sched_rate / raw_rate:.2f}")
    return sched_rate, raw_rate


def run_once(args: argparse.Namespace) -> tuple[float, float]:
    with scratch_dir("minik8s-bench-scheduler-", keep=args.keep) as directory:
        cluster = ControlPlane(directory)
        try:
            cluster.start()
            return asyncio.run(main_async(args, cluster))
        finally:
            cluster.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="100 nodes, 400 pods")
    p.add_argument("--nodes", type=int, default=None)
    p.add_argument("--pods", type=int, default=None)
    p.add_argument("--bind-concurrency", type=int, default=16,
                   help="bindings in flight, for the scheduler and the raw baseline alike")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="N runs, each on a fresh etcd and apiserver; prints the median (2 cores are noisy)")
    p.add_argument("--profile", metavar="PREFIX",
                   help="while scheduling, record py-spy profiles (raw stacks) of the scheduler and the apiserver "
                        "into PREFIX.scheduler and PREFIX.apiserver")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    args = p.parse_args()
    args.nodes = args.nodes or (100 if args.quick else 500)
    args.pods = args.pods or (400 if args.quick else 2000)
    results = [run_once(args) for _ in range(args.repeat)]
    if len(results) > 1:
        sched = sorted(r[0] for r in results)
        ratios = sorted(r[0] / r[1] for r in results)
        print(f"median of {len(results)} runs: scheduler {statistics.median(sched):.0f} pods/s "
              f"(min {sched[0]:.0f}, max {sched[-1]:.0f}), ratio scheduler/raw {statistics.median(ratios):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
