"""Termination messages: what a container leaves behind for `state.terminated.message`.

Each container incarnation gets its own empty file `<root>/pods/<uid>/containers/<name>/<attempt>`
(mode 0666, so a non-root process may write it), bind-mounted at its `terminationMessagePath`
(default /dev/termination-log). After the container exits the kubelet reads the file's last 4096 bytes;
with `terminationMessagePolicy: FallbackToLogsOnError` an empty file of a container that failed is
replaced by the last 80 lines of its logs, at most 2048 bytes (Kubernetes' limits).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

Obj = dict[str, Any]

MAX_MESSAGE_BYTES = 4096
MAX_LOG_LINES = 80
MAX_LOG_BYTES = 2048


def message_file(pod_dir: Path, container: str, attempt: int) -> Path:
    return pod_dir / "containers" / container / str(attempt)


def prepare(pod_dir: Path, spec: Obj, attempt: int) -> str | None:
    """Create the container's empty message file; its Docker bind, or None when the spec names no path
    (or a volume is mounted there: the volume wins, as two binds on one path would fail the create)."""
    target = spec.get("terminationMessagePath")
    if not target or any(m.get("mountPath") == target for m in spec.get("volumeMounts") or []):
        return None
    path = message_file(pod_dir, spec["name"], attempt)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    path.chmod(0o666)
    return f"{path}:{target}"


def read_tail(path: Path, limit: int = MAX_MESSAGE_BYTES) -> bytes:
    """At most `limit` bytes from the end of the file (empty if there is none)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read()
    except OSError:
        return b""


def wants_logs(spec: Obj, message: bytes, exit_code: int | None) -> bool:
    return spec.get("terminationMessagePolicy") == "FallbackToLogsOnError" and not message and exit_code != 0


def from_logs(logs: bytes) -> bytes:
    return logs[-MAX_LOG_BYTES:]


def decode(message: bytes) -> str:
    return message.decode("utf-8", "replace")
