"""Defaulting as Kubernetes does it.

`DEFAULTERS[kind](obj)` fills unset fields in place with the values Kubernetes' API defaulting would
(SetDefaults_* in k8s.io/kubernetes/pkg/apis/*/v1). It runs on every create and update before validation,
so it must tolerate anything a user sends: a field of the wrong type is left alone for validation to
report, never "fixed" and never a crash. Every helper therefore checks `isinstance` before it descends.

Pod spec defaulting is one function, reused for every embedded pod template (workloads, Jobs, a
CronJob's jobTemplate) exactly as Kubernetes defaults nested templates.

Values the apiserver allocates (a Service's clusterIP and nodePorts, a Job's generated selector) are not
defaults; `job_generate_selector` is a helper the apiserver calls on Job create.
"""
from __future__ import annotations

import base64
from typing import Any, Callable

Obj = dict[str, Any]

JOB_CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
LEGACY_CONTROLLER_UID_LABEL = "controller-uid"
LEGACY_JOB_NAME_LABEL = "job-name"


def _dict(parent: Any, key: str, *, create: bool = True) -> Obj | None:
    """parent[key] as a dict, created empty if absent (when `create`); None if it has another type."""
    if not isinstance(parent, dict):
        return None
    value = parent.get(key)
    if value is None and create:
        value = parent[key] = {}
    return value if isinstance(value, dict) else None


def _dicts(parent: Any, key: str) -> list[Obj]:
    """The dict items of the list parent[key]; anything else yields nothing."""
    value = parent.get(key) if isinstance(parent, dict) else None
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _set(obj: Obj, key: str, value: Any) -> None:
    """Set when absent; an explicit null counts as absent, as an omitted pointer does in Go."""
    if obj.get(key) is None:
        obj[key] = value


# --- pods ----------------------------------------------------------------------------------------


def default_pull_policy(image: str) -> str:
    """Always for `:latest` or untagged images, IfNotPresent for any other tag or a digest."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]  # a registry host may carry a port: host:5000/name
    tag = last.split(":", 1)[1] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def _default_probe(probe: Any) -> None:
    if not isinstance(probe, dict):
        return
    for key, value in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1),
                       ("failureThreshold", 3)):
        _set(probe, key, value)
    http = _dict(probe, "httpGet", create=False)
    if http is not None:
        _set(http, "path", "/")
        _set(http, "scheme", "HTTP")


def _default_container(c: Obj) -> None:
    image = c.get("image")
    if isinstance(image, str) and image:
        _set(c, "imagePullPolicy", default_pull_policy(image))
    _set(c, "terminationMessagePath", "/dev/termination-log")
    _set(c, "terminationMessagePolicy", "File")
    _set(c, "resources", {})
    for port in _dicts(c, "ports"):
        _set(port, "protocol", "TCP")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        _default_probe(c.get(probe))
    lifecycle = _dict(c, "lifecycle", create=False)
    for hook in ("postStart", "preStop"):
        http = _dict(_dict(lifecycle, hook, create=False), "httpGet", create=False)
        if http is not None:
            _set(http, "path", "/")
            _set(http, "scheme", "HTTP")
    for env in _dicts(c, "env"):
        field_ref = _dict(_dict(env, "valueFrom", create=False), "fieldRef", create=False)
        if field_ref is not None:
            _set(field_ref, "apiVersion", "v1")


def _default_volume(volume: Obj) -> None:
    for source in ("configMap", "secret", "downwardAPI", "projected"):
        src = _dict(volume, source, create=False)
        if src is not None:
            _set(src, "defaultMode", 0o644)  # 420: rw for the owner, read for the rest
    has_source = any(k != "name" and v is not None for k, v in volume.items())
    if not has_source:
        volume["emptyDir"] = {}


def default_pod_spec(spec: Any) -> None:
    """Kubernetes' PodSpec defaults, in place; a non-dict is left for validation to reject."""
    if not isinstance(spec, dict):
        return
    _set(spec, "restartPolicy", "Always")
    _set(spec, "terminationGracePeriodSeconds", 30)
    _set(spec, "dnsPolicy", "ClusterFirst")
    _set(spec, "schedulerName", "default-scheduler")
    _set(spec, "securityContext", {})
    _set(spec, "enableServiceLinks", True)
    # serviceAccount is the deprecated alias; Kubernetes keeps the two in step.
    names = [spec.get(k) for k in ("serviceAccountName", "serviceAccount")]
    if all(n is None or isinstance(n, str) for n in names):
        account = next((n for n in names if n), "default")
        spec["serviceAccountName"] = spec["serviceAccount"] = account
    for list_name in ("initContainers", "containers", "ephemeralContainers"):
        for container in _dicts(spec, list_name):
            _default_container(container)
    for volume in _dicts(spec, "volumes"):
        _default_volume(volume)


def default_pod_template(template: Any) -> None:
    default_pod_spec(template.get("spec") if isinstance(template, dict) else None)


def default_pod(obj: Obj) -> None:
    default_pod_spec(obj.get("spec"))


# --- services ------------------------------------------------------------------------------------


def default_service(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    if spec is None:
        return
    _set(spec, "type", "ClusterIP")
    svc_type = spec["type"]
    _set(spec, "sessionAffinity", "None")
    if spec.get("sessionAffinity") == "ClientIP":
        client_ip = _dict(_dict(spec, "sessionAffinityConfig"), "clientIP")
        if client_ip is not None:
            _set(client_ip, "timeoutSeconds", 10800)
    for port in _dicts(spec, "ports"):
        _set(port, "protocol", "TCP")
        if port.get("targetPort") is None and port.get("port") is not None:
            port["targetPort"] = port["port"]
    if svc_type == "ExternalName":
        return  # no IPs and no traffic policies: ExternalName is only a DNS CNAME
    _set(spec, "ipFamilyPolicy", "SingleStack")
    _set(spec, "ipFamilies", ["IPv4"])
    _set(spec, "internalTrafficPolicy", "Cluster")
    if svc_type in ("NodePort", "LoadBalancer"):
        _set(spec, "externalTrafficPolicy", "Cluster")


def default_endpoints(obj: Obj) -> None:
    for subset in _dicts(obj, "subsets"):
        for port in _dicts(subset, "ports"):
            _set(port, "protocol", "TCP")


# --- core data kinds -----------------------------------------------------------------------------


NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def default_namespace(obj: Obj) -> None:
    """Every named Namespace carries `kubernetes.io/metadata.name: <name>`, so a namespaceSelector can pick
    namespaces by name. It is set on every write, so users cannot remove or change it (Kubernetes'
    SetDefaults_Namespace)."""
    meta = _dict(obj, "metadata")
    name = meta.get("name") if meta is not None else None
    labels = _dict(meta, "labels") if isinstance(name, str) and name else None
    if labels is not None:
        labels[NAMESPACE_NAME_LABEL] = name
    spec = _dict(obj, "spec")
    if spec is not None:
        _set(spec, "finalizers", ["kubernetes"])


def default_secret(obj: Obj) -> None:
    """type Opaque; `stringData` is write-only convenience folded into base64 `data` (it wins on clashes)."""
    _set(obj, "type", "Opaque")
    string_data = obj.get("stringData")
    if not isinstance(string_data, dict):
        return
    data = _dict(obj, "data")
    if data is None or not all(isinstance(v, str) for v in string_data.values()):
        return
    for key, value in string_data.items():
        data[key] = base64.b64encode(value.encode()).decode()
    del obj["stringData"]


# --- apps/v1 -------------------------------------------------------------------------------------


def default_deployment(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    if spec is None:
        return
    _set(spec, "replicas", 1)
    strategy = _dict(spec, "strategy")
    if strategy is not None:
        _set(strategy, "type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = _dict(strategy, "rollingUpdate")
            if rolling is not None:
                _set(rolling, "maxUnavailable", "25%")
                _set(rolling, "maxSurge", "25%")
    _set(spec, "revisionHistoryLimit", 10)
    _set(spec, "progressDeadlineSeconds", 600)
    default_pod_template(spec.get("template"))


def default_replicaset(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    if spec is None:
        return
    _set(spec, "replicas", 1)
    default_pod_template(spec.get("template"))


def default_statefulset(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    if spec is None:
        return
    _set(spec, "replicas", 1)
    _set(spec, "podManagementPolicy", "OrderedReady")
    strategy = _dict(spec, "updateStrategy")
    if strategy is not None:
        _set(strategy, "type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = _dict(strategy, "rollingUpdate")
            if rolling is not None:
                _set(rolling, "partition", 0)
    _set(spec, "revisionHistoryLimit", 10)
    retention = _dict(spec, "persistentVolumeClaimRetentionPolicy")
    if retention is not None:
        _set(retention, "whenDeleted", "Retain")
        _set(retention, "whenScaled", "Retain")
    default_pod_template(spec.get("template"))


def default_daemonset(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    if spec is None:
        return
    strategy = _dict(spec, "updateStrategy")
    if strategy is not None:
        _set(strategy, "type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = _dict(strategy, "rollingUpdate")
            if rolling is not None:
                _set(rolling, "maxUnavailable", 1)
                _set(rolling, "maxSurge", 0)
    _set(spec, "revisionHistoryLimit", 10)
    default_pod_template(spec.get("template"))


# --- batch/v1 ------------------------------------------------------------------------------------


def default_job_spec(spec: Any) -> None:
    if not isinstance(spec, dict):
        return
    # Both unset means one pod run once; parallelism alone means a work queue with no completion count.
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    _set(spec, "parallelism", 1)
    _set(spec, "backoffLimit", 6)
    _set(spec, "completionMode", "NonIndexed")
    _set(spec, "suspend", False)
    default_pod_template(spec.get("template"))


def default_job(obj: Obj) -> None:
    default_job_spec(obj.get("spec"))


def default_cronjob(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    if spec is None:
        return
    _set(spec, "concurrencyPolicy", "Allow")
    _set(spec, "suspend", False)
    _set(spec, "successfulJobsHistoryLimit", 3)
    _set(spec, "failedJobsHistoryLimit", 1)
    # Like Kubernetes, only the pod template inside is defaulted; Job-level defaults apply when the Job
    # made from the template is created.
    job_spec = _dict(_dict(spec, "jobTemplate", create=False), "spec", create=False)
    if job_spec is not None:
        default_pod_template(job_spec.get("template"))


def job_generate_selector(obj: Obj, uid: str) -> None:
    """On Job create (unless `spec.manualSelector` is true): select the Job's own pods by its uid and put
    the matching labels on the pod template, so two Jobs never adopt each other's pods."""
    spec = _dict(obj, "spec")
    if spec is None or spec.get("manualSelector") is True:
        return
    template = _dict(spec, "template")
    meta = _dict(template, "metadata")
    labels = _dict(meta, "labels")
    name = obj.get("metadata", {}).get("name") if isinstance(obj.get("metadata"), dict) else None
    if labels is not None:
        labels[JOB_CONTROLLER_UID_LABEL] = uid
        labels[LEGACY_CONTROLLER_UID_LABEL] = uid
        if isinstance(name, str) and name:
            labels[JOB_NAME_LABEL] = name
            labels[LEGACY_JOB_NAME_LABEL] = name
    spec["selector"] = {"matchLabels": {JOB_CONTROLLER_UID_LABEL: uid}}


# --- storage (core/v1) ----------------------------------------------------------------------------


def default_persistent_volume_claim(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    if spec is not None:
        _set(spec, "volumeMode", "Filesystem")


def default_persistent_volume(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    if spec is None:
        return
    _set(spec, "persistentVolumeReclaimPolicy", "Retain")
    _set(spec, "volumeMode", "Filesystem")


def default_binding(obj: Obj) -> None:
    """User and Group subjects live in the RBAC API group; ServiceAccounts in the core one."""
    for subject in obj.get("subjects") or []:
        if isinstance(subject, dict) and subject.get("kind") in ("User", "Group") and not subject.get("apiGroup"):
            subject["apiGroup"] = "rbac.authorization.k8s.io"


# --- autoscaling/v2 (k8s.io/kubernetes/pkg/apis/autoscaling/v2/defaults.go) ----------------------

HPA_DEFAULT_CPU_UTILIZATION = 80


def hpa_scale_up_rules() -> Obj:
    return {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
            "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15},
                         {"type": "Percent", "value": 100, "periodSeconds": 15}]}


def hpa_scale_down_rules() -> Obj:
    """No stabilizationWindowSeconds: the controller's --horizontal-pod-autoscaler-downscale-stabilization
    (300 s) applies when none is given, as in Kubernetes."""
    return {"selectPolicy": "Max", "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}


def _default_scaling_rules(behavior: Obj, key: str, defaults: Obj) -> None:
    rules = behavior.get(key)
    if not isinstance(rules, dict):
        behavior[key] = defaults
        return
    for field, value in defaults.items():
        if rules.get(field) is None or (field == "policies" and rules.get(field) == []):
            rules[field] = value


def default_horizontal_pod_autoscaler(obj: Obj) -> None:
    """minReplicas 1; no metrics → CPU at 80% of requests; a given behavior gets its missing rules filled."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    _set(spec, "minReplicas", 1)
    if not spec.get("metrics"):
        spec["metrics"] = [{"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": HPA_DEFAULT_CPU_UTILIZATION}}}]
    behavior = spec.get("behavior")
    if isinstance(behavior, dict):
        _default_scaling_rules(behavior, "scaleUp", hpa_scale_up_rules())
        _default_scaling_rules(behavior, "scaleDown", hpa_scale_down_rules())


DEFAULTERS: dict[str, Callable[[Obj], None]] = {
    "Namespace": default_namespace,
    "Pod": default_pod,
    "Service": default_service,
    "Endpoints": default_endpoints,
    "Secret": default_secret,
    "Deployment": default_deployment,
    "ReplicaSet": default_replicaset,
    "StatefulSet": default_statefulset,
    "DaemonSet": default_daemonset,
    "Job": default_job,
    "CronJob": default_cronjob,
    "PersistentVolumeClaim": default_persistent_volume_claim,
    "PersistentVolume": default_persistent_volume,
    "RoleBinding": default_binding,
    "ClusterRoleBinding": default_binding,
    "HorizontalPodAutoscaler": default_horizontal_pod_autoscaler,
}
