"""`scale`: set a workload's replicas through its `/scale` subresource (autoscaling/v1 Scale), which every
scalable kind serves the same way, so no kind is special-cased here.

`--current-replicas` is kubectl's precondition: scale only if the replicas are still what the caller saw;
the resourceVersion of that read guards the write, so nothing can slip in between.
"""
from __future__ import annotations

from typing import Any

from ctl import resources
from ctl.command import Command
from ctl.discovery import UsageError, kind_name


def add_arguments(p: Any) -> None:
    p.add_argument("resources", nargs="+", metavar="TYPE NAME | TYPE/NAME")
    p.add_argument("--replicas", type=int, required=True, help="the new number of replicas")
    p.add_argument("--current-replicas", type=int, default=-1, help="precondition: the replicas now")
    p.add_argument("-o", "--output", choices=["name"], help="name: print only kind/name")


def scale_one(client: Any, rd: Any, namespace: str | None, name: str, replicas: int, current: int) -> None:
    if current < 0:
        client.patch(rd, name, {"spec": {"replicas": replicas}}, namespace, subresource="scale")
        return
    scale = client.get_subresource(rd, name, "scale", namespace)
    seen = (scale.get("spec") or {}).get("replicas", 0)
    if seen != current:
        raise UsageError(f"Expected replicas to be {current}, was {seen}")
    patch = {"metadata": {"resourceVersion": scale["metadata"]["resourceVersion"]}, "spec": {"replicas": replicas}}
    client.patch(rd, name, patch, namespace, subresource="scale")


def run(args: Any, session: Any) -> int:
    if args.replicas < 0:
        raise UsageError("The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0")
    for sel in resources.select(session, args.resources):
        if "scale" not in sel.rd.subresources:
            raise UsageError(f"cannot scale {sel.rd.plural}: the server has no {sel.rd.plural}/scale")
        if not sel.names:
            raise UsageError("resource(s) were provided, but no name was specified")
        for name in sel.names:
            scale_one(session.client, sel.rd, sel.namespace, name, args.replicas, args.current_replicas)
            print(f"{kind_name(sel.rd)}/{name}" + ("" if args.output == "name" else " scaled"), flush=True)
    return 0


COMMANDS = [Command("scale", "Set a new size for a deployment, replica set or stateful set", add_arguments, run)]
