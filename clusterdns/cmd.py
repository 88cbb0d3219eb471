"""`minik8s dns`: the cluster DNS server (one host process per node; see `clusterdns/manifest.py`)."""
from __future__ import annotations

import argparse
import asyncio
import sys

HELP = "run the cluster DNS server (<svc>.<ns>.svc.<domain>)"


def add_arguments(c: argparse.ArgumentParser) -> None:
    c.add_argument("--kubeconfig", required=True)
    c.add_argument("--bind", default="0.0.0.0", help="comma-separated addresses to listen on (udp and tcp)")
    c.add_argument("--port", type=int, default=53)
    c.add_argument("--cluster-domain", default="cluster.local")
    c.add_argument("--upstream", default="",
                   help="comma-separated ip[:port] servers for names outside the cluster domain; "
                        "empty (the default) turns forwarding off and such names are answered REFUSED")
    c.add_argument("--ttl", type=int, default=5)
    c.add_argument("--health-port", type=int, default=10054, help="/healthz and /readyz on 127.0.0.1; 0 disables")


def run(args: argparse.Namespace) -> int:
    from clusterdns.server import parse_upstreams, run_dns

    try:
        upstreams = parse_upstreams(args.upstream)
    except ValueError as e:
        print(f"minik8s dns: --upstream {args.upstream!r}: {e}", file=sys.stderr)
        return 2
    return asyncio.run(run_dns(
        kubeconfig=args.kubeconfig, bind=[a.strip() for a in args.bind.split(",") if a.strip()], port=args.port,
        cluster_domain=args.cluster_domain, upstreams=upstreams, ttl=args.ttl, health_port=args.health_port))
