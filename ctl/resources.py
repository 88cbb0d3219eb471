"""From the command line's resource arguments to the objects they designate (cli-runtime's Builder, small).

`select` resolves `TYPE [NAME...]`, `TYPE/NAME`, `po,svc` and the `all` category against discovery into
`Selection`s, each one resource type with its namespace (None: all namespaces, or a cluster-scoped type)
and names. `fetch` reads what a selection designates: each named object, or a list filtered by label and
field selectors. A name that does not exist is an error for that name only, so a command can report it
and go on with the rest, as kubectl does.

`qualified_name` is kubectl's `deployment.apps/web`, the way objects are named in output.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from api.errors import APIError
from api.registry import ResourceDef
from ctl.discovery import UsageError, kind_name, parse_resource_args

Obj = dict[str, Any]


@dataclass(frozen=True)
class Selection:
    rd: ResourceDef
    namespace: str | None
    names: tuple[str, ...] = ()


def select(session: Any, args: list[str], *, all_namespaces: bool = False) -> list[Selection]:
    out: list[Selection] = []
    for arg in parse_resource_args(args):
        types = session.discovery.category(arg.type) if arg.type == "all" else [session.discovery.resolve(arg.type)]
        for rd in types:
            if arg.names and all_namespaces and rd.namespaced:
                raise UsageError("a resource cannot be retrieved by name across all namespaces")
            namespace = None if not rd.namespaced or all_namespaces else session.namespace
            out.append(Selection(rd, namespace, arg.names))
    return out


def with_type(rd: ResourceDef, obj: Obj) -> Obj:
    """List items may lack kind/apiVersion; printed objects always carry them."""
    return {"apiVersion": rd.api_version, "kind": rd.kind, **obj}


def fetch(session: Any, sel: Selection, *, label_selector: str | None = None,
          field_selector: str | None = None) -> Iterator[Obj | APIError]:
    """The objects `sel` designates, in order; a missing named object yields its NotFound error instead."""
    client = session.client
    if sel.names:
        for name in sel.names:
            try:
                yield client.get(sel.rd, name, sel.namespace)
            except APIError as e:
                if e.code != 404:
                    raise
                yield e
        return
    listed = client.list_all(sel.rd, sel.namespace, label_selector=label_selector, field_selector=field_selector)
    for item in listed.get("items") or []:
        yield with_type(sel.rd, item)


def table(session: Any, sel: Selection, *, label_selector: str | None = None,
          field_selector: str | None = None) -> tuple[Obj, list[APIError]]:
    """The server's Table for `sel` (one Table, rows of every named object) and NotFound errors by name."""
    from ctl.session import TABLE_ACCEPT

    client = session.client
    if not sel.names:
        return client.list(sel.rd, sel.namespace, label_selector=label_selector, field_selector=field_selector,
                           accept=TABLE_ACCEPT), []
    merged: Obj | None = None
    missing: list[APIError] = []
    for name in sel.names:
        try:
            t = client.get(sel.rd, name, sel.namespace, accept=TABLE_ACCEPT)
        except APIError as e:
            if e.code != 404:
                raise
            missing.append(e)
            continue
        if merged is None:
            merged = t
        else:
            merged["rows"] = (merged.get("rows") or []) + (t.get("rows") or [])
    return merged or {"columnDefinitions": [], "rows": []}, missing


def qualified_name(rd: ResourceDef, obj: Obj) -> str:
    return f"{kind_name(rd)}/{(obj.get('metadata') or {}).get('name', '')}"


def namespace_of(session: Any, rd: ResourceDef, obj: Obj) -> str | None:
    """Where a manifest's object goes: its own namespace, else -n, else the context's; None if cluster-scoped.

    An object naming a namespace other than an explicit -n is refused, as kubectl refuses it.
    """
    if not rd.namespaced:
        return None
    own = (obj.get("metadata") or {}).get("namespace")
    if own and session.namespace_flag and own != session.namespace_flag:
        raise UsageError(f'the namespace from the provided object "{own}" does not match the namespace '
                         f'"{session.namespace_flag}". You must pass \'--namespace={own}\' to perform this operation.')
    return own or session.namespace
