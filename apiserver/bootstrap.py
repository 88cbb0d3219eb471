"""Objects every cluster has from its first start, as Kubernetes' bootstrap controller makes them.

The system namespaces (default, kube-system, kube-public, kube-node-lease), the `kubernetes` Service
in `default` (ClusterIP 10.96.0.1, port 443) with Endpoints pointing at this apiserver, and the bootstrap
RBAC policy (`apiserver/policy.py`). Existing objects are left alone, so a restart keeps whatever users
changed.
"""
from __future__ import annotations

import ipaddress
import logging
from typing import TYPE_CHECKING

from api import registry
from apiserver import policy, strategy
from apiserver.storage import CompareFailed

if TYPE_CHECKING:
    from apiserver.rest import RestHandler

logger = logging.getLogger(__name__)

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


async def _create_if_absent(handler: "RestHandler", rd: registry.ResourceDef, key: str, obj: dict, side=None) -> None:
    strategy.prepare_for_create(rd, obj)
    rd.default(obj)
    try:
        await handler.store.create(key, obj, side)
        logger.info("created %s %s", rd.kind, obj["metadata"]["name"])
    except CompareFailed:
        pass


async def ensure_system_objects(handler: "RestHandler", advertise_address: str, port: int) -> None:
    for plural, objects in (("clusterroles", policy.cluster_roles()),
                            ("clusterrolebindings", policy.cluster_role_bindings())):
        rd = registry.lookup("rbac.authorization.k8s.io", "v1", plural)
        for obj in objects:
            key = f"{rd.storage_prefix()}{obj['metadata']['name']}"
            if await handler.store.get(key) is None:
                await _create_if_absent(handler, rd, key, obj)
    ns_rd = registry.lookup("", "v1", "namespaces")
    for name in SYSTEM_NAMESPACES:
        await _create_if_absent(handler, ns_rd, f"/registry/namespaces/{name}", {"metadata": {"name": name}})
    svc_rd = registry.lookup("", "v1", "services")
    first_ip = str(handler.allocator.net.network_address + 1)
    svc = {"metadata": {"name": "kubernetes", "namespace": "default",
                        "labels": {"component": "apiserver", "provider": "kubernetes"}},
           "spec": {"clusterIP": first_ip, "clusterIPs": [first_ip], "type": "ClusterIP",
                    "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]}}
    svc_key = "/registry/services/default/kubernetes"
    if await handler.store.get(svc_key) is None:
        await _create_if_absent(handler, svc_rd, svc_key, svc, handler.allocator.side_effects(svc, None))
    ip = ipaddress.ip_address(advertise_address)
    ep_rd = registry.lookup("", "v1", "endpoints")
    ep = {"metadata": {"name": "kubernetes", "namespace": "default"},
          "subsets": [{"addresses": [{"ip": str(ip)}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]}
    await _create_if_absent(handler, ep_rd, "/registry/endpoints/default/kubernetes", ep)
