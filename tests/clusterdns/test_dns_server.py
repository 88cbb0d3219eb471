"""The DNS server's wire behaviour over real UDP and TCP sockets on 127.0.0.1, in process.

The "upstream" in the forwarding tests is a second instance of our own server on loopback, serving a
zone named `example.com`: nothing here sends a packet beyond 127.0.0.1 (DESIGN §6).
"""
from __future__ import annotations

import asyncio
import struct

import pytest
from dnslib import EDNS0, QTYPE, RCODE, DNSRecord

from cli.etcd import free_port
from client.store import Indexer
from clusterdns.records import Resolver, add_indexes
from clusterdns.server import DNSHandler, Forwarder, parse_upstreams, serve

LOOPBACK = "127.0.0.1"


def resolver(zone="cluster.local", objs=()):
    services, eps, pods = Indexer(), Indexer(), Indexer()
    add_indexes(services, eps, pods)
    for store, obj in objs:
        {"svc": services, "ep": eps}[store].put(obj)
    return Resolver(services, eps, pods, zone=zone)


def svc(name, ns, ip, **spec):
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}], **spec}}


MANY = 60  # endpoints: the A answer is far over 512 bytes
CLUSTER = [
    ("svc", svc("web", "shop", "10.96.0.20")),
    ("svc", svc("big", "shop", "None")),
    ("ep", {"metadata": {"name": "big", "namespace": "shop"},
            "subsets": [{"addresses": [{"ip": f"10.244.1.{i}"} for i in range(1, MANY + 1)], "ports": [{"port": 80}]}]}),
    ("svc", svc("ext", "shop", None, type="ExternalName", externalName="web.up.svc.example.com")),
]


async def udp_query(port, request: DNSRecord, timeout=2.0) -> DNSRecord:
    loop = asyncio.get_running_loop()
    answered: asyncio.Future[bytes] = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            if not answered.done():
                answered.set_result(data)

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=(LOOPBACK, port))
    try:
        transport.sendto(request.pack())
        return DNSRecord.parse(await asyncio.wait_for(answered, timeout))
    finally:
        transport.close()


async def tcp_queries(port, *requests: DNSRecord) -> list[DNSRecord]:
    """Several queries on one connection, as resolvers do after a truncated UDP answer."""
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    try:
        replies = []
        for request in requests:
            packet = request.pack()
            writer.write(struct.pack("!H", len(packet)) + packet)
            await writer.drain()
            (length,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 2))
            replies.append(DNSRecord.parse(await reader.readexactly(length)))
        return replies
    finally:
        writer.close()


class Server:
    def __init__(self, handler: DNSHandler):
        self.handler, self.port, self.closers = handler, free_port(), []

    async def __aenter__(self):
        self.closers = await serve(self.handler, [LOOPBACK], self.port)
        return self

    async def __aexit__(self, *exc):
        for closer in self.closers:
            closer.close()


def q(name, qtype="A", **kw):
    return DNSRecord.question(name, qtype, **kw)


def addresses(reply: DNSRecord):
    return [str(rr.rdata) for rr in reply.rr if rr.rtype in (QTYPE.A, QTYPE.AAAA)]


async def test_udp_and_tcp_answers():
    async with Server(DNSHandler(resolver(objs=CLUSTER))) as s:
        reply = await udp_query(s.port, q("web.shop.svc.cluster.local"))
        assert reply.header.rcode == RCODE.NOERROR and reply.header.aa == 1 and addresses(reply) == ["10.96.0.20"]
        a, nx = await tcp_queries(s.port, q("web.shop.svc.cluster.local"), q("nope.shop.svc.cluster.local"))
        assert addresses(a) == ["10.96.0.20"]
        assert nx.header.rcode == RCODE.NXDOMAIN and [rr.rtype for rr in nx.auth] == [QTYPE.SOA]


async def test_outside_names_are_refused_without_upstreams():
    async with Server(DNSHandler(resolver(objs=CLUSTER))) as s:
        for name in ("example.com", "8.8.8.8.in-addr.arpa"):
            reply = await udp_query(s.port, q(name))
            assert reply.header.rcode == RCODE.REFUSED and reply.rr == [] and reply.header.ra == 0


async def test_external_name_without_upstreams_is_just_the_cname():
    async with Server(DNSHandler(resolver(objs=CLUSTER))) as s:
        reply = await udp_query(s.port, q("ext.shop.svc.cluster.local"))
        assert reply.header.rcode == RCODE.NOERROR
        assert [(rr.rtype, str(rr.rdata)) for rr in reply.rr] == [(QTYPE.CNAME, "web.up.svc.example.com.")]


async def test_large_udp_answer_is_truncated_and_complete_over_tcp():
    async with Server(DNSHandler(resolver(objs=CLUSTER))) as s:
        small = await udp_query(s.port, q("big.shop.svc.cluster.local"))
        assert small.header.tc == 1 and small.rr == []
        full, = await tcp_queries(s.port, q("big.shop.svc.cluster.local"))
        assert full.header.tc == 0 and len(addresses(full)) == MANY
        request = q("big.shop.svc.cluster.local")
        request.add_ar(EDNS0(udp_len=4096))
        edns = await udp_query(s.port, request)
        assert edns.header.tc == 0 and len(addresses(edns)) == MANY


async def test_servfail_until_the_caches_have_synced():
    synced = False
    async with Server(DNSHandler(resolver(objs=CLUSTER), ready=lambda: synced)) as s:
        assert (await udp_query(s.port, q("web.shop.svc.cluster.local"))).header.rcode == RCODE.SERVFAIL
        synced = True
        assert (await udp_query(s.port, q("web.shop.svc.cluster.local"))).header.rcode == RCODE.NOERROR


async def test_malformed_queries_responses_and_zone_transfers():
    handler = DNSHandler(resolver(objs=CLUSTER))
    request = q("web.shop.svc.cluster.local")
    garbage = request.pack()[:12] + b"\x07truncat"
    assert DNSRecord.parse(await handler.handle(garbage)).header.rcode == RCODE.FORMERR
    assert await handler.handle(b"\x00\x01") is None
    response = request.reply()
    assert await handler.handle(response.pack()) is None  # never answer an answer
    axfr = DNSRecord.parse(await handler.handle(q("cluster.local", "AXFR").pack(), tcp=True))
    assert axfr.header.rcode == RCODE.REFUSED


async def test_forwarding_to_a_loopback_upstream():
    upstream = DNSHandler(resolver("example.com", [("svc", svc("web", "up", "10.0.0.5"))]))
    async with Server(upstream) as up:
        forwarder = Forwarder(parse_upstreams(f"{LOOPBACK}:{up.port}"), timeout=1.0)
        async with Server(DNSHandler(resolver(objs=CLUSTER), forwarder=forwarder)) as s:
            relayed = await udp_query(s.port, q("web.up.svc.example.com"))
            assert addresses(relayed) == ["10.0.0.5"]
            relayed_tcp, = await tcp_queries(s.port, q("web.up.svc.example.com"))
            assert addresses(relayed_tcp) == ["10.0.0.5"]
            chased = await udp_query(s.port, q("ext.shop.svc.cluster.local"))
            assert [str(rr.rdata) for rr in chased.rr] == ["web.up.svc.example.com.", "10.0.0.5"]
            assert chased.header.ra == 1


async def test_servfail_when_no_upstream_answers():
    silent = free_port()  # nothing listens there: ICMP port unreachable on loopback
    forwarder = Forwarder([(LOOPBACK, silent)], timeout=0.3)
    async with Server(DNSHandler(resolver(objs=CLUSTER), forwarder=forwarder)) as s:
        assert (await udp_query(s.port, q("example.com"))).header.rcode == RCODE.SERVFAIL


@pytest.mark.parametrize("spec, expected", [
    ("", []),
    ("127.0.0.1", [("127.0.0.1", 53)]),
    ("127.0.0.1:5353, [::1]:54,::1", [("127.0.0.1", 5353), ("::1", 54), ("::1", 53)]),
])
def test_parse_upstreams(spec, expected):
    assert parse_upstreams(spec) == expected


def test_parse_upstreams_rejects_names():
    with pytest.raises(ValueError):
        parse_upstreams("dns.google:53")
