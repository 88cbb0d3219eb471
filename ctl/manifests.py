"""Reading `-f` arguments: files, directories (`.yaml`, `.yml`, `.json`; `-R` descends), and `-` for stdin.

Files may hold several YAML documents; empty documents are skipped and a `kind: List` contributes its
items, as with kubectl. Each object keeps the file it came from, for messages such as
`error when creating "web.yaml": ...`.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ctl.discovery import UsageError

Obj = dict[str, Any]
EXTENSIONS = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Manifest:
    source: str
    obj: Obj


def _paths(arg: str, recursive: bool) -> list[Path]:
    p = Path(arg)
    if p.is_dir():
        pattern = "**/*" if recursive else "*"
        return sorted(f for f in p.glob(pattern) if f.is_file() and f.suffix in EXTENSIONS)
    if not p.exists():
        raise UsageError(f'the path "{arg}" does not exist')
    return [p]


def parse_documents(text: str, source: str) -> list[Manifest]:
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as e:
        raise UsageError(f'error parsing {source}: {e}') from None
    out: list[Manifest] = []
    for doc in docs:
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise UsageError(f"error parsing {source}: a document is not an object")
        if doc.get("kind") == "List" or (str(doc.get("kind", "")).endswith("List") and "items" in doc):
            out.extend(Manifest(source, item) for item in doc.get("items") or [])
            continue
        if not doc.get("kind") or not doc.get("apiVersion"):
            field = "kind" if not doc.get("kind") else "apiVersion"
            raise UsageError(f"error validating data from {source}: {field} not set")
        out.append(Manifest(source, doc))
    return out


def load(filenames: list[str], *, recursive: bool = False, verb: str = "apply") -> list[Manifest]:
    if not filenames:
        raise UsageError("must specify one of -f and -k")
    out: list[Manifest] = []
    for arg in filenames:
        if arg == "-":
            out.extend(parse_documents(sys.stdin.read(), "STDIN"))
            continue
        for p in _paths(arg, recursive):
            out.extend(parse_documents(p.read_text(), str(p)))
    if not out:
        raise UsageError(f"no objects passed to {verb}")
    return out
