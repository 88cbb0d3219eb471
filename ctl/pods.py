"""Finding the pod and container a command means, as kubectl's `logs`/`exec` do.

A bare name or `pod/NAME` is that pod; `TYPE/NAME` of a workload (deploy/web, rs/x, sts/y, job/z, ...)
means one of its pods, chosen by the workload's selector (a running one first, then the newest), with
"Found N pods, using pod/..." on stderr when there was a choice. Without `-c`, the container is the one
the `kubectl.kubernetes.io/default-container` annotation names, else the first, with kubectl's
"Defaulted container ..." note when the pod has several.
"""
from __future__ import annotations

import sys
from typing import Any

from api.errors import APIError
from ctl.discovery import UsageError

Obj = dict[str, Any]
DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"


def selector_string(selector: Obj) -> str:
    """A LabelSelector object as the query-string form (matchLabels and matchExpressions)."""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def resolve_pod(session: Any, arg: str) -> Obj:
    client = session.client
    pod_rd = session.discovery.resolve("pods")
    type_, slash, name = arg.partition("/")
    if not slash:
        return client.get(pod_rd, arg, session.namespace)
    rd = session.discovery.resolve(type_)
    if rd.kind == "Pod":
        return client.get(pod_rd, name, session.namespace)
    owner = client.get(rd, name, session.namespace)
    selector = ((owner.get("spec") or {}).get("selector"))
    if not isinstance(selector, dict) or not selector:
        raise UsageError(f"cannot attach to {rd.kind.lower()}: selector for {rd.kind} is not supported")
    pods = client.list(pod_rd, session.namespace, label_selector=selector_string(selector)).get("items") or []
    if not pods:
        raise APIError(404, "NotFound", f"no pods found for {rd.kind.lower()}/{name}")
    pods.sort(key=lambda p: p["metadata"].get("creationTimestamp") or "", reverse=True)
    pods.sort(key=lambda p: (p.get("status") or {}).get("phase") != "Running")   # stable: newest running first
    if len(pods) > 1:
        print(f"Found {len(pods)} pods, using pod/{pods[0]['metadata']['name']}", file=sys.stderr)
    return pods[0]


def container_name(pod: Obj, flag: str | None, *, quiet: bool = False) -> str:
    if flag:
        return flag
    containers = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
    annotated = ((pod["metadata"].get("annotations") or {}).get(DEFAULT_CONTAINER))
    if annotated in containers:
        return annotated
    if not containers:
        raise UsageError(f"pod {pod['metadata']['name']} does not have any containers")
    if len(containers) > 1 and not quiet:
        print(f'Defaulted container "{containers[0]}" out of: {", ".join(containers)}', file=sys.stderr)
    return containers[0]
