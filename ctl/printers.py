"""Output formats: the server's Tables as aligned text, and objects as yaml, json, name or jsonpath.

Human output is server-side printing, as in kubectl: the server chooses the columns (a `meta.k8s.io/v1
Table`); this module only lays them out like Go's tabwriter with kubectl's settings (each column as wide
as its widest cell plus 3 spaces, at least 6; the last column unpadded). Columns with priority > 0 are
shown only with `-o wide`; `-A` prepends NAMESPACE, `--show-labels` appends LABELS, and when several
types are printed together names carry their `kind.group/` prefix.

`-o json` is indented by 4 spaces like kubectl's (hence the standard json module here: orjson only indents
by 2); `-o yaml` has sorted keys and block style like kubectl's. Several objects print as a `v1 List`.
"""
from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from typing import Any

import yaml

from ctl import jsonpath
from ctl.discovery import UsageError

Obj = dict[str, Any]

MIN_WIDTH = 6
PADDING = 3
OUTPUT_FORMATS = ("wide", "yaml", "json", "name", "jsonpath=...", "jsonpath-as-json=...")


def cell_text(value: Any) -> str:
    if value is None:
        return "<none>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


class TabWriter:
    """Aligns rows into columns; remembers widths so later rows (a watch) line up with earlier ones."""

    def __init__(self, *, padding: int = PADDING, min_width: int = MIN_WIDTH) -> None:
        self.widths: list[int] = []
        self.padding, self.min_width = padding, min_width

    def format(self, rows: list[list[str]]) -> str:
        for row in rows:
            for i, text in enumerate(row[:-1]):
                width = max(len(text) + self.padding, self.min_width)
                if i >= len(self.widths):
                    self.widths.append(width)
                else:
                    self.widths[i] = max(self.widths[i], width)
        lines = []
        for row in rows:
            padded = [text.ljust(self.widths[i]) for i, text in enumerate(row[:-1])]
            lines.append("".join(padded) + (row[-1] if row else ""))
        return "".join(line + "\n" for line in lines)


def labels_text(labels: dict[str, str] | None) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items())) or "<none>"


@dataclass
class TableOptions:
    wide: bool = False
    show_labels: bool = False
    namespace_column: bool = False
    kind_prefix: str | None = None
    no_headers: bool = False


def table_rows(table: Obj, opts: TableOptions, *, headers: bool = True) -> list[list[str]]:
    """The rows to print for one Table response (header row first unless `headers` is False)."""
    columns = [(i, c) for i, c in enumerate(table.get("columnDefinitions") or [])
               if opts.wide or not c.get("priority")]
    out: list[list[str]] = []
    if headers and not opts.no_headers:
        head = [c["name"].upper() for _, c in columns]
        if opts.namespace_column:
            head.insert(0, "NAMESPACE")
        if opts.show_labels:
            head.append("LABELS")
        out.append(head)
    for row in table.get("rows") or []:
        cells = row.get("cells") or []
        meta = (row.get("object") or {}).get("metadata") or {}
        texts = []
        for i, col in columns:
            text = cell_text(cells[i] if i < len(cells) else None)
            if col.get("format") == "name" and opts.kind_prefix:
                text = f"{opts.kind_prefix}/{text}"
            texts.append(text)
        if opts.namespace_column:
            texts.insert(0, meta.get("namespace") or "")
        if opts.show_labels:
            texts.append(labels_text(meta.get("labels")))
        out.append(texts)
    return out


def as_list(items: list[Obj]) -> Obj:
    return {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}


class _KubectlDumper(yaml.SafeDumper):
    """Quotes like kubectl's YAML (double quotes where a string needs quoting: "2024-01-01T00:00:00Z", "42")."""

    def choose_scalar_style(self):  # type: ignore[no-untyped-def]
        style = super().choose_scalar_style()
        return '"' if style == "'" else style


def to_yaml(obj: Any) -> str:
    return yaml.dump(obj, Dumper=_KubectlDumper, default_flow_style=False, sort_keys=True, allow_unicode=True)


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=4, ensure_ascii=False) + "\n"


@dataclass(frozen=True)
class OutputFormat:
    """A parsed `-o` value: kind is "" (table), wide, yaml, json, name, jsonpath or jsonpath-as-json."""

    kind: str = ""
    template: str = ""

    @classmethod
    def parse(cls, value: str | None) -> "OutputFormat":
        if not value:
            return cls()
        kind, sep, template = value.partition("=")
        if kind in ("jsonpath", "jsonpath-as-json"):
            if not sep or not template:
                raise UsageError("template format specified but no template given")
            jsonpath.parse(template)   # fail before talking to the server
            return cls(kind, template)
        if kind in ("wide", "yaml", "json", "name") and not sep:
            return cls(kind)
        raise UsageError(f'unable to match a printer suitable for the output format "{value}", '
                         f'allowed formats are: {",".join(OUTPUT_FORMATS)}')

    @property
    def is_table(self) -> bool:
        return self.kind in ("", "wide")

    def render(self, objects: list[Obj], *, single: bool, name_of: Any = None) -> str:
        """Text for `objects`: one object as itself when `single`, else a List. `name_of(obj)` names for -o name."""
        doc = objects[0] if single and len(objects) == 1 else as_list(objects)
        if self.kind == "yaml":
            return to_yaml(doc)
        if self.kind == "json":
            return to_json(doc)
        if self.kind == "name":
            return "".join(f"{name_of(o)}\n" for o in objects)
        if self.kind == "jsonpath":
            return jsonpath.render(self.template, doc)
        if self.kind == "jsonpath-as-json":
            return to_json(jsonpath.values(self.template, doc))
        raise AssertionError(f"not an object format: {self.kind}")


def age(timestamp: str | None, now: datetime.datetime | None = None) -> str:
    """kubectl's short human duration since `timestamp` (5s, 3m, 2m30s... simplified to one or two units)."""
    if not timestamp:
        return "<unknown>"
    then = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    secs = int(((now or datetime.datetime.now(datetime.timezone.utc)) - then).total_seconds())
    return human_duration(secs)


def human_duration(secs: int) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    if secs < 0:
        return "<invalid>"
    if secs < 120:
        return f"{secs}s"
    minutes = secs // 60
    if minutes < 10:
        rest = secs % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = secs // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        rest = hours % 24
        return f"{days}d{rest}h" if rest else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    years = days // 365
    if days < 365 * 8:
        rest = days % 365
        return f"{years}y{rest}d" if rest else f"{years}y"
    return f"{years}y"
