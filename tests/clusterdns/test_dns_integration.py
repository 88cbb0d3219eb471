"""`minik8s dns` as a subprocess against the real apiserver, queried over UDP and TCP on 127.0.0.1.

Waits are event-driven: the server (run with `-v`) logs `zone changed: <resource> <ns>/<name>` once an
informer event has reached its cache, so a test writes an object, waits for that line (with a
deadline) and then asks. Forwarding stays off, as everywhere in tests: nothing leaves loopback.
"""
from __future__ import annotations

import re
import subprocess
import sys
import threading
import time

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from cli.etcd import free_port
from client.kubeconfig import Config, write_kubeconfig
from client.rest import Client
from clusterdns.manifest import CLUSTER_IP, NAME, NAMESPACE, ensure_kube_dns_service
from tests.conftest import ROOT

PROPAGATION = 1.0  # seconds from the apiserver's answer to the DNS server's cache
STARTUP = 20.0
LOOPBACK = "127.0.0.1"


class LogWatcher:
    """Collects a subprocess's output lines and lets a test wait for one."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def mark(self) -> int:
        with self._cond:
            return len(self.lines)

    def wait_for(self, pattern: str, *, since: int = 0, timeout: float = PROPAGATION) -> str:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = since
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    if regex.search(line):
                        return line
                seen = len(self.lines)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no log line matching {pattern!r} within {timeout}s; last lines:\n"
                                         + "\n".join(self.lines[-20:]))
                self._cond.wait(remaining)


class DNSProcess:
    def __init__(self, proc: subprocess.Popen, port: int, log: LogWatcher) -> None:
        self.proc, self.port, self.log = proc, port, log

    def query(self, name: str, qtype: str = "A", *, tcp: bool = False) -> DNSRecord:
        reply = DNSRecord.question(name, qtype).send(LOOPBACK, self.port, tcp=tcp, timeout=2)
        return DNSRecord.parse(reply)

    def changed(self, resource: str, namespace: str, name: str, *, since: int) -> None:
        self.log.wait_for(rf"zone changed: {resource} {re.escape(namespace)}/{re.escape(name)} ", since=since)


@pytest.fixture(scope="module")
def kubeconfig(apiserver, tmp_path_factory):
    return write_kubeconfig(tmp_path_factory.mktemp("dns") / "dns.kubeconfig", server=apiserver.url,
                            ca_pem=apiserver.ca.read_bytes(), token=apiserver.tokens["system:minik8s-dns"],
                            user="system:minik8s-dns")


@pytest.fixture(scope="module")
def dns(kubeconfig):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "-v", "dns", "--kubeconfig", str(kubeconfig), "--bind", LOOPBACK,
         "--port", str(port), "--health-port", str(free_port()), "--ttl", "5"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = LogWatcher(proc.stdout)
    try:
        log.wait_for(r"caches synced", timeout=STARTUP)
        yield DNSProcess(proc, port, log)
    finally:
        proc.terminate()
        rc = proc.wait(10)
    assert rc == 0, "\n".join(log.lines[-30:])


def addresses(reply: DNSRecord) -> list[str]:
    return sorted(str(rr.rdata) for rr in reply.rr if rr.rtype in (QTYPE.A, QTYPE.AAAA))


def create(http, path: str, body: dict) -> dict:
    r = http.post(path, json=body)
    assert r.status_code == 201, r.text
    return r.json()


def test_cluster_ip_service_over_udp_and_tcp_and_its_removal(dns, http, namespace):
    mark = dns.log.mark()
    svc = create(http, f"/api/v1/namespaces/{namespace}/services", {
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
    ip = svc["spec"]["clusterIP"]
    dns.changed("services", namespace, "web", since=mark)
    name = f"web.{namespace}.svc.cluster.local"
    for tcp in (False, True):
        reply = dns.query(name, tcp=tcp)
        assert reply.header.rcode == RCODE.NOERROR and addresses(reply) == [ip]
        assert reply.header.aa == 1 and reply.rr[0].ttl == 5
    srv = dns.query(f"_http._tcp.{name}", "SRV")
    assert [(rr.rdata.port, str(rr.rdata.target)) for rr in srv.rr] == [(80, name + ".")]
    nodata = dns.query(name, "AAAA")
    assert nodata.header.rcode == RCODE.NOERROR and nodata.rr == [] and nodata.auth[0].rtype == QTYPE.SOA
    ptr = dns.query(".".join(reversed(ip.split("."))) + ".in-addr.arpa", "PTR")
    assert [str(rr.rdata) for rr in ptr.rr] == [name + "."]

    mark = dns.log.mark()
    assert http.delete(f"/api/v1/namespaces/{namespace}/services/web").status_code == 200
    dns.changed("services", namespace, "web", since=mark)
    gone = dns.query(name)
    assert gone.header.rcode == RCODE.NXDOMAIN and gone.auth[0].rtype == QTYPE.SOA


def test_headless_service_endpoints_and_updates(dns, http, namespace):
    create(http, f"/api/v1/namespaces/{namespace}/services", {
        "metadata": {"name": "db"},
        "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}})
    mark = dns.log.mark()
    ep = create(http, f"/api/v1/namespaces/{namespace}/endpoints", {
        "metadata": {"name": "db"},
        "subsets": [{"addresses": [{"ip": "10.244.0.7", "hostname": "db-0"}],
                     "notReadyAddresses": [{"ip": "10.244.0.8", "hostname": "db-1"}],
                     "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}]})
    dns.changed("endpoints", namespace, "db", since=mark)
    name = f"db.{namespace}.svc.cluster.local"
    assert addresses(dns.query(name)) == ["10.244.0.7"]
    assert addresses(dns.query(f"db-0.{name}", tcp=True)) == ["10.244.0.7"]
    assert dns.query(f"db-1.{name}").header.rcode == RCODE.NXDOMAIN
    srv = dns.query(f"_pg._tcp.{name}", "SRV")
    assert [(rr.rdata.port, str(rr.rdata.target)) for rr in srv.rr] == [(5432, f"db-0.{name}.")]
    assert [(str(rr.rname), str(rr.rdata)) for rr in srv.ar] == [(f"db-0.{name}.", "10.244.0.7")]

    ep["subsets"][0]["addresses"].append(ep["subsets"][0].pop("notReadyAddresses")[0])
    mark = dns.log.mark()
    r = http.put(f"/api/v1/namespaces/{namespace}/endpoints/db", json=ep)
    assert r.status_code == 200, r.text
    written = time.monotonic()
    dns.changed("endpoints", namespace, "db", since=mark)
    assert addresses(dns.query(name)) == ["10.244.0.7", "10.244.0.8"]
    assert addresses(dns.query(f"db-1.{name}")) == ["10.244.0.8"]
    assert time.monotonic() - written < PROPAGATION


def test_pods_external_names_and_outside_names(dns, http, namespace):
    mark = dns.log.mark()
    create(http, f"/api/v1/namespaces/{namespace}/pods", {
        "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    dns.changed("pods", namespace, "p", since=mark)
    pod = http.get(f"/api/v1/namespaces/{namespace}/pods/p").json()
    pod["status"] = {"phase": "Running", "podIP": "10.244.3.9", "podIPs": [{"ip": "10.244.3.9"}]}
    mark = dns.log.mark()
    r = http.put(f"/api/v1/namespaces/{namespace}/pods/p/status", json=pod)
    assert r.status_code == 200, r.text
    dns.changed("pods", namespace, "p", since=mark)
    assert addresses(dns.query(f"10-244-3-9.{namespace}.pod.cluster.local")) == ["10.244.3.9"]
    ptr = dns.query("9.3.244.10.in-addr.arpa", "PTR")
    assert [str(rr.rdata) for rr in ptr.rr] == [f"10-244-3-9.{namespace}.pod.cluster.local."]

    mark = dns.log.mark()
    create(http, f"/api/v1/namespaces/{namespace}/services", {
        "metadata": {"name": "ext"}, "spec": {"type": "ExternalName", "externalName": "db.example.com"}})
    dns.changed("services", namespace, "ext", since=mark)
    cname = dns.query(f"ext.{namespace}.svc.cluster.local")
    assert [(rr.rtype, str(rr.rdata)) for rr in cname.rr] == [(QTYPE.CNAME, "db.example.com.")]

    for outside in ("db.example.com", "kubernetes.default.svc.cluster.local.example.org"):
        for tcp in (False, True):
            reply = dns.query(outside, tcp=tcp)
            assert reply.header.rcode == RCODE.REFUSED and reply.rr == []


def test_ensure_kube_dns_service_is_idempotent(dns, apiserver):
    # Node addresses are only data here (nothing is sent to them); the apiserver refuses loopback endpoints.
    # Whoever deploys DNS writes the Service (the lab, as admin); the DNS server's own identity only reads.
    with Client(Config(server=apiserver.url, token=apiserver.admin_token, ca_file=str(apiserver.ca))) as client:
        mark = dns.log.mark()
        svc, ep = ensure_kube_dns_service(client, ["192.168.50.11"])
        assert svc["spec"]["clusterIP"] == CLUSTER_IP and not svc["spec"].get("selector")
        assert {(p["name"], p["protocol"], p["port"]) for p in svc["spec"]["ports"]} == \
            {("dns", "UDP", 53), ("dns-tcp", "TCP", 53)}
        assert [a["ip"] for a in ep["subsets"][0]["addresses"]] == ["192.168.50.11"]

        again_svc, again_ep = ensure_kube_dns_service(client, ["192.168.50.11"])
        assert again_svc["metadata"]["resourceVersion"] == svc["metadata"]["resourceVersion"]
        assert again_ep["metadata"]["resourceVersion"] == ep["metadata"]["resourceVersion"]

        _, moved = ensure_kube_dns_service(client, ["192.168.50.12", "192.168.50.11"])
        assert [a["ip"] for a in moved["subsets"][0]["addresses"]] == ["192.168.50.11", "192.168.50.12"]
        assert moved["metadata"]["resourceVersion"] != ep["metadata"]["resourceVersion"]
        assert client.get("services", NAME, NAMESPACE)["metadata"]["resourceVersion"] == \
            svc["metadata"]["resourceVersion"]

        client.patch("services", NAME, {"spec": {"selector": {"app": "coredns"}}}, NAMESPACE)
        repaired, _ = ensure_kube_dns_service(client, ["192.168.50.11", "192.168.50.12"])
        assert not repaired["spec"].get("selector") and repaired["spec"]["clusterIP"] == CLUSTER_IP

    dns.changed("services", NAMESPACE, NAME, since=mark)
    assert addresses(dns.query("kube-dns.kube-system.svc.cluster.local")) == [CLUSTER_IP]
    assert addresses(dns.query("ns.dns.cluster.local")) == [CLUSTER_IP]
