"""`minik8s lab`: a multi-node cluster on this machine, nodes as network namespaces (see `lab/lab.py`).

    minik8s lab up --nodes 3 [--data-dir DIR] [--proxy-mode iptables] [--network-backend vxlan]
    minik8s lab load IMAGE... [--data-dir DIR]      # host dockerd → every node's dockerd
    minik8s lab exec NODE -- CMD...                 # a command in a node's network namespace
    minik8s lab status | down [--data-dir DIR]

`up` returns once every node is Ready; the lab keeps running (its processes are in their own sessions)
until `down`, which works from any process because everything made is recorded in `DIR/lab.json`.
"""
from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

HELP = "run a multi-node cluster on this machine (nodes as network namespaces, each with its own dockerd)"
DEFAULT_DIR = Path("/var/lib/minik8s/lab")


def add_arguments(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="lab_action", required=True)

    up = actions.add_parser("up", help="create the lab and wait until every node is Ready")
    up.add_argument("--nodes", type=int, default=2)
    up.add_argument("--name", default=None, help="1-8 of [a-z0-9], in namespace and link names (default: random)")
    up.add_argument("--proxy-mode", choices=["iptables", "nftables", "ipvs"], default=None,
                    help="kube-proxy mode (kube-proxy runs only once kubeproxy/cmd.py exists)")
    up.add_argument("--network-backend", choices=["host-gw", "vxlan"], default="host-gw")
    up.add_argument("--subnet", default=None,
                    help="the node network, a /24 (default: the first free one of 10.77.0.0/16)")
    up.add_argument("--cluster-cidr", default="10.244.0.0/16")
    up.add_argument("--service-cluster-ip-range", default="10.96.0.0/12")

    down = actions.add_parser("down", help="remove everything the lab made (processes, namespaces, routes, ...)")
    down.add_argument("--purge", action="store_true", help="also delete the logs and the data directory")

    load = actions.add_parser("load", help="copy images from the host's dockerd into every node")
    load.add_argument("images", nargs="+")

    ex = actions.add_parser("exec", help="run a command in a node's network namespace")
    ex.add_argument("node", help="node name, namespace or IP")
    ex.add_argument("argv", nargs=argparse.REMAINDER)

    status = actions.add_parser("status", help="nodes, addresses and which lab processes run")

    for sub in (up, down, load, ex, status):
        sub.add_argument("--data-dir", type=Path, default=DEFAULT_DIR)


def run(args: argparse.Namespace) -> int:
    from lab.lab import Lab

    for noisy in ("httpx", "httpcore", "urllib3", "docker"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.lab_action == "up":
        lab = Lab(args.data_dir, nodes=args.nodes, name=args.name, proxy_mode=args.proxy_mode,
                  network_backend=args.network_backend, subnet=args.subnet, cluster_cidr=args.cluster_cidr,
                  service_cidr=args.service_cluster_ip_range)
        lab.up()
        print(f"lab {lab.name} ready in {lab.timings['up']:.1f}s: API {lab.api_server}, kubeconfig {lab.kubeconfig}")
        for n in lab.nodes:
            print(f"  {n.name}  {n.ip}  netns {n.netns}  docker -H {n.docker_host}")
        print(f"  LoadBalancer pool {lab.lb_pool} (routed from this host to the nodes); cluster DNS on every "
              f"node IP:53 behind kube-system/kube-dns")
        print(f"logs in {lab.dir / 'logs'}; `minik8s lab down --data-dir {lab.dir}` removes it")
        return 0
    try:
        lab = Lab.attach(args.data_dir)
    except FileNotFoundError as e:
        print(e, file=sys.stderr)
        return 1
    if args.lab_action == "down":
        lab.down(keep_logs=not args.purge)
        left = lab.leftovers()
        print(f"lab {lab.name} down in {lab.timings['down']:.1f}s" + (f"; LEFT BEHIND: {left}" if left else ""))
        return 1 if left else 0
    if args.lab_action == "load":
        loaded = lab.load(args.images)
        return 0 if len(loaded) == len(set(args.images)) else 1
    if args.lab_action == "exec":
        argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        if not argv:
            print("lab exec NODE -- CMD...: no command given", file=sys.stderr)
            return 2
        node = lab.node(args.node)
        return subprocess.run(["nsenter", f"--net=/run/netns/{node.netns}", "--", *argv]).returncode
    print(f"lab {lab.name} ({'up' if lab.state.up else 'not fully up'}): API {lab.api_server}, "
          f"kubeconfig {lab.kubeconfig}, backend {lab.state.network_backend}, proxy {lab.state.proxy_mode or '-'}, "
          f"LB pool {lab.state.lb_pool or '-'}")
    for n in lab.nodes:
        print(f"  {n.name}  {n.ip}  netns {n.netns}  docker -H {n.docker_host}")
    dead = [role for role, _pid, running in lab.processes() if not running]
    if dead:
        print(f"  not running: {', '.join(dead)}")
    return 0
