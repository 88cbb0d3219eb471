"""`label` and `annotate`: set (`key=value`) or remove (`key-`) labels or annotations on objects.

One merge patch per object (`{"metadata": {"labels": {"a": "1", "gone": null}}}`). As in kubectl, changing
a key that already has a different value needs `--overwrite`, and `--resource-version` makes the write
conditional on the object being unchanged since it was read.
"""
from __future__ import annotations

import re
import sys
from typing import Any

from ctl import resources
from ctl.command import Command
from ctl.discovery import UsageError

Obj = dict[str, Any]
_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def parse_changes(words: list[str]) -> tuple[list[str], dict[str, str], list[str]]:
    """Split arguments into resource arguments, keys to set and keys to remove."""
    targets, sets, removes = [], {}, []
    for word in words:
        if "=" in word:
            key, _, value = word.partition("=")
            if not _KEY.match(key):
                raise UsageError(f"invalid label spec: {word}")
            sets[key] = value
        elif word.endswith("-") and len(word) > 1 and _KEY.match(word[:-1]):
            removes.append(word[:-1])
        else:
            targets.append(word)
    both = set(sets) & set(removes)
    if both:
        raise UsageError(f"can not both modify and remove the following label(s) in the same command: "
                         f"{', '.join(sorted(both))}")
    return targets, sets, removes


def metadata_patch(current: dict[str, str], sets: dict[str, str], removes: list[str], *,
                   overwrite: bool, what: str) -> dict[str, str | None]:
    for key, value in sets.items():
        if key in current and current[key] != value and not overwrite:
            raise UsageError(f"'{key}' already has a value ({current[key]}), and --overwrite is false")
    patch: dict[str, str | None] = {k: v for k, v in sets.items() if current.get(k) != v}
    for key in removes:
        if key in current:
            patch[key] = None
        else:
            print(f'{what} "{key}" not found.', file=sys.stderr)
    return patch


def outcome(verb: str, patch: dict[str, str | None]) -> str:
    if not patch:
        return f"not {verb}"
    if all(v is None for v in patch.values()) and verb == "labeled":
        return "unlabeled"
    return verb


def make_command(field: str, verb: str, noun: str) -> Command:
    def add_arguments(p: Any) -> None:
        p.add_argument("words", nargs="+", metavar="TYPE NAME KEY=VAL... | KEY-")
        p.add_argument("--overwrite", action="store_true", help=f"allow changing existing {field}")
        p.add_argument("-l", "--selector", help="objects matching this label selector")
        p.add_argument("--all", action="store_true", help="all objects of the type in the namespace")
        p.add_argument("-A", "--all-namespaces", action="store_true", help="with --all or -l: every namespace")
        p.add_argument("--resource-version", help="only if the object still has this resourceVersion")
        p.add_argument("-o", "--output", choices=["name"], help="name: print only kind/name")

    def run(args: Any, session: Any) -> int:
        targets, sets, removes = parse_changes(args.words)
        if not sets and not removes:
            raise UsageError(f"at least one {noun} update is required")
        by_selector = bool(args.selector or args.all)
        sels = resources.select(session, targets, all_namespaces=args.all_namespaces and by_selector)
        if not sels:
            raise UsageError("one or more resources must be specified as <resource> <name> or <resource>/<name>")
        for sel in sels:
            if not sel.names and not by_selector:
                raise UsageError("resource(s) were provided, but no name was specified")
            for obj in resources.fetch(session, sel, label_selector=args.selector):
                if isinstance(obj, Exception):
                    raise obj
                meta = obj["metadata"]
                patch = metadata_patch(meta.get(field) or {}, sets, removes, overwrite=args.overwrite, what=noun)
                if patch:
                    body: Obj = {"metadata": {field: patch}}
                    if args.resource_version:
                        body["metadata"]["resourceVersion"] = args.resource_version
                    session.client.patch(sel.rd, meta["name"], body, meta.get("namespace"))
                name = resources.qualified_name(sel.rd, obj)
                print(name if args.output == "name" else f"{name} {outcome(verb, patch)}", flush=True)
        return 0

    return Command(noun if noun == "label" else "annotate", f"Update the {field} on a resource", add_arguments, run)


COMMANDS = [make_command("labels", "labeled", "label"), make_command("annotations", "annotated", "annotation")]
