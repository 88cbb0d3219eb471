"""Node authorization and NodeRestriction: a kubelet's credentials reach what its own pods need, no more.

Kubelets authenticate as `system:node:<name>` in the group `system:nodes`. RBAC alone (the
`system:node` ClusterRole) can only say what *every* node may do. Kubernetes adds two checks that know
which node is asking, and so do we:

- The **Node authorizer** (`--authorization-mode Node,RBAC`, the default) decides, from the watch cache,
  the requests whose answer depends on the node:
  - Secrets, ConfigMaps, PersistentVolumeClaims and PersistentVolumes: read (get, or list/watch of one
    object by `fieldSelector=metadata.name=<name>`) only while a pod bound to the node names the object
    (`api/podrefs.py`; a PersistentVolume through the claim bound to it). Nothing else about them.
  - `serviceaccounts/<sa>/token`: only for a ServiceAccount a pod on the node runs as.
  - Writes to another node's Node object, to pods bound elsewhere (status, delete, eviction) and to
    another node's Lease in `kube-node-lease` are refused outright.
  Everything else is left to RBAC. These decisions are not memoised (they change as pods come and go);
  the pod → object edges are rebuilt from the cache only when pods or claims changed since the last
  question.
- **NodeRestriction** (admission, needs the request body): a node creates only its own Node object and
  may not set or change labels under `node-restriction.kubernetes.io/`; it creates no pods but mirror
  pods bound to itself; a token it requests must be bound to a pod on itself.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from api import errors, podrefs, registry
from api.rbac import Attributes, UserInfo

if TYPE_CHECKING:
    from apiserver.watchcache import WatchCache

Obj = dict[str, Any]

NODES_GROUP = "system:nodes"
NODE_USER_PREFIX = "system:node:"
LEASE_NAMESPACE = "kube-node-lease"
RESTRICTED_LABEL_PREFIX = "node-restriction.kubernetes.io/"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
GRAPH_KINDS = ("secrets", "configmaps", "persistentvolumeclaims", "persistentvolumes")
READ = ("get", "list", "watch")
WRITE = ("create", "update", "patch", "delete")


def node_name(user: UserInfo | None) -> str | None:
    """The node a kubelet identity speaks for; None for everyone else."""
    if user is None or NODES_GROUP not in user.groups or not user.name.startswith(NODE_USER_PREFIX):
        return None
    return user.name[len(NODE_USER_PREFIX):] or None


class NodeGraph:
    """Which objects each node's pods name: {node: {(plural, namespace, name)}}, from the watch cache."""

    def __init__(self, cache: "WatchCache") -> None:
        self.pods = cache.cache_for(registry.lookup("", "v1", "pods"))
        self.claims = cache.cache_for(registry.lookup("", "v1", "persistentvolumeclaims"))
        self._stamp: tuple[int, int] | None = None
        self._edges: dict[str, set[tuple[str, str, str]]] = {}

    def pod(self, namespace: str, name: str) -> Obj | None:
        return self.pods.objects.get(f"/registry/pods/{namespace}/{name}")

    def edges(self, node: str) -> set[tuple[str, str, str]]:
        stamp = (self.pods.changes, self.claims.changes)
        if stamp != self._stamp:
            self._edges = self._build()
            self._stamp = stamp
        return self._edges.get(node, set())

    def _build(self) -> dict[str, set[tuple[str, str, str]]]:
        edges: dict[str, set[tuple[str, str, str]]] = {}
        for pod in self.pods.objects.values():
            node = (pod.get("spec") or {}).get("nodeName")
            if not node:
                continue
            ns = pod["metadata"].get("namespace", "")
            mine = edges.setdefault(node, set())
            mine.add(("serviceaccounts", ns, podrefs.service_account(pod)))
            for kind, name in podrefs.referenced_objects(pod):
                mine.add((kind, ns, name))
                if kind == "persistentvolumeclaims":
                    claim = self.claims.objects.get(f"/registry/persistentvolumeclaims/{ns}/{name}")
                    volume = ((claim or {}).get("spec") or {}).get("volumeName")
                    if volume:
                        mine.add(("persistentvolumes", "", volume))
        return edges


class NodeAuthorizer:
    def __init__(self, cache: "WatchCache") -> None:
        self.graph = NodeGraph(cache)

    def decide(self, user: UserInfo, a: Attributes) -> tuple[bool | None, str]:
        """(True: allowed, False: refused, None: no opinion — RBAC decides) and the reason for a refusal."""
        node = node_name(user)
        if node is None or not a.resource_request:
            return None, ""
        if a.api_group == "" and a.resource in GRAPH_KINDS and not a.subresource:
            if a.verb not in READ:
                return None, "can only read resources of this type"
            if not a.name:
                return None, "can only get individual resources of this type"
            return self._related(node, a.resource, a.namespace, a.name)
        if a.api_group == "" and a.resource == "serviceaccounts" and a.subresource == "token":
            if a.verb != "create" or not a.name:
                return None, "can only create tokens for individual service accounts"
            return self._related(node, "serviceaccounts", a.namespace, a.name)
        if a.verb not in WRITE or not a.name:
            return None, ""
        if a.api_group == "" and a.resource == "nodes" and a.name != node:
            return False, f"node '{node}' cannot modify node '{a.name}'"
        if a.api_group == "coordination.k8s.io" and a.resource == "leases" and a.namespace == LEASE_NAMESPACE \
                and a.name != node:
            return False, f"node '{node}' cannot modify the lease of node '{a.name}'"
        if a.api_group == "" and a.resource == "pods":
            pod = self.graph.pod(a.namespace, a.name)
            bound = (pod.get("spec") or {}).get("nodeName") if pod else None
            if pod is not None and bound != node:
                return False, f"node '{node}' can only change pods bound to it"
        return None, ""

    def _related(self, node: str, kind: str, namespace: str, name: str) -> tuple[bool | None, str]:
        if (kind, namespace, name) in self.graph.edges(node):
            return True, ""
        return None, f"no relationship found between node '{node}' and this object"


class NodeRestriction:
    """Admission: what a node may write, judged on the object itself (see the module docstring)."""

    def __init__(self, user_of) -> None:
        self.user_of = user_of  # () -> the UserInfo of the request being served

    def __call__(self, rd: registry.ResourceDef, new: Obj, old: Obj | None) -> None:
        node = node_name(self.user_of())
        if node is None or rd.group != "":
            return
        meta = new.get("metadata") or {}
        if rd.kind == "Node":
            if meta.get("name") != node:
                raise errors.forbidden(f'node "{node}" is not allowed to modify node "{meta.get("name")}"')
            before = ((old or {}).get("metadata") or {}).get("labels") or {}
            after = meta.get("labels") or {}
            touched = sorted(k for k in set(before) | set(after)
                             if k.startswith(RESTRICTED_LABEL_PREFIX) and before.get(k) != after.get(k))
            if touched:
                raise errors.forbidden(f'node "{node}" is not allowed to modify labels: {", ".join(touched)}')
        elif rd.kind == "Pod" and old is None:
            if MIRROR_ANNOTATION not in (meta.get("annotations") or {}):
                raise errors.forbidden(f'pod does not have "{MIRROR_ANNOTATION}" annotation, node "{node}" can only '
                                       "create mirror pods")
            if (new.get("spec") or {}).get("nodeName") != node:
                raise errors.forbidden(f'node "{node}" can only create pods with spec.nodeName set to itself')


def restrict_token_request(user: UserInfo | None, ref: Obj | None, bound: Obj | None) -> None:
    """A node may only ask for tokens bound to a pod running on it (NodeRestriction on TokenRequests)."""
    node = node_name(user)
    if node is None:
        return
    if ref is None or ref.get("kind") != "Pod" or bound is None:
        raise errors.forbidden(f'node "{node}" can only request tokens bound to a pod')
    if (bound.get("spec") or {}).get("nodeName") != node:
        raise errors.forbidden(f'node "{node}" can only request tokens bound to pods scheduled on it')
