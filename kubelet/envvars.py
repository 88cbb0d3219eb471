"""A container's environment and command line, with Kubernetes' semantics.

- `container_env` builds the variables in Kubernetes' order: every `envFrom` source (configMapRef /
  secretRef, with `prefix`), then `env` entries, later ones winning. `value` may reference variables
  defined before it as `$(VAR)`; `valueFrom` reads a ConfigMap or Secret key (a missing object or key is
  an error unless `optional: true`), a pod field (`fieldRef`) or a resource limit (`resourceFieldRef`).
  Errors are `ConfigError` with Kubernetes' messages; the pod then shows CreateContainerConfigError.
- `expand` is Kubernetes' `$(VAR)` expansion: `$$` escapes, unknown references stay as written.
- `command_line` maps `command`/`args` onto Docker's Entrypoint/Cmd: `command` replaces the image's
  ENTRYPOINT (and drops its CMD), `args` replaces its CMD.

Pure functions: ConfigMaps and Secrets come in through `lookup(kind, namespace, name) -> obj | None`.
"""
from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable
from typing import Any

from api.quantity import cpu_millis, memory_bytes, parse_quantity

Obj = dict[str, Any]
Lookup = Callable[[str, str, str], Obj | None]

_LABEL_REF = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


class ConfigError(Exception):
    """The container cannot be configured (CreateContainerConfigError)."""


def expand(text: str, env: dict[str, str]) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2:end]
                    out.append(env[name] if name in env else text[i:end + 1])
                    i = end + 1
                    continue
        out.append(text[i])
        i += 1
    return "".join(out)


def object_data(kind: str, obj: Obj) -> dict[str, str]:
    """A ConfigMap's or Secret's keys as text (Secret values and binaryData are base64 on the wire)."""
    if kind == "secrets":
        data = {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in (obj.get("data") or {}).items()}
        data.update(obj.get("stringData") or {})
        return data
    data = dict(obj.get("data") or {})
    for k, v in (obj.get("binaryData") or {}).items():
        data[k] = base64.b64decode(v).decode("utf-8", "replace")
    return data


def _key_ref(kind: str, ref: Obj, namespace: str, lookup: Lookup) -> str | None:
    label = "ConfigMap" if kind == "configmaps" else "Secret"
    name, key, optional = ref.get("name", ""), ref.get("key", ""), bool(ref.get("optional"))
    obj = lookup(kind, namespace, name)
    if obj is None:
        if optional:
            return None
        raise ConfigError(f"{label.lower()} \"{name}\" not found")
    data = object_data(kind, obj)
    if key not in data:
        if optional:
            return None
        raise ConfigError(f"couldn't find key {key} in {label} {namespace}/{name}")
    return data[key]


def field_value(pod: Obj, path: str, *, pod_ip: str | None, host_ip: str) -> str:
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"), "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": host_ip, "status.hostIPs": host_ip,
        "status.podIP": pod_ip or "", "status.podIPs": pod_ip or "",
    }
    if path in simple:
        return str(simple[path] or "")
    m = _LABEL_REF.match(path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    raise ConfigError(f"unsupported fieldRef {path!r}")


def resource_value(container: Obj, ref: Obj) -> str:
    resource = ref.get("resource", "")
    section, _, name = resource.partition(".")
    res = container.get("resources") or {}
    value = (res.get(section) or {}).get(name)
    if value is None and section == "requests":
        value = (res.get("limits") or {}).get(name)
    if value is None:
        return "0"
    divisor = parse_quantity(ref.get("divisor") or "1")
    if name == "cpu":
        return str(math.ceil(cpu_millis(value) / 1000 / float(divisor)))
    return str(math.ceil(memory_bytes(value) / float(divisor)))


def container_env(pod: Obj, container: Obj, *, lookup: Lookup, pod_ip: str | None, host_ip: str,
                  service_env: dict[str, str] | None = None) -> dict[str, str]:
    """The container's environment: Kubernetes' service variables first, then envFrom, then env (later
    entries win and may refer to earlier ones with $(VAR))."""
    namespace = (pod.get("metadata") or {}).get("namespace", "default")
    env: dict[str, str] = dict(service_env or {})
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix") or ""
        for kind, field in (("configmaps", "configMapRef"), ("secrets", "secretRef")):
            ref = source.get(field)
            if ref is None:
                continue
            obj = lookup(kind, namespace, ref.get("name", ""))
            if obj is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f"{'configmap' if kind == 'configmaps' else 'secret'} \"{ref.get('name')}\" "
                                  f"not found")
            for k, v in object_data(kind, obj).items():
                env[prefix + k] = v
    for item in container.get("env") or []:
        name = item.get("name", "")
        source = item.get("valueFrom")
        if source is None:
            env[name] = expand(str(item.get("value") or ""), env)
            continue
        value: str | None
        if "configMapKeyRef" in source:
            value = _key_ref("configmaps", source["configMapKeyRef"], namespace, lookup)
        elif "secretKeyRef" in source:
            value = _key_ref("secrets", source["secretKeyRef"], namespace, lookup)
        elif "fieldRef" in source:
            value = field_value(pod, source["fieldRef"].get("fieldPath", ""), pod_ip=pod_ip, host_ip=host_ip)
        elif "resourceFieldRef" in source:
            value = resource_value(container, source["resourceFieldRef"])
        else:
            raise ConfigError(f"env {name}: unsupported valueFrom")
        if value is not None:
            env[name] = value
    return env


def command_line(container: Obj, env: dict[str, str]) -> tuple[list[str] | None, list[str] | None]:
    """(entrypoint, cmd) for Docker; None keeps the image's value."""
    command, args = container.get("command"), container.get("args")
    cmd = [expand(a, env) for a in args] if args is not None else None
    if command:
        return [expand(a, env) for a in command], cmd or []
    return None, cmd
