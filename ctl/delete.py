"""`delete`: by name, by manifest (`-f`), by selector (`-l`, `--field-selector`) or `--all`.

Each object is deleted with its own DELETE (so every one is reported: `deployment.apps "web" deleted`),
carrying DeleteOptions from `--cascade` (background, foreground, orphan → propagationPolicy) and
`--grace-period` (`--now` is 1, `--force` is 0). Then, as kubectl does by default (`--wait=true`), the
command waits until each object is really gone — finalizers run, pods terminated — by watching it.
"""
from __future__ import annotations

import sys
from typing import Any

from api.errors import APIError
from ctl import manifests, resources
from ctl.apply import add_file_arguments
from ctl.command import Command
from ctl.discovery import UsageError, kind_name
from ctl.errors import error_from_server
from ctl.waiting import wait_deleted

Obj = dict[str, Any]
CASCADE = {"background": "Background", "true": "Background", "foreground": "Foreground",
           "orphan": "Orphan", "false": "Orphan"}


def boolean(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise ValueError(text)


def add_arguments(p: Any) -> None:
    p.add_argument("resources", nargs="*", metavar="TYPE[.GROUP] [NAME...] | TYPE/NAME")
    add_file_arguments(p, "naming the objects to delete")
    p.add_argument("-l", "--selector", help="delete the objects matching this label selector")
    p.add_argument("--field-selector", help="delete the objects matching this field selector")
    p.add_argument("--all", action="store_true", help="delete all objects of the given types in the namespace")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="with --all or a selector: in every namespace")
    p.add_argument("--cascade", default="background", choices=sorted(CASCADE),
                   help="background (default), foreground (dependents first) or orphan")
    p.add_argument("--grace-period", type=int, default=-1, help="seconds for graceful termination (-1: the object's)")
    p.add_argument("--now", action="store_true", help="signal pods to stop at once (grace period 1)")
    p.add_argument("--force", action="store_true", help="remove at once without waiting for termination")
    p.add_argument("--wait", type=boolean, default=True, nargs="?", const=True,
                   help="wait until the objects are gone (default true)")
    p.add_argument("--timeout", type=float, default=0, help="seconds to wait; 0 means no limit")
    p.add_argument("--ignore-not-found", action="store_true", help="a missing object is not an error")
    p.add_argument("-o", "--output", choices=["name"], help="name: print only kind/name")


def grace_period(args: Any) -> int | None:
    grace = args.grace_period
    if args.now:
        if grace >= 0:
            raise UsageError("--now and --grace-period cannot be specified together")
        grace = 1
    if args.force and grace < 0:
        grace = 0
    if args.force and grace == 0:
        print("Warning: Immediate deletion does not wait for confirmation that the running resource has been "
              "terminated. The resource may continue to run on the cluster indefinitely.", file=sys.stderr)
    return grace if grace >= 0 else None


def targets(args: Any, session: Any) -> list[tuple[Any, str | None, str]]:
    """(resource, namespace, name) for every object to delete."""
    if args.filename:
        if args.resources:
            raise UsageError("resource arguments and -f cannot be used together")
        out = []
        for m in manifests.load(args.filename, recursive=args.recursive, verb="delete"):
            rd = session.discovery.for_object(m.obj)
            out.append((rd, resources.namespace_of(session, rd, m.obj), m.obj["metadata"]["name"]))
        return out
    by_selector = bool(args.selector or args.field_selector or args.all)
    sels = resources.select(session, args.resources, all_namespaces=args.all_namespaces and by_selector)
    if not sels:
        raise UsageError("You must provide one or more resources by argument or filename.")
    out = []
    for sel in sels:
        if not sel.names and not by_selector:
            raise UsageError("resource(s) were provided, but no name was specified")
        if sel.names and by_selector:
            raise UsageError("name cannot be provided when a selector is specified")
        if sel.names:
            out += [(sel.rd, sel.namespace, name) for name in sel.names]
            continue
        for obj in resources.fetch(session, sel, label_selector=args.selector, field_selector=args.field_selector):
            out.append((sel.rd, obj["metadata"].get("namespace") or sel.namespace, obj["metadata"]["name"]))
    return out


def run(args: Any, session: Any) -> int:
    grace = grace_period(args)
    policy = CASCADE[args.cascade]
    todo = targets(args, session)
    errors: list[APIError] = []
    pending: list[tuple[Any, str | None, str, str | None]] = []
    for rd, namespace, name in todo:
        try:
            result = session.client.delete(rd, name, namespace, propagation_policy=policy, grace_period_seconds=grace)
        except APIError as e:
            if e.code == 404 and args.ignore_not_found:
                continue
            errors.append(e)
            continue
        print(f"{kind_name(rd)}/{name}" if args.output == "name" else f'{kind_name(rd)} "{name}" deleted',
              flush=True)
        if result.get("kind") != "Status":   # the object still exists: graceful termination or finalizers
            pending.append((rd, namespace, name, (result.get("metadata") or {}).get("uid")))
    if not todo and not errors and not args.ignore_not_found:
        print("No resources found", file=sys.stderr)
    if args.wait and grace != 0:
        for rd, namespace, name, uid in pending:
            wait_deleted(session.client, rd, namespace, name, uid, timeout=args.timeout or None)
    for e in errors:
        print(error_from_server(e), file=sys.stderr)
    return 1 if errors else 0


COMMANDS = [Command("delete", "Delete resources by file names, stdin, resources and names, or by selectors",
                    add_arguments, run)]
