"""What the apiserver itself decides when an object is written (Kubernetes' registry strategies).

Generic rules for every kind: system metadata (uid, creationTimestamp, generation) is set on create and
carried over on update; `status` is written only through `/status` for kinds that have that subresource;
generation bumps only when something outside metadata and status changes. A few kinds add their own
rules: pods start Pending, namespaces Active, Services keep their allocated IP and ports across a PUT
that omits them, Jobs get a generated selector.
"""
from __future__ import annotations

import copy
import datetime
import uuid
from typing import Any

from api import defaults
from api.registry import ResourceDef

Obj = dict[str, Any]

# Status kept on create: the kubelet registers its Node with capacity already filled in.
KEEP_STATUS_ON_CREATE = {"Node"}


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339(ts: datetime.datetime) -> str:
    return ts.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def spec_part(obj: Obj) -> dict:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "kind", "apiVersion")}


def prepare_for_create(rd: ResourceDef, obj: Obj) -> None:
    meta = obj["metadata"]
    for k in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink", "managedFields"):
        meta.pop(k, None)
    meta["uid"] = str(uuid.uuid4())
    meta["creationTimestamp"] = now_rfc3339()
    if rd.tracks_generation:
        meta["generation"] = 1
    else:
        meta.pop("generation", None)
    reordered = {"apiVersion": rd.api_version, "kind": rd.kind, **obj}
    reordered["apiVersion"], reordered["kind"] = rd.api_version, rd.kind
    obj.clear()
    obj.update(reordered)
    if rd.has_status and rd.kind not in KEEP_STATUS_ON_CREATE:
        obj["status"] = {}
    if rd.kind == "Pod":
        obj["status"] = {"phase": "Pending", "qosClass": qos_class(obj.get("spec"))}
    elif rd.kind == "Namespace":
        obj["status"] = {"phase": "Active"}
    elif rd.kind == "Job":
        spec = obj.get("spec")
        if isinstance(spec, dict) and not spec.get("manualSelector"):
            defaults.job_generate_selector(obj, meta["uid"])


def prepare_for_update(rd: ResourceDef, new: Obj, old: Obj, subresource: str | None) -> Obj:
    """Return the object to store for an update of `old` to `new` through the main resource or /status."""
    if subresource == "status":
        out = copy.deepcopy(old)
        out["status"] = new.get("status", {})
        out["metadata"]["resourceVersion"] = new["metadata"].get("resourceVersion", old["metadata"]["resourceVersion"])
        return out
    if subresource == "finalize":
        out = copy.deepcopy(old)
        out.setdefault("spec", {})["finalizers"] = (new.get("spec") or {}).get("finalizers") or []
        return out
    meta, old_meta = new["metadata"], old["metadata"]
    for k in ("creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
        if k in old_meta:
            meta[k] = old_meta[k]
        else:
            meta.pop(k, None)
    meta.setdefault("uid", old_meta.get("uid"))
    new["apiVersion"], new["kind"] = rd.api_version, rd.kind
    if rd.has_status:
        if "status" in old:
            new["status"] = old["status"]
        else:
            new.pop("status", None)
    if rd.kind == "Service":
        _keep_service_allocations(new, old)
    if rd.tracks_generation and spec_part(new) != spec_part(old):
        meta["generation"] = int(old_meta.get("generation") or 0) + 1
    return new


def _keep_service_allocations(new: Obj, old: Obj) -> None:
    """A PUT that omits clusterIP or a port's nodePort keeps what was allocated (helm relies on this)."""
    spec, old_spec = new.get("spec"), old.get("spec") or {}
    if not isinstance(spec, dict):
        return
    if spec.get("type", "ClusterIP") != "ExternalName" and old_spec.get("type", "ClusterIP") != "ExternalName":
        if not spec.get("clusterIP") and old_spec.get("clusterIP"):
            spec["clusterIP"] = old_spec["clusterIP"]
            spec["clusterIPs"] = old_spec.get("clusterIPs", [old_spec["clusterIP"]])
    old_ports = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                 for p in old_spec.get("ports") or [] if isinstance(p, dict)}
    for p in spec.get("ports") or []:
        if isinstance(p, dict) and not p.get("nodePort"):
            kept = old_ports.get((p.get("port"), p.get("protocol", "TCP")))
            if kept and spec.get("type") in ("NodePort", "LoadBalancer"):
                p["nodePort"] = kept


def qos_class(spec: Any) -> str:
    if not isinstance(spec, dict):
        return "BestEffort"
    listed = [spec.get("containers"), spec.get("initContainers")]
    containers = [c for group in listed if isinstance(group, list) for c in group if isinstance(c, dict)]
    requests_any = limits_all = False
    guaranteed = bool(containers)
    for c in containers:
        res = c.get("resources") if isinstance(c.get("resources"), dict) else {}
        req = res.get("requests") if isinstance(res.get("requests"), dict) else {}
        lim = res.get("limits") if isinstance(res.get("limits"), dict) else {}
        if req or lim:
            requests_any = True
        for r in ("cpu", "memory"):
            if r not in lim or (r in req and str(req[r]) != str(lim[r])):
                guaranteed = False
        limits_all = limits_all or bool(lim)
    if guaranteed:
        return "Guaranteed"
    return "Burstable" if requests_any else "BestEffort"


def pod_delete_grace(pod: Obj, requested: int | None) -> int:
    """Seconds of grace for deleting a pod: 0 when no kubelet has to stop anything."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
        return 0
    if requested is not None:
        return max(0, requested)
    grace = spec.get("terminationGracePeriodSeconds")
    return grace if isinstance(grace, int) and grace >= 0 else 30
