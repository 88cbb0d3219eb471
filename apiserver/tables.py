"""Server-side printing: `meta.k8s.io/v1 Table` responses for `kubectl get`.

kubectl asks for `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` and prints the columns the server
chooses; without them it can only show NAME and AGE. Each kind may define its columns here (the ones
`kubectl get` shows for it); others get Name and Age. Rows carry the object's metadata as
`PartialObjectMetadata`, as kubectl's default includeObject=Metadata expects.
"""
from __future__ import annotations

import datetime
from typing import Any, Callable

from api.registry import ResourceDef

Obj = dict[str, Any]
Column = tuple[str, str, str, int, Callable[[Obj], Any]]  # name, type, description, priority, value


def wants_table(accept: str | None) -> bool:
    return bool(accept) and "as=Table" in accept


def age(obj: Obj, now: datetime.datetime | None = None) -> str:
    ts = obj.get("metadata", {}).get("creationTimestamp")
    if not ts:
        return "<unknown>"
    created = datetime.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    secs = int(((now or datetime.datetime.now(datetime.timezone.utc)) - created).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= 2 * size or (unit == "m" and secs >= size):
            return f"{secs // size}{unit}"
    return f"{max(secs, 0)}s"


def _pod_ready(p: Obj) -> str:
    statuses = (p.get("status") or {}).get("containerStatuses") or []
    total = len((p.get("spec") or {}).get("containers") or [])
    return f"{sum(1 for s in statuses if s.get('ready'))}/{total}"


def _pod_status(p: Obj) -> str:
    if p["metadata"].get("deletionTimestamp"):
        return "Terminating"
    status = p.get("status") or {}
    for s in status.get("initContainerStatuses") or []:
        state = s.get("state") or {}
        if "waiting" in state and state["waiting"].get("reason") not in (None, "PodInitializing"):
            return f'Init:{state["waiting"]["reason"]}'
    reason = status.get("reason") or status.get("phase") or "Pending"
    for s in status.get("containerStatuses") or []:
        state = s.get("state") or {}
        if state.get("waiting", {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif state.get("terminated", {}).get("reason"):
            reason = state["terminated"]["reason"]
    return reason


def _restarts(p: Obj) -> int:
    return sum(s.get("restartCount", 0) for s in (p.get("status") or {}).get("containerStatuses") or [])


def _node_status(n: Obj) -> str:
    ready = next((c["status"] for c in (n.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"), None)
    out = "Ready" if ready == "True" else "NotReady"
    if (n.get("spec") or {}).get("unschedulable"):
        out += ",SchedulingDisabled"
    return out


def _ports(s: Obj) -> str:
    out = []
    for p in (s.get("spec") or {}).get("ports") or []:
        port = f'{p.get("port")}' + (f':{p["nodePort"]}' if p.get("nodePort") else "")
        out.append(f'{port}/{p.get("protocol", "TCP")}')
    return ",".join(out) or "<none>"


def _external_ip(s: Obj) -> str:
    ingress = ((s.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    ips = [i.get("ip") or i.get("hostname") for i in ingress] + list((s.get("spec") or {}).get("externalIPs") or [])
    if ips:
        return ",".join(ips)
    return "<pending>" if (s.get("spec") or {}).get("type") == "LoadBalancer" else "<none>"


def _sts(key: str) -> Callable[[Obj], Any]:
    return lambda o: (o.get("status") or {}).get(key, 0)


COLUMNS: dict[str, list[Column]] = {
    "Pod": [("Ready", "string", "containers ready", 0, _pod_ready), ("Status", "string", "", 0, _pod_status),
            ("Restarts", "integer", "", 0, _restarts),
            ("IP", "string", "", 1, lambda p: (p.get("status") or {}).get("podIP") or "<none>"),
            ("Node", "string", "", 1, lambda p: (p.get("spec") or {}).get("nodeName") or "<none>")],
    "Node": [("Status", "string", "", 0, _node_status),
             ("Version", "string", "", 0, lambda n: ((n.get("status") or {}).get("nodeInfo") or {}).get(
                 "kubeletVersion", ""))],
    "Service": [("Type", "string", "", 0, lambda s: (s.get("spec") or {}).get("type", "ClusterIP")),
                ("Cluster-IP", "string", "", 0, lambda s: (s.get("spec") or {}).get("clusterIP") or "<none>"),
                ("External-IP", "string", "", 0, _external_ip), ("Port(s)", "string", "", 0, _ports)],
    "Deployment": [("Ready", "string", "", 0, lambda d: f'{_sts("readyReplicas")(d)}/{(d.get("spec") or {}).get("replicas", 0)}'),
                   ("Up-to-date", "integer", "", 0, _sts("updatedReplicas")),
                   ("Available", "integer", "", 0, _sts("availableReplicas"))],
    "ReplicaSet": [("Desired", "integer", "", 0, lambda r: (r.get("spec") or {}).get("replicas", 0)),
                   ("Current", "integer", "", 0, _sts("replicas")), ("Ready", "integer", "", 0, _sts("readyReplicas"))],
    "StatefulSet": [("Ready", "string", "", 0, lambda s: f'{_sts("readyReplicas")(s)}/{(s.get("spec") or {}).get("replicas", 0)}')],
    "DaemonSet": [("Desired", "integer", "", 0, _sts("desiredNumberScheduled")),
                  ("Current", "integer", "", 0, _sts("currentNumberScheduled")),
                  ("Ready", "integer", "", 0, _sts("numberReady"))],
    "Job": [("Status", "string", "", 0, lambda j: next((c["type"] for c in (j.get("status") or {}).get("conditions") or []
                                                      if c.get("status") == "True"), "Running")),
            ("Completions", "string", "", 0, lambda j: f'{_sts("succeeded")(j)}/{(j.get("spec") or {}).get("completions", 1)}')],
    "CronJob": [("Schedule", "string", "", 0, lambda c: (c.get("spec") or {}).get("schedule", "")),
                ("Suspend", "boolean", "", 0, lambda c: bool((c.get("spec") or {}).get("suspend"))),
                ("Active", "integer", "", 0, lambda c: len((c.get("status") or {}).get("active") or []))],
    "Namespace": [("Status", "string", "", 0, lambda n: (n.get("status") or {}).get("phase", "Active"))],
    "Event": [("Type", "string", "", 0, lambda e: e.get("type", "")), ("Reason", "string", "", 0, lambda e: e.get("reason", "")),
              ("Object", "string", "", 0, lambda e: f'{(e.get("involvedObject") or {}).get("kind", "").lower()}/'
                                                  f'{(e.get("involvedObject") or {}).get("name", "")}'),
              ("Message", "string", "", 0, lambda e: e.get("message", ""))],
}


def table(rd: ResourceDef, objects: list[Obj], resource_version: str, cont: str | None = None) -> Obj:
    extra = COLUMNS.get(rd.kind, [])
    columns = [("Name", "string", "Name must be unique within a namespace.", 0, lambda o: o["metadata"]["name"])]
    columns += extra + [("Age", "string", "CreationTimestamp", 0, age)]
    now = datetime.datetime.now(datetime.timezone.utc)
    rows = []
    for obj in objects:
        cells = [age(obj, now) if fn is age else fn(obj) for _, _, _, _, fn in columns]
        rows.append({"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                                "metadata": obj["metadata"]}})
    meta: Obj = {"resourceVersion": resource_version}
    if cont:
        meta["continue"] = cont
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
            "columnDefinitions": [{"name": n, "type": t, "format": "name" if n == "Name" else "", "description": d,
                                   "priority": p} for n, t, d, p, _ in columns],
            "rows": rows}
