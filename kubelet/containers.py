"""Docker create arguments for a pod's sandbox and containers (pure: dicts in, dicts out).

The sandbox (`minik8s/pause`) owns the pod's namespaces: it starts with no Docker network (the kubelet
wires its network namespace itself, see network.py), a shareable IPC namespace, and the pod's hostname.
Every other container joins it: `network_mode=container:<sandbox>` (so they share the IP, the ports and
the hostname), `ipc_mode=container:<sandbox>`, and the PID namespace too when
`shareProcessNamespace` is set. No Docker restart policy is ever set: the kubelet owns restarts.

Resources map as the dockershim did: limits.memory -> memory (and memory+swap, so a limit means OOM
rather than swapping), limits.cpu -> CFS quota (nano_cpus), requests.cpu (or the limit) -> cpu shares.
The pod's `/etc/hosts` and `/etc/resolv.conf` are files the kubelet writes and binds into each container.
"""
from __future__ import annotations

from typing import Any

from api.quantity import cpu_millis, memory_bytes
from kubelet import labels as L

Obj = dict[str, Any]

SANDBOX_IMAGE = "minik8s/pause:3.9"
MIN_SHARES = 2


def pod_labels(pod: Obj, node: str, container: str, kind: str, attempt: int, spec_hash: str = "") -> dict[str, str]:
    meta = pod.get("metadata") or {}
    out = {
        L.MANAGED: "true", L.NODE: node,
        L.POD_UID: meta.get("uid", ""), L.POD_NAME: meta.get("name", ""),
        L.POD_NAMESPACE: meta.get("namespace", ""),
        L.CONTAINER_NAME: container, L.CONTAINER_TYPE: kind, L.ATTEMPT: str(attempt),
    }
    if spec_hash:
        out[L.SPEC_HASH] = spec_hash
    return out


def container_name(pod: Obj, container: str, attempt: int) -> str:
    meta = pod.get("metadata") or {}
    return L.container_name(meta.get("name", ""), meta.get("namespace", ""), meta.get("uid", ""), container, attempt)


def sandbox_args(pod: Obj, node: str, attempt: int, image: str = SANDBOX_IMAGE) -> tuple[str, str, Obj, Obj]:
    """(image, name, create config, host config) of the pod's sandbox."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    hostname = (spec.get("hostname") or meta.get("name", ""))[:63]
    config = {"hostname": hostname, "labels": pod_labels(pod, node, L.SANDBOX_NAME, "sandbox", attempt)}
    if spec.get("subdomain"):
        config["domainname"] = f"{spec['subdomain']}.{meta.get('namespace')}.svc"
    host = {"network_mode": "none", "ipc_mode": "shareable"}
    return image, container_name(pod, L.SANDBOX_NAME, attempt), config, host


def resources(container: Obj) -> Obj:
    res = container.get("resources") or {}
    limits, requests = res.get("limits") or {}, res.get("requests") or {}
    out: Obj = {}
    if "memory" in limits:
        out["mem_limit"] = memory_bytes(limits["memory"])
        out["memswap_limit"] = out["mem_limit"]
    if "cpu" in limits:
        out["nano_cpus"] = cpu_millis(limits["cpu"]) * 1_000_000
    cpu_request = requests.get("cpu", limits.get("cpu"))
    out["cpu_shares"] = max(MIN_SHARES, cpu_millis(cpu_request) * 1024 // 1000) if cpu_request is not None \
        else MIN_SHARES
    return out


def container_args(pod: Obj, container: Obj, *, node: str, kind: str, attempt: int, spec_hash: str,
                   sandbox_id: str, env: dict[str, str], entrypoint: list[str] | None, cmd: list[str] | None,
                   binds: list[str]) -> tuple[str, str, Obj, Obj]:
    """(image, name, create config, host config) of one init or app container."""
    spec = pod.get("spec") or {}
    config: Obj = {
        "labels": pod_labels(pod, node, container["name"], kind, attempt, spec_hash),
        "environment": [f"{k}={v}" for k, v in env.items()],
        "working_dir": container.get("workingDir") or None,
        "entrypoint": entrypoint,
        "command": cmd,
        "tty": bool(container.get("tty")),
        "stdin_open": bool(container.get("stdin")),
    }
    sc = container.get("securityContext") or {}
    user = sc.get("runAsUser", (spec.get("securityContext") or {}).get("runAsUser"))
    if user is not None:
        group = sc.get("runAsGroup", (spec.get("securityContext") or {}).get("runAsGroup"))
        config["user"] = f"{user}:{group}" if group is not None else str(user)
    host: Obj = {
        "network_mode": f"container:{sandbox_id}",
        "ipc_mode": f"container:{sandbox_id}",
        "binds": binds,
        "read_only": bool(sc.get("readOnlyRootFilesystem")),
        **resources(container),
    }
    if spec.get("shareProcessNamespace"):
        host["pid_mode"] = f"container:{sandbox_id}"
    caps = sc.get("capabilities") or {}
    if caps.get("add"):
        host["cap_add"] = list(caps["add"])
    if caps.get("drop"):
        host["cap_drop"] = list(caps["drop"])
    return container["image"], container_name(pod, container["name"], attempt), config, host


def etc_hosts(pod: Obj, pod_ip: str | None) -> str:
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    lines = ["# Kubernetes-managed hosts file.", "127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    if pod_ip:
        lines.append(f"{pod_ip}\t{spec.get('hostname') or meta.get('name')}")
    for entry in spec.get("hostAliases") or []:
        lines.append(f"{entry.get('ip')}\t" + "\t".join(entry.get("hostnames") or []))
    return "\n".join(lines) + "\n"
