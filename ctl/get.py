"""`get`: print objects as the server's Tables, or as yaml/json/name/jsonpath; `-w` streams changes.

Human output asks the server for `Table`s (one request per resource type) and prints their rows, so the
columns are the server's, exactly as kubectl's server-side printing. Other formats read whole objects.
A watch first prints the current state (unless `--watch-only`), then watches from that list's
resourceVersion with the same Accept header, so every event arrives as a one-row Table; a watch that the
server ends (its timeout) is resumed from the last resourceVersion seen.
"""
from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

from api.errors import APIError
from ctl import manifests, resources
from ctl.command import Command
from ctl.discovery import UsageError, kind_name
from ctl.errors import error_from_server
from ctl.printers import OutputFormat, TableOptions, TabWriter, table_rows
from ctl.resources import Selection
from ctl.session import TABLE_ACCEPT

Obj = dict[str, Any]


def add_arguments(p: Any) -> None:
    p.add_argument("resources", nargs="*", metavar="TYPE[.GROUP] [NAME...] | TYPE/NAME")
    p.add_argument("-o", "--output", help="wide, yaml, json, name, jsonpath=TEMPLATE, jsonpath-as-json=TEMPLATE")
    p.add_argument("-l", "--selector", help="label selector (e.g. app=web,tier!=db)")
    p.add_argument("--field-selector", help="field selector (e.g. status.phase=Running)")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="list across all namespaces")
    p.add_argument("-w", "--watch", action="store_true", help="after listing, watch for changes")
    p.add_argument("--watch-only", action="store_true", help="watch for changes without listing first")
    p.add_argument("--output-watch-events", action="store_true", help="show the event type of watched changes")
    p.add_argument("--show-labels", action="store_true", help="show labels as the last column")
    p.add_argument("--no-headers", action="store_true", help="omit the header row")
    p.add_argument("--ignore-not-found", action="store_true", help="missing named objects are not an error")
    p.add_argument("-f", "--filename", action="append", default=[], help="objects named in these manifests")
    p.add_argument("-R", "--recursive", action="store_true", help="descend into directories given with -f")


def selections(args: Any, session: Any) -> list[Selection]:
    """What the resource arguments or the -f manifests designate."""
    if args.filename:
        if args.resources:
            raise UsageError("resource arguments and -f cannot be used together")
        out: list[Selection] = []
        for m in manifests.load(args.filename, recursive=args.recursive, verb="get"):
            rd = session.discovery.for_object(m.obj)
            out.append(Selection(rd, resources.namespace_of(session, rd, m.obj), (m.obj["metadata"]["name"],)))
        return out
    sels = resources.select(session, args.resources, all_namespaces=getattr(args, "all_namespaces", False))
    if not sels:
        raise UsageError('You must specify the type of resource to get. Use "minik8s ctl api-resources" for a '
                         'complete list of supported resources.')
    return sels


def no_resources_message(session: Any, sels: list[Selection]) -> str:
    if any(s.namespace for s in sels):
        return f"No resources found in {session.namespace} namespace."
    return "No resources found"


def table_options(args: Any, sels: list[Selection]) -> TableOptions:
    return TableOptions(wide=args.output == "wide", show_labels=args.show_labels,
                        namespace_column=args.all_namespaces and any(s.rd.namespaced for s in sels),
                        no_headers=args.no_headers)


def report_missing(errors: list[APIError], ignore: bool) -> int:
    if ignore:
        return 0
    for e in errors:
        print(error_from_server(e), file=sys.stderr)
    return 1 if errors else 0


def print_tables(args: Any, session: Any, sels: list[Selection]) -> int:
    multiple = len({(s.rd.group, s.rd.plural) for s in sels}) > 1 or "all" in (args.resources[:1] or [""])[0].split(",")
    opts = table_options(args, sels)
    printed, missing = False, []
    for sel in sels:
        table, absent = resources.table(session, sel, label_selector=args.selector,
                                        field_selector=args.field_selector)
        missing += absent
        if not table.get("rows"):
            continue
        if printed:
            sys.stdout.write("\n")
        opts.kind_prefix = kind_name(sel.rd) if multiple else None
        sys.stdout.write(TabWriter().format(table_rows(table, opts)))
        printed = True
    if not printed and not missing:
        print(no_resources_message(session, sels), file=sys.stderr)
    return report_missing(missing, args.ignore_not_found)


def print_objects(args: Any, session: Any, sels: list[Selection], fmt: OutputFormat) -> int:
    objects: list[Obj] = []
    missing: list[APIError] = []
    for sel in sels:
        for item in resources.fetch(session, sel, label_selector=args.selector, field_selector=args.field_selector):
            (missing if isinstance(item, APIError) else objects).append(item)
    single = len(sels) == 1 and len(sels[0].names) == 1 and not args.filename
    if objects or (not missing and fmt.kind != "name"):     # an empty List is still a List in yaml/json
        sys.stdout.write(fmt.render(objects, single=single,
                                    name_of=lambda o: resources.qualified_name(session.discovery.for_object(o), o)))
    return report_missing(missing, args.ignore_not_found)


def watch_events(session: Any, sel: Selection, resource_version: str, *, label_selector: str | None,
                 field_selector: str | None, table: bool) -> Iterator[tuple[str, Obj]]:
    """Watch events from `resource_version` on, resuming when the server ends the stream."""
    accept = TABLE_ACCEPT if table else "application/json"
    while True:
        for kind, obj in session.client.watch(sel.rd, sel.namespace, resource_version, label_selector,
                                              field_selector, accept=accept):
            resource_version = (obj.get("metadata") or {}).get("resourceVersion") or resource_version
            if kind != "BOOKMARK":
                yield kind, obj


def watch(args: Any, session: Any, sels: list[Selection], fmt: OutputFormat) -> int:
    if len(sels) != 1 or len(sels[0].names) > 1:
        raise UsageError("watch is only supported on individual resources and resource collections, "
                         f"but {sum(max(len(s.names), 1) for s in sels)} resources were found")
    sel = sels[0]
    field_selector = args.field_selector
    if sel.names:
        session.client.get(sel.rd, sel.names[0], sel.namespace)   # a missing name is NotFound, as in kubectl
        by_name = f"metadata.name={sel.names[0]}"
        field_selector = f"{field_selector},{by_name}" if field_selector else by_name
    list_sel = Selection(sel.rd, sel.namespace)
    opts = table_options(args, sels)
    writer = TabWriter()
    headers_due = not args.no_headers

    def emit_table(table: Obj, event: str | None) -> None:
        nonlocal headers_due
        rows = table_rows(table, opts, headers=headers_due)
        if args.output_watch_events:
            rows = [(["EVENT"] if i == 0 and headers_due else [event or ""]) + r for i, r in enumerate(rows)]
        headers_due = False
        sys.stdout.write(writer.format(rows))
        sys.stdout.flush()

    def emit_object(obj: Obj, event: str) -> None:
        doc = {"type": event, "object": obj} if args.output_watch_events else obj
        text = fmt.render([doc], single=True, name_of=lambda o: resources.qualified_name(sel.rd, o))
        sys.stdout.write(("---\n" if fmt.kind == "yaml" else "") + text)
        sys.stdout.flush()

    if fmt.is_table:
        initial, _ = resources.table(session, list_sel, label_selector=args.selector, field_selector=field_selector)
        if not args.watch_only and initial.get("rows"):
            emit_table(initial, "ADDED")
        rv = (initial.get("metadata") or {}).get("resourceVersion", "")
    else:
        listed = session.client.list(sel.rd, sel.namespace, label_selector=args.selector,
                                     field_selector=field_selector)
        if not args.watch_only:
            for item in listed.get("items") or []:
                emit_object(resources.with_type(sel.rd, item), "ADDED")
        rv = (listed.get("metadata") or {}).get("resourceVersion", "")
    for event, obj in watch_events(session, sel, rv, label_selector=args.selector, field_selector=field_selector,
                                   table=fmt.is_table):
        if fmt.is_table:
            emit_table(obj, event)
        else:
            emit_object(obj, event)
    return 0


def run(args: Any, session: Any) -> int:
    fmt = OutputFormat.parse(args.output)
    sels = selections(args, session)
    if args.watch or args.watch_only:
        return watch(args, session, sels, fmt)
    if fmt.is_table:
        return print_tables(args, session, sels)
    return print_objects(args, session, sels, fmt)


COMMANDS = [Command("get", "Display one or many resources", add_arguments, run)]
