#!/usr/bin/env python3
"""Workload controllers under load: a big Deployment against bare pods, and ReplicaSet churn.

    python bench/controllers.py [--replicas 100] [--replicasets 1000] [--nodes 2] [--quick] [--keep]

Starts its own cluster of real processes (etcd, apiserver, controller-manager with only the nodeipam,
replicaset and deployment controllers, scheduler, N kubelets on the host's dockerd) through
`tests/cluster.py`, then measures, in one run:

1. Pod startup, baseline: N bare pods created at once (the scheduler places them) until all are Ready.
   Then the same N as one Deployment: from its create until status.availableReplicas == N. The ratio
   is what the Deployment and ReplicaSet controllers add on top of scheduling and the kubelets (the
   ReplicaSet creates in slow-start batches; the pods are identical).
2. Control-plane churn: M ReplicaSets whose pods can never be scheduled (a nodeSelector no node has),
   created at 0 replicas, all scaled to 1, then all back to 0. Each phase ends when a watch has seen
   every ReplicaSet's status catch up (observedGeneration == generation and status.replicas == the
   target); reconciles/s = M / phase wall time (every ReplicaSet needs at least one reconcile that
   writes per phase), alongside the status writes the watch saw and the pods created/deleted per second.

Everything is removed at the end (the cluster's `stop()`: processes, containers, bridges, temp dir).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from client.kubeconfig import Config  # noqa: E402
from client.rest import AsyncClient  # noqa: E402
from tests.cluster import Cluster  # noqa: E402

IMAGE = "minik8s/myapp:v1"
CONCURRENCY = 50


def pod_spec() -> dict:
    return {"containers": [{"name": "web", "image": IMAGE}], "terminationGracePeriodSeconds": 1}


def is_ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


async def bounded(n: int, coros) -> list:
    sem = asyncio.Semaphore(n)

    async def run(c):
        async with sem:
            return await c
    return await asyncio.gather(*(run(c) for c in coros))


async def watch_until(client: AsyncClient, resource: str, ns: str, done, *, label_selector: str | None = None,
                      timeout: float = 600) -> int:
    """Watch `resource` in `ns` from now (current state first) until `done(state)`; returns events seen."""
    state: dict[str, dict] = {}
    listed = await client.list_all(resource, ns, label_selector)
    for obj in listed["items"]:
        state[obj["metadata"]["name"]] = obj
    events = 0
    rv = listed["metadata"]["resourceVersion"]
    deadline = time.monotonic() + timeout
    while not done(state):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{resource} in {ns} did not converge in {timeout}s")
        async for kind, obj in client.watch(resource, ns, resource_version=rv, label_selector=label_selector,
                                            timeout_seconds=60):
            rv = obj["metadata"].get("resourceVersion", rv)
            if kind == "BOOKMARK":
                continue
            events += 1
            if kind == "DELETED":
                state.pop(obj["metadata"]["name"], None)
            else:
                state[obj["metadata"]["name"]] = obj
            if done(state):
                break
    return events


async def new_namespace(client: AsyncClient, name: str) -> str:
    await client.create("namespaces", {"metadata": {"name": name}})
    return name


async def bare_pods(client: AsyncClient, n: int) -> float:
    ns = await new_namespace(client, f"bench-pods-{os.urandom(2).hex()}")
    start = time.monotonic()
    watcher = asyncio.create_task(watch_until(
        client, "pods", ns, lambda s: len(s) == n and all(is_ready(p) for p in s.values())))
    await bounded(CONCURRENCY, (client.create("pods", {"metadata": {"name": f"p{i}", "labels": {"app": "bare"}},
                                                       "spec": pod_spec()}, ns) for i in range(n)))
    await watcher
    took = time.monotonic() - start
    await client.delete_collection("pods", ns)
    await watch_until(client, "pods", ns, lambda s: not s)
    return took


async def deployment(client: AsyncClient, n: int) -> float:
    ns = await new_namespace(client, f"bench-deploy-{os.urandom(2).hex()}")
    d = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "big"},
         "spec": {"replicas": n, "selector": {"matchLabels": {"app": "big"}},
                  "template": {"metadata": {"labels": {"app": "big"}}, "spec": pod_spec()}}}
    start = time.monotonic()
    await client.create("deployments", d, ns)
    await watch_until(client, "deployments", ns,
                      lambda s: "big" in s and (s["big"].get("status") or {}).get("availableReplicas") == n)
    took = time.monotonic() - start
    await client.delete("deployments", "big", ns)
    for rs in (await client.list("replicasets", ns))["items"]:
        await client.delete("replicasets", rs["metadata"]["name"], ns)
    await client.delete_collection("pods", ns)
    await watch_until(client, "pods", ns, lambda s: not s)
    return took


async def churn(client: AsyncClient, m: int) -> list[tuple[str, float, int, int]]:
    ns = await new_namespace(client, f"bench-churn-{os.urandom(2).hex()}")

    def rs(i: int) -> dict:
        labels = {"app": f"churn-{i}"}
        return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": f"rs-{i}", "labels": {"churn": "1"}},
                "spec": {"replicas": 0, "selector": {"matchLabels": labels},
                         "template": {"metadata": {"labels": labels},
                                      "spec": {**pod_spec(), "nodeSelector": {"bench.minik8s.io/none": "x"}}}}}

    def caught_up(target: int):
        def done(state: dict) -> bool:
            return len(state) == m and all(
                (o.get("status") or {}).get("observedGeneration") == o["metadata"]["generation"]
                and (o.get("status") or {}).get("replicas", 0) == target for o in state.values())
        return done

    results = []
    for phase, target, act in (
            ("create at 0", 0, lambda: bounded(CONCURRENCY, (client.create("replicasets", rs(i), ns)
                                                              for i in range(m)))),
            ("scale 0->1", 1, lambda: bounded(CONCURRENCY, (client.patch("replicasets", f"rs-{i}",
                                                                         {"spec": {"replicas": 1}}, ns)
                                                            for i in range(m)))),
            ("scale 1->0", 0, lambda: bounded(CONCURRENCY, (client.patch("replicasets", f"rs-{i}",
                                                                         {"spec": {"replicas": 0}}, ns)
                                                            for i in range(m))))):
        start = time.monotonic()
        watcher = asyncio.create_task(watch_until(client, "replicasets", ns, caught_up(target),
                                                  label_selector="churn=1"))
        await asyncio.sleep(0)
        await act()
        events = await watcher
        took = time.monotonic() - start
        pods = len((await client.list("pods", ns))["items"])
        results.append((phase, took, events, pods))
    await bounded(CONCURRENCY, (client.delete("replicasets", f"rs-{i}", ns) for i in range(m)))
    await client.delete_collection("pods", ns)
    return results


async def run(cluster: Cluster, args: argparse.Namespace) -> None:
    config = Config.from_kubeconfig(cluster.kubeconfig("admin"))
    async with AsyncClient(config) as client:
        print(f"\n1) {args.replicas} pods with real containers on {args.nodes} node(s)")
        bare = await bare_pods(client, args.replicas)
        print(f"   bare pods created directly   : {bare:7.1f} s to all Ready")
        deploy = await deployment(client, args.replicas)
        print(f"   Deployment of {args.replicas:<4} replicas   : {deploy:7.1f} s to all Available")
        print(f"   ratio Deployment / bare pods : {deploy / bare:7.2f}x")

        print(f"\n2) control-plane churn: {args.replicasets} ReplicaSets, pods unschedulable")
        print(f"   {'phase':<12} {'wall s':>8} {'RS reconciles/s':>16} {'status events':>14} {'pods after':>11}")
        for phase, took, events, pods in await churn(client, args.replicasets):
            print(f"   {phase:<12} {took:8.2f} {args.replicasets / took:16.1f} {events:14d} {pods:11d}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--replicas", type=int, default=100)
    p.add_argument("--replicasets", type=int, default=1000)
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="20 replicas, 100 ReplicaSets")
    p.add_argument("--keep", action="store_true", help="keep the cluster's directory (logs)")
    args = p.parse_args()
    if args.quick:
        args.replicas, args.replicasets = 20, 100
    print(f"$ {' '.join(sys.argv)}\nnproc={os.cpu_count()} load={os.getloadavg()[0]:.2f}")
    workdir = Path(tempfile.mkdtemp(prefix="bench-controllers-"))
    cluster = Cluster(workdir / "cluster", nodes=args.nodes,
                      controller_manager_flags=["--controllers", "nodeipam,replicaset,deployment"])
    started = time.monotonic()
    try:
        cluster.start()
        print(f"cluster up in {time.monotonic() - started:.1f} s")
        asyncio.run(run(cluster, args))
    finally:
        if args.keep:
            print(f"logs kept in {workdir}")
            for proc in list(cluster.procs.values()) + [n.proc for n in cluster.kubelets]:
                proc.stop()
        else:
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
