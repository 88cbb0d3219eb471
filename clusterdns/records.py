"""The cluster zone: DNS answers computed from cached Services, Endpoints and Pods.

This is the pure half of the DNS server, after the Kubernetes DNS specification and CoreDNS's
`kubernetes` plugin. `Resolver.resolve(qname, qtype)` reads three read-only Stores (the informers'
caches, or Stores filled by hand in tests) and returns an `Answer`: rcode plus answer, authority and
additional records. It never calls the apiserver and never forwards; a name outside the cluster zone
comes back as `Answer.outside` and the server decides (forward or REFUSED).

Names under `<zone>` (the cluster domain, `cluster.local`):

- `<svc>.<ns>.svc.<zone>`: A/AAAA of the ClusterIP(s); for a headless Service (clusterIP None) the
  ready endpoint addresses (plus not-ready ones with `publishNotReadyAddresses`); an ExternalName
  Service is a CNAME to `spec.externalName` (followed here only when the target is in the zone).
  SRV on this name lists every port.
- `<endpoint>.<svc>.<ns>.svc.<zone>`: one endpoint address; the endpoint's name is its `hostname`
  (StatefulSet pods) or its IP with dashes (`10-244-1-5`), as CoreDNS names them.
- `_<port>._<proto>.<svc>.<ns>.svc.<zone>` SRV: a ClusterIP Service gives one record per matching named
  port targeting `<svc>.<ns>.svc.<zone>`; a headless one gives one record per ready endpoint, targeting
  the endpoint's name. The targets' addresses go in the additional section.
- `<a-b-c-d>.<ns>.pod.<zone>`: A a.b.c.d, with no check that such a pod exists (CoreDNS's
  `pods insecure`, the kube-dns behaviour).
- `<zone>` SOA and NS; `ns.dns.<zone>` A is the kube-dns Service's ClusterIP.
- PTR `d.c.b.a.in-addr.arpa` (and ip6.arpa) for Service ClusterIPs, headless endpoint addresses and pod
  IPs. A reverse name we know nothing about is treated like any name outside the zone.

Negative answers carry the zone's SOA in the authority section: NXDOMAIN when the name does not exist
(including every search-path miss such as `web.ns.svc.cluster.local.ns.svc.cluster.local`, answered
here at once), NODATA (NOERROR, no answers) when the name exists but has no record of the asked type —
an AAAA query for a v4-only Service, or a headless Service with no ready endpoints (its name still
exists; NXDOMAIN would be negatively cached for every type).
"""
from __future__ import annotations

import ipaddress
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from dnslib import AAAA, CNAME, NS, PTR, QTYPE, RCODE, RR, SOA, SRV, A, DNSLabel

from client.store import Store

logger = logging.getLogger(__name__)

Obj = dict[str, Any]

DEFAULT_TTL = 5
DNS_SERVICE = ("kube-system", "kube-dns")

INDEX_CLUSTER_IP = "clusterIP"
INDEX_ADDRESS = "address"
INDEX_POD_IP = "podIP"


@dataclass
class Answer:
    rcode: int = RCODE.NOERROR
    answer: list[RR] = field(default_factory=list)
    authority: list[RR] = field(default_factory=list)
    additional: list[RR] = field(default_factory=list)
    # The name is not ours: the server forwards it upstream or refuses it.
    outside: bool = False
    # An ExternalName CNAME whose target lies outside the zone: the server may resolve it upstream.
    chase: str | None = None


# -- indexes the resolver relies on ------------------------------------------------------------------

def service_ips(svc: Obj) -> list[str]:
    spec = svc.get("spec") or {}
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    return [ip for ip in ips if ip and ip != "None"]


def endpoint_ips(ep: Obj) -> list[str]:
    return [a["ip"] for s in ep.get("subsets") or [] for a in (s.get("addresses") or []) + (s.get("notReadyAddresses") or [])
            if a.get("ip")]


def pod_ips(pod: Obj) -> list[str]:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    # A hostNetwork pod's IP is its node's: it must not claim the node's reverse name.
    if spec.get("hostNetwork") or status.get("phase") in ("Succeeded", "Failed"):
        return []
    ips = [p.get("ip") for p in status.get("podIPs") or []] or [status.get("podIP")]
    return [ip for ip in ips if ip]


def add_indexes(services: Store, endpoints: Store, pods: Store) -> None:
    """The reverse (PTR) lookups need address -> object indexes on the three caches."""
    services.add_index(INDEX_CLUSTER_IP, service_ips)
    endpoints.add_index(INDEX_ADDRESS, endpoint_ips)
    pods.add_index(INDEX_POD_IP, pod_ips)


# -- helpers ----------------------------------------------------------------------------------------

def dashed(ip: str) -> str:
    return ip.replace(".", "-").replace(":", "-")


def undashed(label: str) -> str | None:
    """`10-244-1-5` -> `10.244.1.5`; IPv6 with `-` for `:` (`fd00--5` -> `fd00::5`); None if not an IP."""
    for candidate in (label.replace("-", "."), label.replace("-", ":")):
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            continue
    return None


def reverse_ip(labels: tuple[str, ...]) -> str | None:
    """The IP a reverse name (labels before in-addr.arpa / ip6.arpa, least significant first) stands for."""
    try:
        if len(labels) == 4:
            return str(ipaddress.IPv4Address(".".join(reversed(labels))))
        if len(labels) == 32:
            nibbles = "".join(reversed(labels))
            return str(ipaddress.IPv6Address(int(nibbles, 16)))
    except ValueError:
        pass
    return None


def address_rr(name: str, ip: str, ttl: int) -> RR:
    if ipaddress.ip_address(ip).version == 4:
        return RR(name, QTYPE.A, rdata=A(ip), ttl=ttl)
    return RR(name, QTYPE.AAAA, rdata=AAAA(ip), ttl=ttl)


def _family_matches(ip: str, qtype: int) -> bool:
    version = ipaddress.ip_address(ip).version
    return qtype == QTYPE.ANY or (qtype == QTYPE.A and version == 4) or (qtype == QTYPE.AAAA and version == 6)


def _ip_order(ip: str) -> tuple[int, ipaddress.IPv4Address | ipaddress.IPv6Address]:
    # v4 and v6 addresses do not compare with each other; dual-stack endpoints sort v4 first.
    address = ipaddress.ip_address(ip)
    return address.version, address


@dataclass
class _Endpoint:
    name: str
    ip: str
    ports: list[Obj]


class Resolver:
    """Answers for the cluster zone from read-only caches; one call per question, no I/O."""

    def __init__(self, services: Store, endpoints: Store, pods: Store, *, zone: str = "cluster.local",
                 ttl: int = DEFAULT_TTL) -> None:
        self.services, self.endpoints, self.pods = services, endpoints, pods
        self.zone = zone.strip(".").lower()
        self.zone_labels = tuple(self.zone.split("."))
        self.ttl = ttl
        # The SOA serial only needs to move when the zone changes; the server bumps it from informer events.
        self.serial = int(time.time())
        self._following = False

    # -- entry point -------------------------------------------------------------------------------

    def resolve(self, qname: str | DNSLabel, qtype: int) -> Answer:
        labels = tuple(str(qname).rstrip(".").lower().split(".")) if str(qname).strip(".") else ()
        n = len(self.zone_labels)
        if len(labels) >= n and labels[len(labels) - n:] == self.zone_labels:
            return self._in_zone(labels[:len(labels) - n], qtype)
        if labels[-2:] in (("in-addr", "arpa"), ("ip6", "arpa")):
            return self._reverse(labels, qtype)
        return Answer(outside=True)

    # -- the zone ----------------------------------------------------------------------------------

    def fqdn(self, *labels: str) -> str:
        return ".".join((*labels, self.zone)) + "."

    def soa(self) -> RR:
        return RR(self.zone + ".", QTYPE.SOA, ttl=self.ttl, rdata=SOA(
            self.fqdn("ns", "dns"), f"hostmaster.{self.zone}.", (self.serial, 7200, 1800, 86400, self.ttl)))

    def nxdomain(self) -> Answer:
        return Answer(RCODE.NXDOMAIN, authority=[self.soa()])

    def nodata(self) -> Answer:
        return Answer(authority=[self.soa()])

    def records(self, answer: list[RR], additional: list[RR] | None = None) -> Answer:
        return Answer(answer=answer, additional=additional or []) if answer else self.nodata()

    def _in_zone(self, rel: tuple[str, ...], qtype: int) -> Answer:
        if not rel:
            if qtype == QTYPE.SOA:
                return Answer(answer=[self.soa()])
            if qtype == QTYPE.NS:
                return Answer(answer=[RR(self.zone + ".", QTYPE.NS, rdata=NS(self.fqdn("ns", "dns")), ttl=self.ttl)])
            return self.nodata()
        kind, rest = rel[-1], rel[:-1]
        if kind == "svc":
            return self._svc(rest, qtype)
        if kind == "pod":
            return self._pod(rest, qtype)
        if kind == "dns":
            return self._dns(rest, qtype)
        return self.nxdomain()

    def _dns(self, rest: tuple[str, ...], qtype: int) -> Answer:
        if not rest:
            return self.nodata()
        if rest != ("ns",):
            return self.nxdomain()
        svc = self.services.get_by_name(DNS_SERVICE[1], DNS_SERVICE[0])
        ips = service_ips(svc) if svc else []
        return self.records([address_rr(self.fqdn("ns", "dns"), ip, self.ttl) for ip in ips if _family_matches(ip, qtype)])

    def _pod(self, rest: tuple[str, ...], qtype: int) -> Answer:
        if len(rest) < 2:
            return self.nodata()  # `pod.<zone>` and `<ns>.pod.<zone>` exist as parents of pod names
        if len(rest) > 2 or (ip := undashed(rest[0])) is None:
            return self.nxdomain()
        name = self.fqdn(*rest, "pod")
        return self.records([address_rr(name, ip, self.ttl)] if _family_matches(ip, qtype) else [])

    # -- services ----------------------------------------------------------------------------------

    def _svc(self, rest: tuple[str, ...], qtype: int) -> Answer:
        if not rest:
            return self.nodata()
        if len(rest) == 1:
            namespace = rest[0]
            exists = any(k.startswith(namespace + "/") for k in self.services.keys())
            return self.nodata() if exists else self.nxdomain()
        svc = self.services.get_by_name(rest[-2], rest[-1])
        if svc is None:
            return self.nxdomain()
        if len(rest) == 2:
            return self._service(svc, qtype)
        if len(rest) == 3 and rest[0].startswith("_"):
            # `_tcp.<svc>.<ns>.svc.<zone>` is the empty parent of the service's `_<port>._tcp` SRV names.
            proto = rest[0][1:]
            exists = any(p.get("name") and (p.get("protocol") or "TCP").lower() == proto
                         for p in (svc.get("spec") or {}).get("ports") or [])
            return self.nodata() if exists else self.nxdomain()
        if len(rest) == 3:
            return self._endpoint(svc, rest[0], qtype)
        if len(rest) == 4 and rest[0].startswith("_") and rest[1].startswith("_"):
            return self._srv(svc, rest[0][1:], rest[1][1:], qtype)
        return self.nxdomain()

    def _service_name(self, svc: Obj) -> str:
        meta = svc["metadata"]
        return self.fqdn(meta["name"], meta["namespace"], "svc")

    def _ready_endpoints(self, svc: Obj) -> list[_Endpoint]:
        meta = svc["metadata"]
        ep = self.endpoints.get_by_name(meta["name"], meta["namespace"])
        if ep is None:
            return []
        keys = ("addresses", "notReadyAddresses") if (svc.get("spec") or {}).get("publishNotReadyAddresses") \
            else ("addresses",)
        found = []
        for subset in ep.get("subsets") or []:
            for key in keys:
                for addr in subset.get(key) or []:
                    if addr.get("ip"):
                        found.append(_Endpoint((addr.get("hostname") or dashed(addr["ip"])).lower(), addr["ip"],
                                               subset.get("ports") or []))
        return found

    def _service(self, svc: Obj, qtype: int) -> Answer:
        spec = svc.get("spec") or {}
        name = self._service_name(svc)
        if spec.get("type") == "ExternalName":
            return self._external_name(name, spec.get("externalName") or "", qtype)
        if qtype == QTYPE.SRV:
            return self._srv(svc, None, None, qtype)
        if spec.get("clusterIP") == "None":
            ips = sorted({e.ip for e in self._ready_endpoints(svc)}, key=_ip_order)
        else:
            ips = service_ips(svc)
        return self.records([address_rr(name, ip, self.ttl) for ip in ips if _family_matches(ip, qtype)])

    def _external_name(self, name: str, target: str, qtype: int) -> Answer:
        target = target.rstrip(".").lower()
        cname = RR(name, QTYPE.CNAME, rdata=CNAME(target + "."), ttl=self.ttl)
        if qtype == QTYPE.CNAME or not target or self._following:
            # One level is all we follow inside the zone (two ExternalNames may point at each other).
            return Answer(answer=[cname])
        self._following = True
        try:
            inner = self.resolve(target, qtype)
        finally:
            self._following = False
        if inner.outside:
            return Answer(answer=[cname], chase=target)
        return Answer(inner.rcode, [cname, *inner.answer], inner.authority, inner.additional)

    def _endpoint(self, svc: Obj, endpoint: str, qtype: int) -> Answer:
        name = self._service_name(svc)
        matches = [e for e in self._ready_endpoints(svc) if e.name == endpoint]
        if not matches:
            return self.nxdomain()
        own = f"{endpoint}.{name}"
        return self.records([address_rr(own, ip, self.ttl)
                             for ip in sorted({e.ip for e in matches}, key=_ip_order) if _family_matches(ip, qtype)])

    def _srv(self, svc: Obj, port_name: str | None, proto: str | None, qtype: int) -> Answer:
        """SRV records for the named port (None: every port) and protocol (None: any)."""
        spec = svc.get("spec") or {}
        if spec.get("type") == "ExternalName":
            return self.nxdomain()

        def matches(port: Obj) -> bool:
            return (port_name is None or (port.get("name") or "").lower() == port_name) and \
                (proto is None or (port.get("protocol") or "TCP").lower() == proto)

        service_ports = [p for p in spec.get("ports") or [] if matches(p)]
        name = self._service_name(svc)
        targets: list[tuple[int, str, str]] = []  # (port, target name, target ip)
        if spec.get("clusterIP") == "None":
            for e in self._ready_endpoints(svc):
                for port in e.ports:
                    if matches(port) and port.get("port"):
                        targets.append((int(port["port"]), f"{e.name}.{name}", e.ip))
        else:
            for port in service_ports:
                for ip in service_ips(svc):
                    targets.append((int(port["port"]), name, ip))
        if not targets:
            # The SRV name exists if the Service declares such a port (e.g. a headless one with no endpoints yet).
            return self.nodata() if service_ports or port_name is None else self.nxdomain()
        if qtype != QTYPE.SRV:
            return self.nodata()
        qname = name if port_name is None else f"_{port_name}._{proto}.{name}"
        unique = sorted({(port, target) for port, target, _ in targets})
        weight = max(1, 100 // len(unique))
        answer = [RR(qname, QTYPE.SRV, ttl=self.ttl, rdata=SRV(0, weight, port, target)) for port, target in unique]
        additional = {(target, ip) for _, target, ip in targets}
        return Answer(answer=answer, additional=[address_rr(t, ip, self.ttl) for t, ip in sorted(additional)])

    # -- reverse -----------------------------------------------------------------------------------

    def _reverse(self, labels: tuple[str, ...], qtype: int) -> Answer:
        ip = reverse_ip(labels[:-2])
        names = self.reverse_names(ip) if ip else []
        if not names:
            return Answer(outside=True)
        if qtype != QTYPE.PTR:
            return self.nodata()
        owner = ".".join(labels) + "."
        return Answer(answer=[RR(owner, QTYPE.PTR, rdata=PTR(n), ttl=self.ttl) for n in names])

    def reverse_names(self, ip: str) -> list[str]:
        names = [self._service_name(s) for s in self.services.by_index(INDEX_CLUSTER_IP, ip)]
        for ep in self.endpoints.by_index(INDEX_ADDRESS, ip):
            meta = ep["metadata"]
            svc = self.services.get_by_name(meta["name"], meta["namespace"])
            if svc is not None and (svc.get("spec") or {}).get("clusterIP") == "None":
                names += [f"{e.name}.{self._service_name(svc)}" for e in self._ready_endpoints(svc) if e.ip == ip]
        for pod in self.pods.by_index(INDEX_POD_IP, ip):
            names.append(self.fqdn(dashed(ip), pod["metadata"]["namespace"], "pod"))
        return list(dict.fromkeys(names))
