"""What the renderers consume: Services and Endpoints flattened into one record per service port.

Kubernetes' proxiers work on `ServicePortName -> (service port info, endpoints)`; so do ours. `build()`
turns the API dicts (core/v1 Service and Endpoints, exactly as the informers hold them) into a sorted
tuple of frozen `ServicePort`s, each carrying its own ready endpoints, so every renderer is a pure
function of plain data and can be tested without any I/O.

Rules applied here, once, for every mode:
- headless Services (`clusterIP: None`) and `ExternalName` Services produce nothing (DNS handles them);
- an endpoint port is matched to the service port by name (the only port may be unnamed), then protocol;
- only `addresses` are used (`notReadyAddresses` never receive traffic);
- a node port only for types NodePort and LoadBalancer, load-balancer IPs only for LoadBalancer;
- `externalTrafficPolicy: Local` only matters for externally reachable ports (node ports, external IPs,
  load-balancer IPs); `internalTrafficPolicy: Local` for the cluster IP.

`NodeContext` is everything a renderer needs to know about the node it runs on.
"""
from __future__ import annotations

import base64
import hashlib
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

DEFAULT_AFFINITY_TIMEOUT = 10800
MASQ_MARK = 0x4000


@dataclass(frozen=True, order=True)
class Endpoint:
    ip: str
    port: int
    node: str | None = None


@dataclass(frozen=True)
class ServicePort:
    namespace: str
    name: str
    port_name: str
    protocol: str                       # "TCP" | "UDP" | "SCTP"
    cluster_ip: str | None
    port: int
    node_port: int | None = None
    external_ips: tuple[str, ...] = ()
    lb_ips: tuple[str, ...] = ()
    lb_source_ranges: tuple[str, ...] = ()
    affinity_timeout: int | None = None  # ClientIP session affinity when set
    external_local: bool = False
    internal_local: bool = False
    endpoints: tuple[Endpoint, ...] = ()

    def __post_init__(self) -> None:
        # Derived once: renderers read these tens of thousands of times per sync, and memoise per
        # ServicePort (hashing every field on each lookup cost a third of a sync).
        base = f"{self.namespace}/{self.name}"
        object.__setattr__(self, "key", f"{base}:{self.port_name}" if self.port_name else base)
        object.__setattr__(self, "proto", self.protocol.lower())
        object.__setattr__(self, "_hash", hash((
            self.namespace, self.name, self.port_name, self.protocol, self.cluster_ip, self.port, self.node_port,
            self.external_ips, self.lb_ips, self.lb_source_ranges, self.affinity_timeout, self.external_local,
            self.internal_local, self.endpoints)))

    def __hash__(self) -> int:
        return self._hash  # type: ignore[attr-defined]

    key: str = field(init=False, repr=False, compare=False)     # `ns/name:port`, Kubernetes' ServicePortName
    proto: str = field(init=False, repr=False, compare=False)   # "tcp" | "udp" | "sctp"

    @property
    def has_external(self) -> bool:
        return bool(self.node_port or self.external_ips or self.lb_ips)

    def local_endpoints(self, node: str) -> tuple[Endpoint, ...]:
        return tuple(e for e in self.endpoints if e.node == node)

    def internal_endpoints(self, node: str) -> tuple[Endpoint, ...]:
        return self.local_endpoints(node) if self.internal_local else self.endpoints

    def external_endpoints(self, node: str) -> tuple[Endpoint, ...]:
        return self.local_endpoints(node) if self.external_local else self.endpoints


@dataclass(frozen=True)
class NodeContext:
    node_name: str
    node_ips: tuple[str, ...] = ()           # where node ports answer
    cluster_cidr: str | None = None          # traffic from outside it to a cluster IP is masqueraded
    masquerade_all: bool = False
    service_cidr: str | None = None          # nftables: unused addresses of the range are dropped


def port_hash(*parts: str) -> str:
    """Kubernetes' chain-name hash: base32 of a SHA-256, 16 characters."""
    digest = hashlib.sha256("".join(parts).encode()).digest()
    return base64.b32encode(digest[:10]).decode()   # 10 bytes are exactly the first 16 base32 characters


def _is_ipv4(ip: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET, ip)   # ipaddress.ip_address is ~10x slower; this runs per endpoint
        return True
    except (OSError, TypeError):
        return False


def _endpoint_port(subset_ports: list[Obj], name: str, protocol: str) -> int | None:
    for p in subset_ports:
        if (p.get("name") or "") == name and (p.get("protocol") or "TCP") == protocol:
            return p.get("port")
    return None


def endpoints_for(endpoints: Obj | None, port_name: str, protocol: str) -> tuple[Endpoint, ...]:
    found: set[Endpoint] = set()
    for subset in (endpoints or {}).get("subsets") or []:
        port = _endpoint_port(subset.get("ports") or [], port_name, protocol)
        if not port:
            continue
        for addr in subset.get("addresses") or []:
            ip = addr.get("ip")
            if ip and _is_ipv4(ip):
                found.add(Endpoint(ip, int(port), addr.get("nodeName")))
    return tuple(sorted(found))


def service_ports(svc: Obj, endpoints: Obj | None) -> list[ServicePort]:
    meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
    svc_type = spec.get("type") or "ClusterIP"
    cluster_ip = spec.get("clusterIP")
    if svc_type == "ExternalName" or cluster_ip == "None":
        return []
    cluster_ip = cluster_ip if cluster_ip and _is_ipv4(cluster_ip) else None
    affinity = None
    if spec.get("sessionAffinity") == "ClientIP":
        cfg = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {})
        affinity = int(cfg.get("timeoutSeconds") or DEFAULT_AFFINITY_TIMEOUT)
    lb_ips: tuple[str, ...] = ()
    if svc_type == "LoadBalancer":
        ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        lb_ips = tuple(i["ip"] for i in ingress if i.get("ip") and _is_ipv4(i["ip"])
                       and (i.get("ipMode") or "VIP") == "VIP")
    external_ips = tuple(ip for ip in spec.get("externalIPs") or [] if _is_ipv4(ip))
    out = []
    for p in spec.get("ports") or []:
        protocol = p.get("protocol") or "TCP"
        name = p.get("name") or ""
        node_port = p.get("nodePort") if svc_type in ("NodePort", "LoadBalancer") else None
        sp = ServicePort(
            namespace=meta.get("namespace") or "default", name=meta.get("name") or "", port_name=name,
            protocol=protocol, cluster_ip=cluster_ip, port=int(p["port"]), node_port=node_port or None,
            external_ips=external_ips, lb_ips=lb_ips,
            lb_source_ranges=tuple(spec.get("loadBalancerSourceRanges") or ()) if lb_ips else (),
            affinity_timeout=affinity,
            external_local=spec.get("externalTrafficPolicy") == "Local",
            internal_local=spec.get("internalTrafficPolicy") == "Local",
            endpoints=endpoints_for(endpoints, name, protocol))
        if sp.cluster_ip or sp.has_external:
            out.append(sp)
    return out


def build(services: Iterable[Obj], endpoints: Mapping[str, Obj],
          cache: dict[str, tuple[tuple, list[ServicePort]]] | None = None) -> tuple[ServicePort, ...]:
    """`endpoints` is keyed `namespace/name`, as the informer's store is.

    With a `cache` (kept by the caller between syncs), a Service whose object and Endpoints are the same
    resourceVersions as last time reuses its ServicePorts: at 10,000 Services a sync then parses only
    what changed. Objects without a resourceVersion are always parsed.
    """
    out: list[ServicePort] = []
    seen: set[str] = set()
    for svc in services:
        meta = svc.get("metadata") or {}
        key = f"{meta.get('namespace') or 'default'}/{meta.get('name')}"
        eps = endpoints.get(key)
        version = (meta.get("resourceVersion"), ((eps or {}).get("metadata") or {}).get("resourceVersion"))
        hit = cache.get(key) if cache is not None and version[0] else None
        if hit is not None and hit[0] == version and (eps is None) == (version[1] is None):
            ports = hit[1]
        else:
            ports = service_ports(svc, eps)
            if cache is not None and version[0]:
                cache[key] = (version, ports)
        seen.add(key)
        out.extend(ports)
    if cache is not None:
        for key in [k for k in cache if k not in seen]:
            del cache[key]
    return tuple(sorted(out, key=lambda s: (s.key, s.protocol)))
