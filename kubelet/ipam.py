"""Pod IP allocation over the node's podCIDR, kept in one small JSON file.

The kubelet owns pod addresses (Docker only gives the sandbox an empty network namespace), so it needs
its own IPAM, like CNI's host-local plugin: a pod uid maps to one address of the node's podCIDR, the
network address, the gateway (first host, which sits on the node bridge) and the broadcast address are
never handed out, and one address never belongs to two uids.

The state lives in `<state_dir>/ipam.json` (`{"cidr": ..., "last": ..., "allocations": {uid: ip}}`),
rewritten atomically (temporary file + `os.replace`) after every change, so a restarted kubelet finds
every address it gave out. Allocation walks round-robin from the last address handed out, so an address
freed a moment ago is not reused at once (stale conntrack entries or ARP caches elsewhere still point at
it). If the node's podCIDR changes, allocations outside the new range are dropped.

One lock serialises every operation within the process; the kubelet is the file's only writer.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import os
import threading
from pathlib import Path

logger = logging.getLogger(__name__)


class IpamExhausted(RuntimeError):
    """Every usable address of the podCIDR is taken."""


class Ipam:
    def __init__(self, path: Path, cidr: str | None = None) -> None:
        """Load the state at `path` (missing file = empty); `cidr` (if given) becomes the current range."""
        self._path = Path(path)
        self._lock = threading.Lock()
        self._cidr: ipaddress.IPv4Network | None = None
        self._last: str | None = None
        self._allocations: dict[str, str] = {}
        self._load()
        if cidr is not None:
            self.set_cidr(cidr)

    @property
    def cidr(self) -> str | None:
        return str(self._cidr) if self._cidr else None

    def set_cidr(self, cidr: str) -> None:
        """Make `cidr` the range to allocate from, dropping allocations that fall outside it."""
        network = ipaddress.IPv4Network(cidr)
        if network.num_addresses < 4:
            raise ValueError(f"podCIDR {cidr} is too small for a gateway and pods")
        with self._lock:
            if network == self._cidr:
                return
            dropped = {uid: ip for uid, ip in self._allocations.items()
                       if ipaddress.IPv4Address(ip) not in network or ip == str(gateway_of(network))}
            for uid, ip in dropped.items():
                logger.warning("podCIDR changed to %s: dropping allocation %s of pod %s", network, ip, uid)
                del self._allocations[uid]
            self._cidr, self._last = network, None
            self._save()

    def allocate(self, uid: str) -> str:
        """The address of pod `uid`: its existing one, else the next free one."""
        with self._lock:
            if uid in self._allocations:
                return self._allocations[uid]
            if self._cidr is None:
                raise RuntimeError("IPAM has no podCIDR yet")
            ip = self._next_free()
            self._allocations[uid] = self._last = ip
            self._save()
            logger.info("allocated %s to pod %s", ip, uid)
            return ip

    def release(self, uid: str) -> str | None:
        """Free the address of pod `uid`; returns it, or None if the pod had none."""
        with self._lock:
            ip = self._allocations.pop(uid, None)
            if ip is not None:
                self._save()
                logger.info("released %s of pod %s", ip, uid)
            return ip

    def get(self, uid: str) -> str | None:
        with self._lock:
            return self._allocations.get(uid)

    def all(self) -> dict[str, str]:
        """A copy of every allocation, uid → ip."""
        with self._lock:
            return dict(self._allocations)

    def _next_free(self) -> str:
        first = int(self._cidr.network_address) + 2          # skip the network address and the gateway
        count = int(self._cidr.broadcast_address) - first    # up to, not including, the broadcast
        taken = set(self._allocations.values())
        last = int(ipaddress.IPv4Address(self._last)) if self._last else first - 1
        for step in range(1, count + 1):
            ip = str(ipaddress.IPv4Address(first + (last - first + step) % count))
            if ip not in taken:
                return ip
        raise IpamExhausted(f"no free address left in {self._cidr} ({len(taken)} pods)")

    def _load(self) -> None:
        try:
            state = json.loads(self._path.read_text())
        except FileNotFoundError:
            return
        self._cidr = ipaddress.IPv4Network(state["cidr"]) if state.get("cidr") else None
        self._last = state.get("last")
        self._allocations = dict(state.get("allocations", {}))

    def _save(self) -> None:
        state = {"cidr": self.cidr, "last": self._last, "allocations": self._allocations}
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_name(self._path.name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(state, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path)


def gateway_of(network: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
    """The node bridge's address: the first host of the podCIDR (10.244.1.0/24 → 10.244.1.1)."""
    return next(network.hosts())
