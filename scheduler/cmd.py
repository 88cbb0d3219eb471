"""`minik8s scheduler`: assign pending pods to nodes (leader-elected)."""
from __future__ import annotations

import argparse
import logging

HELP = "run the scheduler (leader-elected)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--scheduler-name", default="default-scheduler",
                   help="schedule only pods whose spec.schedulerName is this")
    p.add_argument("--health-port", type=int, default=10259, help="loopback /healthz port (0: none)")
    p.add_argument("--percentage-of-nodes-to-score", type=int, default=0,
                   help="stop filtering after this share of nodes fit (0: adaptive, like Kubernetes)")
    p.add_argument("--bind-concurrency", type=int, default=16, help="bindings in flight at once")
    p.add_argument("--leader-elect", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--leader-elect-lease-duration", type=float, default=15)
    p.add_argument("--leader-elect-renew-deadline", type=float, default=10)
    p.add_argument("--leader-elect-retry-period", type=float, default=2)
    p.add_argument("--identity", default=None, help="leader-election identity (default: hostname_pid)")


def run(args: argparse.Namespace) -> int:
    from client import aio
    from scheduler.server import run_scheduler

    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        # One INFO line per request is noise at hundreds of bindings per second.
        logging.getLogger("httpx").setLevel(logging.WARNING)

    return aio.run(run_scheduler(
        kubeconfig=args.kubeconfig, scheduler_name=args.scheduler_name, leader_elect=args.leader_elect,
        health_port=args.health_port, identity=args.identity, lease_duration=args.leader_elect_lease_duration,
        renew_deadline=args.leader_elect_renew_deadline, retry_period=args.leader_elect_retry_period,
        percentage_of_nodes_to_score=args.percentage_of_nodes_to_score, bind_concurrency=args.bind_concurrency))
