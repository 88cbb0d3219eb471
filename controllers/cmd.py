"""`minik8s controller-manager`: every controller, leader-elected."""
from __future__ import annotations

import argparse

HELP = "run the controllers (leader-elected)"


def add_leader_election_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--leader-elect", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--leader-elect-lease-duration", type=float, default=15)
    p.add_argument("--leader-elect-renew-deadline", type=float, default=10)
    p.add_argument("--leader-elect-retry-period", type=float, default=2)
    p.add_argument("--identity", default=None, help="leader-election identity (default: hostname_pid)")


COMMON = ("kubeconfig", "controllers", "health_port", "leader_elect", "leader_elect_lease_duration",
          "leader_elect_renew_deadline", "leader_elect_retry_period", "identity", "fn", "command", "verbose")


def add_arguments(c: argparse.ArgumentParser) -> None:
    from controllers.manager import CONTROLLERS

    c.add_argument("--kubeconfig", required=True)
    c.add_argument("--controllers", default="*", help="'*' for all, 'name' to enable, '-name' to disable")
    c.add_argument("--health-port", type=int, default=10257)
    add_leader_election_flags(c)
    # Each controller declares its own flags; they reach it as keyword options.
    for name in sorted(CONTROLLERS):
        CONTROLLERS[name].add_arguments(c.add_argument_group(f"{name} controller"))


def run(args: argparse.Namespace) -> int:
    from client import aio
    from controllers.manager import run_controller_manager

    options = {k: v for k, v in vars(args).items() if k not in COMMON}
    return aio.run(run_controller_manager(
        kubeconfig=args.kubeconfig, controllers=args.controllers, leader_elect=args.leader_elect,
        health_port=args.health_port, identity=args.identity, lease_duration=args.leader_elect_lease_duration,
        renew_deadline=args.leader_elect_renew_deadline, retry_period=args.leader_elect_retry_period, **options))
