"""The `minik8s` command: one binary, a subcommand per component; the logic lives in each package."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _host_port(url: str) -> tuple[str, int]:
    url = url.strip()
    for scheme in ("http://", "https://"):
        if url.startswith(scheme):
            url = url[len(scheme):]
    host, _, port = url.rstrip("/").rpartition(":")
    return (host or "127.0.0.1"), int(port or 2379)


def cmd_apiserver(args: argparse.Namespace) -> int:
    from apiserver.app import Settings
    from apiserver.server import serve

    lo, _, hi = args.service_node_port_range.partition("-")
    settings = Settings(
        etcd_servers=[_host_port(u) for u in args.etcd_servers.split(",") if u],
        token_file=Path(args.token_auth_file) if args.token_auth_file else None,
        service_cidr=args.service_cluster_ip_range,
        node_port_range=(int(lo), int(hi)),
        advertise_address=args.advertise_address or ("127.0.0.1" if args.bind_address in ("0.0.0.0", "::") else args.bind_address),
        secure_port=args.secure_port,
        watch_window=args.watch_cache_size,
    )
    if not args.token_auth_file:
        print("minik8s apiserver: --token-auth-file is required (the API needs credentials)", file=sys.stderr)
        return 2
    serve(settings, bind_address=args.bind_address, cert_file=args.tls_cert_file, key_file=args.tls_private_key_file)
    return 0


def cmd_controller_manager(args: argparse.Namespace) -> int:
    import asyncio

    from controllers.manager import run_controller_manager

    return asyncio.run(run_controller_manager(
        kubeconfig=args.kubeconfig, controllers=args.controllers, leader_elect=args.leader_elect,
        health_port=args.health_port, identity=args.identity, lease_duration=args.leader_elect_lease_duration,
        renew_deadline=args.leader_elect_renew_deadline, retry_period=args.leader_elect_retry_period,
        cluster_cidr=args.cluster_cidr, node_cidr_mask_size=args.node_cidr_mask_size))


def _leader_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--leader-elect", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--leader-elect-lease-duration", type=float, default=15)
    p.add_argument("--leader-elect-renew-deadline", type=float, default=10)
    p.add_argument("--leader-elect-retry-period", type=float, default=2)
    p.add_argument("--identity", default=None, help="leader-election identity (default: hostname_pid)")


def cmd_up(args: argparse.Namespace) -> int:
    from cli.up import run_up

    return run_up(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="minik8s", description="A small Kubernetes-style orchestrator.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("apiserver", help="run the API server")
    a.add_argument("--etcd-servers", default="http://127.0.0.1:2379", help="comma-separated etcd client URLs")
    a.add_argument("--secure-port", type=int, default=6443)
    a.add_argument("--bind-address", default="0.0.0.0")
    a.add_argument("--advertise-address", default=None)
    a.add_argument("--tls-cert-file", required=True)
    a.add_argument("--tls-private-key-file", required=True)
    a.add_argument("--token-auth-file", default=None, help="static token file: token,user,uid,\"groups\"")
    a.add_argument("--service-cluster-ip-range", default="10.96.0.0/12")
    a.add_argument("--service-node-port-range", default="30000-32767")
    a.add_argument("--watch-cache-size", type=int, default=10000, help="events kept per resource for watch resume")
    a.set_defaults(fn=cmd_apiserver)

    c = sub.add_parser("controller-manager", help="run the controllers (leader-elected)")
    c.add_argument("--kubeconfig", required=True)
    c.add_argument("--controllers", default="*", help="'*' for all, 'name' to enable, '-name' to disable")
    c.add_argument("--health-port", type=int, default=10257)
    c.add_argument("--cluster-cidr", default="10.244.0.0/16")
    c.add_argument("--node-cidr-mask-size", type=int, default=24)
    _leader_flags(c)
    c.set_defaults(fn=cmd_controller_manager)

    u = sub.add_parser("up", help="run a single-node cluster with a local etcd")
    u.add_argument("--data-dir", default=None, help="where etcd data, certificates and kubeconfigs live")
    u.add_argument("--etcd-port", type=int, default=2379)
    u.add_argument("--etcd-peer-port", type=int, default=2380)
    u.add_argument("--secure-port", type=int, default=6443)
    u.add_argument("--bind-address", default="127.0.0.1")
    u.add_argument("--controller-manager-health-port", type=int, default=10257)
    u.set_defaults(fn=cmd_up)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.fn(args) or 0


if __name__ == "__main__":
    sys.exit(main())
