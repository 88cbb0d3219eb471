"""Label and field selectors.

A `LabelSelector` is a conjunction of requirements (`key op values`). It comes from two places:
the query-string syntax of `?labelSelector=` (`parse_label_selector`) and the structured
`metav1.LabelSelector` inside objects (`selector_from_dict`). Both land in the same type so list/watch
filtering and controllers match labels the same way.

Empty versus nothing follows Kubernetes' `LabelSelectorAsSelector`: a selector dict `{}` has no
requirements and so matches every object, while a missing selector (`None`) matches no object. The
latter is why a Service without a selector gets no endpoints written for it.

A `FieldSelector` is only parsed here; which field paths a kind allows is the apiserver's business
(`ResourceDef.field_selectable`).

The label key/value syntax checks live here too (labels are this module's subject); validation reuses
them for `metadata.labels`, annotations and finalizers.
"""
from __future__ import annotations

import functools

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from api.errors import Cause, bad_request

# --- label syntax ---------------------------------------------------------------------------------

_NAME_PART = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

_NAME_PART_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used "
    "for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)


def qualified_name_errors(value: str) -> tuple[str, ...]:
    """Why `value` is not a qualified name (`[prefix/]name`, as label keys are); empty when it is."""
    if not isinstance(value, str):
        return ("must be a string",)
    return _qualified_name_errors(value)


# Label keys and values repeat across objects: caching their verdicts takes validation off the hot path.
@functools.lru_cache(maxsize=8192)
def _qualified_name_errors(value: str) -> tuple[str, ...]:
    parts = value.split("/")
    if len(parts) == 1:
        prefix, name = "", parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            return ("prefix part must be non-empty",)
    else:
        return (
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and "
            "end with an alphanumeric character with an optional DNS subdomain prefix and '/' "
            "(e.g. 'example.com/MyName')",
        )
    errors = []
    if prefix:
        if len(prefix) > 253:
            errors.append("prefix part must be no more than 253 characters")
        elif not _DNS1123_SUBDOMAIN.match(prefix):
            errors.append("prefix part " + _SUBDOMAIN_MSG)
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > 63:
        errors.append("name part must be no more than 63 characters")
    elif not _NAME_PART.match(name):
        errors.append(_NAME_PART_MSG)
    return tuple(errors)


def label_value_errors(value: str) -> tuple[str, ...]:
    """Why `value` is not a valid label value; empty when it is."""
    if not isinstance(value, str):
        return ("must be a string",)
    return _label_value_errors(value)


@functools.lru_cache(maxsize=8192)
def _label_value_errors(value: str) -> tuple[str, ...]:
    if len(value) > 63:
        return ("must be no more than 63 characters",)
    if not _LABEL_VALUE.match(value):
        return (_LABEL_VALUE_MSG,)
    return ()


# --- label selectors ------------------------------------------------------------------------------

# Operators: the string syntax and metav1 expressions both map onto these.
EQUALS, NOT_EQUALS, IN, NOT_IN, EXISTS, DOES_NOT_EXIST, GT, LT = (
    "=", "!=", "in", "notin", "exists", "!", "gt", "lt"
)


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op in (EQUALS, IN):
            return present and value in self.values
        if self.op in (NOT_EQUALS, NOT_IN):
            return not present or value not in self.values
        if self.op == EXISTS:
            return present
        if self.op == DOES_NOT_EXIST:
            return not present
        # gt / lt compare integers; a label that is not an integer never matches.
        try:
            have, want = int(value or ""), int(self.values[0])
        except ValueError:
            return False
        return have > want if self.op == GT else have < want

    def __str__(self) -> str:
        if self.op == EXISTS:
            return self.key
        if self.op == DOES_NOT_EXIST:
            return f"!{self.key}"
        if self.op in (IN, NOT_IN):
            return f"{self.key} {self.op} ({','.join(self.values)})"
        symbol = {EQUALS: "=", NOT_EQUALS: "!=", GT: ">", LT: "<"}[self.op]
        return f"{self.key}{symbol}{self.values[0]}"


@dataclass(frozen=True)
class LabelSelector:
    """A conjunction of requirements; `nothing=True` is the selector that matches no object."""

    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False

    @property
    def empty(self) -> bool:
        """True for the selector that matches everything."""
        return not self.requirements and not self.nothing

    def matches(self, labels: dict[str, str] | None) -> bool:
        if self.nothing:
            return False
        have = labels if isinstance(labels, dict) else {}
        return all(r.matches(have) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


EVERYTHING = LabelSelector()
NOTHING = LabelSelector(nothing=True)


def _check_requirement(key: str, op: str, values: Iterable[str]) -> Requirement:
    """Build a requirement, or say what is wrong with it (ValueError with a Kubernetes-like message)."""
    for err in qualified_name_errors(key):
        raise ValueError(f'key: Invalid value: "{key}": {err}')
    vals = tuple(sorted(set(values)))
    if op in (IN, NOT_IN) and not vals:
        raise ValueError("values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty")
    if op in (EQUALS, NOT_EQUALS, GT, LT) and len(vals) != 1:
        raise ValueError("values: Invalid value: exact-match compatibility requires one single value")
    if op in (EXISTS, DOES_NOT_EXIST) and vals:
        raise ValueError("values: Invalid value: values set must be empty for exists and does not exist")
    if op in (GT, LT):
        try:
            int(vals[0])
        except ValueError:
            raise ValueError(f"values[0]: Invalid value: \"{vals[0]}\": for 'Gt', 'Lt' operators, "
                             "the value must be an integer") from None
    for v in vals:
        for err in label_value_errors(v):
            raise ValueError(f'values[0][{key}]: Invalid value: "{v}": {err}')
    return Requirement(key, op, vals)


def _selector(requirements: list[Requirement]) -> LabelSelector:
    # Sorted by key like Kubernetes, so __str__ is canonical and equal selectors compare equal.
    return LabelSelector(tuple(sorted(requirements, key=lambda r: (r.key, r.op, r.values))))


# The string syntax has a tiny grammar; a tokenizer plus a recursive-descent parser is clearer than regexes.
# Whitespace separates tokens and is otherwise ignored, so the tokenizer simply never matches it.
_TOKEN = re.compile(r"==|!=|[=!(),<>]|[^\s=!(),<>]+")


def _tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text)


class _Parser:
    _SPECIAL = {"==", "=", "!=", "!", "(", ")", ",", ">", "<"}

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str | None:
        tok = self.peek()
        self.pos += 1
        return tok

    def fail(self, why: str) -> ValueError:
        return ValueError(f"unable to parse requirement: {why}")

    def identifier(self, what: str) -> str:
        tok = self.take()
        if tok is None or tok in self._SPECIAL:
            raise self.fail(f"found '{tok or 'end of string'}', expected: {what}")
        return tok

    def requirement(self) -> Requirement:
        if self.peek() == "!":
            self.take()
            return _check_requirement(self.identifier("identifier after '!'"), DOES_NOT_EXIST, ())
        key = self.identifier("identifier")
        op = self.peek()
        if op is None or op == ",":
            return _check_requirement(key, EXISTS, ())
        self.take()
        if op in ("=", "=="):
            return _check_requirement(key, EQUALS, (self.single_value(),))
        if op == "!=":
            return _check_requirement(key, NOT_EQUALS, (self.single_value(),))
        if op in (">", "<"):
            return _check_requirement(key, GT if op == ">" else LT, (self.identifier("integer value"),))
        if op in ("in", "notin"):
            return _check_requirement(key, IN if op == "in" else NOT_IN, self.value_set())
        raise self.fail(f"found '{op}', expected: in, notin, =, ==, !=, gt, lt")

    def single_value(self) -> str:
        # `a=` is a requirement for the empty value, as in Kubernetes.
        if self.peek() in (None, ","):
            return ""
        return self.identifier("identifier")

    def value_set(self) -> list[str]:
        if self.take() != "(":
            raise self.fail("expected: '(' after set operator")
        values: list[str] = []
        expect_value = True
        while True:
            tok = self.take()
            if tok is None:
                raise self.fail("found end of string, expected: ')'")
            if tok == ")":
                if expect_value and values:
                    values.append("")  # a trailing comma stands for the empty value
                return values
            if tok == ",":
                if expect_value:
                    values.append("")
                expect_value = True
                continue
            if tok in self._SPECIAL or not expect_value:
                raise self.fail(f"found '{tok}', expected: ',' or ')'")
            values.append(tok)
            expect_value = False

    def parse(self) -> list[Requirement]:
        reqs = []
        while self.peek() is not None:
            reqs.append(self.requirement())
            tok = self.take()
            if tok is None:
                break
            if tok != ",":
                raise self.fail(f"found '{tok}', expected: ','")
            if self.peek() is None:
                raise self.fail("found end of string after ',', expected: identifier")
        return reqs


def parse_label_selector(text: str) -> LabelSelector:
    """Parse `?labelSelector=` syntax; an empty string selects everything. Bad syntax → 400."""
    try:
        return _selector(_Parser(text or "").parse())
    except ValueError as exc:
        raise bad_request(f'unable to parse labelSelector "{text}": {exc}') from None


_EXPRESSION_OPS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}


def selector_from_dict(sel: dict[str, Any] | None) -> LabelSelector:
    """Convert a metav1.LabelSelector: None matches nothing, `{}` matches everything. Invalid → 400."""
    if sel is None:
        return NOTHING
    causes = validate_selector_dict(sel, "selector")
    if causes:
        raise bad_request("invalid label selector: " + "; ".join(f"{c.field}: {c.message}" for c in causes))
    reqs = [Requirement(k, EQUALS, (v,)) for k, v in (sel.get("matchLabels") or {}).items()]
    for expr in sel.get("matchExpressions") or []:
        values = tuple(sorted(set(expr.get("values") or [])))
        reqs.append(Requirement(expr["key"], _EXPRESSION_OPS[expr["operator"]], values))
    return _selector(reqs)


def matches_selector_dict(sel: dict[str, Any] | None, labels: dict[str, str] | None) -> bool:
    """Whether labels match a metav1.LabelSelector (None matches nothing)."""
    return selector_from_dict(sel).matches(labels)


def validate_selector_dict(sel: Any, path: str) -> list[Cause]:
    """Field causes for a metav1.LabelSelector at `path` (types, keys, values, operators)."""
    if sel is None:
        return []
    if not isinstance(sel, dict):
        return [Cause(path, f"Invalid value: {sel!r}: must be an object")]
    causes: list[Cause] = []
    match_labels = sel.get("matchLabels")
    if match_labels is not None:
        causes += validate_labels(match_labels, f"{path}.matchLabels")
    exprs = sel.get("matchExpressions")
    if exprs is None:
        return causes
    if not isinstance(exprs, list):
        return causes + [Cause(f"{path}.matchExpressions", "Invalid value: must be a list")]
    for i, expr in enumerate(exprs):
        causes += _validate_expression(expr, f"{path}.matchExpressions[{i}]")
    return causes


def _validate_expression(expr: Any, path: str) -> list[Cause]:
    if not isinstance(expr, dict):
        return [Cause(path, "Invalid value: must be an object")]
    causes: list[Cause] = []
    key, op, values = expr.get("key"), expr.get("operator"), expr.get("values")
    if not isinstance(key, str) or not key:
        causes.append(Cause(f"{path}.key", "Required value", "FieldValueRequired"))
    else:
        causes += [Cause(f"{path}.key", f'Invalid value: "{key}": {e}') for e in qualified_name_errors(key)]
    if values is not None and not (isinstance(values, list) and all(isinstance(v, str) for v in values)):
        return causes + [Cause(f"{path}.values", "Invalid value: must be a list of strings")]
    if op in ("In", "NotIn"):
        if not values:
            causes.append(Cause(f"{path}.values", "Required value: must be specified when `operator` is "
                                                  "'In' or 'NotIn'", "FieldValueRequired"))
    elif op in ("Exists", "DoesNotExist"):
        if values:
            causes.append(Cause(f"{path}.values", "Forbidden: may not be specified when `operator` is "
                                                  "'Exists' or 'DoesNotExist'", "FieldValueForbidden"))
    else:
        causes.append(Cause(f"{path}.operator", f'Unsupported value: {_quote(op)}: supported values: '
                                                '"In", "NotIn", "Exists", "DoesNotExist"',
                            "FieldValueNotSupported"))
    return causes


def validate_labels(labels: Any, path: str) -> list[Cause]:
    """Causes for a label map: qualified-name keys, label-syntax string values."""
    if not isinstance(labels, dict):
        return [Cause(path, "Invalid value: must be a map of string keys to string values")]
    causes: list[Cause] = []
    for key, value in labels.items():
        causes += [Cause(path, f'Invalid value: "{key}": {e}') for e in qualified_name_errors(key)]
        if not isinstance(value, str):
            causes.append(Cause(f"{path}[{key}]", f"Invalid value: {_quote(value)}: must be a string"))
            continue
        causes += [Cause(path, f'Invalid value: "{value}": {e}') for e in label_value_errors(value)]
    return causes


def _quote(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


# --- field selectors ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldSelector:
    """A conjunction of `(path, op, value)` with op `=` or `!=`; empty matches everything."""

    requirements: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, get: Callable[[str], str]) -> bool:
        for path, op, value in self.requirements:
            if (get(path) == value) != (op == "="):
                return False
        return True

    def __str__(self) -> str:
        return ",".join(f"{_escape(p)}{op}{_escape(v)}" for p, op, v in self.requirements)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _split_unescaped(text: str, sep: str) -> list[str]:
    """Split on `sep` not preceded by a backslash, keeping escapes for the next stage."""
    parts, cur, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i:i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def _unescape(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        if value[i] == "\\":
            if i + 1 >= len(value) or value[i + 1] not in "\\,=!":
                raise ValueError(f"invalid escape sequence in {value!r}")
            out.append(value[i + 1])
            i += 2
            continue
        out.append(value[i])
        i += 1
    return "".join(out)


def _find_operator(term: str) -> tuple[int, str] | None:
    """Index and text of the first unescaped `!=`, `==` or `=` in a term."""
    i = 0
    while i < len(term):
        if term[i] == "\\":
            i += 2
            continue
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return i, op
        i += 1
    return None


def parse_field_selector(text: str) -> FieldSelector:
    """Parse `?fieldSelector=` syntax (`a=b`, `a==b`, `a!=b`, comma-separated). Bad syntax → 400."""
    reqs: list[tuple[str, str, str]] = []
    if not (text or "").strip():
        return FieldSelector(reqs)
    try:
        for term in _split_unescaped(text, ","):
            found = _find_operator(term)
            if found is None:
                raise ValueError(f"invalid selector: '{text}'; can't understand '{term}'")
            idx, op = found
            path, value = _unescape(term[:idx].strip()), _unescape(term[idx + len(op):].strip())
            if not path:
                raise ValueError(f"invalid selector: '{text}'; field path is empty in '{term}'")
            reqs.append((path, "!=" if op == "!=" else "=", value))
    except ValueError as exc:
        raise bad_request(f"unable to parse fieldSelector: {exc}") from None
    return FieldSelector(reqs)
