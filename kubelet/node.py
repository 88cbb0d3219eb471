"""The kubelet's Node: registration, status and the heartbeat Lease.

- `register` creates the Node (or, when it exists, re-applies our labels and addresses): labels
  `kubernetes.io/hostname|os|arch` (and the `beta.` variants) plus `--node-labels`.
- Status (`node_status`): capacity and allocatable (cpu from the cgroup quota or the CPU count, memory
  from /proc/meminfo, pods 110, ephemeral-storage of the root dir's filesystem; allocatable subtracts the
  hard eviction thresholds), addresses (InternalIP, Hostname), nodeInfo (all ten fields), the kubelet's
  endpoint port, and the conditions Ready, MemoryPressure, DiskPressure, PIDPressure judged against the
  kubelet's default eviction thresholds (memory.available<100Mi, nodefs.available<10%,
  pid.available<10% here).
- As in Kubernetes >= 1.17 the Lease `kube-node-lease/<node>` (renewed every 10 s, 40 s duration) is the
  heartbeat; the status is written when something in it changed (checked every
  --node-status-update-frequency seconds, or at once when `poke()` is called) and otherwise every 5 min.
  Ready is False with the problem `ready_check()` names (runtime down, pod network not configured).
  A condition's lastTransitionTime only moves when its status flips.
"""
from __future__ import annotations

import asyncio
import logging
import os
import platform
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from api.errors import APIError
from client.rest import TRANSPORT_ERRORS, AsyncClient, is_already_exists, is_not_found
from client.aio import wait_event

logger = logging.getLogger(__name__)

Obj = dict[str, Any]

KUBELET_VERSION = "v1.31.0-minik8s"
MAX_PODS = 110
LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION = 40
# Kubernetes renews at a quarter of the lease duration.
LEASE_RENEW_FRACTION = 0.25
STATUS_REPORT_FREQUENCY = 300.0
MEMORY_AVAILABLE_MIN = 100 * 2**20
NODEFS_AVAILABLE_MIN = 0.10
PID_AVAILABLE_MIN = 0.10

ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _read(path: str, default: str = "") -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return default


def meminfo() -> dict[str, int]:
    out = {}
    for line in _read("/proc/meminfo").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            out[key] = int(parts[0]) * (1024 if len(parts) > 1 else 1)
    return out


def cpu_count() -> int:
    """CPUs this host gives us: the cgroup CPU quota if one is set (v2 or v1), else the CPU count."""
    count = os.cpu_count() or 1
    quota = period = -1
    v2 = _read("/sys/fs/cgroup/cpu.max").split()
    if len(v2) == 2 and v2[0] != "max":
        quota, period = int(v2[0]), int(v2[1])
    else:
        q, p = _read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1"), _read("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "-1")
        if q.lstrip("-").isdigit() and p.isdigit():
            quota, period = int(q), int(p)
    if quota > 0 and period > 0:
        return max(1, min(count, -(-quota // period)))
    return count


def os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return "Linux"


def pids() -> tuple[int, int]:
    """(processes running, pid_max)."""
    running = sum(1 for d in os.listdir("/proc") if d.isdigit())
    return running, int(_read("/proc/sys/kernel/pid_max", "32768") or 32768)


@dataclass
class HostFacts:
    cpus: int
    memory_total: int
    memory_available: int
    fs_total: int
    fs_available: int
    pids_used: int
    pid_max: int

    @classmethod
    def read(cls, root_dir: Path) -> "HostFacts":
        mem = meminfo()
        st = os.statvfs(root_dir)
        used, pid_max = pids()
        return cls(cpus=cpu_count(), memory_total=mem.get("MemTotal", 0),
                   memory_available=mem.get("MemAvailable", mem.get("MemFree", 0)),
                   fs_total=st.f_blocks * st.f_frsize, fs_available=st.f_bavail * st.f_frsize,
                   pids_used=used, pid_max=pid_max)


def node_labels(node: str, extra: dict[str, str]) -> dict[str, str]:
    arch = ARCH.get(platform.machine(), platform.machine())
    return {"kubernetes.io/hostname": node, "kubernetes.io/os": "linux", "kubernetes.io/arch": arch,
            "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": arch, **extra}


def _condition(ctype: str, bad: bool, good_reason: str, bad_reason: str, good_msg: str, bad_msg: str) -> Obj:
    return {"type": ctype, "status": "True" if bad else "False",
            "reason": bad_reason if bad else good_reason, "message": bad_msg if bad else good_msg}


def conditions(facts: HostFacts, *, ready_problem: str | None) -> list[Obj]:
    memory = facts.memory_available < MEMORY_AVAILABLE_MIN
    disk = facts.fs_total > 0 and facts.fs_available / facts.fs_total < NODEFS_AVAILABLE_MIN
    pid = facts.pid_max > 0 and (facts.pid_max - facts.pids_used) / facts.pid_max < PID_AVAILABLE_MIN
    ready = {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status"}
    if ready_problem:
        ready = {"type": "Ready", "status": "False", "reason": "KubeletNotReady", "message": ready_problem}
    return [
        _condition("MemoryPressure", memory, "KubeletHasSufficientMemory", "KubeletHasInsufficientMemory",
                   "kubelet has sufficient memory available", "kubelet has insufficient memory available"),
        _condition("DiskPressure", disk, "KubeletHasNoDiskPressure", "KubeletHasDiskPressure",
                   "kubelet has no disk pressure", "kubelet has disk pressure"),
        _condition("PIDPressure", pid, "KubeletHasSufficientPID", "KubeletHasInsufficientPID",
                   "kubelet has sufficient PID available", "kubelet has insufficient PID available"),
        ready,
    ]


def node_info(docker_version: str) -> Obj:
    boot_id = _read("/proc/sys/kernel/random/boot_id")
    machine_id = _read("/etc/machine-id") or boot_id.replace("-", "")
    return {
        "machineID": machine_id,
        "systemUUID": _read("/sys/class/dmi/id/product_uuid") or machine_id,
        "bootID": boot_id,
        "kernelVersion": platform.release(),
        "osImage": os_image(),
        "containerRuntimeVersion": f"docker://{docker_version}",
        "kubeletVersion": KUBELET_VERSION,
        "kubeProxyVersion": KUBELET_VERSION,
        "operatingSystem": "linux",
        "architecture": ARCH.get(platform.machine(), platform.machine()),
    }


def node_status(facts: HostFacts, *, node_ip: str, hostname: str, port: int, info: Obj,
                ready_problem: str | None) -> Obj:
    capacity = {"cpu": str(facts.cpus), "memory": f"{facts.memory_total // 1024}Ki", "pods": str(MAX_PODS),
                "ephemeral-storage": f"{facts.fs_total // 1024}Ki"}
    allocatable = {
        "cpu": str(facts.cpus),
        "memory": f"{max(0, facts.memory_total - MEMORY_AVAILABLE_MIN) // 1024}Ki",
        "pods": str(MAX_PODS),
        "ephemeral-storage": str(int(facts.fs_total * (1 - NODEFS_AVAILABLE_MIN))),
    }
    return {
        "capacity": capacity, "allocatable": allocatable,
        "conditions": conditions(facts, ready_problem=ready_problem),
        "addresses": [{"type": "InternalIP", "address": node_ip}, {"type": "Hostname", "address": hostname}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "nodeInfo": info,
    }


def _without_heartbeats(status: Obj) -> Obj:
    out = dict(status)
    out["conditions"] = [{k: v for k, v in c.items() if k not in ("lastHeartbeatTime", "lastTransitionTime")}
                         for c in status.get("conditions") or []]
    return out


class NodeAgent:
    """Registers the Node, keeps its status current and renews its Lease."""

    def __init__(self, client: AsyncClient, *, node: str, node_ip: str, port: int, root_dir: Path,
                 labels: dict[str, str], update_frequency: float, docker_version: str,
                 ready_check: Callable[[], Awaitable[str | None]], lease_duration: int = LEASE_DURATION) -> None:
        self.client = client
        self.lease_duration = lease_duration
        self.node = node
        self.node_ip = node_ip
        self.port = port
        self.root_dir = root_dir
        self.labels = node_labels(node, labels)
        self.update_frequency = update_frequency
        self.info = node_info(docker_version)
        self.hostname = socket.gethostname()
        self.ready_check = ready_check
        self.node_uid: str | None = None
        self._written: Obj | None = None
        self._written_at = 0.0
        self._last_conditions: dict[str, Obj] = {}
        self._poke = asyncio.Event()

    def poke(self) -> None:
        self._poke.set()

    async def register(self, *, max_delay: float = 7.0) -> Obj:
        """Register the Node, retrying until the apiserver answers (as the kubelet does: a node that
        boots before its control plane waits for it instead of exiting)."""
        delay = 0.2
        while True:
            try:
                return await self._register_once()
            except TRANSPORT_ERRORS as e:
                logger.warning("unable to register node %s with the apiserver, retrying in %.1fs: %s",
                               self.node, delay, e)
            except APIError as e:
                if e.code < 500 and e.code != 429:
                    raise
                logger.warning("unable to register node %s (%s), retrying in %.1fs", self.node, e, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)

    async def _register_once(self) -> Obj:
        body = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.node, "labels": self.labels,
                             "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
                "spec": {}}
        try:
            node = await self.client.create("nodes", body)
            logger.info("registered node %s", self.node)
        except APIError as e:
            if not is_already_exists(e):
                raise
            node = await self.client.patch("nodes", self.node, {"metadata": {"labels": self.labels}})
            logger.info("node %s exists; updated its labels", self.node)
        self.node_uid = node["metadata"].get("uid")
        for c in (node.get("status") or {}).get("conditions") or []:
            self._last_conditions[c.get("type")] = c
        await self.update_status(force=True)
        return node

    async def update_status(self, force: bool = False) -> None:
        facts = await asyncio.to_thread(HostFacts.read, self.root_dir)
        status = node_status(facts, node_ip=self.node_ip, hostname=self.hostname, port=self.port, info=self.info,
                             ready_problem=await self.ready_check())
        due = time.monotonic() - self._written_at >= STATUS_REPORT_FREQUENCY
        if not force and not due and self._written is not None and \
                _without_heartbeats(self._written) == _without_heartbeats(status) and \
                await self._stored_conditions_agree(status):
            return
        now = now_rfc3339()
        for c in status["conditions"]:
            old = self._last_conditions.get(c["type"])
            c["lastHeartbeatTime"] = now
            c["lastTransitionTime"] = old["lastTransitionTime"] if old and old.get("status") == c["status"] \
                and old.get("lastTransitionTime") else now
        await self.client.patch("nodes", self.node, {"status": status}, subresource="status")
        self._written, self._written_at = status, time.monotonic()
        self._last_conditions = {c["type"]: c for c in status["conditions"]}
        logger.debug("node %s status written", self.node)

    async def _stored_conditions_agree(self, status: Obj) -> bool:
        """Whether the Node in the apiserver shows our conditions. Someone else may have changed them —
        the node lifecycle controller sets Ready=Unknown when our lease was late — and then our own view
        has not changed but the stored one must be put right (Kubernetes compares with the stored Node)."""
        try:
            stored = await self.client.get("nodes", self.node)
        except (APIError, *TRANSPORT_ERRORS):
            return True
        have = {c.get("type"): c.get("status") for c in (stored.get("status") or {}).get("conditions") or []}
        want = {c["type"]: c["status"] for c in status["conditions"]}
        if have != want:
            self._last_conditions = {c.get("type"): c for c in stored["status"].get("conditions") or []}
            return False
        return True

    async def status_loop(self) -> None:
        while True:
            await wait_event(self._poke, self.update_frequency)
            self._poke.clear()
            try:
                await self.update_status()
            except Exception as e:
                logger.warning("updating node %s status failed: %s", self.node, e)

    async def renew_lease(self) -> None:
        spec = {"holderIdentity": self.node, "leaseDurationSeconds": self.lease_duration, "renewTime": now_micro()}
        try:
            await self.client.patch("leases", self.node, {"spec": spec}, LEASE_NAMESPACE)
            return
        except APIError as e:
            if not is_not_found(e):
                raise
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                 "metadata": {"name": self.node, "namespace": LEASE_NAMESPACE},
                 "spec": {**spec, "acquireTime": spec["renewTime"]}}
        if self.node_uid:
            lease["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": self.node,
                                                     "uid": self.node_uid}]
        try:
            await self.client.create("leases", lease, LEASE_NAMESPACE)
        except APIError as e:
            if not is_already_exists(e):
                raise

    async def lease_loop(self) -> None:
        while True:
            try:
                await self.renew_lease()
            except Exception as e:
                logger.warning("renewing lease of node %s failed: %s", self.node, e)
            await asyncio.sleep(self.lease_duration * LEASE_RENEW_FRACTION)
