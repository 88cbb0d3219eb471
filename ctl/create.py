"""`create`: make new objects from manifests (`create -f`), or the common ones from flags
(`create namespace NAME`, `create deployment NAME --image=...`), as kubectl's generators do.

Unlike apply, an object that exists is an error (AlreadyExists). `--save-config` stores the
last-applied annotation so that a later `apply` can compute its three-way patch.
"""
from __future__ import annotations

import sys
from typing import Any

from api.errors import APIError
from ctl import manifests
from ctl.apply import add_file_arguments, failure, prepared, report
from ctl.command import Command
from ctl.discovery import UsageError
from ctl.threeway import with_last_applied

Obj = dict[str, Any]


def namespace_object(args: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": args.name}}


def deployment_object(args: Any) -> Obj:
    labels = {"app": args.name}
    containers = [{"name": image.rsplit("/", 1)[-1].split(":")[0].split("@")[0], "image": image}
                  for image in args.image]
    if args.port:
        containers[0]["ports"] = [{"containerPort": args.port}]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": args.name, "labels": labels},
            "spec": {"replicas": args.replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": containers}}}}


GENERATORS = {"namespace": namespace_object, "ns": namespace_object,
              "deployment": deployment_object, "deploy": deployment_object}


def add_arguments(p: Any) -> None:
    add_file_arguments(p, "to create")
    p.add_argument("--save-config", action="store_true", help="store the configuration for a later apply")
    p.add_argument("-o", "--output", choices=["name"], help="name: print only kind/name")
    p.add_argument("generator", nargs="?", choices=sorted(GENERATORS), help="what to create from flags")
    p.add_argument("name", nargs="?", help="name of the object to create from flags")
    p.add_argument("--image", action="append", default=[], help="deployment: container image (repeatable)")
    p.add_argument("--replicas", type=int, default=1, help="deployment: number of replicas")
    p.add_argument("--port", type=int, help="deployment: the container port to expose")


def generated(args: Any) -> list[manifests.Manifest]:
    if not args.name:
        raise UsageError(f"NAME is required for create {args.generator}")
    if args.generator in ("deployment", "deploy") and not args.image:
        raise UsageError("required flag(s) \"image\" not set")
    return [manifests.Manifest("flags", GENERATORS[args.generator](args))]


def run(args: Any, session: Any) -> int:
    if args.generator:
        items = generated(args)
    else:
        items = manifests.load(args.filename, recursive=args.recursive, verb="create")
    failed = 0
    for m in items:
        rd, namespace, obj = prepared(session, m)
        try:
            created = session.client.create(rd, with_last_applied(obj) if args.save_config else obj, namespace)
        except APIError as e:
            print(failure(e, "creating", m.source), file=sys.stderr)
            failed += 1
            continue
        report(rd, created, "created", args.output)
    return 1 if failed else 0


COMMANDS = [Command("create", "Create resources from files, stdin or flags", add_arguments, run)]
