"""Builders for pod and node dicts and a tiny in-memory snapshot, shared by the scheduler unit tests."""
from __future__ import annotations

from typing import Any

from scheduler.cache import Cache
from scheduler.nodeinfo import NodeInfo, PodInfo, pod_info


def make_node(name: str, *, cpu: str = "4", memory: str = "8Gi", pods: str = "110", labels: dict | None = None,
              taints: list | None = None, unschedulable: bool = False, ready: str | None = "True") -> dict:
    node: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": {},
        "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods}},
    }
    if taints:
        node["spec"]["taints"] = taints
    if unschedulable:
        node["spec"]["unschedulable"] = True
    if ready is not None:
        node["status"]["conditions"] = [{"type": "Ready", "status": ready}]
    return node


def make_pod(name: str, *, namespace: str = "default", cpu: str | None = None, memory: str | None = None,
             labels: dict | None = None, node: str | None = None, owner: str | None = None,
             **spec: Any) -> dict:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    container: dict[str, Any] = {"name": "c", "image": "busybox"}
    if requests:
        container["resources"] = {"requests": requests}
    pod: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {"containers": [container], **spec},
    }
    if node:
        pod["spec"]["nodeName"] = node
    if owner:
        pod["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner,
                                               "uid": owner, "controller": True}]
    return pod


def snapshot(nodes: list[dict], pods: list[dict] = ()) -> Cache:
    cache = Cache()
    for n in nodes:
        cache.add_node(n)
    for p in pods:
        cache.add_pod(p)
    return cache


def info(pod: dict) -> PodInfo:
    return pod_info(pod)


def node_info(node: dict, pods: list[dict] = ()) -> NodeInfo:
    ni = NodeInfo(node)
    for p in pods:
        ni.add_pod(pod_info(p))
    return ni
