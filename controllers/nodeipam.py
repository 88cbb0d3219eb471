"""Node IPAM: every Node gets a `spec.podCIDR` carved from the cluster CIDR.

The allocator's memory is rebuilt from the Node cache (every podCIDR already set is taken), so a new
leader continues where the old one stopped. A CIDR is reserved in memory before the patch is sent and
released if the patch fails, and the controller runs one worker, so two nodes never get the same range.
Once set, a podCIDR never changes (Kubernetes treats it as immutable); a deleted Node's range is free
again.
"""
from __future__ import annotations

import ipaddress
import logging

from api.errors import APIError
from controllers.base import Controller

logger = logging.getLogger(__name__)


class CIDRAllocator:
    def __init__(self, cluster_cidr: str, mask_size: int):
        self.network = ipaddress.ip_network(cluster_cidr)
        if mask_size < self.network.prefixlen:
            raise ValueError(f"node CIDR mask /{mask_size} is larger than the cluster CIDR {cluster_cidr}")
        self.mask_size = mask_size
        self.used: set[str] = set()

    def occupy(self, cidr: str) -> None:
        self.used.add(str(ipaddress.ip_network(cidr, strict=False)))

    def release(self, cidr: str) -> None:
        self.used.discard(cidr)

    def allocate(self) -> str:
        for subnet in self.network.subnets(new_prefix=self.mask_size):
            s = str(subnet)
            if s not in self.used:
                self.used.add(s)
                return s
        raise RuntimeError(f"the cluster CIDR {self.network} has no free /{self.mask_size} left")


class NodeIPAMController(Controller):
    name = "nodeipam"
    workers = 1

    @classmethod
    def add_arguments(cls, group) -> None:
        group.add_argument("--cluster-cidr", default="10.244.0.0/16", help="the range pod CIDRs are cut from")
        group.add_argument("--node-cidr-mask-size", type=int, default=24)

    def setup(self) -> None:
        self.allocator = CIDRAllocator(self.options.get("cluster_cidr", "10.244.0.0/16"),
                                       int(self.options.get("node_cidr_mask_size", 24)))
        # Nodes we patched whose new podCIDR the informer has not shown yet: a status update arriving
        # meanwhile must not make us cut (and try to write) a second range.
        self.assigned: dict[str, str] = {}
        self.nodes = self.factory.informer("nodes")
        self.nodes.add_handler(on_add=self._seen, on_update=lambda old, new: self._seen(new),
                               on_delete=self._gone)

    def _seen(self, node: dict) -> None:
        cidr = (node.get("spec") or {}).get("podCIDR")
        if cidr:
            self.allocator.occupy(cidr)
            self.assigned.pop((node.get("metadata") or {}).get("name", ""), None)
        else:
            self.enqueue(node)

    def _gone(self, node: dict) -> None:
        self.assigned.pop((node.get("metadata") or {}).get("name", ""), None)
        cidr = (node.get("spec") or {}).get("podCIDR")
        if cidr:
            self.allocator.release(str(ipaddress.ip_network(cidr, strict=False)))

    async def reconcile(self, key: str) -> None:
        node = self.nodes.store.get(key)
        if node is None or (node.get("spec") or {}).get("podCIDR") or key in self.assigned:
            return
        cidr = self.allocator.allocate()
        try:
            await self.client.patch("nodes", key, {"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}})
        except APIError as e:
            self.allocator.release(cidr)
            if e.code == 404:
                return
            if e.code == 422 and "podCIDR" in str(e):
                logger.info("node %s already has a podCIDR; waiting for the watch to show it", key)
                return
            raise
        except Exception:
            self.allocator.release(cidr)
            raise
        self.assigned[key] = cidr
        logger.info("node %s: podCIDR %s", key, cidr)
        self.recorder.event(node, "Normal", "CIDRAssignmentSucceeded", f"Node {key} assigned podCIDR {cidr}")
