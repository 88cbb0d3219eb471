"""`minik8s controller-manager`: every controller, leader-elected."""
from __future__ import annotations

import argparse
import asyncio

HELP = "run the controllers (leader-elected)"


def add_leader_election_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--leader-elect", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--leader-elect-lease-duration", type=float, default=15)
    p.add_argument("--leader-elect-renew-deadline", type=float, default=10)
    p.add_argument("--leader-elect-retry-period", type=float, default=2)
    p.add_argument("--identity", default=None, help="leader-election identity (default: hostname_pid)")


def add_arguments(c: argparse.ArgumentParser) -> None:
    c.add_argument("--kubeconfig", required=True)
    c.add_argument("--controllers", default="*", help="'*' for all, 'name' to enable, '-name' to disable")
    c.add_argument("--health-port", type=int, default=10257)
    c.add_argument("--cluster-cidr", default="10.244.0.0/16")
    c.add_argument("--node-cidr-mask-size", type=int, default=24)
    add_leader_election_flags(c)


def run(args: argparse.Namespace) -> int:
    from controllers.manager import run_controller_manager

    return asyncio.run(run_controller_manager(
        kubeconfig=args.kubeconfig, controllers=args.controllers, leader_elect=args.leader_elect,
        health_port=args.health_port, identity=args.identity, lease_duration=args.leader_elect_lease_duration,
        renew_deadline=args.leader_elect_renew_deadline, retry_period=args.leader_elect_retry_period,
        cluster_cidr=args.cluster_cidr, node_cidr_mask_size=args.node_cidr_mask_size))
