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


def _spec(o: Obj) -> Obj:
    return o.get("spec") or {}


def _since(ts: str | None) -> str:
    return age({"metadata": {"creationTimestamp": ts}}) if ts else "<none>"


def _labels(selector: Any) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((selector or {}).items())) or "<none>"


def _label_selector(selector: Any) -> str:
    """metav1.FormatLabelSelector: matchLabels as k=v, then matchExpressions."""
    selector = selector or {}
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for e in selector.get("matchExpressions") or []:
        op, key, values = e.get("operator"), e.get("key"), ",".join(sorted(e.get("values") or []))
        parts.append({"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})", "Exists": key,
                      "DoesNotExist": f"!{key}"}.get(op, f"{key} {op} ({values})"))
    return ",".join(parts) or "<none>"


def _workload_spec(o: Obj) -> Obj:
    """The spec holding the pod template and selector: a CronJob's is its Job template's."""
    spec = _spec(o)
    return (spec.get("jobTemplate") or {}).get("spec") or {} if "jobTemplate" in spec else spec


def _template_containers(field: str) -> Callable[[Obj], str]:
    def value(o: Obj) -> str:
        containers = (((_workload_spec(o).get("template") or {}).get("spec") or {}).get("containers")) or []
        return ",".join(c.get(field, "") for c in containers)
    return value


def _workload_wide(*, selector: bool = True) -> list[Column]:
    """The wide columns of workloads: Containers, Images and (but for StatefulSets) Selector."""
    out: list[Column] = [("Containers", "string", "Names of each container in the template.", 1, _template_containers("name")),
                         ("Images", "string", "Images referenced by each container in the template.", 1,
                          _template_containers("image"))]
    if selector:
        out.append(("Selector", "string", "", 1, lambda o: _label_selector(_workload_spec(o).get("selector"))))
    return out


def _readiness_gates(p: Obj) -> str:
    gates = _spec(p).get("readinessGates") or []
    if not gates:
        return "<none>"
    true = {c.get("type") for c in (p.get("status") or {}).get("conditions") or [] if c.get("status") == "True"}
    return f'{sum(1 for g in gates if g.get("conditionType") in true)}/{len(gates)}'


def _node_roles(n: Obj) -> str:
    roles = set()
    for key, value in (n["metadata"].get("labels") or {}).items():
        if key.startswith("node-role.kubernetes.io/"):
            roles.add(key.removeprefix("node-role.kubernetes.io/"))
        elif key == "kubernetes.io/role":
            roles.add(value)
    return ",".join(sorted(roles - {""})) or "<none>"


def _node_address(kind: str) -> Callable[[Obj], str]:
    return lambda n: next((a.get("address") for a in (n.get("status") or {}).get("addresses") or []
                           if a.get("type") == kind), None) or "<none>"


def _node_info(key: str) -> Callable[[Obj], str]:
    return lambda n: ((n.get("status") or {}).get("nodeInfo") or {}).get(key) or "<unknown>"


def _job_completions(j: Obj) -> str:
    spec = _spec(j)
    if spec.get("completions") is not None:
        return f'{_sts("succeeded")(j)}/{spec["completions"]}'
    parallelism = spec.get("parallelism") or 0
    return f'{_sts("succeeded")(j)}/1 of {parallelism}' if parallelism > 1 else f'{_sts("succeeded")(j)}/1'


def _job_duration(j: Obj) -> str:
    status = j.get("status") or {}
    start, end = status.get("startTime"), status.get("completionTime")
    if not start:
        return ""
    if not end:
        return _since(start)
    return age({"metadata": {"creationTimestamp": start}},
               datetime.datetime.fromisoformat(end.replace("Z", "+00:00")))


def _event_source(e: Obj) -> str:
    source = e.get("source") or {}
    component = source.get("component") or e.get("reportingComponent") or ""
    host = source.get("host") or e.get("reportingInstance") or ""
    return ", ".join(x for x in (component, host) if x)


def _event_first_seen(e: Obj) -> str:
    ts = e.get("firstTimestamp") or e.get("eventTime")
    return _since(ts) if ts else "<unknown>"


def _event_last_seen(e: Obj) -> str:
    ts = ((e.get("series") or {}).get("lastObservedTime") or e.get("lastTimestamp"))
    return _since(ts) if ts else _event_first_seen(e)


def _name(o: Obj) -> str:
    return o["metadata"]["name"]


NAME: Column = ("Name", "string", "Name must be unique within a namespace.", 0, _name)
AGE: Column = ("Age", "string", "CreationTimestamp", 0, age)

# Each kind's columns in the order of Kubernetes' printers (pkg/printers/internalversion/printers.go):
# Age comes before the priority-1 (wide) columns, which kubectl appends under -o wide.
COLUMNS: dict[str, list[Column]] = {
    "Pod": [NAME, ("Ready", "string", "containers ready", 0, _pod_ready), ("Status", "string", "", 0, _pod_status),
            ("Restarts", "integer", "", 0, _restarts), AGE,
            ("IP", "string", "", 1, lambda p: (p.get("status") or {}).get("podIP") or "<none>"),
            ("Node", "string", "", 1, lambda p: _spec(p).get("nodeName") or "<none>"),
            ("Nominated Node", "string", "", 1, lambda p: (p.get("status") or {}).get("nominatedNodeName") or "<none>"),
            ("Readiness Gates", "string", "", 1, _readiness_gates)],
    "Node": [NAME, ("Status", "string", "", 0, _node_status), ("Roles", "string", "", 0, _node_roles), AGE,
             ("Version", "string", "", 0, lambda n: ((n.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", "")),
             ("Internal-IP", "string", "", 1, _node_address("InternalIP")),
             ("External-IP", "string", "", 1, _node_address("ExternalIP")),
             ("OS-Image", "string", "", 1, _node_info("osImage")),
             ("Kernel-Version", "string", "", 1, _node_info("kernelVersion")),
             ("Container-Runtime", "string", "", 1, _node_info("containerRuntimeVersion"))],
    "Service": [NAME, ("Type", "string", "", 0, lambda s: _spec(s).get("type", "ClusterIP")),
                ("Cluster-IP", "string", "", 0, lambda s: _spec(s).get("clusterIP") or "<none>"),
                ("External-IP", "string", "", 0, _external_ip), ("Port(s)", "string", "", 0, _ports), AGE,
                ("Selector", "string", "", 1, lambda s: _labels(_spec(s).get("selector")))],
    "Deployment": [NAME, ("Ready", "string", "", 0, lambda d: f'{_sts("readyReplicas")(d)}/{_spec(d).get("replicas", 0)}'),
                   ("Up-to-date", "integer", "", 0, _sts("updatedReplicas")),
                   ("Available", "integer", "", 0, _sts("availableReplicas")), AGE, *_workload_wide()],
    "ReplicaSet": [NAME, ("Desired", "integer", "", 0, lambda r: _spec(r).get("replicas", 0)),
                   ("Current", "integer", "", 0, _sts("replicas")), ("Ready", "integer", "", 0, _sts("readyReplicas")),
                   AGE, *_workload_wide()],
    "StatefulSet": [NAME, ("Ready", "string", "", 0, lambda s: f'{_sts("readyReplicas")(s)}/{_spec(s).get("replicas", 0)}'),
                    AGE, *_workload_wide(selector=False)],
    "DaemonSet": [NAME, ("Desired", "integer", "", 0, _sts("desiredNumberScheduled")),
                  ("Current", "integer", "", 0, _sts("currentNumberScheduled")),
                  ("Ready", "integer", "", 0, _sts("numberReady")),
                  ("Up-to-date", "integer", "", 0, _sts("updatedNumberScheduled")),
                  ("Available", "integer", "", 0, _sts("numberAvailable")),
                  ("Node Selector", "string", "", 0,
                   lambda d: _labels(((_spec(d).get("template") or {}).get("spec") or {}).get("nodeSelector"))),
                  AGE, *_workload_wide()],
    "Job": [NAME, ("Status", "string", "", 0, lambda j: next((c["type"] for c in (j.get("status") or {}).get("conditions") or []
                                                            if c.get("status") == "True"), "Running")),
            ("Completions", "string", "", 0, _job_completions), ("Duration", "string", "", 0, _job_duration), AGE,
            *_workload_wide()],
    "CronJob": [NAME, ("Schedule", "string", "", 0, lambda c: _spec(c).get("schedule", "")),
                ("Timezone", "string", "", 0, lambda c: _spec(c).get("timeZone") or "<none>"),
                ("Suspend", "boolean", "", 0, lambda c: bool(_spec(c).get("suspend"))),
                ("Active", "integer", "", 0, lambda c: len((c.get("status") or {}).get("active") or [])),
                ("Last Schedule", "string", "", 0, lambda c: _since((c.get("status") or {}).get("lastScheduleTime"))),
                AGE, *_workload_wide()],
    "Namespace": [NAME, ("Status", "string", "", 0, lambda n: (n.get("status") or {}).get("phase", "Active")), AGE],
    "PodDisruptionBudget": [NAME, ("Min Available", "string", "", 0, lambda b: str(_spec(b).get("minAvailable", "N/A"))),
                            ("Max Unavailable", "string", "", 0, lambda b: str(_spec(b).get("maxUnavailable", "N/A"))),
                            ("Allowed Disruptions", "integer", "", 0, _sts("disruptionsAllowed")), AGE],
    "Event": [("Last Seen", "string", "", 0, _event_last_seen),
              ("Type", "string", "", 0, lambda e: e.get("type", "")), ("Reason", "string", "", 0, lambda e: e.get("reason", "")),
              ("Object", "string", "", 0, lambda e: f'{(e.get("involvedObject") or {}).get("kind", "").lower()}/'
                                                  f'{(e.get("involvedObject") or {}).get("name", "")}'),
              ("Subobject", "string", "", 1, lambda e: (e.get("involvedObject") or {}).get("fieldPath", "")),
              ("Source", "string", "", 1, _event_source),
              ("Message", "string", "", 0, lambda e: e.get("message", "")),
              ("First Seen", "string", "", 1, _event_first_seen),
              ("Count", "string", "", 1, lambda e: e.get("count", 0)),
              ("Name", "string", "", 1, _name)],
}


# -- HorizontalPodAutoscaler (kubernetes/pkg/printers/internalversion: printHorizontalPodAutoscaler) -----------

def _hpa_reference(h: Obj) -> str:
    ref = _spec(h).get("scaleTargetRef") or {}
    return f'{ref.get("kind", "")}/{ref.get("name", "")}'


def _hpa_metric(spec: Obj, current: Obj | None) -> str:
    """One metric as `cpu: 40%/50%` (utilization) or `memory: 100Mi/200Mi` (average value)."""
    mtype = spec.get("type")
    key = {"Resource": "resource", "ContainerResource": "containerResource"}.get(mtype or "")
    if key is None:
        return f"<{(mtype or '').lower()} metric>"
    src = spec.get(key) or {}
    target = src.get("target") or {}
    now = ((current or {}).get(key) or {}).get("current") or {}
    name = src.get("name", "")
    if target.get("averageUtilization") is not None:
        got = f'{now["averageUtilization"]}%' if now.get("averageUtilization") is not None else "<unknown>"
        return f'{name}: {got}/{target["averageUtilization"]}%'
    return f'{name}: {now.get("averageValue", "<unknown>")}/{target.get("averageValue", "<unknown>")}'


def _hpa_targets(h: Obj) -> str:
    metrics = _spec(h).get("metrics") or []
    if not metrics:
        return "<none>"
    currents = (h.get("status") or {}).get("currentMetrics") or []
    shown = [_hpa_metric(m, currents[i] if i < len(currents) else None) for i, m in enumerate(metrics[:2])]
    more = f" + {len(metrics) - 2} more..." if len(metrics) > 2 else ""
    return ", ".join(shown) + more


COLUMNS["HorizontalPodAutoscaler"] = [
    NAME, ("Reference", "string", "", 0, _hpa_reference), ("Targets", "string", "", 0, _hpa_targets),
    ("MinPods", "string", "", 0, lambda h: _spec(h).get("minReplicas", "<unset>")),
    ("MaxPods", "integer", "", 0, lambda h: _spec(h).get("maxReplicas", 0)),
    ("Replicas", "integer", "", 0, _sts("currentReplicas")), AGE]

def table(rd: ResourceDef, objects: list[Obj], resource_version: str, cont: str | None = None) -> Obj:
    columns = COLUMNS.get(rd.kind, [NAME, AGE])
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
