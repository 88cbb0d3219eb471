"""The scheduler's view of the cluster: NodeInfos with the pods on them, including *assumed* pods.

After deciding, the scheduler *assumes* the pod onto its node here at once and sends the binding in the
background. The next pod is then scheduled against totals that already count the previous decisions,
so a burst cannot overcommit a node while the watch has not yet reported the bindings. When the watch
delivers the bound pod, the assumption is confirmed (replaced by the real object); when the binding
fails, `forget` takes it back out.

The cache is updated incrementally from informer events (one NodeInfo touched per event), and, since
the scheduler runs on one event loop and each decision is synchronous, it doubles as the snapshot that
`framework.schedule` reads: no copy per pod. Pods whose node is not (yet) known are kept aside and
attached when the Node arrives.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator

from scheduler.nodeinfo import NodeInfo, Obj, PodInfo, node_key, pod_info

logger = logging.getLogger(__name__)


class Cache:
    def __init__(self) -> None:
        self._nodes: dict[str, NodeInfo] = {}
        self._ordered: list[NodeInfo] | None = None
        self._pod_node: dict[str, str] = {}          # pod key -> node name (bound or assumed)
        self._assumed: set[str] = set()
        self._orphans: dict[str, dict[str, PodInfo]] = {}  # node name -> pods whose Node is not known yet
        self._anti_affinity: dict[str, PodInfo] = {}   # pods with required anti-affinity, by key

    # -- snapshot interface ----------------------------------------------------------------------

    def node_infos(self) -> list[NodeInfo]:
        if self._ordered is None:
            self._ordered = sorted(self._nodes.values(), key=lambda n: n.name)
        return self._ordered

    def pods_with_required_anti_affinity(self) -> Iterator[tuple[PodInfo, NodeInfo]]:
        for key, pi in self._anti_affinity.items():
            node = self._nodes.get(self._pod_node.get(key, ""))
            if node is not None:
                yield pi, node

    def node(self, name: str) -> NodeInfo | None:
        return self._nodes.get(name)

    def __len__(self) -> int:
        return len(self._nodes)

    # -- nodes -----------------------------------------------------------------------------------

    def add_node(self, node: Obj) -> None:
        name = node_key(node)
        info = self._nodes.get(name)
        if info is not None:
            info.set_node(node)
            return
        info = self._nodes[name] = NodeInfo(node)
        self._ordered = None
        for pi in self._orphans.pop(name, {}).values():
            info.add_pod(pi)

    update_node = add_node

    def remove_node(self, node: Obj) -> None:
        name = node_key(node)
        info = self._nodes.pop(name, None)
        if info is None:
            return
        self._ordered = None
        # Pods stay bound to a deleted node until something deletes them; keep them accounted for
        # in case the Node comes back.
        if info.pods:
            self._orphans[name] = dict(info.pods)

    # -- pods ------------------------------------------------------------------------------------

    def is_assumed(self, key: str) -> bool:
        return key in self._assumed

    def assume(self, pi: PodInfo, node_name: str) -> None:
        """Account `pi` on `node_name` before the binding is confirmed."""
        self._place(pi, node_name)
        self._assumed.add(pi.key)

    def forget(self, key: str) -> None:
        """Undo an assumption whose binding failed."""
        if key in self._assumed:
            self._assumed.discard(key)
            self._unplace(key)

    def add_pod(self, pod: Obj) -> None:
        """A pod bound to a node (from the watch); confirms an assumption or replaces an older version."""
        pi = pod_info(pod)
        self._assumed.discard(pi.key)
        self._unplace(pi.key)
        self._place(pi, pi.node_name)

    update_pod = add_pod

    def remove_pod(self, key: str) -> None:
        self._assumed.discard(key)
        self._unplace(key)

    def _place(self, pi: PodInfo, node_name: str) -> None:
        self._pod_node[pi.key] = node_name
        info = self._nodes.get(node_name)
        if info is not None:
            info.add_pod(pi)
        else:
            self._orphans.setdefault(node_name, {})[pi.key] = pi
        if pi.anti_affinity:
            self._anti_affinity[pi.key] = pi

    def _unplace(self, key: str) -> None:
        node_name = self._pod_node.pop(key, None)
        if node_name is None:
            return
        self._anti_affinity.pop(key, None)
        info = self._nodes.get(node_name)
        if info is not None:
            info.remove_pod(key)
        orphans = self._orphans.get(node_name)
        if orphans is not None:
            orphans.pop(key, None)
            if not orphans:
                del self._orphans[node_name]
