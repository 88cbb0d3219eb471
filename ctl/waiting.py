"""Waiting for one object to reach a state, by watch (never by polling): `delete --wait`, `drain`,
`rollout status`.

`watch_until` reads the object once, then watches it by name (fieldSelector `metadata.name`) from that
read's resourceVersion, asking `check(obj)` after each event (`obj` is None once it is deleted) until
`check` returns something other than None. A watch the server ends is resumed from the last
resourceVersion seen; a 410 Expired starts over with a fresh read.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

from api.errors import APIError
from client.rest import is_gone

Obj = dict[str, Any]
T = TypeVar("T")
WATCH_CHUNK_SECONDS = 300


class WaitTimeout(Exception):
    pass


def watch_until(client: Any, rd: Any, namespace: str | None, name: str, check: Callable[[Obj | None], T | None],
                *, timeout: float | None = None) -> T:
    deadline = time.monotonic() + timeout if timeout else None

    def remaining() -> float:
        if deadline is None:
            return WATCH_CHUNK_SECONDS
        left = deadline - time.monotonic()
        if left <= 0:
            raise WaitTimeout(f"timed out waiting for the condition on {rd.plural}/{name}")
        return min(left, WATCH_CHUNK_SECONDS)

    while True:
        obj = client.get_or_none(rd, name, namespace)
        result = check(obj)
        if result is not None:
            return result
        rv = (obj or {}).get("metadata", {}).get("resourceVersion")
        try:
            while True:
                for event, changed in client.watch(rd, namespace, resource_version=rv,
                                                   field_selector=f"metadata.name={name}",
                                                   timeout_seconds=math.ceil(remaining())):
                    rv = (changed.get("metadata") or {}).get("resourceVersion") or rv
                    if event == "BOOKMARK":
                        continue
                    result = check(None if event == "DELETED" else changed)
                    if result is not None:
                        return result
                remaining()
        except APIError as e:
            if not is_gone(e):
                raise


def wait_deleted(client: Any, rd: Any, namespace: str | None, name: str, uid: str | None, *,
                 timeout: float | None = None) -> None:
    """Until the object `uid` named `name` no longer exists (a new object of that name does not count)."""
    def gone(obj: Obj | None) -> bool | None:
        return True if obj is None or (uid and obj["metadata"].get("uid") != uid) else None
    watch_until(client, rd, namespace, name, gone, timeout=timeout)
