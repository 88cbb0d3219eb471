"""The resource registry: one `ResourceDef` per kind the apiserver serves.

Everything kind-specific the generic REST machinery needs lives here: where the kind sits in the API
(group, version, plural, scope), which subresources it has, what discovery advertises (short names,
categories), which fields a field selector may use, and the strategy hooks (defaulting, validation,
what create resets). The apiserver routes and storage never mention a kind by name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from api import defaults, validation
from api.errors import Cause

Obj = dict[str, Any]

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


def _get_path(obj: Obj, dotted: str) -> str:
    cur: Any = obj
    for part in dotted.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


@dataclass(frozen=True)
class ResourceDef:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    subresources: tuple[str, ...] = ()
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    # Field paths (beyond metadata.name/namespace) usable in fieldSelector.
    selectable_fields: tuple[str, ...] = ()
    # Whether `status` is a subresource: then the main resource ignores status writes and vice versa.
    has_status: bool = False
    # True when spec changes bump metadata.generation (kinds with a spec); False for data-only kinds.
    tracks_generation: bool = True
    verbs: tuple[str, ...] = tuple(ALL_VERBS)
    extra_fields: dict[str, Any] = field(default_factory=dict)

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    def storage_prefix(self) -> str:
        """etcd key prefix; core kinds omit the group as Kubernetes does (`/registry/pods/...`)."""
        if self.group:
            return f"/registry/{self.group}/{self.plural}/"
        return f"/registry/{self.plural}/"

    def field_value(self, obj: Obj, path: str) -> str:
        return _get_path(obj, path)

    def field_selectable(self, path: str) -> bool:
        return path in ("metadata.name", "metadata.namespace") or path in self.selectable_fields

    def default(self, obj: Obj) -> None:
        fn = defaults.DEFAULTERS.get(self.kind)
        if fn is not None:
            fn(obj)

    def validate(self, obj: Obj, old: Obj | None = None) -> list[Cause]:
        fn = validation.VALIDATORS.get(self.kind)
        causes = validation.validate_object_meta(obj, namespaced=self.namespaced, old=old)
        if fn is not None:
            causes.extend(fn(obj, old))
        return causes


def _core(kind: str, plural: str, **kw: Any) -> ResourceDef:
    return ResourceDef(group="", version="v1", kind=kind, plural=plural, **kw)


def _apps(kind: str, plural: str, **kw: Any) -> ResourceDef:
    return ResourceDef(group="apps", version="v1", kind=kind, plural=plural, **kw)


def _batch(kind: str, plural: str, **kw: Any) -> ResourceDef:
    return ResourceDef(group="batch", version="v1", kind=kind, plural=plural, **kw)


def _rbac(kind: str, plural: str, **kw: Any) -> ResourceDef:
    return ResourceDef(group="rbac.authorization.k8s.io", version="v1", kind=kind, plural=plural,
                       tracks_generation=False, **kw)


RESOURCES: tuple[ResourceDef, ...] = (
    _core("Namespace", "namespaces", namespaced=False, subresources=("status", "finalize"), has_status=True,
          short_names=("ns",), selectable_fields=("status.phase",)),
    _core("Pod", "pods", subresources=("status", "binding", "log", "exec", "eviction"), has_status=True,
          short_names=("po",), categories=("all",),
          selectable_fields=("spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
                             "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP",
                             "status.nominatedNodeName")),
    _core("Service", "services", subresources=("status",), has_status=True, short_names=("svc",),
          categories=("all",), selectable_fields=("spec.clusterIP", "spec.type")),
    _core("Endpoints", "endpoints", short_names=("ep",), tracks_generation=False),
    _core("Node", "nodes", namespaced=False, subresources=("status",), has_status=True, short_names=("no",),
          selectable_fields=("spec.unschedulable",)),
    _core("ConfigMap", "configmaps", short_names=("cm",), tracks_generation=False),
    _core("Secret", "secrets", tracks_generation=False, selectable_fields=("type",)),
    _core("ServiceAccount", "serviceaccounts", subresources=("token",), short_names=("sa",),
          tracks_generation=False),
    _core("PersistentVolumeClaim", "persistentvolumeclaims", subresources=("status",), has_status=True,
          short_names=("pvc",), tracks_generation=False),
    _core("PersistentVolume", "persistentvolumes", namespaced=False, subresources=("status",), has_status=True,
          short_names=("pv",), tracks_generation=False),
    _core("Event", "events", short_names=("ev",), tracks_generation=False,
          selectable_fields=("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                             "involvedObject.uid", "involvedObject.apiVersion",
                             "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason",
                             "reportingComponent", "source", "type")),
    _apps("Deployment", "deployments", subresources=("status", "scale"), has_status=True,
          short_names=("deploy",), categories=("all",)),
    _apps("ReplicaSet", "replicasets", subresources=("status", "scale"), has_status=True,
          short_names=("rs",), categories=("all",), selectable_fields=("status.replicas",)),
    _apps("StatefulSet", "statefulsets", subresources=("status", "scale"), has_status=True,
          short_names=("sts",), categories=("all",)),
    _apps("DaemonSet", "daemonsets", subresources=("status",), has_status=True, short_names=("ds",),
          categories=("all",)),
    _apps("ControllerRevision", "controllerrevisions", tracks_generation=False),
    _batch("Job", "jobs", subresources=("status",), has_status=True, categories=("all",),
           selectable_fields=("status.successful",)),
    _batch("CronJob", "cronjobs", subresources=("status",), has_status=True, short_names=("cj",),
           categories=("all",)),
    ResourceDef(group="coordination.k8s.io", version="v1", kind="Lease", plural="leases",
                tracks_generation=False),
    ResourceDef(group="policy", version="v1", kind="PodDisruptionBudget", plural="poddisruptionbudgets",
                subresources=("status",), has_status=True, short_names=("pdb",)),
    ResourceDef(group="autoscaling", version="v2", kind="HorizontalPodAutoscaler", plural="horizontalpodautoscalers",
                subresources=("status",), has_status=True, short_names=("hpa",), categories=("all",)),
    _rbac("ClusterRole", "clusterroles", namespaced=False),
    _rbac("ClusterRoleBinding", "clusterrolebindings", namespaced=False),
    _rbac("Role", "roles"),
    _rbac("RoleBinding", "rolebindings"),
)

# Kinds that are requests, not stored objects: POSTed, answered, forgotten (`kubectl auth can-i`).
REVIEWS: tuple[ResourceDef, ...] = (
    ResourceDef(group="authorization.k8s.io", version="v1", kind="SelfSubjectAccessReview",
                plural="selfsubjectaccessreviews", namespaced=False, verbs=("create",)),
    ResourceDef(group="authorization.k8s.io", version="v1", kind="SubjectAccessReview",
                plural="subjectaccessreviews", namespaced=False, verbs=("create",)),
    # Who a bearer token belongs to: how a kubelet authenticates callers of its own API (webhook mode).
    ResourceDef(group="authentication.k8s.io", version="v1", kind="TokenReview",
                plural="tokenreviews", namespaced=False, verbs=("create",)),
)

# Kinds computed on request, not stored: the resource metrics API (metrics-server's, which Kubernetes serves
# through API aggregation; here the apiserver scrapes the kubelets itself, `apiserver.metrics`). Read-only.
METRICS: tuple[ResourceDef, ...] = (
    ResourceDef(group="metrics.k8s.io", version="v1beta1", kind="NodeMetrics", plural="nodes", namespaced=False,
                verbs=("get", "list")),
    ResourceDef(group="metrics.k8s.io", version="v1beta1", kind="PodMetrics", plural="pods", verbs=("get", "list")),
)

_BY_PATH: dict[tuple[str, str, str], ResourceDef] = {(r.group, r.version, r.plural): r for r in RESOURCES}
_BY_KIND: dict[tuple[str, str], ResourceDef] = {(r.api_version, r.kind): r for r in RESOURCES}


def lookup(group: str, version: str, plural: str) -> ResourceDef | None:
    return _BY_PATH.get((group, version, plural))


def by_kind(api_version: str, kind: str) -> ResourceDef | None:
    return _BY_KIND.get((api_version, kind))


def groups() -> dict[str, list[str]]:
    """Group name -> versions served (core group is "")."""
    out: dict[str, list[str]] = {}
    for r in RESOURCES + REVIEWS + METRICS:
        versions = out.setdefault(r.group, [])
        if r.version not in versions:
            versions.append(r.version)
    return out

