"""Validation of objects as Kubernetes validates them.

Every validator returns a list of `Cause`s (empty = valid); the apiserver turns a non-empty list into a
422 Invalid `Status`. Field paths and messages copy Kubernetes' shapes (`spec.containers[0].image`,
`Required value`, `Invalid value: "x": <why>`, `Unsupported value: ...`, `field is immutable`) because
clients and people grep for them.

Bodies come straight from users and are plain JSON, so every access is type-checked: a wrong type is
one more cause, never an exception. Helper `_get` does this once for every field read.

`validate_object_meta` runs for every kind, then `VALIDATORS[kind](obj, old)`: `old` is None on create
and the stored object on update, where immutability rules apply. Validation runs after defaulting, so
fields Kubernetes always defaults (restartPolicy, protocols, ...) are checked only when present.
"""
from __future__ import annotations

import base64
import binascii
import copy
import ipaddress
import json
import re
import zoneinfo
from typing import Any, Callable

from api import quantity
from api.errors import Cause
from api.selectors import (
    label_value_errors,
    qualified_name_errors,
    selector_from_dict,
    validate_labels,
    validate_selector_dict,
)

Obj = dict[str, Any]
Causes = list[Cause]

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_ENV_VAR_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_PERCENT = re.compile(r"^[0-9]+%$")

_LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
              "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
              "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
_SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                  "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
                  "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
_MAX_ANNOTATIONS_BYTES = 256 * 1024
_MAX_CONFIG_BYTES = 1024 * 1024
_MAX_INT32 = 2**31 - 1


def is_dns1123_label(value: str) -> bool:
    return isinstance(value, str) and len(value) <= 63 and bool(_DNS1123_LABEL.match(value))


def is_dns1123_subdomain(value: str) -> bool:
    return isinstance(value, str) and len(value) <= 253 and bool(_DNS1123_SUBDOMAIN.match(value))


# --- causes --------------------------------------------------------------------------------------


def _show(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, sort_keys=True, default=str)


def required(path: str, detail: str = "") -> Cause:
    return Cause(path, "Required value" + (f": {detail}" if detail else ""), "FieldValueRequired")


def invalid(path: str, value: Any, why: str) -> Cause:
    return Cause(path, f"Invalid value: {_show(value)}: {why}", "FieldValueInvalid")


def not_supported(path: str, value: Any, supported: tuple[str, ...] | list[str]) -> Cause:
    allowed = ", ".join(json.dumps(s) for s in supported)
    return Cause(path, f"Unsupported value: {_show(value)}: supported values: {allowed}", "FieldValueNotSupported")


def duplicate(path: str, value: Any) -> Cause:
    return Cause(path, f"Duplicate value: {_show(value)}", "FieldValueDuplicate")


def forbidden(path: str, why: str) -> Cause:
    return Cause(path, f"Forbidden: {why}", "FieldValueForbidden")


def too_long(path: str, limit: int) -> Cause:
    return Cause(path, f"Too long: must have at most {limit} bytes", "FieldValueTooLong")


def not_found(path: str, value: Any) -> Cause:
    return Cause(path, f"Not found: {_show(value)}", "FieldValueNotFound")


def immutable(path: str, value: Any) -> Cause:
    return invalid(path, value, "field is immutable")


# --- typed access --------------------------------------------------------------------------------

_TYPE_NAMES = {dict: "an object", list: "a list", str: "a string", int: "an integer", bool: "a boolean"}


def _get(obj: Any, key: str, path: str, typ: type, causes: Causes) -> Any:
    """obj[key] if it has type `typ`; None when absent; None plus a cause when of another type.
    bool is not an int here although Python says so: JSON `true` is no replica count."""
    if not isinstance(obj, dict):
        return None
    value = obj.get(key)
    if value is None:
        return None
    ok = isinstance(value, typ) and not (typ is int and isinstance(value, bool))
    if not ok:
        causes.append(invalid(path, value, f"must be {_TYPE_NAMES[typ]}"))
        return None
    return value


def _items(obj: Any, key: str, path: str, causes: Causes) -> list[tuple[str, Obj]]:
    """(path, item) for each object in the list obj[key]; non-objects become causes."""
    out = []
    for i, item in enumerate(_get(obj, key, path, list, causes) or []):
        if isinstance(item, dict):
            out.append((f"{path}[{i}]", item))
        else:
            causes.append(invalid(f"{path}[{i}]", item, "must be an object"))
    return out


def _int_at_least(obj: Any, key: str, path: str, low: int, causes: Causes) -> int | None:
    value = _get(obj, key, path, int, causes)
    if value is not None and value < low:
        why = "must be greater than or equal to 0" if low == 0 else f"must be greater than {low - 1}"
        causes.append(invalid(path, value, why))
    return value


def _int_between(obj: Any, key: str, path: str, low: int, high: int, causes: Causes) -> int | None:
    value = _get(obj, key, path, int, causes)
    if value is not None and not low <= value <= high:
        causes.append(invalid(path, value, f"must be between {low} and {high}, inclusive"))
    return value


def _one_of(obj: Any, key: str, path: str, allowed: tuple[str, ...], causes: Causes) -> str | None:
    """obj[key] when it is one of `allowed`; absent or empty counts as unset (defaulting fills these)."""
    value = _get(obj, key, path, str, causes)
    if not value:
        return None
    if value not in allowed:
        causes.append(not_supported(path, value, allowed))
    return value


def _meta(obj: Any, key: str) -> Any:
    """obj.metadata[key], or None when either level is missing or not an object."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    return meta.get(key) if isinstance(meta, dict) else None


def _name_causes(value: Any, path: str, *, label: bool) -> Causes:
    """Causes for a DNS-1123 label (`label=True`) or subdomain name."""
    if not isinstance(value, str):
        return [invalid(path, value, "must be a string")]
    if label and not is_dns1123_label(value):
        if len(value) > 63:
            return [invalid(path, value, "must be no more than 63 characters")]
        return [invalid(path, value, _LABEL_MSG)]
    if not label and not is_dns1123_subdomain(value):
        if len(value) > 253:
            return [invalid(path, value, "must be no more than 253 characters")]
        return [invalid(path, value, _SUBDOMAIN_MSG)]
    return []


def _qualified_causes(value: Any, path: str) -> Causes:
    if not isinstance(value, str):
        return [invalid(path, value, "must be a string")]
    return [invalid(path, value, e) for e in qualified_name_errors(value)]


def _int_or_percent(obj: Any, key: str, path: str, causes: Causes) -> tuple[int, bool] | None:
    """(amount, is_percent) for an IntOrString like maxSurge; None when absent or invalid."""
    value = obj.get(key) if isinstance(obj, dict) else None
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            causes.append(invalid(path, value, "must be greater than or equal to 0"))
            return None
        return value, False
    if isinstance(value, str) and _PERCENT.match(value):
        return int(value[:-1]), True
    causes.append(invalid(path, value, "a valid percent string must be a numeric string followed by an ending "
                                       "'%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"))
    return None


def _iana_svc_name_errors(value: str) -> list[str]:
    if len(value) > 15:
        return ["must be no more than 15 characters"]
    if not _IANA_SVC_NAME.match(value):
        return ["must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"]
    if "--" in value:
        return ["must not contain consecutive hyphens"]
    if not re.search(r"[a-z]", value):
        return ["must contain at least one letter (a-z)"]
    return []


def _port_or_name(value: Any, path: str) -> Causes:
    """An IntOrString port: 1-65535, or an IANA service name."""
    if isinstance(value, int) and not isinstance(value, bool):
        return [] if 1 <= value <= 65535 else [invalid(path, value, "must be between 1 and 65535, inclusive")]
    if isinstance(value, str) and value:
        return [invalid(path, value, e) for e in _iana_svc_name_errors(value)]
    return [invalid(path, value, "must be an integer between 1 and 65535 or an IANA service name")]


# --- object meta ---------------------------------------------------------------------------------


def validate_object_meta(obj: Obj, *, namespaced: bool, old: Obj | None = None) -> Causes:
    """Checks every kind shares: name, namespace, labels, annotations, owners, finalizers, immutables."""
    causes: Causes = []
    if not isinstance(obj, dict):
        return [invalid("", obj, "must be an object")]
    meta = _get(obj, "metadata", "metadata", dict, causes)
    if meta is None:
        return causes or [required("metadata")]
    name = meta.get("name")
    if not name:
        causes.append(required("metadata.name", "name or generateName is required"))
    else:
        causes += _name_causes(name, "metadata.name", label=False)
    causes += _validate_namespace_field(meta, namespaced)
    if meta.get("labels") is not None:
        causes += validate_labels(meta["labels"], "metadata.labels")
    causes += _validate_annotations(meta.get("annotations"), "metadata.annotations")
    causes += _validate_owner_references(meta.get("ownerReferences"), "metadata.ownerReferences")
    for i, fin in enumerate(_get(meta, "finalizers", "metadata.finalizers", list, causes) or []):
        causes += _qualified_causes(fin, f"metadata.finalizers[{i}]")
    if isinstance(old, dict) and isinstance(old.get("metadata"), dict):
        causes += _validate_meta_update(meta, old["metadata"])
    return causes


def _validate_namespace_field(meta: Obj, namespaced: bool) -> Causes:
    namespace = meta.get("namespace")
    if not namespaced:
        return [forbidden("metadata.namespace", "not allowed on this type")] if namespace else []
    if not namespace:
        return [required("metadata.namespace")]
    return _name_causes(namespace, "metadata.namespace", label=True)


def _validate_annotations(annotations: Any, path: str) -> Causes:
    if annotations is None:
        return []
    if not isinstance(annotations, dict):
        return [invalid(path, annotations, "must be a map of string keys to string values")]
    causes: Causes = []
    total = 0
    for key, value in annotations.items():
        # Kubernetes checks annotation keys case-insensitively.
        causes += [invalid(path, key, e) for e in qualified_name_errors(key.lower())]
        if not isinstance(value, str):
            causes.append(invalid(f"{path}[{key}]", value, "must be a string"))
            continue
        total += len(key.encode()) + len(value.encode())
    if total > _MAX_ANNOTATIONS_BYTES:
        causes.append(too_long(path, _MAX_ANNOTATIONS_BYTES))
    return causes


def _validate_owner_references(refs: Any, path: str) -> Causes:
    causes: Causes = []
    controllers = []
    for p, ref in _items({"r": refs}, "r", path, causes):
        for key in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(key) or not isinstance(ref.get(key), str):
                causes.append(required(f"{p}.{key}"))
        for key in ("controller", "blockOwnerDeletion"):
            _get(ref, key, f"{p}.{key}", bool, causes)
        if ref.get("controller") is True:
            controllers.append(ref.get("name"))
    if len(controllers) > 1:
        causes.append(invalid(path, refs, "Only one reference can have Controller set to true. Found \"true\" "
                                          f"in references for {' and '.join(map(str, controllers))}"))
    return causes


def _validate_meta_update(meta: Obj, old_meta: Obj) -> Causes:
    causes: Causes = []
    for key in ("name", "namespace"):
        if meta.get(key) != old_meta.get(key):
            causes.append(immutable(f"metadata.{key}", meta.get(key)))
    # The apiserver copies uid/creationTimestamp from the stored object when an update omits them.
    for key in ("uid", "creationTimestamp"):
        if meta.get(key) and old_meta.get(key) and meta[key] != old_meta[key]:
            causes.append(immutable(f"metadata.{key}", meta[key]))
    return causes


# --- pod spec ------------------------------------------------------------------------------------

RESTART_POLICIES = ("Always", "OnFailure", "Never")
DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
PROTOCOLS = ("SCTP", "TCP", "UDP")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
VOLUME_SOURCES = ("emptyDir", "hostPath", "configMap", "secret", "persistentVolumeClaim", "projected",
                  "downwardAPI")
# Kubernetes volume types we do not serve: recognised only to give "unsupported" rather than "missing".
_FOREIGN_VOLUME_SOURCES = ("nfs", "iscsi", "gitRepo", "ephemeral", "csi", "cephfs", "rbd", "awsElasticBlockStore",
                           "gcePersistentDisk", "azureDisk", "azureFile", "fc", "flexVolume", "glusterfs", "image")
HOST_PATH_TYPES = ("", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice",
                   "BlockDevice")
TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_PROBE_HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")
_LIFECYCLE_HANDLERS = ("exec", "httpGet", "tcpSocket", "sleep")


def validate_pod_spec(spec: Any, path: str) -> Causes:
    """Causes for a PodSpec found at `path` (`spec`, or `spec.template.spec` in workloads)."""
    if spec is None:
        return [required(path)]
    if not isinstance(spec, dict):
        return [invalid(path, spec, "must be an object")]
    causes: Causes = []
    volumes = _validate_volumes(spec, f"{path}.volumes", causes)
    containers = _items(spec, "containers", f"{path}.containers", causes)
    if not containers and not any(c.field == f"{path}.containers" for c in causes):
        causes.append(required(f"{path}.containers"))
    names: set[str] = set()
    port_names: set[str] = set()
    host_network = spec.get("hostNetwork") is True
    for list_name in ("initContainers", "containers", "ephemeralContainers"):
        items = containers if list_name == "containers" else _items(spec, list_name, f"{path}.{list_name}", causes)
        for p, container in items:
            causes += _validate_container(container, p, kind=list_name, volumes=volumes, names=names,
                                          port_names=port_names, host_network=host_network)
    _one_of(spec, "restartPolicy", f"{path}.restartPolicy", RESTART_POLICIES, causes)
    causes += _validate_dns(spec, path)
    _int_at_least(spec, "terminationGracePeriodSeconds", f"{path}.terminationGracePeriodSeconds", 0, causes)
    _int_between(spec, "activeDeadlineSeconds", f"{path}.activeDeadlineSeconds", 1, _MAX_INT32, causes)
    for key, label in (("serviceAccountName", False), ("nodeName", False), ("hostname", True),
                       ("subdomain", True)):
        value = _get(spec, key, f"{path}.{key}", str, causes)
        if value:
            causes += _name_causes(value, f"{path}.{key}", label=label)
    for key in ("hostNetwork", "hostPID", "hostIPC", "enableServiceLinks", "automountServiceAccountToken"):
        _get(spec, key, f"{path}.{key}", bool, causes)
    if spec.get("nodeSelector") is not None:
        causes += validate_labels(spec["nodeSelector"], f"{path}.nodeSelector")
    for p, ref in _items(spec, "imagePullSecrets", f"{path}.imagePullSecrets", causes):
        if not ref.get("name"):
            causes.append(required(f"{p}.name"))
    for p, tol in _items(spec, "tolerations", f"{path}.tolerations", causes):
        causes += _validate_toleration(tol, p)
    return causes


def _validate_dns(spec: Obj, path: str) -> Causes:
    causes: Causes = []
    policy = _one_of(spec, "dnsPolicy", f"{path}.dnsPolicy", DNS_POLICIES, causes)
    config = _get(spec, "dnsConfig", f"{path}.dnsConfig", dict, causes)
    nameservers = _get(config, "nameservers", f"{path}.dnsConfig.nameservers", list, causes) or []
    if policy == "None" and not nameservers:
        causes.append(required(f"{path}.dnsConfig.nameservers",
                               "must provide at least one DNS nameserver when `dnsPolicy` is None"))
    if len(nameservers) > 3:
        causes.append(invalid(f"{path}.dnsConfig.nameservers", nameservers, "must not have more than 3 nameservers"))
    for i, server in enumerate(nameservers):
        causes += _ip_causes(server, f"{path}.dnsConfig.nameservers[{i}]")
    return causes


def _validate_toleration(tol: Obj, path: str) -> Causes:
    causes: Causes = []
    key = _get(tol, "key", f"{path}.key", str, causes) or ""
    operator = _one_of(tol, "operator", f"{path}.operator", ("Equal", "Exists"), causes) or "Equal"
    value = _get(tol, "value", f"{path}.value", str, causes) or ""
    effect = _one_of(tol, "effect", f"{path}.effect", TOLERATION_EFFECTS, causes)
    if key:
        causes += _qualified_causes(key, f"{path}.key")
    elif operator != "Exists":
        causes.append(invalid(f"{path}.operator", operator, "operator must be Exists when `key` is empty, "
                                                            "which means \"match all values and all keys\""))
    if operator == "Exists" and value:
        causes.append(invalid(f"{path}.operator", value, "value must be empty when `operator` is 'Exists'"))
    elif value:
        causes += [invalid(f"{path}.value", value, e) for e in label_value_errors(value)]
    seconds = _get(tol, "tolerationSeconds", f"{path}.tolerationSeconds", int, causes)
    if seconds is not None and effect != "NoExecute":
        causes.append(invalid(f"{path}.effect", effect or "",
                              "effect must be 'NoExecute' when `tolerationSeconds` is set"))
    return causes


def _validate_container(c: Obj, path: str, *, kind: str, volumes: set[str], names: set[str],
                        port_names: set[str], host_network: bool) -> Causes:
    causes: Causes = []
    name = c.get("name")
    if not name:
        causes.append(required(f"{path}.name"))
    else:
        causes += _name_causes(name, f"{path}.name", label=True)
        if isinstance(name, str) and name in names:
            causes.append(duplicate(f"{path}.name", name))
        elif isinstance(name, str):
            names.add(name)
    image = _get(c, "image", f"{path}.image", str, causes)
    if c.get("image") in (None, ""):
        causes.append(required(f"{path}.image"))
    elif image and image != image.strip():
        causes.append(invalid(f"{path}.image", image, "must not have leading or trailing whitespace"))
    _one_of(c, "imagePullPolicy", f"{path}.imagePullPolicy", PULL_POLICIES, causes)
    _one_of(c, "terminationMessagePolicy", f"{path}.terminationMessagePolicy", ("File", "FallbackToLogsOnError"),
            causes)
    for key in ("command", "args"):
        for i, arg in enumerate(_get(c, key, f"{path}.{key}", list, causes) or []):
            if not isinstance(arg, str):
                causes.append(invalid(f"{path}.{key}[{i}]", arg, "must be a string"))
    sidecar = kind == "initContainers" and c.get("restartPolicy") == "Always"
    if kind == "initContainers":
        _one_of(c, "restartPolicy", f"{path}.restartPolicy", ("Always",), causes)
    causes += _validate_ports(c, f"{path}.ports", port_names, host_network)
    causes += _validate_env(c, path)
    causes += _validate_volume_mounts(c, f"{path}.volumeMounts", volumes)
    causes += _validate_resources(c.get("resources"), f"{path}.resources")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        if c.get(probe) is None:
            continue
        if kind != "containers" and not sidecar:
            causes.append(forbidden(f"{path}.{probe}", f"may not be set for {kind}"))
            continue
        causes += _validate_probe(c[probe], f"{path}.{probe}", probe)
    lifecycle = _get(c, "lifecycle", f"{path}.lifecycle", dict, causes) or {}
    for hook in ("postStart", "preStop"):
        handler = _get(lifecycle, hook, f"{path}.lifecycle.{hook}", dict, causes)
        if handler is not None:
            causes += _validate_handler(handler, f"{path}.lifecycle.{hook}", _LIFECYCLE_HANDLERS)
    return causes


def _validate_ports(c: Obj, path: str, port_names: set[str], host_network: bool) -> Causes:
    causes: Causes = []
    for p, port in _items(c, "ports", path, causes):
        container_port = port.get("containerPort")
        if container_port is None:
            causes.append(required(f"{p}.containerPort"))
        else:
            _int_between(port, "containerPort", f"{p}.containerPort", 1, 65535, causes)
        host_port = _get(port, "hostPort", f"{p}.hostPort", int, causes)
        if host_port:
            _int_between(port, "hostPort", f"{p}.hostPort", 1, 65535, causes)
            if host_network and host_port != container_port:
                causes.append(invalid(f"{p}.containerPort", container_port,
                                      "must match `hostPort` when `hostNetwork` is true"))
        _one_of(port, "protocol", f"{p}.protocol", PROTOCOLS, causes)
        name = _get(port, "name", f"{p}.name", str, causes)
        if name:
            causes += [invalid(f"{p}.name", name, e) for e in _iana_svc_name_errors(name)]
            if name in port_names:
                causes.append(duplicate(f"{p}.name", name))
            port_names.add(name)
    return causes


def _validate_env(c: Obj, path: str) -> Causes:
    causes: Causes = []
    for p, env in _items(c, "env", f"{path}.env", causes):
        name = env.get("name")
        if not name:
            causes.append(required(f"{p}.name"))
        elif not isinstance(name, str) or not _ENV_VAR_NAME.match(name):
            causes.append(invalid(f"{p}.name", name, "a valid environment variable name must consist of alphabetic "
                                                      "characters, digits, '_', '-', or '.', and must not start "
                                                      "with a digit"))
        value = _get(env, "value", f"{p}.value", str, causes)
        source = _get(env, "valueFrom", f"{p}.valueFrom", dict, causes)
        if source is None:
            continue
        if value:
            causes.append(invalid(f"{p}.valueFrom", "", "may not be specified when `value` is not empty"))
        kinds = [k for k in ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef") if source.get(k)]
        if not kinds:
            causes.append(invalid(f"{p}.valueFrom", "", "must specify one of: `fieldRef`, `resourceFieldRef`, "
                                                         "`configMapKeyRef` or `secretKeyRef`"))
        elif len(kinds) > 1:
            causes.append(invalid(f"{p}.valueFrom", "", "may not have more than one field specified at a time"))
        for ref in ("configMapKeyRef", "secretKeyRef"):
            sel = _get(source, ref, f"{p}.valueFrom.{ref}", dict, causes)
            if sel is not None and not sel.get("key"):
                causes.append(required(f"{p}.valueFrom.{ref}.key"))
        field_ref = _get(source, "fieldRef", f"{p}.valueFrom.fieldRef", dict, causes)
        if field_ref is not None and not field_ref.get("fieldPath"):
            causes.append(required(f"{p}.valueFrom.fieldRef.fieldPath"))
    for p, src in _items(c, "envFrom", f"{path}.envFrom", causes):
        refs = [k for k in ("configMapRef", "secretRef") if src.get(k) is not None]
        if len(refs) != 1:
            causes.append(invalid(p, "", "must specify one of: `configMapRef` or `secretRef`"))
    return causes


def _validate_volume_mounts(c: Obj, path: str, volumes: set[str]) -> Causes:
    causes: Causes = []
    mount_paths: set[str] = set()
    for p, mount in _items(c, "volumeMounts", path, causes):
        name = _get(mount, "name", f"{p}.name", str, causes)
        if not name:
            causes.append(required(f"{p}.name"))
        elif name not in volumes:
            causes.append(not_found(f"{p}.name", name))
        mount_path = _get(mount, "mountPath", f"{p}.mountPath", str, causes)
        if not mount_path:
            causes.append(required(f"{p}.mountPath"))
        elif mount_path in mount_paths:
            causes.append(invalid(f"{p}.mountPath", mount_path, "must be unique"))
        else:
            mount_paths.add(mount_path)
        sub_path = _get(mount, "subPath", f"{p}.subPath", str, causes)
        if sub_path:
            causes += _relative_path_causes(sub_path, f"{p}.subPath")
        _get(mount, "readOnly", f"{p}.readOnly", bool, causes)
    return causes


def _relative_path_causes(value: str, path: str) -> Causes:
    if value.startswith("/"):
        return [invalid(path, value, "must be a relative path")]
    if ".." in value.split("/"):
        return [invalid(path, value, "must not contain '..'")]
    return []


def _validate_resources(resources: Any, path: str) -> Causes:
    if resources is None:
        return []
    if not isinstance(resources, dict):
        return [invalid(path, resources, "must be an object")]
    causes: Causes = []
    parsed: dict[str, dict[str, Any]] = {}
    for section in ("limits", "requests"):
        values = _get(resources, section, f"{path}.{section}", dict, causes) or {}
        parsed[section] = {}
        for name, raw in values.items():
            p = f"{path}.{section}[{name}]"
            causes += [invalid(p, name, e) for e in qualified_name_errors(name)]
            try:
                q = quantity.parse_quantity(raw)
            except ValueError as exc:
                causes.append(invalid(p, raw, str(exc)))
                continue
            if q < 0:
                causes.append(invalid(p, raw, "must be greater than or equal to 0"))
            parsed[section][name] = q
    for name, request in parsed["requests"].items():
        limit = parsed["limits"].get(name)
        if limit is not None and request > limit:
            raw_limit = resources["limits"][name]
            causes.append(invalid(f"{path}.requests[{name}]", resources["requests"][name],
                                  f"must be less than or equal to {name} limit of {raw_limit}"))
    return causes


def _validate_handler(handler: Obj, path: str, allowed: tuple[str, ...]) -> Causes:
    present = [h for h in allowed if handler.get(h) is not None]
    if not present:
        return [required(path, "must specify a handler type")]
    if len(present) > 1:
        return [forbidden(f"{path}.{present[1]}", "may not specify more than 1 handler type")]
    causes: Causes = []
    kind = present[0]
    body = _get(handler, kind, f"{path}.{kind}", dict, causes)
    if body is None:
        return causes
    if kind == "exec" and not _get(body, "command", f"{path}.exec.command", list, causes):
        causes.append(required(f"{path}.exec.command"))
    if kind in ("httpGet", "tcpSocket"):
        if body.get("port") is None:
            causes.append(required(f"{path}.{kind}.port"))
        else:
            causes += _port_or_name(body["port"], f"{path}.{kind}.port")
    if kind == "httpGet":
        _one_of(body, "scheme", f"{path}.httpGet.scheme", ("HTTP", "HTTPS"), causes)
    if kind == "grpc":
        _int_between(body, "port", f"{path}.grpc.port", 1, 65535, causes)
    if kind == "sleep":
        _int_at_least(body, "seconds", f"{path}.sleep.seconds", 0, causes)
    return causes


def _validate_probe(probe: Any, path: str, which: str) -> Causes:
    if not isinstance(probe, dict):
        return [invalid(path, probe, "must be an object")]
    causes = _validate_handler(probe, path, _PROBE_HANDLERS)
    for key in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"):
        _int_at_least(probe, key, f"{path}.{key}", 0, causes)
    success = probe.get("successThreshold")
    if which != "readinessProbe" and isinstance(success, int) and success != 1:
        causes.append(invalid(f"{path}.successThreshold", success, "must be 1"))
    grace = probe.get("terminationGracePeriodSeconds")
    if grace is not None:
        if which == "readinessProbe":
            causes.append(invalid(f"{path}.terminationGracePeriodSeconds", grace,
                                  "must not be set for readinessProbes"))
        else:
            _int_at_least(probe, "terminationGracePeriodSeconds", f"{path}.terminationGracePeriodSeconds", 1, causes)
    return causes


def _validate_volumes(spec: Obj, path: str, causes: Causes) -> set[str]:
    """Validate `volumes`, appending to causes; returns the volume names for volumeMount checks."""
    names: set[str] = set()
    for p, vol in _items(spec, "volumes", path, causes):
        name = vol.get("name")
        if not name:
            causes.append(required(f"{p}.name"))
        else:
            causes += _name_causes(name, f"{p}.name", label=True)
            if isinstance(name, str) and name in names:
                causes.append(duplicate(f"{p}.name", name))
            elif isinstance(name, str):
                names.add(name)
        sources = [s for s in VOLUME_SOURCES if s in vol and vol[s] is not None]
        if len(sources) > 1:
            causes.append(forbidden(f"{p}.{sources[1]}", "may not specify more than 1 volume type"))
        elif not sources:
            foreign = [s for s in _FOREIGN_VOLUME_SOURCES if vol.get(s) is not None]
            if foreign:
                causes.append(not_supported(f"{p}.{foreign[0]}", foreign[0], VOLUME_SOURCES))
            else:
                causes.append(required(p, "must specify a volume type"))
        else:
            causes += _validate_volume_source(sources[0], vol[sources[0]], f"{p}.{sources[0]}")
    return names


def _validate_volume_source(kind: str, src: Any, path: str) -> Causes:
    if not isinstance(src, dict):
        return [invalid(path, src, "must be an object")]
    causes: Causes = []
    name_key = {"configMap": "name", "secret": "secretName", "persistentVolumeClaim": "claimName",
                "hostPath": "path"}.get(kind)
    if name_key and not _get(src, name_key, f"{path}.{name_key}", str, causes):
        causes.append(required(f"{path}.{name_key}"))
    if kind == "hostPath":
        _one_of(src, "type", f"{path}.type", HOST_PATH_TYPES, causes)
    if kind == "emptyDir":
        _one_of(src, "medium", f"{path}.medium", ("", "Memory"), causes)
        if src.get("sizeLimit") is not None:
            try:
                quantity.parse_quantity(src["sizeLimit"])
            except ValueError as exc:
                causes.append(invalid(f"{path}.sizeLimit", src["sizeLimit"], str(exc)))
    if kind in ("configMap", "secret", "downwardAPI", "projected"):
        mode = _get(src, "defaultMode", f"{path}.defaultMode", int, causes)
        if mode is not None and not 0 <= mode <= 0o777:
            causes.append(invalid(f"{path}.defaultMode", mode,
                                  "must be a number between 0 and 0777 (octal), both inclusive"))
    if kind in ("configMap", "secret", "downwardAPI"):
        for p, item in _items(src, "items", f"{path}.items", causes):
            if kind != "downwardAPI" and not item.get("key"):
                causes.append(required(f"{p}.key"))
            item_path = _get(item, "path", f"{p}.path", str, causes)
            if not item_path:
                causes.append(required(f"{p}.path"))
            else:
                causes += _relative_path_causes(item_path, f"{p}.path")
    if kind == "projected" and not isinstance(src.get("sources"), (list, type(None))):
        causes.append(invalid(f"{path}.sources", src["sources"], "must be a list"))
    return causes


def _validate_pod_template(template: Any, path: str, *, restart_policies: tuple[str, ...]) -> Causes:
    """A PodTemplateSpec: labels/annotations, the pod spec, and the restart policies the owner allows."""
    if template is None:
        return [required(path)]
    if not isinstance(template, dict):
        return [invalid(path, template, "must be an object")]
    causes: Causes = []
    meta = _get(template, "metadata", f"{path}.metadata", dict, causes) or {}
    if meta.get("labels") is not None:
        causes += validate_labels(meta["labels"], f"{path}.metadata.labels")
    causes += _validate_annotations(meta.get("annotations"), f"{path}.metadata.annotations")
    spec = template.get("spec")
    causes += validate_pod_spec(spec, f"{path}.spec")
    policy = spec.get("restartPolicy") if isinstance(spec, dict) else None
    if isinstance(policy, str) and policy in RESTART_POLICIES and policy not in restart_policies:
        causes.append(not_supported(f"{path}.spec.restartPolicy", policy, restart_policies))
    return causes


# --- Pod -----------------------------------------------------------------------------------------

_POD_MUTABLE_MSG = ("pod updates may not change fields other than `spec.containers[*].image`,"
                    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
                    "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds`")


def validate_pod(obj: Obj, old: Obj | None) -> Causes:
    causes = validate_pod_spec(obj.get("spec"), "spec")
    if isinstance(old, dict) and isinstance(old.get("spec"), dict) and isinstance(obj.get("spec"), dict):
        causes += _validate_pod_spec_update(obj["spec"], old["spec"])
    return causes


def _validate_pod_spec_update(new: Obj, old: Obj) -> Causes:
    """Only images, activeDeadlineSeconds, added tolerations and the grace period may change: overlay those
    from the new spec onto the old one; any remaining difference is forbidden."""
    causes: Causes = []
    candidate = copy.deepcopy(old)
    for list_name in ("containers", "initContainers"):
        new_list, cand_list = new.get(list_name), candidate.get(list_name)
        if isinstance(new_list, list) and isinstance(cand_list, list) and len(new_list) == len(cand_list):
            for new_c, cand_c in zip(new_list, cand_list):
                if isinstance(new_c, dict) and isinstance(cand_c, dict) and "image" in new_c:
                    cand_c["image"] = new_c["image"]
    old_deadline, new_deadline = old.get("activeDeadlineSeconds"), new.get("activeDeadlineSeconds")
    if isinstance(old_deadline, int) and old_deadline != new_deadline:
        if new_deadline is None:
            causes.append(invalid("spec.activeDeadlineSeconds", None, "must not update from a positive integer "
                                                                     "to nil value"))
        elif isinstance(new_deadline, int) and new_deadline > old_deadline:
            causes.append(invalid("spec.activeDeadlineSeconds", new_deadline,
                                  "must be less than or equal to previous value"))
    _overlay(candidate, new, "activeDeadlineSeconds")
    _overlay(candidate, new, "terminationGracePeriodSeconds")
    old_tols = old.get("tolerations") or []
    new_tols = new.get("tolerations") or []
    if isinstance(new_tols, list) and isinstance(old_tols, list) and all(t in new_tols for t in old_tols):
        _overlay(candidate, new, "tolerations")
    if candidate != new:
        causes.append(forbidden("spec", _POD_MUTABLE_MSG))
    return causes


def _overlay(target: Obj, source: Obj, key: str) -> None:
    if key in source:
        target[key] = copy.deepcopy(source[key])
    else:
        target.pop(key, None)


# --- Service / Endpoints -------------------------------------------------------------------------

SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")


def _ip_causes(value: Any, path: str, *, endpoint: bool = False) -> Causes:
    try:
        ip = ipaddress.ip_address(value if isinstance(value, str) else "")
    except ValueError:
        return [invalid(path, value, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")]
    if endpoint:
        if ip.is_unspecified:
            return [invalid(path, value, "may not be unspecified (0.0.0.0)")]
        if ip.is_loopback:
            return [invalid(path, value, "may not be in the loopback range (127.0.0.0/8, ::1/128)")]
        if ip.is_link_local:
            return [invalid(path, value, "may not be in the link-local range (169.254.0.0/16, fe80::/10)")]
        if ip.is_multicast:
            return [invalid(path, value, "may not be in the multicast range (224.0.0.0/4, ff00::/8)")]
    return []


def _label_name_causes(obj: Obj) -> Causes:
    """For kinds whose names must be DNS-1123 labels; subdomain violations are already reported by meta."""
    name = _meta(obj, "name")
    if is_dns1123_subdomain(name) and not is_dns1123_label(name):
        return _name_causes(name, "metadata.name", label=True)
    return []


def validate_service(obj: Obj, old: Obj | None) -> Causes:
    causes = _label_name_causes(obj)
    spec = _get(obj, "spec", "spec", dict, causes)
    if spec is None:
        return causes + ([] if "spec" in obj and obj["spec"] is not None else [required("spec")])
    svc_type = _one_of(spec, "type", "spec.type", SERVICE_TYPES, causes) or "ClusterIP"
    cluster_ip = _get(spec, "clusterIP", "spec.clusterIP", str, causes) or ""
    headless = cluster_ip == "None"
    if svc_type == "ExternalName":
        name = _get(spec, "externalName", "spec.externalName", str, causes)
        if not name:
            causes.append(required("spec.externalName"))
        else:
            causes += _name_causes(name.rstrip("."), "spec.externalName", label=False)
        if cluster_ip:
            causes.append(forbidden("spec.clusterIP", "may not be set for ExternalName services"))
    elif headless:
        if svc_type != "ClusterIP":
            causes.append(invalid("spec.clusterIP", cluster_ip, f"may not be set to 'None' for {svc_type} services"))
    elif cluster_ip:
        causes += _ip_causes(cluster_ip, "spec.clusterIP")
    causes += _validate_service_ports(spec, svc_type, needed=svc_type != "ExternalName" and not headless)
    if spec.get("selector") is not None:
        causes += validate_labels(spec["selector"], "spec.selector")
    causes += _validate_session_affinity(spec)
    policy = _one_of(spec, "externalTrafficPolicy", "spec.externalTrafficPolicy", ("Cluster", "Local"), causes)
    if policy and svc_type not in ("NodePort", "LoadBalancer"):
        causes.append(invalid("spec.externalTrafficPolicy", policy,
                              "may only be set when `type` is 'NodePort' or 'LoadBalancer'"))
    _one_of(spec, "internalTrafficPolicy", "spec.internalTrafficPolicy", ("Cluster", "Local"), causes)
    _one_of(spec, "ipFamilyPolicy", "spec.ipFamilyPolicy", ("SingleStack", "PreferDualStack", "RequireDualStack"),
            causes)
    for i, family in enumerate(_get(spec, "ipFamilies", "spec.ipFamilies", list, causes) or []):
        if family not in ("IPv4", "IPv6"):
            causes.append(not_supported(f"spec.ipFamilies[{i}]", family, ("IPv4", "IPv6")))
    if isinstance(old, dict) and isinstance(old.get("spec"), dict):
        causes += _validate_service_update(spec, old["spec"])
    return causes


def _validate_service_ports(spec: Obj, svc_type: str, *, needed: bool) -> Causes:
    causes: Causes = []
    ports = _items(spec, "ports", "spec.ports", causes)
    if not ports and needed and not causes:
        causes.append(required("spec.ports"))
    names: set[str] = set()
    seen: set[tuple[Any, Any]] = set()
    for p, port in ports:
        name = _get(port, "name", f"{p}.name", str, causes)
        if not name:
            if len(ports) > 1:
                causes.append(required(f"{p}.name"))
        else:
            causes += _name_causes(name, f"{p}.name", label=True)
            if isinstance(name, str) and name in names:
                causes.append(duplicate(f"{p}.name", name))
            names.add(name)
        if port.get("port") is None:
            causes.append(required(f"{p}.port"))
        else:
            _int_between(port, "port", f"{p}.port", 1, 65535, causes)
        protocol = _one_of(port, "protocol", f"{p}.protocol", PROTOCOLS, causes) or "TCP"
        number = port.get("port")
        if isinstance(number, int):
            if (number, protocol) in seen:
                causes.append(duplicate(p, {"port": number, "protocol": protocol}))
            seen.add((number, protocol))
        if port.get("targetPort") is not None:
            causes += _port_or_name(port["targetPort"], f"{p}.targetPort")
        node_port = _get(port, "nodePort", f"{p}.nodePort", int, causes)
        if node_port:
            if svc_type == "ClusterIP":
                causes.append(forbidden(f"{p}.nodePort", "may not be used when `type` is 'ClusterIP'"))
            else:
                _int_between(port, "nodePort", f"{p}.nodePort", 1, 65535, causes)
    return causes


def _validate_session_affinity(spec: Obj) -> Causes:
    causes: Causes = []
    affinity = _one_of(spec, "sessionAffinity", "spec.sessionAffinity", ("None", "ClientIP"), causes)
    config = _get(spec, "sessionAffinityConfig", "spec.sessionAffinityConfig", dict, causes)
    client_ip = _get(config, "clientIP", "spec.sessionAffinityConfig.clientIP", dict, causes)
    if client_ip is None:
        return causes
    if affinity != "ClientIP":
        causes.append(forbidden("spec.sessionAffinityConfig",
                                f"must not be set when `sessionAffinity` is {affinity or 'None'}"))
    path = "spec.sessionAffinityConfig.clientIP.timeoutSeconds"
    timeout = _get(client_ip, "timeoutSeconds", path, int, causes)
    if timeout is not None and not 0 < timeout <= 86400:
        causes.append(invalid(path, timeout, "must be greater than 0 and less than 86400"))
    return causes


def _validate_service_update(spec: Obj, old_spec: Obj) -> Causes:
    # The cluster IP may change only when the service becomes or stops being an ExternalName.
    if "ExternalName" in (spec.get("type"), old_spec.get("type")):
        return []
    if (spec.get("clusterIP") or "") != (old_spec.get("clusterIP") or ""):
        return [immutable("spec.clusterIP", spec.get("clusterIP") or "")]
    return []


def validate_endpoints(obj: Obj, old: Obj | None) -> Causes:
    causes: Causes = []
    for p, subset in _items(obj, "subsets", "subsets", causes):
        for key in ("addresses", "notReadyAddresses"):
            for ap, address in _items(subset, key, f"{p}.{key}", causes):
                if not address.get("ip"):
                    causes.append(required(f"{ap}.ip"))
                else:
                    causes += _ip_causes(address["ip"], f"{ap}.ip", endpoint=True)
                hostname = _get(address, "hostname", f"{ap}.hostname", str, causes)
                if hostname:
                    causes += _name_causes(hostname, f"{ap}.hostname", label=True)
                node_name = _get(address, "nodeName", f"{ap}.nodeName", str, causes)
                if node_name:
                    causes += _name_causes(node_name, f"{ap}.nodeName", label=False)
        ports = _items(subset, "ports", f"{p}.ports", causes)
        for pp, port in ports:
            name = _get(port, "name", f"{pp}.name", str, causes)
            if name:
                causes += _name_causes(name, f"{pp}.name", label=True)
            elif len(ports) > 1:
                causes.append(required(f"{pp}.name"))
            if port.get("port") is None:
                causes.append(required(f"{pp}.port"))
            else:
                _int_between(port, "port", f"{pp}.port", 1, 65535, causes)
            _one_of(port, "protocol", f"{pp}.protocol", PROTOCOLS, causes)
    return causes


# --- Namespace / Node ----------------------------------------------------------------------------


def validate_namespace(obj: Obj, old: Obj | None) -> Causes:
    causes = _label_name_causes(obj)
    spec = _get(obj, "spec", "spec", dict, causes) or {}
    for i, fin in enumerate(_get(spec, "finalizers", "spec.finalizers", list, causes) or []):
        path = f"spec.finalizers[{i}]"
        found = _qualified_causes(fin, path)
        if not found and "/" not in fin and fin != "kubernetes":
            found = [invalid(path, fin, "name is neither a standard finalizer name nor is it fully qualified")]
        causes += found
    return causes


def validate_node(obj: Obj, old: Obj | None) -> Causes:
    causes: Causes = []
    spec = _get(obj, "spec", "spec", dict, causes) or {}
    cidrs = []
    pod_cidr = _get(spec, "podCIDR", "spec.podCIDR", str, causes)
    if pod_cidr:
        cidrs.append(("spec.podCIDR", pod_cidr))
    for i, cidr in enumerate(_get(spec, "podCIDRs", "spec.podCIDRs", list, causes) or []):
        cidrs.append((f"spec.podCIDRs[{i}]", cidr))
    for path, cidr in cidrs:
        try:
            ipaddress.ip_network(cidr if isinstance(cidr, str) else "", strict=False)
        except ValueError:
            causes.append(invalid(path, cidr, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"))
    _get(spec, "unschedulable", "spec.unschedulable", bool, causes)
    seen = set()
    for p, taint in _items(spec, "taints", "spec.taints", causes):
        key = taint.get("key")
        if not key:
            causes.append(required(f"{p}.key"))
        else:
            causes += _qualified_causes(key, f"{p}.key")
        value = _get(taint, "value", f"{p}.value", str, causes)
        if value:
            causes += [invalid(f"{p}.value", value, e) for e in label_value_errors(value)]
        effect = taint.get("effect")
        if not effect:
            causes.append(required(f"{p}.effect"))
        else:
            _one_of(taint, "effect", f"{p}.effect", TOLERATION_EFFECTS, causes)
        if (repr(key), repr(effect)) in seen:
            causes.append(duplicate(p, {"key": key, "effect": effect}))
        seen.add((repr(key), repr(effect)))
    if isinstance(old, dict) and isinstance(old.get("spec"), dict):
        old_spec = old["spec"]
        for key in ("podCIDR", "podCIDRs", "providerID"):
            if old_spec.get(key) and spec.get(key) != old_spec.get(key):
                causes.append(forbidden(f"spec.{key}", f"node updates may not change {key} except from \"\" to valid"))
    return causes


# --- ConfigMap / Secret / ServiceAccount ---------------------------------------------------------

SECRET_TYPE_KEYS = {
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
}


def _config_key_causes(key: str, path: str) -> Causes:
    if len(key) > 253:
        return [invalid(path, key, "must be no more than 253 characters")]
    if not _CONFIG_KEY.match(key):
        return [invalid(path, key, "a valid config key must consist of alphanumeric characters, '-', '_' or '.' "
                                   "(e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation "
                                   "is '[-._a-zA-Z0-9]+')")]
    if key in (".", "..") or key.startswith(".."):
        return [invalid(path, key, "must not be '.' or '..' and must not start with '..'")]
    return []


def _validate_data_map(obj: Obj, key: str, *, base64_values: bool, causes: Causes) -> dict[str, int]:
    """Check a data map's keys and values; returns key → size in bytes for the total-size check."""
    sizes: dict[str, int] = {}
    for name, value in (_get(obj, key, key, dict, causes) or {}).items():
        path = f"{key}[{name}]"
        causes += _config_key_causes(name, path)
        if not isinstance(value, str):
            causes.append(invalid(path, value, "must be a string"))
            continue
        if base64_values:
            try:
                sizes[name] = len(base64.b64decode(value, validate=True))
            except (binascii.Error, ValueError):
                causes.append(invalid(path, "<value omitted>", "must be a base64-encoded string"))
        else:
            sizes[name] = len(value.encode())
    return sizes


def _validate_immutable_data(obj: Obj, old: Obj | None, keys: tuple[str, ...]) -> Causes:
    if not isinstance(old, dict) or old.get("immutable") is not True:
        return []
    causes: Causes = []
    if obj.get("immutable") is not True:
        causes.append(forbidden("immutable", "field is immutable when `immutable` is set"))
    for key in keys:
        if (obj.get(key) or {}) != (old.get(key) or {}):
            causes.append(forbidden(key, "field is immutable when `immutable` is set"))
    return causes


def validate_configmap(obj: Obj, old: Obj | None) -> Causes:
    causes: Causes = []
    data = _validate_data_map(obj, "data", base64_values=False, causes=causes)
    binary = _validate_data_map(obj, "binaryData", base64_values=True, causes=causes)
    for name in sorted(data.keys() & binary.keys()):
        causes.append(invalid(f"data[{name}]", name, "duplicate of key present in binaryData"))
    if sum(data.values()) + sum(binary.values()) > _MAX_CONFIG_BYTES:
        causes.append(too_long("", _MAX_CONFIG_BYTES))
    _get(obj, "immutable", "immutable", bool, causes)
    return causes + _validate_immutable_data(obj, old, ("data", "binaryData"))


def validate_secret(obj: Obj, old: Obj | None) -> Causes:
    causes: Causes = []
    data = _validate_data_map(obj, "data", base64_values=True, causes=causes)
    if sum(data.values()) > _MAX_CONFIG_BYTES:
        causes.append(too_long("data", _MAX_CONFIG_BYTES))
    secret_type = _get(obj, "type", "type", str, causes) or "Opaque"
    for needed in SECRET_TYPE_KEYS.get(secret_type, ()):
        if needed not in data:
            causes.append(required(f"data[{needed}]"))
    if secret_type == "kubernetes.io/service-account-token":
        annotations = _meta(obj, "annotations") or {}
        if not (isinstance(annotations, dict) and annotations.get("kubernetes.io/service-account.name")):
            causes.append(required("metadata.annotations[kubernetes.io/service-account.name]"))
    _get(obj, "immutable", "immutable", bool, causes)
    if isinstance(old, dict) and (old.get("type") or "Opaque") != secret_type:
        causes.append(immutable("type", secret_type))
    return causes + _validate_immutable_data(obj, old, ("data",))


def validate_service_account(obj: Obj, old: Obj | None) -> Causes:
    causes: Causes = []
    for key in ("secrets", "imagePullSecrets"):
        for p, ref in _items(obj, key, key, causes):
            if not ref.get("name"):
                causes.append(required(f"{p}.name"))
    _get(obj, "automountServiceAccountToken", "automountServiceAccountToken", bool, causes)
    return causes


# --- Event / Lease -------------------------------------------------------------------------------


def validate_event(obj: Obj, old: Obj | None) -> Causes:
    causes: Causes = []
    involved = _get(obj, "involvedObject", "involvedObject", dict, causes)
    if involved is None:
        return causes or [required("involvedObject")]
    event_ns = _meta(obj, "namespace") or ""
    involved_ns = _get(involved, "namespace", "involvedObject.namespace", str, causes) or ""
    # Events about cluster-scoped objects live in "default", as the event recorder writes them.
    if involved_ns and involved_ns != event_ns or not involved_ns and event_ns not in ("", "default"):
        causes.append(invalid("involvedObject.namespace", involved_ns, "does not match event.namespace"))
    for key in ("reason", "message", "type"):
        _get(obj, key, key, str, causes)
    _int_at_least(obj, "count", "count", 0, causes)
    return causes


def validate_lease(obj: Obj, old: Obj | None) -> Causes:
    causes: Causes = []
    spec = _get(obj, "spec", "spec", dict, causes) or {}
    _int_at_least(spec, "leaseDurationSeconds", "spec.leaseDurationSeconds", 1, causes)
    _int_at_least(spec, "leaseTransitions", "spec.leaseTransitions", 0, causes)
    _get(spec, "holderIdentity", "spec.holderIdentity", str, causes)
    return causes


# --- policy/v1 -----------------------------------------------------------------------------------

UNHEALTHY_POD_EVICTION_POLICIES = ("IfHealthyBudget", "AlwaysAllow")


def validate_pod_disruption_budget(obj: Obj, old: Obj | None) -> Causes:
    """minAvailable xor maxUnavailable, each a non-negative int or a percent up to 100%; a valid selector
    (in policy/v1 an empty or missing selector selects every pod of the namespace)."""
    causes: Causes = []
    spec = _get(obj, "spec", "spec", dict, causes) or {}
    amounts = {key: _int_or_percent(spec, key, f"spec.{key}", causes) for key in ("minAvailable", "maxUnavailable")}
    for key, amount in amounts.items():
        if amount is not None and amount[1] and amount[0] > 100:
            causes.append(invalid(f"spec.{key}", spec[key], "must not be greater than 100%"))
    if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
        causes.append(invalid("spec", spec, "minAvailable and maxUnavailable cannot be both set"))
    if spec.get("selector") is not None:
        causes += validate_selector_dict(spec["selector"], "spec.selector")
    _one_of(spec, "unhealthyPodEvictionPolicy", "spec.unhealthyPodEvictionPolicy", UNHEALTHY_POD_EVICTION_POLICIES,
            causes)
    return causes


# --- rbac.authorization.k8s.io/v1 -----------------------------------------------------------------

RBAC_GROUP = "rbac.authorization.k8s.io"
SUBJECT_KINDS = ("User", "Group", "ServiceAccount")


def _strings(obj: Obj, key: str, path: str, causes: Causes) -> list[str]:
    out = []
    for i, item in enumerate(_get(obj, key, path, list, causes) or []):
        if isinstance(item, str):
            out.append(item)
        else:
            causes.append(invalid(f"{path}[{i}]", item, "must be a string"))
    return out


def _validate_rules(obj: Obj, *, namespaced: bool) -> Causes:
    causes: Causes = []
    for path, rule in _items(obj, "rules", "rules", causes):
        if not _strings(rule, "verbs", f"{path}.verbs", causes):
            causes.append(required(f"{path}.verbs", "verbs must contain at least one value"))
        urls = _strings(rule, "nonResourceURLs", f"{path}.nonResourceURLs", causes)
        resources = _strings(rule, "resources", f"{path}.resources", causes)
        groups = _strings(rule, "apiGroups", f"{path}.apiGroups", causes)
        _strings(rule, "resourceNames", f"{path}.resourceNames", causes)
        if urls:
            if namespaced:
                causes.append(invalid(f"{path}.nonResourceURLs", urls,
                                      "namespaced rules cannot apply to non-resource URLs"))
            if resources or groups:
                causes.append(invalid(f"{path}.nonResourceURLs", urls,
                                      "rules cannot apply to both regular resources and non-resource URLs"))
        elif not resources:
            causes.append(required(f"{path}.resources", "resource rules must supply at least one resource"))
        elif not groups:
            causes.append(required(f"{path}.apiGroups", "resource rules must supply at least one api group"))
    return causes


def validate_role(obj: Obj, old: Obj | None) -> Causes:
    return _validate_rules(obj, namespaced=True)


def validate_cluster_role(obj: Obj, old: Obj | None) -> Causes:
    causes = _validate_rules(obj, namespaced=False)
    agg = _get(obj, "aggregationRule", "aggregationRule", dict, causes)
    if agg is not None:
        causes.append(forbidden("aggregationRule", "aggregated ClusterRoles are not supported by this server"))
    return causes


def _validate_binding(obj: Obj, old: Obj | None, *, cluster: bool) -> Causes:
    causes: Causes = []
    ref = _get(obj, "roleRef", "roleRef", dict, causes)
    if ref is None:
        causes.append(required("roleRef"))
    else:
        if ref.get("apiGroup") != RBAC_GROUP:
            causes.append(not_supported("roleRef.apiGroup", ref.get("apiGroup"), [RBAC_GROUP]))
        kinds = ["ClusterRole"] if cluster else ["Role", "ClusterRole"]
        if ref.get("kind") not in kinds:
            causes.append(not_supported("roleRef.kind", ref.get("kind"), kinds))
        if not isinstance(ref.get("name"), str) or not ref.get("name"):
            causes.append(required("roleRef.name"))
        if old is not None and isinstance(old.get("roleRef"), dict) and old["roleRef"] != ref:
            causes.append(immutable("roleRef", ref))
    for path, subject in _items(obj, "subjects", "subjects", causes):
        kind = subject.get("kind")
        if kind not in SUBJECT_KINDS:
            causes.append(not_supported(f"{path}.kind", kind, SUBJECT_KINDS))
        if not isinstance(subject.get("name"), str) or not subject.get("name"):
            causes.append(required(f"{path}.name"))
        if kind == "ServiceAccount":
            if subject.get("apiGroup") not in (None, ""):
                causes.append(not_supported(f"{path}.apiGroup", subject.get("apiGroup"), [""]))
            if cluster and not subject.get("namespace"):
                causes.append(required(f"{path}.namespace"))
        elif kind in ("User", "Group") and subject.get("apiGroup") != RBAC_GROUP:
            causes.append(not_supported(f"{path}.apiGroup", subject.get("apiGroup"), [RBAC_GROUP]))
    return causes


def validate_role_binding(obj: Obj, old: Obj | None) -> Causes:
    return _validate_binding(obj, old, cluster=False)


def validate_cluster_role_binding(obj: Obj, old: Obj | None) -> Causes:
    return _validate_binding(obj, old, cluster=True)


# --- apps/v1 workloads ---------------------------------------------------------------------------


def _validate_workload_selector(spec: Obj, kind: str, old: Obj | None, *, path: str = "spec",
                                needed: bool = True) -> Causes:
    """selector present, non-empty, valid, matched by the template's labels, and immutable."""
    causes: Causes = []
    sel = spec.get("selector")
    if sel is None:
        return [required(f"{path}.selector")] if needed else []
    sel_causes = validate_selector_dict(sel, f"{path}.selector")
    if sel_causes:
        return sel_causes
    if not sel.get("matchLabels") and not sel.get("matchExpressions"):
        causes.append(invalid(f"{path}.selector", sel, f"empty selector is invalid for {kind.lower()}"))
    else:
        # A missing template or mistyped labels are reported by the template checks; comparing them here
        # would only add noise.
        template = spec.get("template")
        labels = _meta(template, "labels")
        if isinstance(template, dict) and isinstance(labels, (dict, type(None))):
            if not selector_from_dict(sel).matches(labels or {}):
                causes.append(invalid(f"{path}.template.metadata.labels", labels or {},
                                      "`selector` does not match template `labels`"))
    if isinstance(old, dict) and isinstance(old.get("spec"), dict) and old["spec"].get("selector") != sel:
        causes.append(immutable(f"{path}.selector", sel))
    return causes


def _validate_workload_common(obj: Obj, old: Obj | None, kind: str) -> tuple[Obj | None, Causes]:
    """Checks shared by Deployment, ReplicaSet, StatefulSet and DaemonSet; returns (spec, causes)."""
    causes: Causes = []
    spec = _get(obj, "spec", "spec", dict, causes)
    if spec is None:
        return None, causes or [required("spec")]
    causes += _validate_workload_selector(spec, kind, old)
    causes += _validate_pod_template(spec.get("template"), "spec.template", restart_policies=("Always",))
    template_spec = (spec.get("template") or {}).get("spec") if isinstance(spec.get("template"), dict) else None
    if isinstance(template_spec, dict) and template_spec.get("activeDeadlineSeconds") is not None:
        causes.append(forbidden("spec.template.spec.activeDeadlineSeconds",
                                f"activeDeadlineSeconds in {kind} is not Supported"))
    if kind != "DaemonSet":
        _int_at_least(spec, "replicas", "spec.replicas", 0, causes)
    _int_at_least(spec, "minReadySeconds", "spec.minReadySeconds", 0, causes)
    _int_at_least(spec, "revisionHistoryLimit", "spec.revisionHistoryLimit", 0, causes)
    return spec, causes


def _validate_rolling(rolling: Obj, path: str, *, surge_default: int | None) -> Causes:
    """maxSurge / maxUnavailable: int or percent, percent ≤ 100, not both zero."""
    causes: Causes = []
    surge = _int_or_percent(rolling, "maxSurge", f"{path}.maxSurge", causes)
    unavailable = _int_or_percent(rolling, "maxUnavailable", f"{path}.maxUnavailable", causes)
    if unavailable and unavailable[1] and unavailable[0] > 100:
        causes.append(invalid(f"{path}.maxUnavailable", rolling["maxUnavailable"], "must not be greater than 100%"))
    surge_amount = surge[0] if surge else surge_default
    if unavailable is not None and unavailable[0] == 0 and surge_amount == 0:
        causes.append(invalid(f"{path}.maxUnavailable", rolling["maxUnavailable"],
                              "may not be 0 when `maxSurge` is 0"))
    return causes


def validate_deployment(obj: Obj, old: Obj | None) -> Causes:
    spec, causes = _validate_workload_common(obj, old, "Deployment")
    if spec is None:
        return causes
    strategy = _get(spec, "strategy", "spec.strategy", dict, causes) or {}
    strategy_type = _one_of(strategy, "type", "spec.strategy.type", ("Recreate", "RollingUpdate"), causes)
    rolling = _get(strategy, "rollingUpdate", "spec.strategy.rollingUpdate", dict, causes)
    if rolling is not None:
        if strategy_type == "Recreate":
            causes.append(forbidden("spec.strategy.rollingUpdate",
                                    "may not be specified when strategy `type` is 'Recreate'"))
        else:
            causes += _validate_rolling(rolling, "spec.strategy.rollingUpdate", surge_default=None)
    deadline = _get(spec, "progressDeadlineSeconds", "spec.progressDeadlineSeconds", int, causes)
    min_ready = spec.get("minReadySeconds") if isinstance(spec.get("minReadySeconds"), int) else 0
    if deadline is not None and deadline <= min_ready:
        causes.append(invalid("spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds"))
    _get(spec, "paused", "spec.paused", bool, causes)
    return causes


def validate_replicaset(obj: Obj, old: Obj | None) -> Causes:
    return _validate_workload_common(obj, old, "ReplicaSet")[1]


# `selector` is left out of the comparison only because its own immutability check already reports it.
_STS_MUTABLE = ("replicas", "ordinals", "template", "updateStrategy", "persistentVolumeClaimRetentionPolicy",
                "minReadySeconds", "revisionHistoryLimit", "selector")


def validate_statefulset(obj: Obj, old: Obj | None) -> Causes:
    spec, causes = _validate_workload_common(obj, old, "StatefulSet")
    if spec is None:
        return causes
    service_name = _get(spec, "serviceName", "spec.serviceName", str, causes)
    if service_name:
        causes += _name_causes(service_name, "spec.serviceName", label=True)
    _one_of(spec, "podManagementPolicy", "spec.podManagementPolicy", ("OrderedReady", "Parallel"), causes)
    strategy = _get(spec, "updateStrategy", "spec.updateStrategy", dict, causes) or {}
    strategy_type = _one_of(strategy, "type", "spec.updateStrategy.type", ("RollingUpdate", "OnDelete"), causes)
    rolling = _get(strategy, "rollingUpdate", "spec.updateStrategy.rollingUpdate", dict, causes)
    if rolling is not None:
        if strategy_type == "OnDelete":
            causes.append(invalid("spec.updateStrategy.rollingUpdate", rolling,
                                  "only allowed for updateStrategy 'RollingUpdate'"))
        _int_at_least(rolling, "partition", "spec.updateStrategy.rollingUpdate.partition", 0, causes)
        unavailable = _int_or_percent(rolling, "maxUnavailable", "spec.updateStrategy.rollingUpdate.maxUnavailable",
                                      causes)
        if unavailable is not None and unavailable[0] == 0:
            causes.append(invalid("spec.updateStrategy.rollingUpdate.maxUnavailable", rolling["maxUnavailable"],
                                  "must be greater than 0"))
    retention = _get(spec, "persistentVolumeClaimRetentionPolicy", "spec.persistentVolumeClaimRetentionPolicy",
                     dict, causes) or {}
    for key in ("whenDeleted", "whenScaled"):
        _one_of(retention, key, f"spec.persistentVolumeClaimRetentionPolicy.{key}", ("Retain", "Delete"), causes)
    for p, claim in _items(spec, "volumeClaimTemplates", "spec.volumeClaimTemplates", causes):
        name = _meta(claim, "name")
        if not name:
            causes.append(required(f"{p}.metadata.name"))
        else:
            causes += _name_causes(name, f"{p}.metadata.name", label=False)
    if isinstance(old, dict) and isinstance(old.get("spec"), dict):
        frozen_new = {k: v for k, v in spec.items() if k not in _STS_MUTABLE}
        frozen_old = {k: v for k, v in old["spec"].items() if k not in _STS_MUTABLE}
        if frozen_new != frozen_old:
            causes.append(forbidden("spec", "updates to statefulset spec for fields other than 'replicas', "
                                            "'ordinals', 'template', 'updateStrategy', "
                                            "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are "
                                            "forbidden"))
    return causes


def validate_daemonset(obj: Obj, old: Obj | None) -> Causes:
    spec, causes = _validate_workload_common(obj, old, "DaemonSet")
    if spec is None:
        return causes
    strategy = _get(spec, "updateStrategy", "spec.updateStrategy", dict, causes) or {}
    strategy_type = _one_of(strategy, "type", "spec.updateStrategy.type", ("RollingUpdate", "OnDelete"), causes)
    rolling = _get(strategy, "rollingUpdate", "spec.updateStrategy.rollingUpdate", dict, causes)
    if rolling is not None and strategy_type != "OnDelete":
        causes += _validate_rolling(rolling, "spec.updateStrategy.rollingUpdate", surge_default=0)
    return causes


def validate_controller_revision(obj: Obj, old: Obj | None) -> Causes:
    causes: Causes = []
    if "data" not in obj or obj.get("data") is None:
        causes.append(required("data", "data is mandatory"))
    if obj.get("revision") is None:
        causes.append(required("revision"))
    else:
        _int_at_least(obj, "revision", "revision", 0, causes)
    # Only data is fixed: controllers renumber `revision` when an old template comes back (rollback).
    if isinstance(old, dict) and obj.get("data") != old.get("data"):
        causes.append(immutable("data", obj.get("data")))
    return causes


# --- batch/v1 ------------------------------------------------------------------------------------

JOB_NAME_MAX = 63  # the job name becomes the job-name label value
CRONJOB_NAME_MAX = 52  # jobs are named <cronjob>-<11-digit schedule time>


def _validate_job_spec(spec: Any, path: str, old_spec: Obj | None, *, selector_needed: bool) -> Causes:
    if spec is None:
        return [required(path)]
    if not isinstance(spec, dict):
        return [invalid(path, spec, "must be an object")]
    causes: Causes = []
    for key in ("parallelism", "completions", "backoffLimit", "ttlSecondsAfterFinished"):
        _int_at_least(spec, key, f"{path}.{key}", 0, causes)
    _int_at_least(spec, "activeDeadlineSeconds", f"{path}.activeDeadlineSeconds", 1, causes)
    for key in ("suspend", "manualSelector"):
        _get(spec, key, f"{path}.{key}", bool, causes)
    mode = _one_of(spec, "completionMode", f"{path}.completionMode", ("NonIndexed", "Indexed"), causes)
    if mode == "Indexed" and spec.get("completions") is None:
        causes.append(required(f"{path}.completions", "when completion mode is Indexed"))
    causes += _validate_workload_selector(spec, "Job", None, path=path, needed=selector_needed)
    causes += _validate_pod_template(spec.get("template"), f"{path}.template", restart_policies=("OnFailure", "Never"))
    if old_spec is not None:
        causes += _validate_job_spec_update(spec, old_spec, path)
    return causes


def _validate_job_spec_update(spec: Obj, old: Obj, path: str) -> Causes:
    causes: Causes = []
    for key in ("selector", "template", "completionMode"):
        if spec.get(key) != old.get(key):
            causes.append(immutable(f"{path}.{key}", spec.get(key)))
    # Indexed jobs may scale completions together with parallelism (elastic indexed jobs).
    if spec.get("completions") != old.get("completions"):
        elastic = spec.get("completionMode") == "Indexed" and spec.get("completions") == spec.get("parallelism")
        if not elastic:
            causes.append(immutable(f"{path}.completions", spec.get("completions")))
    return causes


def validate_job(obj: Obj, old: Obj | None) -> Causes:
    causes: Causes = []
    name = _meta(obj, "name")
    if isinstance(name, str) and len(name) > JOB_NAME_MAX:
        causes.append(invalid("metadata.name", name, f"must be no more than {JOB_NAME_MAX} characters"))
    old_spec = old.get("spec") if isinstance(old, dict) and isinstance(old.get("spec"), dict) else None
    return causes + _validate_job_spec(obj.get("spec"), "spec", old_spec, selector_needed=True)


_CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_MONTHS = {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())}
_DAYS = {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}
# (name, low, high, names) per field of a standard 5-field schedule.
_CRON_FIELDS = (("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day of month", 1, 31, {}),
                ("month", 1, 12, _MONTHS), ("day of week", 0, 6, _DAYS))
_GO_DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")


def cron_schedule_error(schedule: str) -> str | None:
    """Why a CronJob schedule does not parse (standard 5 fields, names, ranges, steps, macros), or None."""
    text = schedule.strip()
    if text.startswith("@"):
        if text in _CRON_MACROS:
            return None
        if text.startswith("@every "):
            return None if _GO_DURATION.match(text[len("@every "):].strip()) else "invalid duration for @every"
        return f"unrecognized descriptor: {text}"
    fields = text.split()
    if len(fields) != 5:
        return f"expected exactly 5 fields, found {len(fields)}: {text}"
    for value, (name, low, high, names) in zip(fields, _CRON_FIELDS):
        for part in value.split(","):
            err = _cron_part_error(part, low, high, names, allow_question=name.startswith("day of"))
            if err:
                return f"{name}: {err}"
    return None


def _cron_part_error(part: str, low: int, high: int, names: dict[str, int], *, allow_question: bool) -> str | None:
    base, _, step = part.partition("/")
    if step and (not step.isdigit() or int(step) == 0):
        return f"invalid step in {part!r}"
    if base == "*" or (allow_question and base == "?"):
        return None
    start, _, end = base.partition("-")
    bounds = []
    for token in (start, end) if end else (start,):
        value = names.get(token.lower()) if token.lower() in names else (int(token) if token.isdigit() else None)
        if value is None:
            return f"failed to parse {token!r} in {part!r}"
        if not low <= value <= high:
            return f"{value} out of range [{low}, {high}]"
        bounds.append(value)
    if len(bounds) == 2 and bounds[0] > bounds[1]:
        return f"beginning of range ({bounds[0]}) beyond end of range ({bounds[1]}): {part}"
    return None


def validate_cronjob(obj: Obj, old: Obj | None) -> Causes:
    causes: Causes = []
    name = _meta(obj, "name")
    if isinstance(name, str) and len(name) > CRONJOB_NAME_MAX:
        causes.append(invalid("metadata.name", name, f"must be no more than {CRONJOB_NAME_MAX} characters"))
    spec = _get(obj, "spec", "spec", dict, causes)
    if spec is None:
        return causes + ([] if any(c.field == "spec" for c in causes) else [required("spec")])
    schedule = _get(spec, "schedule", "spec.schedule", str, causes)
    if spec.get("schedule") in (None, ""):
        causes.append(required("spec.schedule"))
    elif schedule and "TZ" in schedule:
        causes.append(invalid("spec.schedule", schedule,
                              "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"))
    elif schedule:
        err = cron_schedule_error(schedule)
        if err:
            causes.append(invalid("spec.schedule", schedule, err))
    time_zone = _get(spec, "timeZone", "spec.timeZone", str, causes)
    if time_zone is not None:
        causes += _time_zone_causes(time_zone, "spec.timeZone")
    _one_of(spec, "concurrencyPolicy", "spec.concurrencyPolicy", ("Allow", "Forbid", "Replace"), causes)
    for key in ("startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        _int_at_least(spec, key, f"spec.{key}", 0, causes)
    _get(spec, "suspend", "spec.suspend", bool, causes)
    template = _get(spec, "jobTemplate", "spec.jobTemplate", dict, causes)
    if template is None:
        if spec.get("jobTemplate") is None:
            causes.append(required("spec.jobTemplate"))
        return causes
    meta = _get(template, "metadata", "spec.jobTemplate.metadata", dict, causes) or {}
    if meta.get("labels") is not None:
        causes += validate_labels(meta["labels"], "spec.jobTemplate.metadata.labels")
    # Jobs made from the template get their selector generated at creation, so none is needed here.
    return causes + _validate_job_spec(template.get("spec"), "spec.jobTemplate.spec", None, selector_needed=False)


def _time_zone_causes(tz: str, path: str) -> Causes:
    if not tz or tz == "Local":
        return [invalid(path, tz, f"unknown time zone {tz}")]
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return [invalid(path, tz, f"unknown time zone {tz}")]
    return []


# --- storage (core/v1) ----------------------------------------------------------------------------

PVC_ACCESS_MODES = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")
VOLUME_MODES = ("Filesystem", "Block")
RECLAIM_POLICIES = ("Retain", "Recycle", "Delete")
PV_SOURCES = ("hostPath", "local", "nfs", "csi", "iscsi", "fc", "rbd", "cephfs", "cinder", "glusterfs",
              "flexVolume", "azureFile", "azureDisk", "awsElasticBlockStore", "gcePersistentDisk", "vsphereVolume",
              "portworxVolume", "scaleIO", "storageos", "photonPersistentDisk", "quobyte", "flocker")


def _access_modes_causes(spec: Obj, path: str) -> Causes:
    causes: Causes = []
    modes = _get(spec, "accessModes", f"{path}.accessModes", list, causes)
    if causes:
        return causes
    if not modes:
        return [required(f"{path}.accessModes", "at least 1 access mode is required")]
    for i, mode in enumerate(modes):
        if mode not in PVC_ACCESS_MODES:
            causes.append(not_supported(f"{path}.accessModes[{i}]", mode, PVC_ACCESS_MODES))
    if "ReadWriteOncePod" in modes and len(modes) > 1:
        causes.append(forbidden(f"{path}.accessModes", "may not use ReadWriteOncePod with other access modes"))
    return causes


def _storage_causes(resources: Any, path: str) -> tuple[Any, Causes]:
    """The `storage` quantity of a requests/capacity map: required, parseable, positive."""
    if not isinstance(resources, dict) or resources.get("storage") is None:
        return None, [required(f"{path}[storage]")]
    try:
        amount = quantity.parse_quantity(resources["storage"])
    except (ValueError, TypeError) as exc:
        return None, [invalid(f"{path}[storage]", resources["storage"], str(exc))]
    if amount <= 0:
        return None, [invalid(f"{path}[storage]", resources["storage"], "must be greater than zero")]
    return amount, []


def _storage_class_causes(spec: Obj, path: str) -> Causes:
    causes: Causes = []
    name = _get(spec, "storageClassName", f"{path}.storageClassName", str, causes)
    if name:
        causes += _name_causes(name, f"{path}.storageClassName", label=False)
    return causes


def validate_persistent_volume_claim(obj: Obj, old: Obj | None) -> Causes:
    causes: Causes = []
    spec = _get(obj, "spec", "spec", dict, causes)
    if spec is None:
        return causes or [required("spec")]
    causes += _access_modes_causes(spec, "spec")
    resources = _get(spec, "resources", "spec.resources", dict, causes) or {}
    requests = _get(resources, "requests", "spec.resources.requests", dict, causes)
    requested, storage_causes = _storage_causes(requests, "spec.resources.requests")
    causes += storage_causes
    _one_of(spec, "volumeMode", "spec.volumeMode", VOLUME_MODES, causes)
    causes += _storage_class_causes(spec, "spec")
    volume_name = _get(spec, "volumeName", "spec.volumeName", str, causes)
    if volume_name:
        causes += _name_causes(volume_name, "spec.volumeName", label=False)
    if spec.get("selector") is not None:
        causes += validate_selector_dict(spec["selector"], "spec.selector")
    old_spec = old.get("spec") if isinstance(old, dict) and isinstance(old.get("spec"), dict) else None
    if old_spec is not None:
        # Only the storage request (to grow) and a first volumeName (binding) may change.
        mutable = ("resources", "volumeName", "volumeAttributesClassName")
        if {k: v for k, v in spec.items() if k not in mutable} != \
                {k: v for k, v in old_spec.items() if k not in mutable}:
            causes.append(forbidden("spec", "spec is immutable after creation except resources.requests and "
                                            "volumeAttributesClassName for bound claims"))
        if old_spec.get("volumeName") and spec.get("volumeName") != old_spec.get("volumeName"):
            causes.append(immutable("spec.volumeName", spec.get("volumeName")))
        old_requested, _ = _storage_causes(((old_spec.get("resources") or {}).get("requests")),
                                           "spec.resources.requests")
        if requested is not None and old_requested is not None and requested < old_requested:
            causes.append(forbidden("spec.resources.requests.storage", "field can not be less than previous value"))
    return causes


def validate_persistent_volume(obj: Obj, old: Obj | None) -> Causes:
    causes: Causes = []
    spec = _get(obj, "spec", "spec", dict, causes)
    if spec is None:
        return causes or [required("spec")]
    causes += _access_modes_causes(spec, "spec")
    capacity = _get(spec, "capacity", "spec.capacity", dict, causes)
    causes += _storage_causes(capacity, "spec.capacity")[1]
    _one_of(spec, "persistentVolumeReclaimPolicy", "spec.persistentVolumeReclaimPolicy", RECLAIM_POLICIES, causes)
    _one_of(spec, "volumeMode", "spec.volumeMode", VOLUME_MODES, causes)
    causes += _storage_class_causes(spec, "spec")
    sources = [s for s in PV_SOURCES if spec.get(s) is not None]
    if not sources:
        causes.append(required("spec", "must specify a volume type"))
    elif len(sources) > 1:
        causes.append(forbidden(f"spec.{sources[1]}", "may not specify more than 1 volume type"))
    else:
        src = spec[sources[0]]
        if not isinstance(src, dict):
            causes.append(invalid(f"spec.{sources[0]}", src, "must be an object"))
        elif sources[0] in ("hostPath", "local"):
            path = _get(src, "path", f"spec.{sources[0]}.path", str, causes)
            if not path:
                causes.append(required(f"spec.{sources[0]}.path"))
            if sources[0] == "hostPath":
                _one_of(src, "type", "spec.hostPath.type", HOST_PATH_TYPES, causes)
            elif spec.get("nodeAffinity") is None:
                causes.append(required("spec.nodeAffinity", "Local volumes require node affinity"))
    claim_ref = _get(spec, "claimRef", "spec.claimRef", dict, causes)
    if claim_ref is not None and not claim_ref.get("name"):
        causes.append(required("spec.claimRef.name"))
    old_spec = old.get("spec") if isinstance(old, dict) and isinstance(old.get("spec"), dict) else None
    if old_spec is not None:
        for key in ("volumeMode", *sources):
            if spec.get(key) != old_spec.get(key):
                causes.append(immutable(f"spec.{key}", spec.get(key)))
    return causes


# --- autoscaling/v2 -------------------------------------------------------------------------------

HPA_METRIC_SOURCES = {"Object": "object", "Pods": "pods", "Resource": "resource", "ContainerResource":
                      "containerResource", "External": "external"}
HPA_TARGET_TYPES = ("Utilization", "Value", "AverageValue")
HPA_POLICY_TYPES = ("Pods", "Percent")
HPA_SELECT_POLICIES = ("Max", "Min", "Disabled")
HPA_MAX_STABILIZATION_SECONDS = 3600
HPA_MAX_PERIOD_SECONDS = 1800


def _positive_quantity(obj: Obj, key: str, path: str, causes: Causes) -> None:
    value = obj.get(key)
    if value is None:
        return
    try:
        ok = quantity.parse_quantity(value) > 0
    except ValueError as e:
        causes.append(invalid(path, value, str(e)))
        return
    if not ok:
        causes.append(invalid(path, value, "must be positive"))


def _validate_metric_target(target: Any, path: str) -> Causes:
    causes: Causes = []
    if not isinstance(target, dict):
        return [invalid(path, target, "must be an object")] if target is not None else []
    if not target.get("type"):
        causes.append(required(f"{path}.type", "must specify a metric target type"))
    elif target["type"] not in HPA_TARGET_TYPES:
        causes.append(invalid(f"{path}.type", target["type"], "must be either Utilization, Value, or AverageValue"))
    _positive_quantity(target, "value", f"{path}.value", causes)
    _positive_quantity(target, "averageValue", f"{path}.averageValue", causes)
    _int_at_least(target, "averageUtilization", f"{path}.averageUtilization", 1, causes)
    return causes


def _validate_hpa_metric(metric: Obj, path: str) -> Causes:
    causes: Causes = []
    mtype = _get(metric, "type", f"{path}.type", str, causes)
    if not mtype:
        return causes + [required(f"{path}.type", "must specify a metric source type")]
    if mtype not in HPA_METRIC_SOURCES:
        return causes + [not_supported(f"{path}.type", mtype, tuple(HPA_METRIC_SOURCES))]
    for other_type, key in HPA_METRIC_SOURCES.items():
        if other_type != mtype and metric.get(key) is not None:
            causes.append(forbidden(f"{path}.{key}", "must populate the given metric source only"))
    key = HPA_METRIC_SOURCES[mtype]
    src = _get(metric, key, f"{path}.{key}", dict, causes)
    if src is None:
        return causes + [required(f"{path}.{key}", "must populate information for the given metric source")]
    causes += _validate_metric_target(src.get("target"), f"{path}.{key}.target")
    if mtype in ("Resource", "ContainerResource"):
        if not src.get("name"):
            causes.append(required(f"{path}.{key}.name", "must specify a resource name"))
        if mtype == "ContainerResource" and not src.get("container"):
            causes.append(required(f"{path}.{key}.container", "must specify a container"))
        target = src.get("target") if isinstance(src.get("target"), dict) else {}
        if target.get("averageUtilization") is None and target.get("averageValue") is None:
            causes.append(required(f"{path}.{key}.target.averageUtilization",
                                   "must set either a target raw value or a target utilization"))
        elif target.get("averageUtilization") is not None and target.get("averageValue") is not None:
            causes.append(forbidden(f"{path}.{key}.target.averageValue",
                                    "may not set both a target raw value and a target utilization"))
    elif not isinstance(src.get("metric"), dict) or not src["metric"].get("name"):
        causes.append(required(f"{path}.{key}.metric.name", "must specify a metric name"))
    return causes


def _validate_scaling_rules(rules: Any, path: str) -> Causes:
    causes: Causes = []
    if not isinstance(rules, dict):
        return [invalid(path, rules, "must be an object")] if rules is not None else []
    _int_between(rules, "stabilizationWindowSeconds", f"{path}.stabilizationWindowSeconds", 0,
                 HPA_MAX_STABILIZATION_SECONDS, causes)
    _one_of(rules, "selectPolicy", f"{path}.selectPolicy", HPA_SELECT_POLICIES, causes)
    policies = _items(rules, "policies", f"{path}.policies", causes)
    if "policies" in rules and not policies and not causes:
        causes.append(required(f"{path}.policies", "must specify at least one Policy"))
    for p_path, policy in policies:
        if not policy.get("type"):
            causes.append(required(f"{p_path}.type", ""))
        else:
            _one_of(policy, "type", f"{p_path}.type", HPA_POLICY_TYPES, causes)
        if _int_at_least(policy, "value", f"{p_path}.value", 1, causes) is None and policy.get("value") is None:
            causes.append(required(f"{p_path}.value", ""))
        period = _int_between(policy, "periodSeconds", f"{p_path}.periodSeconds", 1, HPA_MAX_PERIOD_SECONDS, causes)
        if period is None and policy.get("periodSeconds") is None:
            causes.append(required(f"{p_path}.periodSeconds", ""))
    return causes


def validate_horizontal_pod_autoscaler(obj: Obj, old: Obj | None) -> Causes:
    """scaleTargetRef kind and name; 1 <= minReplicas <= maxReplicas; metrics with one source each and a
    target; behavior rules within Kubernetes' bounds (window <= 3600 s, policy period <= 1800 s)."""
    causes: Causes = []
    spec = _get(obj, "spec", "spec", dict, causes)
    if spec is None:
        return causes + ([required("spec")] if obj.get("spec") is None else [])
    ref = _get(spec, "scaleTargetRef", "spec.scaleTargetRef", dict, causes)
    if ref is None and spec.get("scaleTargetRef") is None:
        causes.append(required("spec.scaleTargetRef"))
    if ref is not None:
        for key in ("kind", "name"):
            value = _get(ref, key, f"spec.scaleTargetRef.{key}", str, causes)
            if not value and ref.get(key) is None:
                causes.append(required(f"spec.scaleTargetRef.{key}"))
            elif value and ("/" in value or "%" in value or value in (".", "..")):
                causes.append(invalid(f"spec.scaleTargetRef.{key}", value, "may not contain '/' or '%'"))
        _get(ref, "apiVersion", "spec.scaleTargetRef.apiVersion", str, causes)
    low = _int_at_least(spec, "minReplicas", "spec.minReplicas", 1, causes)
    high = _get(spec, "maxReplicas", "spec.maxReplicas", int, causes)
    if high is None and spec.get("maxReplicas") is None:
        causes.append(required("spec.maxReplicas"))
    elif high is not None and high < 1:
        causes.append(invalid("spec.maxReplicas", high, "must be greater than 0"))
    elif high is not None and low is not None and high < low:
        causes.append(invalid("spec.maxReplicas", high, "must be greater than or equal to `minReplicas`"))
    for path, metric in _items(spec, "metrics", "spec.metrics", causes):
        causes += _validate_hpa_metric(metric, path)
    behavior = _get(spec, "behavior", "spec.behavior", dict, causes)
    if behavior is not None:
        for key in ("scaleUp", "scaleDown"):
            causes += _validate_scaling_rules(behavior.get(key), f"spec.behavior.{key}")
    return causes


VALIDATORS: dict[str, Callable[[Obj, Obj | None], list[Cause]]] = {
    "Namespace": validate_namespace,
    "Pod": validate_pod,
    "Service": validate_service,
    "Endpoints": validate_endpoints,
    "Node": validate_node,
    "ConfigMap": validate_configmap,
    "Secret": validate_secret,
    "ServiceAccount": validate_service_account,
    "Event": validate_event,
    "Deployment": validate_deployment,
    "ReplicaSet": validate_replicaset,
    "StatefulSet": validate_statefulset,
    "DaemonSet": validate_daemonset,
    "ControllerRevision": validate_controller_revision,
    "Job": validate_job,
    "CronJob": validate_cronjob,
    "Lease": validate_lease,
    "PodDisruptionBudget": validate_pod_disruption_budget,
    "PersistentVolumeClaim": validate_persistent_volume_claim,
    "PersistentVolume": validate_persistent_volume,
    "Role": validate_role,
    "ClusterRole": validate_cluster_role,
    "RoleBinding": validate_role_binding,
    "ClusterRoleBinding": validate_cluster_role_binding,
    "HorizontalPodAutoscaler": validate_horizontal_pod_autoscaler,
}
