"""The downward API as files: a pod's own metadata and its containers' resources, rendered as Kubernetes does.

`files(pod, items, ...)` turns the `items` of a `downwardAPI` volume (or of a projected volume's
downwardAPI source) into `relative path -> (content, mode)` for the AtomicWriter:

- `fieldRef`: metadata.name/namespace/uid, metadata.labels and metadata.annotations (the whole map as
  `key="value"` lines sorted by key, values quoted like Go's `%q`, no trailing newline — Kubernetes'
  `fieldpath.FormatMap`), one entry `metadata.labels['k']`, spec.nodeName, spec.serviceAccountName,
  status.podIP and status.hostIP;
- `resourceFieldRef`: limits/requests cpu, memory and ephemeral-storage of the named container, divided
  by `divisor` and rounded up (Kubernetes' ConvertResourceCPUToString / ...MemoryToString).

Pure: the pod comes in as a dict; nothing is read from the API or the disk.
"""
from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from api.quantity import parse_quantity
from kubelet.envvars import ConfigError, field_value

Obj = dict[str, Any]


def go_quote(text: str) -> str:
    """Go's strconv.Quote (what `%q` prints): printable runes kept, the rest escaped."""
    named = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v",
             "\\": "\\\\", '"': '\\"'}
    out = []
    for ch in text:
        if ch in named:
            out.append(named[ch])
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def format_map(m: dict[str, str] | None) -> str:
    return "\n".join(f"{k}={go_quote(str(v))}" for k, v in sorted((m or {}).items()))


def field_text(pod: Obj, path: str, *, pod_ip: str | None, host_ip: str = "") -> str:
    meta = pod.get("metadata") or {}
    if path in ("metadata.labels", "metadata.annotations"):
        return format_map(meta.get(path.split(".", 1)[1]))
    return field_value(pod, path, pod_ip=pod_ip, host_ip=host_ip)


def resource_text(pod: Obj, ref: Obj) -> str:
    spec = pod.get("spec") or {}
    name = ref.get("containerName") or ""
    containers = (spec.get("containers") or []) + (spec.get("initContainers") or [])
    container = next((c for c in containers if c.get("name") == name), None)
    if container is None:
        raise ConfigError(f"resourceFieldRef: container {name!r} not found in the pod")
    resource = ref.get("resource", "")
    section, _, kind = resource.partition(".")
    if section not in ("limits", "requests") or kind not in ("cpu", "memory", "ephemeral-storage"):
        raise ConfigError(f"unsupported resourceFieldRef resource {resource!r}")
    res = container.get("resources") or {}
    value = (res.get(section) or {}).get(kind)
    if value is None and section == "requests":
        value = (res.get("limits") or {}).get(kind)
    if value is None:
        return "0"
    divisor = Decimal(parse_quantity(ref.get("divisor") or "1"))
    if divisor <= 0:
        raise ConfigError(f"resourceFieldRef {resource}: divisor must be positive")
    return str(math.ceil(Decimal(parse_quantity(value)) / divisor))


def files(pod: Obj, items: list[Obj], *, default_mode: int, pod_ip: str | None,
          host_ip: str = "") -> dict[str, tuple[bytes, int]]:
    out: dict[str, tuple[bytes, int]] = {}
    for item in items:
        path = item.get("path") or ""
        if "fieldRef" in item:
            text = field_text(pod, (item["fieldRef"] or {}).get("fieldPath", ""), pod_ip=pod_ip, host_ip=host_ip)
        elif "resourceFieldRef" in item:
            text = resource_text(pod, item["resourceFieldRef"] or {})
        else:
            raise ConfigError(f"downwardAPI item {path!r} has neither fieldRef nor resourceFieldRef")
        mode = item.get("mode")
        out[path] = (text.encode(), default_mode if mode is None else int(mode))
    return out


def uses_pod_ip(pod: Obj) -> bool:
    """Whether a downward API volume shows status.podIP (known only once the sandbox has its network)."""
    for v in (pod.get("spec") or {}).get("volumes") or []:
        sources = [v.get("downwardAPI")] + [s.get("downwardAPI") for s in (v.get("projected") or {}).get("sources")
                                            or []]
        for src in sources:
            for item in (src or {}).get("items") or []:
                if ((item.get("fieldRef") or {}).get("fieldPath") or "").startswith("status.podIP"):
                    return True
    return False
