"""The cluster DNS server process: asyncio UDP and TCP listeners in front of `records.Resolver`.

- Informers on Services, Endpoints and Pods keep the caches the resolver reads; a query is answered
  from memory on the event loop, so it sees one consistent view and never waits for the apiserver.
  Until the caches have synced every query gets SERVFAIL (an empty cache would answer NXDOMAIN for
  names that exist, and clients cache negative answers); `/readyz` on the health port says the same.
  After that an apiserver outage leaves the caches as they were: we keep answering, as CoreDNS does.
- UDP answers are limited to 512 bytes, or the client's EDNS0 buffer size (at most 4096); a longer
  answer goes out with TC set and no records, and the client retries over TCP (2-byte length framing,
  several queries per connection).
- Names outside the cluster zone go to the `--upstream` servers (UDP, or TCP for a TCP client, with a
  timeout, each upstream in turn) when any are configured; SERVFAIL if none answers. With no upstream —
  the default, and the only mode tests and the lab use, because the machine's default route leads
  outside (DESIGN §6) — they are answered REFUSED, which is what CoreDNS answers for a zone it does not
  serve. An ExternalName's CNAME target is only chased upstream when forwarding is on.
- Zone transfers (AXFR/IXFR) are refused. Each informer event is logged at debug level
  (`zone changed: services ns/name`) once the cache holds it, which the integration tests wait on.
"""
from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import struct
import time
from collections.abc import Callable
from typing import Any

from dnslib import EDNS0, OPCODE, QTYPE, RCODE, DNSError, DNSHeader, DNSRecord
from dnslib.buffer import Buffer

from client.factory import InformerFactory
from client.kubeconfig import Config
from client.rest import AsyncClient
from clusterdns.records import DEFAULT_TTL, Answer, Resolver, add_indexes

logger = logging.getLogger(__name__)

UDP_MIN_SIZE = 512
UDP_MAX_SIZE = 4096
UPSTREAM_TIMEOUT = 2.0
TCP_IDLE_TIMEOUT = 10.0

Upstream = tuple[str, int]
Obj = dict[str, Any]

RESOURCES = ("services", "endpoints", "pods")


def parse_upstreams(spec: str | None) -> list[Upstream]:
    """`ip[:port],[v6]:port,...` -> [(ip, port)]; port 53 by default; names are not accepted (no bootstrap DNS)."""
    found: list[Upstream] = []
    for item in [s.strip() for s in (spec or "").split(",") if s.strip()]:
        host, port = item, 53
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") else 53
        elif item.count(":") == 1:
            host, _, p = item.partition(":")
            port = int(p)
        found.append((str(ipaddress.ip_address(host)), port))
    return found


class Forwarder:
    """Relays a query, as received, to the first upstream that answers."""

    def __init__(self, upstreams: list[Upstream], timeout: float = UPSTREAM_TIMEOUT) -> None:
        self.upstreams = upstreams
        self.timeout = timeout

    async def query(self, packet: bytes, *, tcp: bool = False) -> bytes | None:
        for upstream in self.upstreams:
            try:
                reply = await asyncio.wait_for((self._tcp if tcp else self._udp)(packet, upstream), self.timeout)
                if reply[:2] == packet[:2]:
                    return reply
                logger.warning("upstream %s:%d answered with a mismatched id", *upstream)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
                logger.warning("upstream %s:%d failed: %s", *upstream, type(e).__name__)
        return None

    async def _udp(self, packet: bytes, upstream: Upstream) -> bytes:
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[bytes] = loop.create_future()

        class OneShot(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: object) -> None:
                if not answered.done():
                    answered.set_result(data)

            def error_received(self, exc: Exception) -> None:
                if not answered.done():
                    answered.set_exception(exc)

        transport, _ = await loop.create_datagram_endpoint(OneShot, remote_addr=upstream)
        try:
            transport.sendto(packet)
            return await answered
        finally:
            transport.close()

    async def _tcp(self, packet: bytes, upstream: Upstream) -> bytes:
        reader, writer = await asyncio.open_connection(*upstream)
        try:
            writer.write(struct.pack("!H", len(packet)) + packet)
            await writer.drain()
            (length,) = struct.unpack("!H", await reader.readexactly(2))
            return await reader.readexactly(length)
        finally:
            writer.close()


def udp_limit(request: DNSRecord) -> int:
    for rr in request.ar:
        if rr.rtype == QTYPE.OPT:
            return max(UDP_MIN_SIZE, min(int(rr.rclass), UDP_MAX_SIZE))
    return UDP_MIN_SIZE


class DNSHandler:
    """Turns one query packet into one answer packet (or None to stay silent)."""

    def __init__(self, resolver: Resolver, *, forwarder: Forwarder | None = None,
                 ready: Callable[[], bool] = lambda: True) -> None:
        self.resolver = resolver
        self.forwarder = forwarder
        self.ready = ready

    async def handle(self, data: bytes, *, tcp: bool = False) -> bytes | None:
        try:
            request = DNSRecord.parse(data)
        except (DNSError, struct.error, IndexError, ValueError):
            return self._formerr(data)
        if request.header.qr:
            return None  # a response sent to us: never answer those (reflection loops)
        reply = self._reply(request)
        if request.header.opcode != OPCODE.QUERY:
            reply.header.rcode = RCODE.NOTIMP
        elif len(request.questions) != 1:
            reply.header.rcode = RCODE.FORMERR
        elif not self.ready():
            reply.header.rcode = RCODE.SERVFAIL
        elif request.q.qtype in (QTYPE.AXFR, QTYPE.IXFR):
            reply.header.rcode = RCODE.REFUSED  # the zone lives in the apiserver; nobody needs a copy
        else:
            q = request.q
            answer = self.resolver.resolve(q.qname, q.qtype)
            if answer.outside:
                return await self._outside(request, data, reply, tcp=tcp)
            if answer.chase and self.forwarder:
                await self._chase(answer, q.qtype, tcp=tcp)
            self._fill(reply, answer)
        return self._fit(reply, request, tcp=tcp)

    def _reply(self, request: DNSRecord) -> DNSRecord:
        reply = DNSRecord(DNSHeader(id=request.header.id, qr=1, aa=1, rd=request.header.rd,
                                    ra=1 if self.forwarder else 0, opcode=request.header.opcode),
                          q=request.q if request.questions else None)
        if any(rr.rtype == QTYPE.OPT for rr in request.ar):
            reply.add_ar(EDNS0(udp_len=UDP_MAX_SIZE))
        return reply

    @staticmethod
    def _formerr(data: bytes) -> bytes | None:
        if len(data) < 12:
            return None
        header = DNSHeader.parse(Buffer(data[:12]))
        if header.qr:
            return None
        return DNSRecord(DNSHeader(id=header.id, qr=1, rcode=RCODE.FORMERR)).pack()

    @staticmethod
    def _fill(reply: DNSRecord, answer: Answer) -> None:
        reply.header.rcode = answer.rcode
        for rr in answer.answer:
            reply.add_answer(rr)
        for rr in answer.authority:
            reply.add_auth(rr)
        opt = [rr for rr in reply.ar if rr.rtype == QTYPE.OPT]
        reply.ar = [*answer.additional, *opt]

    async def _outside(self, request: DNSRecord, data: bytes, reply: DNSRecord, *, tcp: bool) -> bytes | None:
        if self.forwarder is None:
            reply.header.aa = 0
            reply.header.rcode = RCODE.REFUSED
            return self._fit(reply, request, tcp=tcp)
        relayed = await self.forwarder.query(data, tcp=tcp)
        if relayed is None:
            reply.header.aa = 0
            reply.header.rcode = RCODE.SERVFAIL
            return self._fit(reply, request, tcp=tcp)
        return relayed

    async def _chase(self, answer: Answer, qtype: int, *, tcp: bool) -> None:
        assert self.forwarder and answer.chase
        relayed = await self.forwarder.query(DNSRecord.question(answer.chase, QTYPE.get(qtype)).pack(), tcp=tcp)
        if relayed is None:
            return
        with contextlib.suppress(DNSError):
            upstream = DNSRecord.parse(relayed)
            answer.rcode = upstream.header.rcode
            answer.answer += upstream.rr
            answer.authority = upstream.auth

    @staticmethod
    def _fit(reply: DNSRecord, request: DNSRecord, *, tcp: bool) -> bytes:
        packed = reply.pack()
        if tcp or len(packed) <= udp_limit(request):
            return packed
        short = DNSRecord(DNSHeader(id=reply.header.id, bitmap=reply.header.bitmap, tc=1), q=reply.q)
        short.ar = [rr for rr in reply.ar if rr.rtype == QTYPE.OPT]
        return short.pack()


# -- transports -------------------------------------------------------------------------------------

class _UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, handler: DNSHandler) -> None:
        self.handler = handler
        self.transport: asyncio.DatagramTransport | None = None
        self.tasks: set[asyncio.Task] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        task = asyncio.ensure_future(self._answer(data, addr))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _answer(self, data: bytes, addr: tuple) -> None:
        try:
            reply = await self.handler.handle(data)
        except Exception:
            logger.exception("answering a UDP query from %s failed", addr[0])
            return
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        logger.debug("UDP socket error: %s", exc)


async def _serve_tcp_connection(handler: DNSHandler, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                (length,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_TIMEOUT))
                data = await asyncio.wait_for(reader.readexactly(length), TCP_IDLE_TIMEOUT)
            except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
                return
            reply = await handler.handle(data, tcp=True)
            if reply is None:
                return
            writer.write(struct.pack("!H", len(reply)) + reply)
            await writer.drain()
    except Exception:
        logger.exception("serving a TCP DNS connection failed")
    finally:
        writer.close()


async def serve(handler: DNSHandler, addresses: list[str], port: int) -> list:
    """Bind UDP and TCP on every address; returns what to close on shutdown."""
    loop = asyncio.get_running_loop()
    closers: list = []
    try:
        for address in addresses:
            transport, _ = await loop.create_datagram_endpoint(lambda: _UDPProtocol(handler),
                                                               local_addr=(address, port))
            closers.append(transport)
            closers.append(await asyncio.start_server(
                lambda r, w: _serve_tcp_connection(handler, r, w), address, port))
            logger.info("serving DNS on %s:%d (udp, tcp)", address, port)
    except OSError:
        for closer in closers:
            closer.close()
        raise
    return closers


async def serve_health(port: int, ready: Callable[[], bool]) -> asyncio.AbstractServer:
    """`/healthz`: the process runs; `/readyz`: the caches have synced and queries get real answers."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readline()
            parts = request.split()
            path = parts[1].decode() if len(parts) > 1 else "/"
            ok = ready() if path.startswith("/readyz") else True
            body = b"ok" if ok else b"caches not synced"
            status = b"200 OK" if ok else b"503 Service Unavailable"
            writer.write(b"HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                         % (status, len(body), body))
            await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", port)


async def run_dns(*, kubeconfig: str, bind: list[str], port: int = 53, cluster_domain: str = "cluster.local",
                  upstreams: list[Upstream] | None = None, ttl: int = DEFAULT_TTL, health_port: int = 0) -> int:
    config = Config.from_kubeconfig(kubeconfig)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async with AsyncClient(config) as client:
        factory = InformerFactory(client)
        informers = [factory.informer(resource) for resource in RESOURCES]
        stores = [inf.store for inf in informers]
        add_indexes(*stores)
        resolver = Resolver(*stores, zone=cluster_domain, ttl=ttl)

        def on_change(resource: str) -> Callable[..., None]:
            def changed(*objs: Obj) -> None:
                resolver.serial = max(resolver.serial + 1, int(time.time()))
                meta = objs[-1].get("metadata") or {}
                logger.debug("zone changed: %s %s/%s (serial %d)", resource, meta.get("namespace"),
                             meta.get("name"), resolver.serial)
            return changed

        for resource, inf in zip(RESOURCES, informers):
            changed = on_change(resource)
            inf.add_handler(changed, changed, changed)

        def ready() -> bool:
            return all(inf.has_synced.is_set() for inf in informers)

        forwarder = Forwarder(upstreams) if upstreams else None
        if forwarder:
            logger.info("forwarding names outside %s to %s", cluster_domain,
                        ", ".join(f"{h}:{p}" for h, p in upstreams or []))
        else:
            logger.info("no upstream: names outside %s are answered REFUSED", cluster_domain)
        handler = DNSHandler(resolver, forwarder=forwarder, ready=ready)
        closers: list = []
        try:
            closers += await serve(handler, bind, port)
            if health_port:
                closers.append(await serve_health(health_port, ready))
        except OSError as e:
            for closer in closers:
                closer.close()
            logger.error("cannot listen on %s port %d (health port %d): %s", ",".join(bind), port, health_port, e)
            return 1
        factory.start()
        syncing = asyncio.create_task(factory.wait_for_sync())
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({syncing, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if syncing.done():
                logger.info("caches synced: %d services, %d endpoints, %d pods", *(len(s) for s in stores))
            await stopping
        finally:
            syncing.cancel()
            for closer in closers:
                closer.close()
            await factory.stop()
    return 0
