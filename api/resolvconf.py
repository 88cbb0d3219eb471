"""What a pod sees of cluster DNS and service discovery: its resolv.conf and its service env vars.

Pure functions for the kubelet, following its `pkg/kubelet/network/dns/dns.go` and `envvars.go`:

`resolv_conf(pod, cluster_dns=, cluster_domain=, host_resolv_conf=)` by the pod's `dnsPolicy`:

- `ClusterFirst` (the default): the cluster DNS servers only, search `<ns>.svc.<domain> svc.<domain>
  <domain>` followed by the host's search domains, `options ndots:5` (the host's options are not kept).
  A hostNetwork pod with ClusterFirst gets `Default` instead; with no cluster DNS configured the
  kubelet falls back to `Default` too.
- `ClusterFirstWithHostNet`: ClusterFirst, also for hostNetwork pods.
- `Default`: the host's nameservers, search domains and options (the node's resolv.conf as the kubelet
  read it). An empty `host_resolv_conf` stands for kubelet's `--resolv-conf=""`: nameserver 127.0.0.1
  and search `.`, which disables lookups.
- `None`: nothing but `dnsConfig`.

`dnsConfig` is then merged: nameservers and searches appended without duplicates, options merged by
name (the pod's value wins). Limits as the kubelet applies them: 3 nameservers, 32 search domains,
each at most 253 characters, the search line at most 2048 characters.

`service_env_vars(services, namespace, enable_service_links=)`: Docker-links-style variables for every
Service with a ClusterIP in the pod's namespace, plus `default/kubernetes` always (even with
`enableServiceLinks: false`); a Service named `kubernetes` in the pod's own namespace wins over it.
"""
from __future__ import annotations

import ipaddress
import logging
from typing import Any

logger = logging.getLogger(__name__)

Obj = dict[str, Any]

MAX_NAMESERVERS = 3
MAX_SEARCH_PATHS = 32
MAX_SEARCH_LINE_CHARS = 2048
MAX_DOMAIN_LENGTH = 253
DEFAULT_OPTIONS = ["ndots:5"]
MASTER_SERVICE_NAMESPACE = "default"
MASTER_SERVICES = ("kubernetes",)


def parse_resolv_conf(text: str) -> tuple[list[str], list[str], list[str]]:
    """(nameservers, searches, options) of a resolv.conf; the last `search` line wins, as in libc."""
    nameservers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    for raw in text.splitlines():
        fields = raw.split("#", 1)[0].split(";", 1)[0].split()
        if not fields:
            continue
        if fields[0] == "nameserver" and len(fields) >= 2:
            nameservers.append(fields[1])
        elif fields[0] == "search":
            # The same domain with and without its trailing dot counts once.
            searches = [s.rstrip(".") for s in fields[1:] if s != "."]
        elif fields[0] == "options":
            options = merge_options(options, fields[1:])
    return nameservers, searches, options


def merge_options(existing: list[str], extra: list[str]) -> list[str]:
    """Options by name (`ndots:5`, `edns0`): a later value replaces an earlier one in place."""
    merged: dict[str, str] = {}
    for opt in [*existing, *extra]:
        name, _, value = opt.partition(":")
        merged[name] = value
    return [f"{name}:{value}" if value else name for name, value in merged.items()]


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _fit_searches(searches: list[str], pod_name: str) -> list[str]:
    kept = [s for s in searches[:MAX_SEARCH_PATHS] if len(s) <= MAX_DOMAIN_LENGTH]
    while kept and len(" ".join(kept)) > MAX_SEARCH_LINE_CHARS:
        kept.pop()
    if kept != searches:
        logger.warning("pod %s: search line limits were exceeded, some search paths have been omitted: %s",
                       pod_name, " ".join(kept))
    return kept


def pod_dns_type(pod: Obj) -> str:
    """"cluster", "host" or "none", as the kubelet maps dnsPolicy (and hostNetwork) onto them."""
    spec = pod.get("spec") or {}
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    if policy == "None":
        return "none"
    if policy == "Default" or (policy == "ClusterFirst" and spec.get("hostNetwork")):
        return "host"
    # ClusterFirst, ClusterFirstWithHostNet, and (as the kubelet does) a policy validation should have refused.
    return "cluster"


def resolv_conf(pod: Obj, *, cluster_dns: list[str], cluster_domain: str, host_resolv_conf: str) -> str:
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    namespace = meta.get("namespace") or "default"
    pod_name = f"{namespace}/{meta.get('name', '')}"
    servers, searches, options = parse_resolv_conf(host_resolv_conf)
    dns_type = pod_dns_type(pod)
    if dns_type == "cluster" and not cluster_dns:
        logger.warning("pod %s: dnsPolicy %s but the kubelet has no cluster DNS; falling back to Default",
                       pod_name, spec.get("dnsPolicy") or "ClusterFirst")
        dns_type = "host"
    if dns_type == "none":
        servers, searches, options = [], [], []
    elif dns_type == "cluster":
        servers = list(cluster_dns)
        cluster_search = [f"{namespace}.svc.{cluster_domain}", f"svc.{cluster_domain}", cluster_domain] \
            if cluster_domain else []
        searches = _unique([*cluster_search, *searches])
        options = list(DEFAULT_OPTIONS)
    elif not host_resolv_conf.strip():
        servers, searches = ["127.0.0.1"], ["."]

    config = spec.get("dnsConfig") or {}
    servers = _unique([*servers, *(config.get("nameservers") or [])])
    searches = _unique([*searches, *(config.get("searches") or [])])
    options = merge_options(options, [o["name"] + (f":{o['value']}" if o.get("value") else "")
                                      for o in config.get("options") or [] if o.get("name")])
    if len(servers) > MAX_NAMESERVERS:
        logger.warning("pod %s: nameserver limits were exceeded, some nameservers have been omitted: %s",
                       pod_name, " ".join(servers[:MAX_NAMESERVERS]))
        servers = servers[:MAX_NAMESERVERS]
    searches = _fit_searches(searches, pod_name)

    lines = [f"nameserver {s}" for s in servers]
    if searches:
        lines.append("search " + " ".join(searches))
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"


# -- service environment variables -------------------------------------------------------------------

def _env_name(name: str) -> str:
    return name.upper().replace("-", "_")


def _has_cluster_ip(svc: Obj) -> bool:
    ip = (svc.get("spec") or {}).get("clusterIP")
    return bool(ip) and ip != "None"


def _host_port(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ipaddress.ip_address(ip).version == 6 else f"{ip}:{port}"


def service_env_vars(services: list[Obj], namespace: str, *, enable_service_links: bool = True) -> dict[str, str]:
    """The variables in Kubernetes' order (services by name); container `env` entries override them."""
    chosen: dict[str, Obj] = {}
    for svc in services:
        if not _has_cluster_ip(svc):
            continue
        meta = svc.get("metadata") or {}
        name = meta.get("name", "")
        if meta.get("namespace") == MASTER_SERVICE_NAMESPACE and name in MASTER_SERVICES:
            chosen.setdefault(name, svc)
        elif meta.get("namespace") == namespace and enable_service_links:
            chosen[name] = svc

    env: dict[str, str] = {}
    for name in sorted(chosen):
        spec = chosen[name]["spec"]
        ip, ports = spec["clusterIP"], spec.get("ports") or []
        prefix = _env_name(name)
        env[f"{prefix}_SERVICE_HOST"] = ip
        if not ports:
            continue
        env[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
        for port in ports:
            if port.get("name"):
                env[f"{prefix}_SERVICE_PORT_{_env_name(port['name'])}"] = str(port["port"])
        for i, port in enumerate(ports):
            proto = (port.get("protocol") or "TCP").upper()
            url = f"{proto.lower()}://{_host_port(ip, port['port'])}"
            if i == 0:
                env[f"{prefix}_PORT"] = url
            port_prefix = f"{prefix}_PORT_{port['port']}_{proto}"
            env[port_prefix] = url
            env[f"{port_prefix}_PROTO"] = proto.lower()
            env[f"{port_prefix}_PORT"] = str(port["port"])
            env[f"{port_prefix}_ADDR"] = ip
    return env
