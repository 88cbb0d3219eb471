"""How cluster DNS is deployed: a host process per node behind a selector-less `kube-system/kube-dns`.

The choice. `minik8s dns` runs as a host process on each node (systemd unit, `minik8s up` child, or a
lab node's process inside the node's network namespace), listening on the node's address, port 53.
Running it as a pod would need a Python image with minik8s inside and a kubelet that is already
working before cluster DNS does; a host process has neither dependency and matches how every other
minik8s component runs. Pods reach it the Kubernetes way: their resolv.conf names the kube-dns Service
IP (10.96.0.10), and kube-proxy DNATs that to one of the Endpoints — the nodes' DNS servers.

So the Service has **no selector** (the endpoints controller would otherwise empty its Endpoints,
since no pod matches) and its Endpoints are written by whoever starts the DNS servers, through
`ensure_kube_dns_service(client, node_ips)` — node addresses reachable from pods, never loopback
(the apiserver refuses loopback endpoint addresses, as Kubernetes does). It carries the usual `k8s-app: kube-dns` label so tools
that look for it find it. Both calls are idempotent: they create what is missing, rewrite what
differs and leave equal objects alone (no write, no resourceVersion bump). The ClusterIP of an existing
Service cannot change; a mismatch is logged, not fought.
"""
from __future__ import annotations

import copy
import logging
from typing import Any

from api.errors import APIError
from client.rest import Client, is_already_exists

logger = logging.getLogger(__name__)

Obj = dict[str, Any]

NAMESPACE = "kube-system"
NAME = "kube-dns"
CLUSTER_IP = "10.96.0.10"
LABELS = {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}
PORTS = [("dns", "UDP"), ("dns-tcp", "TCP")]


def kube_dns_service(cluster_ip: str = CLUSTER_IP) -> Obj:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": dict(LABELS)},
        "spec": {"type": "ClusterIP", "clusterIP": cluster_ip,
                 "ports": [{"name": n, "protocol": p, "port": 53, "targetPort": 53} for n, p in PORTS]},
    }


def kube_dns_endpoints(ips: list[str], port: int = 53) -> Obj:
    subsets = [{"addresses": [{"ip": ip} for ip in sorted(set(ips))],
                "ports": [{"name": n, "protocol": p, "port": port} for n, p in PORTS]}] if ips else []
    return {"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": dict(LABELS)}, "subsets": subsets}


def service_update(current: Obj, desired: Obj) -> Obj | None:
    """The Service to PUT so that it matches `desired`, or None when it already does."""
    spec, want = current.get("spec") or {}, desired["spec"]
    if spec.get("clusterIP") != want["clusterIP"]:
        logger.warning("service %s/%s has clusterIP %s, not %s; a ClusterIP cannot change, delete the "
                       "Service to move it", NAMESPACE, NAME, spec.get("clusterIP"), want["clusterIP"])
    ports = [{k: p.get(k) for k in ("name", "protocol", "port", "targetPort")} for p in spec.get("ports") or []]
    labels = (current.get("metadata") or {}).get("labels") or {}
    if ports == want["ports"] and not spec.get("selector") and spec.get("type") == "ClusterIP" \
            and all(labels.get(k) == v for k, v in LABELS.items()):
        return None
    updated = copy.deepcopy(current)
    updated["metadata"]["labels"] = {**labels, **LABELS}
    updated["spec"]["type"] = "ClusterIP"
    updated["spec"]["ports"] = copy.deepcopy(want["ports"])
    updated["spec"].pop("selector", None)
    return updated


def endpoints_update(current: Obj, desired: Obj) -> Obj | None:
    if (current.get("subsets") or []) == desired["subsets"]:
        return None
    updated = copy.deepcopy(current)
    updated["subsets"] = copy.deepcopy(desired["subsets"])
    return updated


def ensure_kube_dns_service(client: Client, endpoints_ips: list[str], *, cluster_ip: str = CLUSTER_IP,
                            port: int = 53) -> tuple[Obj, Obj]:
    """Create or update `kube-system/kube-dns` and its Endpoints (the nodes running `minik8s dns`)."""
    pairs = [("services", kube_dns_service(cluster_ip), service_update),
             ("endpoints", kube_dns_endpoints(endpoints_ips, port), endpoints_update)]
    result = []
    for resource, desired, update in pairs:
        def attempt(resource: str = resource, desired: Obj = desired, update=update) -> Obj:
            current = client.get_or_none(resource, NAME, NAMESPACE)
            if current is None:
                try:
                    return client.create(resource, desired, NAMESPACE)
                except APIError as e:
                    if not is_already_exists(e):
                        raise
                    current = client.get(resource, NAME, NAMESPACE)
            changed = update(current, desired)
            return current if changed is None else client.update(resource, changed)
        result.append(client.retry_on_conflict(attempt))
        logger.info("ensured %s %s/%s", resource, NAMESPACE, NAME)
    return result[0], result[1]
