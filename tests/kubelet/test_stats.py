"""Resource usage from cgroup files: parsing (pure) and real containers on the host's dockerd.

The real-container test starts two busybox containers labelled as a kubelet labels a pod's containers
(a unique node name, so nothing else is touched): one burning CPU, capped at one core, one sleeping."""
from __future__ import annotations

import os
import time

import docker
import pytest

from kubelet import labels as L
from kubelet.stats import (UNIFIED, Cgroups, ContainerUsage, ResourceStats, Usage, parse_mountinfo,
                           parse_proc_cgroup, render)

MOUNTINFO_V1 = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
MOUNTINFO_V2_NS = "29 23 0:26 /docker/abc /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"


def test_parse_mounts_and_proc_cgroup():
    assert parse_mountinfo(MOUNTINFO_V1) == {"cpuacct": ("/sys/fs/cgroup/cpuacct", "/"),
                                             "memory": ("/sys/fs/cgroup/memory", "/"),
                                             UNIFIED: ("/sys/fs/cgroup/unified", "/")}
    paths = parse_proc_cgroup("4:memory:/docker/x\n2:cpu,cpuacct:/docker/x\n0::/docker/x\n")
    assert paths == {"memory": "/docker/x", "cpu": "/docker/x", "cpuacct": "/docker/x", UNIFIED: "/docker/x"}


def test_cgroup_v2_usage_from_files(tmp_path):
    """A cgroup v2 layout (a namespace root mounted at the mount point), read from fake files."""
    d = tmp_path / "pod"
    d.mkdir()
    (d / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\n")
    (d / "memory.current").write_text("10485760\n")
    (d / "memory.stat").write_text("anon 100\ninactive_file 4194304\n")
    cg = Cgroups({UNIFIED: (str(tmp_path), "/docker/abc")})
    usage = cg.usage({UNIFIED: "/docker/abc/pod"})
    assert (usage.cpu_seconds, usage.working_set_bytes) == (2.5, 6 * 1024 * 1024)


def test_render_is_the_kubelets_resource_metrics_format():
    node = Usage(100.5, 2048, 1700000000.0)
    c = ContainerUsage("ns", 'we"b', "app", 1699999000.0, Usage(1.25, 4096, 1700000000.5))
    text = render(node, [c], 0)
    assert '# TYPE container_cpu_usage_seconds_total counter' in text
    assert 'container_cpu_usage_seconds_total{container="app",namespace="ns",pod="we\\"b"} 1.25 1700000000500' in text
    assert 'container_memory_working_set_bytes{container="app",namespace="ns",pod="we\\"b"} 4096.0 1700000000500' in text
    assert 'pod_cpu_usage_seconds_total{namespace="ns",pod="we\\"b"} 1.25 1700000000500' in text
    assert "node_cpu_usage_seconds_total 100.5 1700000000000" in text
    assert text.endswith("resource_scrape_error 0.0\n")


@pytest.fixture
def two_containers():
    client = docker.from_env()
    node = f"stats-{os.urandom(3).hex()}"
    started = []

    def run(pod: str, command: str, **kw):
        lab = {L.MANAGED: "true", L.NODE: node, L.POD_NAMESPACE: "default", L.POD_NAME: pod,
               L.CONTAINER_NAME: "main", L.CONTAINER_TYPE: "app"}
        started.append(client.containers.run("minik8s/busybox:1.36", ["sh", "-c", command], labels=lab, detach=True,
                                             network_mode="none", **kw))
    run("burner", "while :; do :; done", nano_cpus=1_000_000_000)
    run("idle", "sleep 3600")
    yield client, node
    for c in started:
        c.remove(force=True)


def test_burning_and_idle_containers(two_containers):
    client, node = two_containers
    stats = ResourceStats(client, node)
    _, first, failed = stats.collect()
    assert failed == 0 and {c.pod for c in first} == {"burner", "idle"}
    time.sleep(2)
    node_usage, second, _ = stats.collect()
    before = {c.pod: c.usage for c in first}
    cores = {c.pod: (c.usage.cpu_seconds - before[c.pod].cpu_seconds) / (c.usage.timestamp - before[c.pod].timestamp)
             for c in second}
    assert cores["burner"] > 0.5, cores
    assert cores["idle"] < 0.05, cores
    assert all(c.usage.working_set_bytes > 0 for c in second)
    assert node_usage.cpu_seconds > 0 and node_usage.working_set_bytes > 0
