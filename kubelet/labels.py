"""Labels the kubelet puts on every Docker container it creates, and the names it gives them.

They are the kubelet's only memory of what runs: a restarted kubelet lists containers by these labels
to adopt what belongs to live pods and remove what no pod owns. The log/exec server finds containers
by them too. Names follow dockershim's `k8s_<container>_<pod>_<namespace>_<uid>_<attempt>` so that
`docker ps` reads naturally.
"""
from __future__ import annotations

MANAGED = "io.minik8s.managed"          # "true" on everything the kubelet created
NODE = "io.minik8s.node"                # node name: several kubelets may share one dockerd in tests
POD_UID = "io.kubernetes.pod.uid"
POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
CONTAINER_NAME = "io.kubernetes.container.name"   # "POD" for the sandbox
CONTAINER_TYPE = "io.minik8s.container.type"      # "sandbox" | "init" | "app"
ATTEMPT = "io.kubernetes.container.attempt"       # restart count of this container, as a decimal string
SPEC_HASH = "io.minik8s.container.hash"           # hash of the container spec it was created from

SANDBOX_NAME = "POD"


def container_name(pod_name: str, namespace: str, uid: str, container: str, attempt: int) -> str:
    return f"k8s_{container}_{pod_name}_{namespace}_{uid}_{attempt}"


def selector(node: str, **more: str) -> dict[str, list[str]]:
    """A Docker SDK `filters` dict selecting this node's managed containers (plus any extra label=value)."""
    labels = [f"{MANAGED}=true", f"{NODE}={node}"] + [f"{k}={v}" for k, v in more.items()]
    return {"label": labels}
