"""kubectl's JSONPath templates (`-o jsonpath=...`), the subset people use.

A template is literal text with actions in braces: `{.metadata.name}`, `{.items[*].status.podIP}`,
`{.items[?(@.status.phase=="Running")].metadata.name}`, `{range .items[*]}{.metadata.name}{"\\n"}{end}`,
`{..image}` (recursive descent), `{.metadata.labels.app\\.kubernetes\\.io/name}` (escaped dots), slices
`[0:2]`, `['quoted name']`. As in kubectl's `get`, missing keys print nothing; several results of one
action are joined by spaces; strings print raw, other values as compact JSON.

`parse` turns the template into nodes (text, expression, range with its body), so errors show before any
request; `render` evaluates against a document; `values` gives the raw results (jsonpath-as-json).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from ctl.discovery import UsageError

_NUMBER = re.compile(r"-?\d+(\.\d+)?$")


@dataclass
class Step:
    kind: str                   # field | recurse | wildcard | index | slice | filter
    arg: Any = None


@dataclass
class Expr:
    steps: list[Step]
    text: str


@dataclass
class Range:
    expr: Expr
    body: list[Any] = field(default_factory=list)


def parse(template: str) -> list[Any]:
    nodes, _, ended = _parse_nodes(_actions(template), 0, template)
    if ended:
        raise UsageError(f"error parsing jsonpath {template}, unexpected {{end}}")
    return nodes


def _actions(template: str) -> list[tuple[str, str]]:
    """Split into ("text", s) and ("action", s) pieces; quotes inside actions may hold braces."""
    out, i = [], 0
    while i < len(template):
        start = template.find("{", i)
        if start < 0:
            out.append(("text", template[i:]))
            break
        if start > i:
            out.append(("text", template[i:start]))
        j, quote = start + 1, None
        while j < len(template) and (quote or template[j] != "}"):
            if template[j] in "\"'" and (quote is None or quote == template[j]):
                quote = None if quote else template[j]
            elif template[j] == "\\" and quote:
                j += 1
            j += 1
        if j >= len(template):
            raise UsageError(f"error parsing jsonpath {template}, unclosed action")
        out.append(("action", template[start + 1:j].strip()))
        i = j + 1
    return out


def _parse_nodes(pieces: list[tuple[str, str]], i: int, template: str) -> tuple[list[Any], int, bool]:
    """Nodes from `pieces[i]` up to an {end} or the end; returns them, where it stopped, and whether at {end}."""
    nodes: list[Any] = []
    while i < len(pieces):
        kind, text = pieces[i]
        i += 1
        if kind == "text":
            nodes.append(text)
        elif text == "end":
            return nodes, i, True
        elif text.startswith("range "):
            body, i, ended = _parse_nodes(pieces, i, template)
            if not ended:
                raise UsageError(f"error parsing jsonpath {template}, range without end")
            nodes.append(Range(parse_expr(text[len("range "):].strip()), body))
        elif text[:1] in "\"'":
            nodes.append(_literal(text))
        else:
            nodes.append(parse_expr(text))
    return nodes, i, False


def _literal(text: str) -> str:
    if len(text) < 2 or text[-1] != text[0]:
        raise UsageError(f"unterminated string literal in jsonpath: {text}")
    if text[0] == '"':
        try:
            return json.loads(text, strict=False)
        except ValueError:
            raise UsageError(f"invalid string literal in jsonpath: {text}") from None
    return text[1:-1]


def parse_expr(text: str) -> Expr:
    steps: list[Step] = []
    i = 0
    if text[:1] in "$@":
        i = 1
    while i < len(text):
        c = text[i]
        if text.startswith("..", i):
            name, i = _name(text, i + 2)
            steps.append(Step("recurse"))
            if name == "*" or not name:
                continue
            steps.append(Step("field", name))
        elif c == ".":
            name, i = _name(text, i + 1)
            steps.append(Step("wildcard") if name == "*" else Step("field", name))
        elif c == "[":
            end = _closing_bracket(text, i)
            steps.append(_bracket(text[i + 1:end].strip(), text))
            i = end + 1
        elif c.isspace():
            i += 1
        else:
            name, i = _name(text, i)
            if not name:
                raise UsageError(f"unrecognized character in jsonpath action: {text[i:]!r}")
            steps.append(Step("field", name))
    return Expr(steps, text)


def _name(text: str, i: int) -> tuple[str, int]:
    out = []
    while i < len(text) and text[i] not in ".[ ":
        if text[i] == "\\" and i + 1 < len(text):
            i += 1
        out.append(text[i])
        i += 1
    return "".join(out), i


def _closing_bracket(text: str, start: int) -> int:
    depth, quote = 0, None
    for j in range(start, len(text)):
        ch = text[j]
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth == 0:
                return j
    raise UsageError(f"unterminated array in jsonpath: {text}")


def _bracket(inner: str, text: str) -> Step:
    if inner == "*":
        return Step("wildcard")
    if inner.startswith("?(") and inner.endswith(")"):
        return Step("filter", _filter(inner[2:-1].strip()))
    if inner[:1] in "\"'":
        return Step("field", inner[1:-1])
    if ":" in inner:
        parts = [int(p) if p.strip() else None for p in inner.split(":")]
        return Step("slice", slice(*parts))
    try:
        return Step("index", int(inner))
    except ValueError:
        raise UsageError(f"invalid array index {inner!r} in jsonpath: {text}") from None


_OPS = ("==", "!=", "<=", ">=", "<", ">")


def _filter(cond: str) -> tuple[Expr, str | None, Any]:
    for op in _OPS:
        left, sep, right = cond.partition(op)
        if sep:
            return parse_expr(left.strip()), op, _value(right.strip())
    return parse_expr(cond), None, None


def _value(text: str) -> Any:
    if text[:1] in "\"'":
        return text[1:-1]
    if _NUMBER.match(text):
        return float(text) if "." in text else int(text)
    if text in ("true", "false"):
        return text == "true"
    return parse_expr(text)


def evaluate(expr: Expr, current: Any, root: Any) -> list[Any]:
    values = [root if expr.text.startswith("$") else current]
    for step in expr.steps:
        values = [out for v in values for out in _apply(step, v, root)]
    return values


def _apply(step: Step, value: Any, root: Any) -> list[Any]:
    if step.kind == "field":
        return [value[step.arg]] if isinstance(value, dict) and step.arg in value else []
    if step.kind == "wildcard":
        return list(value.values()) if isinstance(value, dict) else list(value) if isinstance(value, list) else []
    if step.kind == "index":
        if isinstance(value, list) and -len(value) <= step.arg < len(value):
            return [value[step.arg]]
        return []
    if step.kind == "slice":
        return value[step.arg] if isinstance(value, list) else []
    if step.kind == "recurse":
        return list(_descendants(value))
    if step.kind == "filter":
        items = value if isinstance(value, list) else list(value.values()) if isinstance(value, dict) else []
        return [item for item in items if _matches(step.arg, item, root)]
    raise AssertionError(step.kind)


def _descendants(value: Any):
    yield value
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for child in children:
        yield from _descendants(child)


def _matches(cond: tuple[Expr, str | None, Any], item: Any, root: Any) -> bool:
    left_expr, op, right = cond
    left = evaluate(left_expr, item, root)
    if op is None:
        return bool(left)
    if isinstance(right, Expr):
        right_values = evaluate(right, item, root)
        if not right_values:
            return False
        right = right_values[0]
    if not left:
        return op == "!="
    a = left[0]
    try:
        return {"==": a == right, "!=": a != right, "<": a < right, "<=": a <= right,
                ">": a > right, ">=": a >= right}[op]
    except TypeError:
        return False


def text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def _render(nodes: list[Any], current: Any, root: Any) -> str:
    out = []
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, Range):
            for item in evaluate(node.expr, current, root):
                for each in item if isinstance(item, list) else [item]:
                    out.append(_render(node.body, each, root))
        else:
            out.append(" ".join(text_of(v) for v in evaluate(node, current, root)))
    return "".join(out)


def render(template: str, doc: Any) -> str:
    return _render(parse(template), doc, doc)


def values(template: str, doc: Any) -> list[Any]:
    return [v for node in parse(template) if isinstance(node, Expr) for v in evaluate(node, doc, doc)]
