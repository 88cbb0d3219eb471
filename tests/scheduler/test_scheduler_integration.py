"""The scheduler against the real apiserver: hundreds of Node objects (no kubelets), real bindings.

Each test runs its own in-process scheduler under a unique `schedulerName`, so it only ever touches
the pods of that test, and creates nodes labelled with a unique pool name that it deletes at the end.
Waits are watches with a deadline, never sleeps.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections import defaultdict

import pytest

from api.quantity import cpu_millis
from client.events import EventRecorder
from client.factory import InformerFactory
from client.kubeconfig import Config, write_kubeconfig
from client.rest import AsyncClient
from scheduler.queue import SchedulingQueue
from scheduler.scheduler import Scheduler
from tests.conftest import ROOT

POOL_LABEL = "scheduler.test.minik8s.io/pool"
DEADLINE = 30.0


@pytest.fixture
async def client(apiserver):
    config = Config(server=apiserver.url, token=apiserver.tokens["system:kube-scheduler"],
                    ca_file=str(apiserver.ca))
    async with AsyncClient(config) as c:
        yield c


@pytest.fixture
async def admin(apiserver):
    async with AsyncClient(Config(server=apiserver.url, token=apiserver.admin_token,
                                  ca_file=str(apiserver.ca))) as c:
        yield c


@pytest.fixture
async def pool(admin):
    """A unique node label value; every Node made with it is deleted afterwards."""
    name = f"pool-{os.urandom(3).hex()}"
    yield name
    await admin.delete_collection("nodes", label_selector=f"{POOL_LABEL}={name}")


@pytest.fixture
async def scheduler(client, pool):
    factory = InformerFactory(client)
    recorder = EventRecorder(client, "test-scheduler")
    sched = Scheduler(client, factory, recorder, scheduler_name=f"sched-{pool}",
                      queue=SchedulingQueue(initial_backoff=0.2, max_backoff=1.0))
    factory.start()
    await factory.wait_for_sync(10)
    task = asyncio.create_task(sched.run())
    yield sched
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await recorder.flush()
    await factory.stop()


def node_body(name: str, pool: str, *, cpu: str = "1", memory: str = "4Gi", pods: str = "110",
              taints: list | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {POOL_LABEL: pool, "kubernetes.io/hostname": name}},
            "spec": {"taints": taints} if taints else {},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods},
                       "capacity": {"cpu": cpu, "memory": memory, "pods": pods},
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def pod_body(name: str, scheduler_name: str, *, cpu: str = "100m", pool: str | None = None) -> dict:
    spec = {"schedulerName": scheduler_name,
            "containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}]}
    if pool:
        spec["nodeSelector"] = {POOL_LABEL: pool}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


async def create_all(client: AsyncClient, res: str, bodies: list[dict], namespace: str | None = None,
                     concurrency: int = 32) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(body: dict) -> None:
        async with gate:
            await client.create(res, body, namespace)

    await asyncio.gather(*(one(b) for b in bodies))


async def wait_pods(client: AsyncClient, namespace: str, done, timeout: float = DEADLINE) -> dict[str, dict]:
    """Watch the namespace's pods until `done(pods by name)` holds; returns that view."""
    async def watch() -> dict[str, dict]:
        listed = await client.list("pods", namespace)
        pods = {p["metadata"]["name"]: p for p in listed["items"]}
        rv = listed["metadata"]["resourceVersion"]
        while not done(pods):
            async for kind, obj in client.watch("pods", namespace, resource_version=rv, timeout_seconds=60):
                rv = obj["metadata"].get("resourceVersion", rv)
                if kind in ("ADDED", "MODIFIED"):
                    pods[obj["metadata"]["name"]] = obj
                elif kind == "DELETED":
                    pods.pop(obj["metadata"]["name"], None)
                if done(pods):
                    break
        return pods

    return await asyncio.wait_for(watch(), timeout)


async def wait_events(client: AsyncClient, namespace: str, reason: str, count: int = 1,
                      timeout: float = DEADLINE) -> list[dict]:
    """Events are written in the background; poll-free wait through a watch on the namespace's events."""
    async def watch() -> list[dict]:
        listed = await client.list("events", namespace)
        seen = [e for e in listed["items"] if e.get("reason") == reason]
        rv = listed["metadata"]["resourceVersion"]
        while len(seen) < count:
            async for kind, obj in client.watch("events", namespace, resource_version=rv, timeout_seconds=60):
                rv = obj["metadata"].get("resourceVersion", rv)
                if kind == "ADDED" and obj.get("reason") == reason:
                    seen.append(obj)
                    if len(seen) >= count:
                        break
        return seen

    return await asyncio.wait_for(watch(), timeout)


def bound(pod: dict) -> str | None:
    return pod.get("spec", {}).get("nodeName")


def unschedulable_condition(pod: dict) -> dict | None:
    for cond in pod.get("status", {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return cond
    return None


async def test_burst_binds_every_pod_without_overcommit(admin, client, pool, scheduler, namespace):
    await create_all(admin, "nodes", [node_body(f"{pool}-{i:03d}", pool, cpu="1") for i in range(200)])
    # 400 pods of 400m on 200 one-CPU nodes: exactly two fit per node, so any overcommit would
    # leave a pod pending and any double-counting would push one onto a third slot.
    await create_all(admin, "pods", [pod_body(f"p-{i:03d}", scheduler.scheduler_name, cpu="400m", pool=pool)
                                     for i in range(400)], namespace)
    pods = await wait_pods(client, namespace, lambda ps: len(ps) == 400 and all(map(bound, ps.values())))
    per_node: dict[str, int] = defaultdict(int)
    for p in pods.values():
        per_node[bound(p)] += cpu_millis(p["spec"]["containers"][0]["resources"]["requests"]["cpu"])
    assert max(per_node.values()) <= 1000
    assert len(per_node) == 200


async def test_bound_pod_gets_scheduled_event(admin, client, pool, scheduler, namespace):
    await admin.create("nodes", node_body(f"{pool}-a", pool))
    await admin.create("pods", pod_body("web", scheduler.scheduler_name, pool=pool), namespace)
    pods = await wait_pods(client, namespace, lambda ps: bound(ps.get("web", {})))
    assert bound(pods["web"]) == f"{pool}-a"
    [event] = await wait_events(admin, namespace, "Scheduled")  # the scheduler may write events, not read them
    assert event["message"] == f"Successfully assigned {namespace}/web to {pool}-a"
    assert event["type"] == "Normal"


async def test_unschedulable_pod_gets_condition_with_counts_and_event(admin, client, pool, scheduler, namespace):
    taint = [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]
    await create_all(admin, "nodes", [node_body(f"{pool}-a", pool), node_body(f"{pool}-b", pool),
                                      node_body(f"{pool}-cp", pool, cpu="8", taints=taint)])
    await admin.create("pods", pod_body("big", scheduler.scheduler_name, cpu="2"), namespace)
    pods = await wait_pods(client, namespace, lambda ps: unschedulable_condition(ps.get("big", {})))
    cond = unschedulable_condition(pods["big"])
    others = len(scheduler.cache) - 3  # nodes of other tests sharing this apiserver, if any
    expected = f"0/{others + 3} nodes are available: "
    reasons = ["1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }",
               f"{2 + others} Insufficient cpu"] if others == 0 else None
    assert cond["reason"] == "Unschedulable"
    if reasons is not None:
        assert cond["message"] == expected + ", ".join(sorted(reasons)) + "."
    else:
        assert cond["message"].startswith(expected)
    [event] = await wait_events(admin, namespace, "FailedScheduling")
    assert event["type"] == "Warning" and event["message"] == cond["message"]


async def test_pending_pod_is_scheduled_when_a_fitting_node_appears(admin, client, pool, scheduler, namespace):
    await admin.create("nodes", node_body(f"{pool}-small", pool, cpu="1"))
    await admin.create("pods", pod_body("big", scheduler.scheduler_name, cpu="2", pool=pool), namespace)
    await wait_pods(client, namespace, lambda ps: unschedulable_condition(ps.get("big", {})))
    await admin.create("nodes", node_body(f"{pool}-large", pool, cpu="4"))
    pods = await wait_pods(client, namespace, lambda ps: bound(ps.get("big", {})))
    assert bound(pods["big"]) == f"{pool}-large"


async def test_pending_pod_is_scheduled_when_a_bound_pod_goes_away(admin, client, pool, scheduler, namespace):
    await admin.create("nodes", node_body(f"{pool}-a", pool, cpu="1"))
    await admin.create("pods", pod_body("first", scheduler.scheduler_name, cpu="800m", pool=pool), namespace)
    await wait_pods(client, namespace, lambda ps: bound(ps.get("first", {})))
    await admin.create("pods", pod_body("second", scheduler.scheduler_name, cpu="800m", pool=pool), namespace)
    await wait_pods(client, namespace, lambda ps: unschedulable_condition(ps.get("second", {})))
    # No kubelet runs: a bound pod's graceful delete needs the final grace-0 delete a kubelet would send.
    await admin.delete("pods", "first", namespace, grace_period_seconds=0)
    pods = await wait_pods(client, namespace, lambda ps: bound(ps.get("second", {})))
    assert bound(pods["second"]) == f"{pool}-a"


async def test_pods_of_other_schedulers_are_left_alone(admin, client, pool, scheduler, namespace):
    await admin.create("nodes", node_body(f"{pool}-a", pool))
    await admin.create("pods", pod_body("theirs", "someone-else", pool=pool), namespace)
    await admin.create("pods", pod_body("mine", scheduler.scheduler_name, pool=pool), namespace)
    pods = await wait_pods(client, namespace, lambda ps: bound(ps.get("mine", {})))
    assert not bound(pods["theirs"])
    assert scheduler.queue.stats()["unschedulable"] == 0


async def test_scheduler_command_binds_pods_as_lease_holder(apiserver, admin, client, pool, namespace, tmp_path):
    kubeconfig = write_kubeconfig(tmp_path / "scheduler.kubeconfig", server=apiserver.url,
                                  ca_pem=apiserver.ca.read_bytes(), token=apiserver.tokens["system:kube-scheduler"],
                                  user="system:kube-scheduler")
    name = f"sched-cmd-{pool}"
    await admin.create("nodes", node_body(f"{pool}-a", pool))
    await admin.create("pods", pod_body("web", name, pool=pool), namespace)
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "scheduler", "--kubeconfig", str(kubeconfig),
                             "--scheduler-name", name, "--health-port", "0", "--identity", name,
                             "--leader-elect-lease-duration", "4", "--leader-elect-renew-deadline", "3",
                             "--leader-elect-retry-period", "1"], cwd=ROOT)
    try:
        pods = await wait_pods(client, namespace, lambda ps: bound(ps.get("web", {})), timeout=40)
        assert bound(pods["web"]) == f"{pool}-a"
    finally:
        proc.terminate()
        assert proc.wait(15) == 0
    # On a clean stop the leader releases the lease so a successor need not wait for expiry.
    lease = await admin.get("leases.coordination.k8s.io", "kube-scheduler", "kube-system")
    assert not lease["spec"].get("holderIdentity")
