"""Validation of objects as Kubernetes validates them (stub: being filled in)."""
from __future__ import annotations

import re
from typing import Any, Callable

from api.errors import Cause

Obj = dict[str, Any]

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def is_dns1123_label(value: str) -> bool:
    return len(value) <= 63 and bool(_DNS1123_LABEL.match(value))


def is_dns1123_subdomain(value: str) -> bool:
    return len(value) <= 253 and bool(_DNS1123_SUBDOMAIN.match(value))


def validate_object_meta(obj: Obj, *, namespaced: bool, old: Obj | None = None) -> list[Cause]:
    meta = obj.get("metadata") or {}
    name = meta.get("name") or ""
    causes = []
    if not name:
        causes.append(Cause("metadata.name", "Required value: name or generateName is required", "FieldValueRequired"))
    elif not is_dns1123_subdomain(name):
        causes.append(Cause("metadata.name", f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, \'-\' or \'.\''))
    return causes


VALIDATORS: dict[str, Callable[[Obj, Obj | None], list[Cause]]] = {}
