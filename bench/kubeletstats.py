#!/usr/bin/env python3
"""Cost of the kubelet's resource metrics: cgroup files (what kubelet/stats.py reads) vs. Docker's stats API.

    python bench/kubeletstats.py [--containers 1,10,30] [--repeat 15]

Starts N idle minik8s/busybox:1.36 containers labelled as one fake node's pod containers, then measures in
the same run:

  1. raw baseline: Docker's `GET /containers/{id}/stats?stream=false` for one container (what a
     metrics scraper would call without cgroup access);
  2. one container's usage from its cgroup files (`Cgroups.usage`);
  3. a whole `ResourceStats.collect()` + `render()` — the body of `/metrics/resource` — for N containers;

and prints medians and the ratio of (1) to (2). Containers are removed afterwards.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kubelet import labels as L  # noqa: E402
from kubelet.stats import Cgroups, ResourceStats, parse_proc_cgroup, render  # noqa: E402

IMAGE = "minik8s/busybox:1.36"


def timed(fn, repeat: int) -> float:
    """Median milliseconds of `fn()` over `repeat` calls."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--containers", default="1,10,30", help="comma-separated container counts")
    p.add_argument("--repeat", type=int, default=15)
    args = p.parse_args()
    counts = sorted({int(n) for n in args.containers.split(",")})
    client = docker.from_env()
    node = f"bench-stats-{os.urandom(3).hex()}"
    made = []
    try:
        def start(i: int) -> None:
            made.append(client.containers.run(IMAGE, ["sleep", "3600"], detach=True, name=f"{node}-{i}", labels={
                L.MANAGED: "true", L.NODE: node, L.CONTAINER_TYPE: "app", L.POD_NAMESPACE: "bench",
                L.POD_NAME: f"p{i}", L.CONTAINER_NAME: "c"}))

        start(0)
        first = made[0]
        first.reload()
        pid = first.attrs["State"]["Pid"]
        cgroups = Cgroups()
        stats = ResourceStats(client, node)
        docker_ms = timed(lambda: client.api.stats(first.id, stream=False), max(3, args.repeat // 5))
        files_ms = timed(lambda: cgroups.usage(parse_proc_cgroup(Path(f"/proc/{pid}/cgroup").read_text())),
                         args.repeat * 10)
        print(f"one container: docker stats API {docker_ms:.1f} ms (raw baseline), cgroup files {files_ms:.3f} ms, "
              f"ratio {docker_ms / files_ms:.0f}x")
        for n in counts:
            while len(made) < n:
                start(len(made))
            stats.collect()  # first call inspects each container once for its pid
            scrape_ms = timed(lambda: render(*stats.collect()), args.repeat)
            print(f"/metrics/resource body, {n:3d} containers: {scrape_ms:.1f} ms median")
    finally:
        for c in made:
            c.remove(force=True)
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
