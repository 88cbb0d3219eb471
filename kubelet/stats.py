"""Resource usage of the node and of its pods' containers, read from cgroup files, for `/metrics/resource`.

What the real kubelet's `/metrics/resource` endpoint serves (and metrics-server scrapes), in the same
Prometheus text format and metric names:

- `container_cpu_usage_seconds_total{container,namespace,pod}`: cumulative CPU time in core-seconds;
- `container_memory_working_set_bytes{...}`: memory usage minus inactive file pages (what the OOM killer
  and the kubelet's eviction look at);
- `container_start_time_seconds{...}`, so a scraper can tell a restarted container's counter from the old one;
- `pod_cpu_usage_seconds_total`, `pod_memory_working_set_bytes`: the sums over a pod's containers;
- `node_cpu_usage_seconds_total`, `node_memory_working_set_bytes`: the root cgroup;
- `resource_scrape_error`: 1 when some container could not be read.

Counters are cumulative: a rate needs two scrapes, and the scraper (the apiserver's metrics API) takes
them, as metrics-server does. Every sample carries its own timestamp (milliseconds).

Why cgroup files rather than Docker's stats API: Docker's `GET /containers/{id}/stats?stream=false`
takes two samples a second apart before answering (measured here: ~1.0 s per container, `one_shot` too),
so a node with 30 containers would need 30 s (or 30 threads) per scrape. Reading `cpuacct.usage` and
`memory.stat` of a container's cgroup costs ~0.2 ms. A container's cgroup is found through
`/proc/<pid>/cgroup` of its init process, which names its path in every hierarchy whatever Docker's
cgroup driver and parent are (`cgroupfs` under `/docker/<id>` here, `systemd` slices elsewhere); the
hierarchies' mount points come from `/proc/self/mountinfo`, so both cgroup v1 (this machine) and the
unified v2 layout work.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

import docker
import docker.errors

from kubelet import labels as L
from kubelet.runtime import parse_docker_time

logger = logging.getLogger(__name__)

UNIFIED = ""   # the key of the cgroup v2 hierarchy in our maps


@dataclass(frozen=True)
class Usage:
    cpu_seconds: float          # cumulative core-seconds
    working_set_bytes: int
    timestamp: float            # when read (epoch seconds)


@dataclass(frozen=True)
class ContainerUsage:
    namespace: str
    pod: str
    container: str
    start_time: float
    usage: Usage


def parse_mountinfo(text: str) -> dict[str, tuple[str, str]]:
    """Controller -> (mount point, root inside the hierarchy) for every cgroup mount; v2 under key ""."""
    mounts: dict[str, tuple[str, str]] = {}
    for line in text.splitlines():
        pre, sep, post = line.partition(" - ")
        if not sep:
            continue
        fields, tail = pre.split(), post.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        root, point, fstype = fields[3], fields[4], tail[0]
        if fstype == "cgroup2":
            mounts.setdefault(UNIFIED, (point, root))
        elif fstype == "cgroup":
            for opt in tail[2].split(","):
                if opt in ("cpuacct", "memory"):
                    mounts.setdefault(opt, (point, root))
    return mounts


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """Controller -> cgroup path from `/proc/<pid>/cgroup` (`id:controllers:path`); v2's line under ""."""
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            paths[UNIFIED] = path
        for c in controllers.split(","):
            paths[c] = path
    return paths


def parse_flat_keyed(text: str) -> dict[str, int]:
    """`memory.stat` / `cpu.stat`: one `key value` per line."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        try:
            out[key] = int(value)
        except ValueError:
            continue
    return out


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


class Cgroups:
    """Reads CPU and memory usage of cgroups on the hierarchies mounted in this process' view."""

    def __init__(self, mounts: dict[str, tuple[str, str]] | None = None):
        self.mounts = mounts if mounts is not None else parse_mountinfo(_read("/proc/self/mountinfo"))
        self.v1 = "cpuacct" in self.mounts and "memory" in self.mounts
        if not self.v1 and UNIFIED not in self.mounts:
            raise RuntimeError("no cgroup hierarchy with cpuacct and memory (v1) or cgroup2 is mounted")

    def _dir(self, controller: str, path: str) -> str:
        point, root = self.mounts[controller]
        rel = path[len(root):] if root != "/" and path.startswith(root) else path
        return os.path.join(point, rel.lstrip("/"))

    def usage(self, paths: dict[str, str]) -> Usage:
        """Usage of one cgroup, given its path per controller (`parse_proc_cgroup`)."""
        now = time.time()
        if self.v1:
            cpu_dir, mem_dir = self._dir("cpuacct", paths["cpuacct"]), self._dir("memory", paths["memory"])
            cpu = int(_read(f"{cpu_dir}/cpuacct.usage")) / 1e9
            used = int(_read(f"{mem_dir}/memory.usage_in_bytes"))
            inactive = parse_flat_keyed(_read(f"{mem_dir}/memory.stat")).get("total_inactive_file", 0)
        else:
            d = self._dir(UNIFIED, paths[UNIFIED])
            cpu = parse_flat_keyed(_read(f"{d}/cpu.stat"))["usage_usec"] / 1e6
            used = int(_read(f"{d}/memory.current"))
            inactive = parse_flat_keyed(_read(f"{d}/memory.stat")).get("inactive_file", 0)
        return Usage(cpu, max(used - inactive, 0), now)

    def node_usage(self) -> Usage:
        """The whole node: the root cgroup (cgroup v2's root has no memory files: /proc/meminfo instead)."""
        if self.v1:
            root = {c: self.mounts[c][1] for c in ("cpuacct", "memory")}
            return self.usage(root)
        now = time.time()
        d = self._dir(UNIFIED, self.mounts[UNIFIED][1])
        cpu = parse_flat_keyed(_read(f"{d}/cpu.stat"))["usage_usec"] / 1e6
        info = {k: int(v.split()[0]) * 1024 for k, _, v in
                (line.partition(":") for line in _read("/proc/meminfo").splitlines()) if v.strip()}
        return Usage(cpu, info["MemTotal"] - info.get("MemAvailable", info.get("MemFree", 0)), now)


class ResourceStats:
    """This node's usage: its running pod containers (found by the kubelet's Docker labels) and its total.

    `collect()` blocks (Docker list, file reads); call it in a thread. A container's init pid is looked
    up once (an inspect) and remembered while the container runs.
    """

    def __init__(self, docker_client: docker.DockerClient, node: str, cgroups: Cgroups | None = None):
        self.api = docker_client.api
        self.node = node
        self.cgroups = cgroups or Cgroups()
        self._known: dict[str, tuple[int, float]] = {}     # container id -> (pid, start time)
        self._lock = threading.Lock()

    def _pid_and_start(self, cid: str) -> tuple[int, float] | None:
        known = self._known.get(cid)
        if known is None:
            state = self.api.inspect_container(cid).get("State") or {}
            if not state.get("Pid"):
                return None
            known = self._known[cid] = (state["Pid"], parse_docker_time(state.get("StartedAt")) or 0.0)
        return known

    def collect(self) -> tuple[Usage, list[ContainerUsage], int]:
        """(node usage, per-container usage, number of containers that could not be read)."""
        with self._lock:
            rows = self.api.containers(filters=L.selector(self.node))    # running only
            live = {r["Id"] for r in rows}
            for gone in set(self._known) - live:
                del self._known[gone]
            out: list[ContainerUsage] = []
            failed = 0
            for row in rows:
                lab = row.get("Labels") or {}
                if lab.get(L.CONTAINER_TYPE) == "sandbox":
                    continue
                try:
                    found = self._pid_and_start(row["Id"])
                    if found is None:
                        continue
                    pid, started = found
                    usage = self.cgroups.usage(parse_proc_cgroup(_read(f"/proc/{pid}/cgroup")))
                except (OSError, KeyError, ValueError, docker.errors.NotFound) as e:
                    # The container may have exited between the list and the read.
                    logger.debug("no usage for container %s: %s", row["Id"][:12], e)
                    self._known.pop(row["Id"], None)
                    failed += 1
                    continue
                out.append(ContainerUsage(lab.get(L.POD_NAMESPACE, ""), lab.get(L.POD_NAME, ""),
                                          lab.get(L.CONTAINER_NAME, ""), started, usage))
            return self.cgroups.node_usage(), out, failed


# -- the Prometheus text format --------------------------------------------------------------------------

_HELP = {
    "container_cpu_usage_seconds_total": ("counter", "Cumulative cpu time consumed by the container in core-seconds"),
    "container_memory_working_set_bytes": ("gauge", "Current working set of the container in bytes"),
    "container_start_time_seconds": ("gauge", "Start time of the container since unix epoch in seconds"),
    "node_cpu_usage_seconds_total": ("counter", "Cumulative cpu time consumed by the node in core-seconds"),
    "node_memory_working_set_bytes": ("gauge", "Current working set of the node in bytes"),
    "pod_cpu_usage_seconds_total": ("counter", "Cumulative cpu time consumed by the pod in core-seconds"),
    "pod_memory_working_set_bytes": ("gauge", "Current working set of the pod in bytes"),
    "resource_scrape_error": ("gauge", "1 if there was an error while getting container metrics, 0 otherwise"),
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**kv: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in kv.items()) + "}"


def render(node: Usage, containers: list[ContainerUsage], failed: int) -> str:
    """The `/metrics/resource` document (Prometheus text format 0.0.4, with sample timestamps in ms)."""
    series: dict[str, list[str]] = {name: [] for name in _HELP}

    def add(name: str, labels: str, value: float, ts: float | None) -> None:
        series[name].append(f"{name}{labels} {value!r}" + (f" {int(ts * 1000)}" if ts is not None else ""))

    pods: dict[tuple[str, str], list[ContainerUsage]] = {}
    for c in sorted(containers, key=lambda c: (c.namespace, c.pod, c.container)):
        lab = _labels(container=c.container, namespace=c.namespace, pod=c.pod)
        add("container_cpu_usage_seconds_total", lab, c.usage.cpu_seconds, c.usage.timestamp)
        add("container_memory_working_set_bytes", lab, float(c.usage.working_set_bytes), c.usage.timestamp)
        add("container_start_time_seconds", lab, c.start_time, c.usage.timestamp)
        pods.setdefault((c.namespace, c.pod), []).append(c)
    for (ns, pod), cs in pods.items():
        lab = _labels(namespace=ns, pod=pod)
        ts = max(c.usage.timestamp for c in cs)
        add("pod_cpu_usage_seconds_total", lab, sum(c.usage.cpu_seconds for c in cs), ts)
        add("pod_memory_working_set_bytes", lab, float(sum(c.usage.working_set_bytes for c in cs)), ts)
    add("node_cpu_usage_seconds_total", "", node.cpu_seconds, node.timestamp)
    add("node_memory_working_set_bytes", "", float(node.working_set_bytes), node.timestamp)
    add("resource_scrape_error", "", float(1 if failed else 0), None)
    lines: list[str] = []
    for name, (kind, text) in _HELP.items():
        if series[name]:
            lines += [f"# HELP {name} [STABLE] {text}", f"# TYPE {name} {kind}", *series[name]]
    return "\n".join(lines) + "\n"

