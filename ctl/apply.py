"""`apply -f`: make the cluster match manifests, the way kubectl's client-side apply does.

For each object: absent → create it carrying the `kubectl.kubernetes.io/last-applied-configuration`
annotation; present → send the three-way strategic merge patch between the last applied configuration,
the new one and the live object (ctl/threeway.py), or nothing at all when that patch is empty
("unchanged"). A 409 Conflict (someone wrote in between) re-reads the live object and recomputes, as
kubectl's patcher retries. `--server-side` sends the manifest as an apply patch instead (the server
merges by field manager).

Errors are per object: they are reported and the remaining objects are still applied; the exit code is 1
if any failed.
"""
from __future__ import annotations

import copy
import sys
from typing import Any

from api.errors import APIError
from client.rest import is_conflict
from ctl import manifests, resources
from ctl.command import Command
from ctl.discovery import resource_name
from ctl.errors import error_from_server
from ctl.manifests import Manifest
from ctl.threeway import LAST_APPLIED, last_applied, three_way_patch, with_last_applied

Obj = dict[str, Any]
CONFLICT_RETRIES = 5


def add_file_arguments(p: Any, what: str) -> None:
    p.add_argument("-f", "--filename", action="append", default=[], help=f"files, directories or - (stdin) {what}")
    p.add_argument("-R", "--recursive", action="store_true", help="descend into directories given with -f")


def add_arguments(p: Any) -> None:
    add_file_arguments(p, "to apply")
    p.add_argument("--server-side", action="store_true", help="server-side apply (apply patch, field manager)")
    p.add_argument("--force-conflicts", action="store_true", help="server-side: take over conflicting fields")
    p.add_argument("--field-manager", default="kubectl", help="field manager name for server-side apply")
    p.add_argument("-o", "--output", choices=["name"], help="name: print only kind/name")


def prepared(session: Any, m: Manifest) -> tuple[Any, str | None, Obj]:
    """The object's resource, its namespace, and the object with that namespace set (as kubectl sets it)."""
    rd = session.discovery.for_object(m.obj)
    namespace = resources.namespace_of(session, rd, m.obj)
    obj = copy.deepcopy(m.obj)
    if namespace:
        obj.setdefault("metadata", {})["namespace"] = namespace
    return rd, namespace, obj


def client_side_apply(client: Any, rd: Any, namespace: str | None, config: Obj) -> str:
    name = config["metadata"]["name"]
    modified = with_last_applied(config)
    for attempt in range(1, CONFLICT_RETRIES + 1):
        live = client.get_or_none(rd, name, namespace)
        if live is None:
            client.create(rd, modified, namespace)
            return "created"
        original = last_applied(live)
        if original is None:
            print(f"Warning: resource {resource_name(rd)}/{name} is missing the {LAST_APPLIED} "
                  "annotation which is required by minik8s ctl apply. minik8s ctl apply should only be used on "
                  "resources created declaratively by either minik8s ctl create --save-config or minik8s ctl "
                  "apply. The missing annotation will be patched automatically.", file=sys.stderr)
        patch = three_way_patch(original, modified, live)
        if not patch:
            return "unchanged"
        try:
            client.patch(rd, name, patch, namespace, patch_type="strategic")
            return "configured"
        except APIError as e:
            if not is_conflict(e) or attempt == CONFLICT_RETRIES:
                raise
    raise AssertionError("unreachable")


def server_side_apply(client: Any, rd: Any, namespace: str | None, config: Obj, args: Any) -> str:
    client.patch(rd, config["metadata"]["name"], config, namespace, patch_type="apply",
                 field_manager=args.field_manager, force=args.force_conflicts or None)
    return "serverside-applied"


def report(rd: Any, obj: Obj, outcome: str, output: str | None) -> None:
    name = resources.qualified_name(rd, obj)
    print(name if output == "name" else f"{name} {outcome}", flush=True)


def failure(e: APIError, doing: str, source: str) -> str:
    return error_from_server(e, f'error when {doing} "{source}": ')


def run(args: Any, session: Any) -> int:
    failed = 0
    for m in manifests.load(args.filename, recursive=args.recursive, verb="apply"):
        rd, namespace, obj = prepared(session, m)
        if not (obj.get("metadata") or {}).get("name"):
            print(f'error: error when retrieving current configuration of "{m.source}": '
                  "resource name may not be empty", file=sys.stderr)
            failed += 1
            continue
        try:
            if args.server_side:
                outcome = server_side_apply(session.client, rd, namespace, obj, args)
            else:
                outcome = client_side_apply(session.client, rd, namespace, obj)
        except APIError as e:
            print(failure(e, "applying", m.source), file=sys.stderr)
            failed += 1
            continue
        report(rd, obj, outcome, args.output)
    return 1 if failed else 0


COMMANDS = [Command("apply", "Apply a configuration to resources by file name or stdin", add_arguments, run)]
