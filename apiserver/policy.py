"""The RBAC policy every cluster starts with, as Kubernetes' bootstrap policy lays it out.

Created on first start when absent (like the apiserver's `rbac/bootstrap-roles` post-start hook), never
overwritten, so an administrator's edits survive restarts. Each component identity `minik8s bootstrap`
issues a token for is bound to a role holding what that component reads and writes:

- `cluster-admin` (everything) bound to the group `system:masters` (which also bypasses RBAC, as in
  Kubernetes, so an administrator can never lock themselves out);
- `admin`, `edit`, `view` for users (granted per namespace with a RoleBinding);
- `system:discovery`, `system:basic-user` and `system:public-info-viewer` for every authenticated user
  (discovery, OpenAPI, version, `auth can-i`);
- `system:kube-scheduler`, `system:kube-controller-manager`, `system:node` (group `system:nodes`),
  `system:node-proxier` (group `system:node-proxier`) and `system:minik8s-dns`.

The controller-manager's role is broad on purpose: in this server one identity runs every controller,
including the garbage collector and the namespace controller, which must read and delete any kind.
"""
from __future__ import annotations

from typing import Any

from api.rbac import AUTHENTICATED, GROUP, MASTERS

Obj = dict[str, Any]

READ = ["get", "list", "watch"]
WRITE = ["create", "update", "patch", "delete", "deletecollection"]
ALL_RESOURCE_VERBS = READ + WRITE
EVENTS = {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch", "update"]}
LEASES = {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": READ + ["create", "update", "patch"]}
DELEGATION = [{"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
              {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]}]

WORKLOADS = [
    {"apiGroups": [""], "resources": ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy",
                                      "pods/log", "pods/eviction", "services", "services/proxy", "endpoints",
                                      "persistentvolumeclaims", "configmaps", "secrets", "serviceaccounts",
                                      "events", "replicationcontrollers"], "verbs": None},
    {"apiGroups": ["apps"], "resources": ["deployments", "deployments/scale", "deployments/rollback",
                                          "replicasets", "replicasets/scale", "statefulsets",
                                          "statefulsets/scale", "daemonsets", "controllerrevisions"],
     "verbs": None},
    {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": None},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": None},
    {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": None},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": None},
]
# What metrics-server's `system:aggregated-metrics-reader` adds to view, edit and admin (`kubectl top`).
METRICS_READER = {"apiGroups": ["metrics.k8s.io"], "resources": ["pods", "nodes"], "verbs": READ}


def _workload_rules(verbs: list[str]) -> list[Obj]:
    return [{**rule, "verbs": verbs} for rule in WORKLOADS]


def _role(name: str, rules: list[Obj]) -> Obj:
    return {"apiVersion": f"{GROUP}/v1", "kind": "ClusterRole",
            "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
                         "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
            "rules": rules}


def _binding(name: str, role: str, *subjects: tuple[str, str]) -> Obj:
    return {"apiVersion": f"{GROUP}/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
                         "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
            "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": kind, "apiGroup": GROUP, "name": subject} for kind, subject in subjects]}


def cluster_roles() -> list[Obj]:
    return [
        _role("cluster-admin", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                                {"nonResourceURLs": ["*"], "verbs": ["*"]}]),
        _role("admin", _workload_rules(ALL_RESOURCE_VERBS) + [
            METRICS_READER,
            {"apiGroups": [GROUP], "resources": ["roles", "rolebindings"], "verbs": ALL_RESOURCE_VERBS},
            {"apiGroups": [""], "resources": ["namespaces"], "verbs": READ}]),
        _role("edit", _workload_rules(ALL_RESOURCE_VERBS) + [
            METRICS_READER,
            {"apiGroups": [""], "resources": ["namespaces"], "verbs": READ}]),
        _role("view", [{**rule, "resources": [r for r in rule["resources"] if r not in (
            "secrets", "pods/exec", "pods/attach", "pods/portforward", "pods/proxy", "services/proxy",
            "pods/eviction")], "verbs": READ} for rule in WORKLOADS] + [
            METRICS_READER,
            {"apiGroups": [""], "resources": ["namespaces"], "verbs": READ}]),
        _role("system:discovery", [{"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/openapi",
                                                        "/openapi/*", "/version", "/version/", "/healthz",
                                                        "/livez", "/readyz"], "verbs": ["get"]}]),
        _role("system:public-info-viewer", [{"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version",
                                                                 "/version/"], "verbs": ["get"]}]),
        _role("system:auth-delegator", DELEGATION),
        _role("system:basic-user", [{"apiGroups": ["authorization.k8s.io"],
                                     "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                                     "verbs": ["create"]}]),
        _role("system:kube-scheduler", [
            EVENTS, LEASES,
            {"apiGroups": [""], "resources": ["pods", "nodes", "namespaces", "services", "persistentvolumeclaims",
                                              "persistentvolumes", "replicationcontrollers"], "verbs": READ},
            {"apiGroups": [""], "resources": ["pods/binding", "bindings"], "verbs": ["create"]},
            {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["patch", "update"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]},
            {"apiGroups": ["apps"], "resources": ["replicasets", "statefulsets"], "verbs": READ},
        ]),
        _role("system:kube-controller-manager", [
            {"apiGroups": ["*"], "resources": ["*"], "verbs": ALL_RESOURCE_VERBS},
        ]),
        _role("system:node", [
            EVENTS, LEASES,
            {"apiGroups": [""], "resources": ["nodes"], "verbs": READ + ["create", "update", "patch", "delete"]},
            {"apiGroups": [""], "resources": ["nodes/status"], "verbs": ["patch", "update"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": READ + ["create", "delete"]},
            {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["patch", "update"]},
            {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
            {"apiGroups": [""], "resources": ["services", "endpoints", "namespaces"], "verbs": READ},
            # Checking the callers of the kubelet's own API (webhook authentication and authorization).
            *DELEGATION,
            # Secrets, ConfigMaps, volumes and ServiceAccount tokens: only what the node's own pods use,
            # which the node authorizer decides (apiserver/nodeauthz.py), as in Kubernetes.
        ]),
        _role("system:node-proxier", [
            EVENTS, LEASES,
            {"apiGroups": [""], "resources": ["services", "endpoints", "nodes"], "verbs": READ},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": READ},
            # The lab LoadBalancer allocator (kube-proxy, leader-elected) writes Service status.
            {"apiGroups": [""], "resources": ["services/status"], "verbs": ["patch", "update"]},
        ]),
        _role("system:minik8s-dns", [
            {"apiGroups": [""], "resources": ["services", "endpoints", "pods", "namespaces"], "verbs": READ},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": READ},
        ]),
    ]


def cluster_role_bindings() -> list[Obj]:
    return [
        _binding("cluster-admin", "cluster-admin", ("Group", MASTERS)),
        _binding("system:discovery", "system:discovery", ("Group", AUTHENTICATED)),
        _binding("system:basic-user", "system:basic-user", ("Group", AUTHENTICATED)),
        _binding("system:public-info-viewer", "system:public-info-viewer", ("Group", AUTHENTICATED)),
        _binding("system:kube-scheduler", "system:kube-scheduler", ("User", "system:kube-scheduler")),
        _binding("system:kube-controller-manager", "system:kube-controller-manager",
                 ("User", "system:kube-controller-manager")),
        _binding("system:node", "system:node", ("Group", "system:nodes")),
        _binding("system:node-proxier", "system:node-proxier", ("Group", "system:node-proxier")),
        _binding("system:minik8s-dns", "system:minik8s-dns", ("User", "system:minik8s-dns")),
    ]
