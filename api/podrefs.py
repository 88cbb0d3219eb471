"""What a pod reads from the API besides itself: the Secrets, ConfigMaps, PersistentVolumeClaims and
ServiceAccount its spec names (Kubernetes' podutil.VisitPodSecretNames / VisitPodConfigmapNames and the
node authorizer's graph edges).

The kubelet uses this to know which objects to fetch and watch for a pod; the apiserver's node
authorizer uses it to let a kubelet read exactly those objects, and only while a pod bound to its node
names them.
"""
from __future__ import annotations

from typing import Any, Iterator

Obj = dict[str, Any]


def _containers(spec: Obj) -> Iterator[Obj]:
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(field) or []:
            if isinstance(c, dict):
                yield c


def referenced_objects(pod: Obj) -> set[tuple[str, str]]:
    """(plural, name) of every ConfigMap, Secret and PersistentVolumeClaim the pod names, in its namespace."""
    spec = pod.get("spec") or {}
    refs: set[tuple[str, str]] = set()

    def add(kind: str, name: Any) -> None:
        if isinstance(name, str) and name:
            refs.add((kind, name))

    for c in _containers(spec):
        for source in c.get("envFrom") or []:
            add("configmaps", (source.get("configMapRef") or {}).get("name"))
            add("secrets", (source.get("secretRef") or {}).get("name"))
        for item in c.get("env") or []:
            vf = item.get("valueFrom") or {}
            add("configmaps", (vf.get("configMapKeyRef") or {}).get("name"))
            add("secrets", (vf.get("secretKeyRef") or {}).get("name"))
    for ref in spec.get("imagePullSecrets") or []:
        add("secrets", (ref or {}).get("name"))
    pod_name = (pod.get("metadata") or {}).get("name") or ""
    for v in spec.get("volumes") or []:
        add("configmaps", (v.get("configMap") or {}).get("name"))
        add("secrets", (v.get("secret") or {}).get("secretName"))
        add("secrets", ((v.get("csi") or {}).get("nodePublishSecretRef") or {}).get("name"))
        add("persistentvolumeclaims", (v.get("persistentVolumeClaim") or {}).get("claimName"))
        if v.get("ephemeral") is not None and pod_name:
            add("persistentvolumeclaims", f"{pod_name}-{v.get('name')}")
        for source in (v.get("projected") or {}).get("sources") or []:
            add("configmaps", (source.get("configMap") or {}).get("name"))
            add("secrets", (source.get("secret") or {}).get("name"))
    return refs


def service_account(pod: Obj) -> str:
    return (pod.get("spec") or {}).get("serviceAccountName") or "default"
