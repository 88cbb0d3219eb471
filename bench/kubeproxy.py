#!/usr/bin/env python3
"""Benchmark of the service proxy: rule loading per mode, one-service changes, network programming latency.

    python bench/kubeproxy.py [--quick] [--sizes 1000,5000,10000] [--latency-services 1000] [--samples 100]

Every rule goes into a scratch network namespace made here (`kpbench-<rand>`, deleted at the end); the
tools run there through `nsenter --net`, for the proxy and for the raw baselines alike.

1. Full sync at each size (Services with 2 endpoints each), per mode: `model.build` from API dicts +
   render + apply as the proxy does it (`backend.sync(full=True)`, into an empty namespace), beside one
   raw `iptables-restore --noflush` / `nft -f` of the very text that sync produced, in the same run
   (ratio = sync / raw; target <= 1.5). IPVS: measured only where the kernel has IP_VS.
2. At the largest size: one Service added, one endpoint changed — a partial sync (target for nftables
   <= 100 ms; iptables measured).
3. Network programming latency: etcd + apiserver on loopback, `--latency-services` Services and Endpoints
   created, the Proxier (informers, coalescing SyncRunner with min-sync-period 0.1 s, backend) run
   in this process; then each sample patches one Endpoints object to a new address and measures until
   the proxy has applied rules containing it (p50 / p99; target p99 <= 1 s).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # first: this script's own folder would shadow apiserver/, scheduler/, kubeproxy/

from bench.common import ControlPlane, scratch_dir  # noqa: E402
from kubeproxy import model  # noqa: E402
from kubeproxy.iptables_backend import IptablesBackend  # noqa: E402
from kubeproxy.nftables_backend import NftablesBackend  # noqa: E402
from kubeproxy.runner import run  # noqa: E402

CTX = model.NodeContext("bench-node", ("10.77.0.1",), "10.244.0.0/16", service_cidr="10.96.0.0/12")


class Netns:
    def __init__(self) -> None:
        self.name = f"kpbench-{os.urandom(3).hex()}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True)

    def runner(self, cmd, input=None, *, check=True, timeout=600):
        return run(["nsenter", f"--net=/run/netns/{self.name}", *cmd], input=input, check=check, timeout=timeout)

    def close(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name])


def cluster_ip(i: int) -> str:
    return f"10.{96 + i // 65536}.{(i // 256) % 256}.{i % 256}"


def objects(n: int, offset: int = 0) -> tuple[list[dict], dict[str, dict]]:
    services, endpoints = [], {}
    for i in range(offset, offset + n):
        name = f"svc-{i:05d}"
        services.append({"metadata": {"name": name, "namespace": "bench", "resourceVersion": "1"},
                         "spec": {"clusterIP": cluster_ip(i + 1), "ports": [{"name": "http", "port": 80}]}})
        endpoints[f"bench/{name}"] = {"metadata": {"name": name, "namespace": "bench", "resourceVersion": "1"},
                                      "subsets": [{
            "addresses": [{"ip": f"10.244.{(i // 250) % 256}.{i % 250 + 1}", "nodeName": "bench-node"},
                          {"ip": f"10.245.{(i // 250) % 256}.{i % 250 + 1}", "nodeName": "other"}],
            "ports": [{"name": "http", "port": 8080}]}]}
    return services, endpoints


def make(mode: str, ns: Netns):
    return IptablesBackend(runner=ns.runner) if mode == "iptables" else NftablesBackend(runner=ns.runner)


def raw_apply(mode: str, ns: Netns, text: str) -> float:
    cmd = ["iptables-restore", "--noflush"] if mode == "iptables" else ["nft", "-f", "-"]
    t = time.perf_counter()
    ns.runner(cmd, input=text)
    return time.perf_counter() - t


def bench_sizes(sizes: list[int], modes: list[str]) -> None:
    print(f"\n== full sync vs raw load (2 endpoints per Service) ==")
    print(f"{'mode':9} {'services':>8} {'sync s':>8} {'raw s':>8} {'ratio':>6} {'rules':>7}")
    for mode in modes:
        for n in sizes:
            ns = Netns()
            try:
                services, endpoints = objects(n)
                backend = make(mode, ns)
                t = time.perf_counter()
                sps = model.build(services, endpoints)
                backend.sync(sps, CTX, full=True)
                sync_s = time.perf_counter() - t
                text = backend.last_input
                rules = backend.applied.rule_count()
                backend.cleanup()
                raw_s = raw_apply(mode, ns, text)
                print(f"{mode:9} {n:>8} {sync_s:>8.3f} {raw_s:>8.3f} {sync_s / raw_s:>6.2f} {rules:>7}", flush=True)
                if n == max(sizes):
                    bench_changes(mode, ns, services, endpoints)
            finally:
                ns.close()
    if Path("/proc/net/ip_vs").exists():
        print("ipvs: kernel has IP_VS, but this benchmark only covers iptables/nftables loading")
    else:
        print("ipvs: skipped — this kernel has no IP_VS (tests/kubeproxy/test_ipvs_vm.py runs it under qemu)")


def bench_changes(mode: str, ns: Netns, services: list[dict], endpoints: dict[str, dict]) -> None:
    """Starting from a clean full sync at this size, time partial syncs of one change each."""
    backend, cache = make(mode, ns), {}      # the proxy keeps a model cache between syncs, so do we
    backend.sync(model.build(services, endpoints, cache), CTX, full=True)
    extra_s, extra_e = objects(1, offset=len(services))
    services = services + extra_s
    endpoints = {**endpoints, **extra_e}
    t = time.perf_counter()
    backend.sync(model.build(services, endpoints, cache), CTX)
    add_s = time.perf_counter() - t
    key = "bench/svc-00007"
    endpoints = {**endpoints, key: {"metadata": {"resourceVersion": "2"}, "subsets": [{"addresses": [{"ip": "10.246.0.7", "nodeName": "bench-node"}],
                                                 "ports": [{"name": "http", "port": 8080}]}]}}
    t = time.perf_counter()
    backend.sync(model.build(services, endpoints, cache), CTX)
    change_s = time.perf_counter() - t
    tool_s = backend.last_apply_seconds
    t = time.perf_counter()
    model.build(services, endpoints, cache)
    build_s = time.perf_counter() - t
    target = " (target <= 0.100)" if mode == "nftables" else ""
    print(f"{mode:9} one change at {len(services) - 1}: add a Service {add_s:.3f}s, change an endpoint "
          f"{change_s:.3f}s{target}; of the latter: the tool {tool_s:.3f}s, model.build {build_s:.3f}s", flush=True)


async def bench_latency(mode: str, n: int, samples: int) -> None:
    from client.rest import AsyncClient
    from kubeproxy.proxier import Proxier

    with scratch_dir("kpbench-") as d:
        control = ControlPlane(d)
        ns = Netns()
        try:
            control.start()
            async with AsyncClient(control.config()) as client:
                await client.create("namespaces", {"metadata": {"name": "bench"}})
                gate = asyncio.Semaphore(32)

                async def create(i: int) -> None:
                    name = f"svc-{i:05d}"
                    async with gate:
                        await client.create("services", {"metadata": {"name": name},
                                                          "spec": {"ports": [{"name": "http", "port": 80}]}}, "bench")
                        await client.create("endpoints", {"metadata": {"name": name}, "subsets": [{
                            "addresses": [{"ip": f"10.244.{i // 250}.{i % 250 + 1}", "nodeName": "bench-node"},
                                          {"ip": f"10.245.{i // 250}.{i % 250 + 1}", "nodeName": "other"}],
                            "ports": [{"name": "http", "port": 8080}]}]}, "bench")
                t = time.perf_counter()
                await asyncio.gather(*(create(i) for i in range(n)))
                print(f"\n== network programming latency, {mode}, {n} Services "
                      f"(created in {time.perf_counter() - t:.1f}s) ==", flush=True)
                proxier = Proxier(client, make(mode, ns), node_name="bench-node", cluster_cidr="10.244.0.0/16",
                                  service_cidr="10.96.0.0/12", min_sync_period=0.1, sync_period=30)
                task = asyncio.create_task(proxier.run())
                await asyncio.wait_for(proxier.synced.wait(), 120)
                print(f"first sync {proxier.last_sync_seconds:.3f}s", flush=True)
                latencies = []
                for s in range(samples):
                    i = random.randrange(n)
                    name, ip = f"svc-{i:05d}", f"10.250.{s // 250}.{s % 250 + 1}"
                    t = time.perf_counter()
                    await client.patch("endpoints", name, {"subsets": [{
                        "addresses": [{"ip": ip, "nodeName": "bench-node"}],
                        "ports": [{"name": "http", "port": 8080}]}]}, "bench")
                    key = f"bench/{name}:http"
                    while not any(sp.key == key and any(e.ip == ip for e in sp.endpoints) for sp in proxier.applied):
                        await asyncio.sleep(0.002)
                    latencies.append(time.perf_counter() - t)
                    await asyncio.sleep(random.uniform(0, 0.05))
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                latencies.sort()
                p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]  # noqa: E731
                print(f"{mode}: change -> rules in place over {samples} samples: p50 {p(0.5) * 1000:.0f} ms, "
                      f"p99 {p(0.99) * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms (target p99 <= 1000 ms); "
                      f"{proxier.runner.syncs} syncs", flush=True)
        finally:
            control.stop()
            ns.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="sizes 1000,2000; latency at 300 Services, 30 samples")
    p.add_argument("--sizes", default="1000,5000,10000")
    p.add_argument("--modes", default="iptables,nftables")
    p.add_argument("--latency-services", type=int, default=1000)
    p.add_argument("--samples", type=int, default=100)
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    sizes = [1000, 2000] if args.quick else [int(s) for s in args.sizes.split(",")]
    n_latency, samples = (300, 30) if args.quick else (args.latency_services, args.samples)
    modes = args.modes.split(",")
    bench_sizes(sizes, modes)
    for mode in modes:
        asyncio.run(bench_latency(mode, n_latency, samples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
