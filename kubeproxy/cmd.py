"""`minik8s proxy`: the per-node service proxy (iptables, nftables or IPVS mode)."""
from __future__ import annotations

import argparse
import asyncio
import socket

HELP = "run the service proxy of one node (iptables | nftables | ipvs)"


def _cidrs(value: str) -> list[str]:
    return [c.strip() for c in value.split(",") if c.strip()]


def add_arguments(c: argparse.ArgumentParser) -> None:
    c.add_argument("--kubeconfig", help="kubeconfig of the system:kube-proxy identity")
    c.add_argument("--hostname-override", default=None, help="this node's name (default: the hostname)")
    c.add_argument("--proxy-mode", choices=("iptables", "nftables", "ipvs"), default="iptables")
    c.add_argument("--cluster-cidr", default="10.244.0.0/16",
                   help="pod range; traffic from outside it to a cluster IP is masqueraded ('' to disable)")
    c.add_argument("--service-cluster-ip-range", default="10.96.0.0/12")
    c.add_argument("--nodeport-addresses", type=_cidrs, default=[],
                   help="comma-separated CIDRs: node ports answer on local addresses inside them "
                        "(default: the Node's InternalIP addresses)")
    c.add_argument("--lb-pool", default=None,
                   help="CIDR to allocate LoadBalancer IPs from (only the Lease holder allocates)")
    c.add_argument("--min-sync-period", type=float, default=1.0, help="seconds between two syncs at least")
    c.add_argument("--sync-period", type=float, default=30.0, help="seconds between full resyncs at most")
    c.add_argument("--masquerade-all", action="store_true", help="SNAT all traffic sent to cluster IPs")
    c.add_argument("--healthz-port", type=int, default=10256, help="0 disables")
    c.add_argument("--healthz-bind-address", default="0.0.0.0")
    c.add_argument("--cleanup", action="store_true", help="remove every rule of the chosen mode and exit")


def run(args: argparse.Namespace) -> int:
    from kubeproxy.server import make_backend, run_proxy

    if args.cleanup:
        make_backend(args.proxy_mode).cleanup()
        return 0
    if not args.kubeconfig:
        raise SystemExit("minik8s proxy: --kubeconfig is required")
    return asyncio.run(run_proxy(
        kubeconfig=args.kubeconfig, node_name=args.hostname_override or socket.gethostname(),
        mode=args.proxy_mode, cluster_cidr=args.cluster_cidr or None,
        service_cidr=args.service_cluster_ip_range, nodeport_addresses=args.nodeport_addresses,
        lb_pool=args.lb_pool, min_sync_period=args.min_sync_period, sync_period=args.sync_period,
        masquerade_all=args.masquerade_all, healthz_port=args.healthz_port,
        healthz_address=args.healthz_bind_address))
