"""Defaulting as Kubernetes does it (stub: being filled in)."""
from __future__ import annotations

from typing import Any, Callable

Obj = dict[str, Any]

DEFAULTERS: dict[str, Callable[[Obj], None]] = {}
