"""A tiny health endpoint for component processes (`/healthz`, and `/leader` for leader-elected ones).

Supervisors and load balancers poll it; it needs no framework: one line of request in, one answer out.
"""
from __future__ import annotations

import asyncio
from typing import Protocol


class LeaderLike(Protocol):
    @property
    def is_leader(self) -> bool: ...


async def serve_health(port: int, leader: LeaderLike | None = None, host: str = "127.0.0.1") -> asyncio.AbstractServer:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            parts = (await reader.readline()).split()
            path = parts[1].decode() if len(parts) > 1 else "/"
            body = b"ok"
            if path.startswith("/leader"):
                body = b"leader" if leader is None or leader.is_leader else b"follower"
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                         b"Connection: close\r\n\r\n%s" % (len(body), body))
            await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)
