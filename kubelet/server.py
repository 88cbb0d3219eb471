"""The kubelet's own HTTPS API: container logs and exec, for the apiserver to proxy `pods/log` and `pods/exec`.

Paths are the real kubelet's (port 10250):

- `GET /healthz` → `ok` (no authentication).
- `GET /containerLogs/{namespace}/{pod}/{container}` with `follow`, `tailLines`, `previous`, `timestamps`,
  `sinceSeconds`, `sinceTime`, `limitBytes`: the container's output as plain text, streamed while `follow`.
- `GET /exec/{namespace}/{pod}/{container}?command=..&command=..&stdin=1&stdout=1&stderr=1&tty=1`:
  a WebSocket speaking Kubernetes' channel protocol (below).
- `GET /metrics/resource`: CPU and memory usage of the node and its containers in Prometheus text format,
  the real kubelet's endpoint that metrics-server scrapes (`kubelet.stats`).

Authentication and authorization (`kubelet.auth`): every other path needs `Authorization: Bearer <token>`,
checked against a static token file or delegated to the apiserver (TokenReview, then SubjectAccessReview
on `nodes/proxy|metrics|stats` of this node). No token or an unknown one is 401, an identity without the
right 403, both as a `Status`. A refused WebSocket handshake gets the same HTTP answer.

Containers are found by the Docker labels in `kubelet.labels` (node, namespace, pod, container name):
the current container is the one with the highest attempt, `previous=true` the one before it.

Exec framing (`v5.channel.k8s.io`, also `v4.channel.k8s.io`; k8s.io/apimachinery/pkg/util/remotecommand):
every WebSocket message is binary and its first byte names the channel — 0 stdin, 1 stdout, 2 stderr,
3 error, 4 resize (`{"Width": w, "Height": h}`). v5 adds `[255, channel]`, "this channel is closed":
the client closing channel 0 is end-of-file on the process' stdin. When the process exits the server
writes one Status on channel 3 (`Success`, or `Failure`/`NonZeroExitCode` with an `ExitCode` cause) and
closes the WebSocket.

Docker side: `exec_create` + `exec_start(socket=True)` hijack a connection to dockerd. Without a TTY
dockerd multiplexes stdout and stderr on it with 8-byte headers (`[stream, 0, 0, 0, size:uint32be]`), which
`Demuxer` turns back into channels 1 and 2; with a TTY the bytes are the terminal's, all on channel 1.
The hijacked socket is driven with the event loop's `sock_recv`/`sock_sendall`, so a session costs no
thread; Docker's blocking log stream runs in a thread of its own behind `ThreadPipe`, with backpressure.
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import socket
import ssl
import struct
import threading
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Iterator

import docker
import docker.errors
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from client.rest import AsyncClient
from kubelet import labels
from kubelet.auth import KubeletAuth, Refusal
from kubelet.stats import ResourceStats, render

logger = logging.getLogger(__name__)

PUBLIC_PATHS = {"/healthz"}
SUBPROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")   # preference order

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE = 255
DOCKER_HEADER = struct.Struct(">BxxxL")
TRUE = ("1", "true", "True", "yes")
GONE = (OSError, RuntimeError, WebSocketDisconnect)    # what sending to a WebSocket whose client left raises


# -- Status objects ----------------------------------------------------------------------------------------

def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


class KubeletError(Exception):
    """A request the kubelet refuses; rendered as a Status with `code`."""

    def __init__(self, code: int, reason: str, message: str):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def response(self) -> Response:
        return status_response(status(self.code, self.reason, self.message), self.code)


def status_response(body: dict[str, Any], code: int) -> Response:
    return Response(json.dumps(body), status_code=code, media_type="application/json")


async def deny_websocket(ws: WebSocket, response: Response) -> None:
    """Refuse a handshake with an HTTP answer when the server can (ASGI denial response), else close 1008."""
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(response)
    else:
        await ws.close(code=1008)


# -- authentication ----------------------------------------------------------------------------------------

class BearerAuth:
    """ASGI middleware: every path but `/healthz`, HTTP or WebSocket, is checked by `kubelet.auth`."""

    def __init__(self, app, auth: KubeletAuth):
        self.app = app
        self.auth = auth

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket") or scope["path"] in PUBLIC_PATHS:
            return await self.app(scope, receive, send)
        header = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None)
        method = "GET" if scope["type"] == "websocket" else scope["method"]
        try:
            denied = await self.auth.check(header, method, scope["path"])
        except Exception as e:  # the apiserver could not be asked: nobody gets in
            logger.warning("could not check %s %s with the apiserver: %s", scope["type"], scope["path"], e)
            denied = Refusal(503, "ServiceUnavailable", "authentication or authorization is unavailable")
        if denied is None:
            return await self.app(scope, receive, send)
        refusal = KubeletError(denied.code, denied.reason, denied.message)
        logger.info("refused %s %s: %s", scope["type"], scope["path"], refusal.message)
        if scope["type"] == "websocket":
            return await deny_websocket(WebSocket(scope, receive, send), refusal.response())
        return await refusal.response()(scope, receive, send)


# -- finding containers ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ContainerRef:
    namespace: str
    pod: str
    container: str

    def describe(self) -> str:
        return f'container "{self.container}" in pod "{self.namespace}/{self.pod}"'


def attempts(docker_client: docker.DockerClient, node: str, ref: ContainerRef) -> list[dict[str, Any]]:
    """The Docker containers of `ref` on this node (as `docker ps` rows), newest attempt first."""
    rows = docker_client.api.containers(all=True, filters=labels.selector(
        node, **{labels.POD_NAMESPACE: ref.namespace, labels.POD_NAME: ref.pod, labels.CONTAINER_NAME: ref.container}))

    def attempt(row: dict[str, Any]) -> int:
        try:
            return int((row.get("Labels") or {}).get(labels.ATTEMPT, "0"))
        except ValueError:
            return 0
    return sorted(rows, key=attempt, reverse=True)


def pick(rows: list[dict[str, Any]], ref: ContainerRef, previous: bool) -> dict[str, Any]:
    if previous:
        if len(rows) < 2:
            raise KubeletError(404, "NotFound", f'previous terminated container "{ref.container}" in pod '
                                                f'"{ref.pod}" not found')
        return rows[1]
    if not rows:
        raise KubeletError(404, "NotFound", f"{ref.describe()} not found")
    return rows[0]


# -- query parameters --------------------------------------------------------------------------------------

def flag(request_params, name: str) -> bool:
    return request_params.get(name, "") in TRUE


def int_param(params, name: str, minimum: int = 0) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise KubeletError(400, "BadRequest", f"{name}: invalid value {raw!r}: must be an integer") from None
    if value < minimum:
        raise KubeletError(400, "BadRequest", f"{name}: invalid value {value}: must be >= {minimum}")
    return value


@dataclass(frozen=True)
class LogOptions:
    follow: bool = False
    tail_lines: int | None = None
    previous: bool = False
    timestamps: bool = False
    since: datetime.datetime | None = None
    limit_bytes: int | None = None

    @classmethod
    def from_query(cls, params) -> "LogOptions":
        since = None
        seconds = int_param(params, "sinceSeconds", minimum=1)
        if seconds is not None:
            since = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=seconds)
        elif params.get("sinceTime"):
            try:
                since = datetime.datetime.fromisoformat(params["sinceTime"])
            except ValueError:
                raise KubeletError(400, "BadRequest", f"sinceTime: invalid value {params['sinceTime']!r}: "
                                                      f"must be RFC3339") from None
            if since.tzinfo is None:
                since = since.replace(tzinfo=datetime.timezone.utc)
        return cls(follow=flag(params, "follow"), tail_lines=int_param(params, "tailLines"),
                   previous=flag(params, "previous"), timestamps=flag(params, "timestamps"), since=since,
                   limit_bytes=int_param(params, "limitBytes", minimum=1))

    def docker_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"stdout": True, "stderr": True, "stream": True, "follow": self.follow,
                              "timestamps": self.timestamps, "tail": "all" if self.tail_lines is None else self.tail_lines}
        if self.since is not None:
            kw["since"] = self.since.timestamp()
        return kw


# -- a blocking iterator as an async one -------------------------------------------------------------------

class ThreadPipe:
    """Runs a blocking iterator in its own thread and hands its items to the event loop.

    At most `depth` items wait in the queue (a semaphore the thread must take per item), so a slow reader
    slows the producer instead of growing memory. `close()` makes the thread stop at its next item.
    """

    _END = object()

    def __init__(self, produce: Callable[[], Iterator[bytes]], *, depth: int = 64, name: str = "pipe"):
        self._produce = produce
        self._queue: asyncio.Queue = asyncio.Queue()
        self._slots = threading.Semaphore(depth)
        self._closed = threading.Event()
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _deliver(self, item: Any) -> bool:
        while not self._closed.is_set():
            if self._slots.acquire(timeout=0.5):
                try:
                    self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
                except RuntimeError:       # the loop is gone
                    return False
                return True
        return False

    def _run(self) -> None:
        try:
            for item in self._produce():
                if not self._deliver(item):
                    return
            self._deliver(self._END)
        except BaseException as e:  # noqa: BLE001 - handed to the reader, which re-raises it
            if not self._closed.is_set():
                self._deliver(e)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            item = await self._queue.get()
            self._slots.release()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._closed.set()


# -- exec: Docker's stream ↔ channels ----------------------------------------------------------------------

class Demuxer:
    """Splits Docker's multiplexed exec stream (8-byte header per frame) into (channel, payload) pieces."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buf += data
        out = []
        while len(self._buf) >= DOCKER_HEADER.size:
            stream, size = DOCKER_HEADER.unpack_from(self._buf)
            end = DOCKER_HEADER.size + size
            if len(self._buf) < end:
                break
            payload = bytes(self._buf[DOCKER_HEADER.size:end])
            del self._buf[:end]
            if payload:
                out.append((STDERR if stream == 2 else STDOUT, payload))
        return out


def exit_status(code: int | None, command: list[str]) -> dict[str, Any]:
    """The Status written on the error channel when the process has ended."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    if code is None:
        return {"metadata": {}, "status": "Failure", "reason": "InternalError",
                "message": "the exit code of the command could not be determined"}
    return {"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
            "message": f"command terminated with non-zero exit code: command '{' '.join(command)}' exited "
                       f"with {code}",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


@dataclass(frozen=True)
class ExecOptions:
    command: list[str]
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool

    @classmethod
    def from_query(cls, params) -> "ExecOptions":
        command = params.getlist("command")
        if not command:
            raise KubeletError(400, "BadRequest", "you must specify at least one command for the container")
        opts = cls(command=command, stdin=flag(params, "stdin"), stdout=flag(params, "stdout"),
                   stderr=flag(params, "stderr") and not flag(params, "tty"), tty=flag(params, "tty"))
        if not (opts.stdin or opts.stdout or opts.stderr):
            raise KubeletError(400, "BadRequest", "you must specify at least 1 of stdin, stdout, stderr")
        return opts


@dataclass
class Hijacked:
    """dockerd's hijacked exec connection: the plain socket under docker-py's `exec_start(socket=True)`
    result (kept too: it owns the socket's lifetime), and bytes already read past the 101 response.

    docker-py reads that response through a buffered reader, which may already hold the first output;
    it is drained here (non-blocking) so that nothing is lost when we read the socket directly.
    """

    raw: Any
    sock: socket.socket
    pending: bytes

    @classmethod
    def of(cls, raw: Any) -> "Hijacked":
        sock = getattr(raw, "_sock", raw)
        if not isinstance(sock, socket.socket) or isinstance(sock, ssl.SSLSocket):
            raise KubeletError(500, "InternalError", "exec needs Docker over a unix or plain TCP socket")
        sock.setblocking(False)
        pending = b""
        response = getattr(raw, "_response", None)
        reader = getattr(getattr(getattr(response, "raw", None), "_fp", None), "fp", None)
        if reader is not None and hasattr(reader, "peek"):
            buffered = reader.peek()
            if buffered:
                pending = reader.read1(len(buffered))
        return cls(raw, sock, pending)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.raw.close()
        self.sock.close()


class ExecSession:
    """One `kubectl exec`: pumps Docker's hijacked connection ↔ the WebSocket until the process ends."""

    def __init__(self, *, ws: WebSocket, api: docker.APIClient, exec_id: str, hijacked: Hijacked,
                 opts: ExecOptions, protocol: str):
        self.ws, self.api, self.exec_id = ws, api, exec_id
        self.hijacked, self.sock = hijacked, hijacked.sock
        self.opts, self.protocol = opts, protocol
        self.loop = asyncio.get_running_loop()

    async def run(self) -> None:
        output = asyncio.create_task(self._pump_output())
        client = asyncio.create_task(self._pump_client())
        try:
            done, _ = await asyncio.wait({output, client}, return_when=asyncio.FIRST_COMPLETED)
            if output in done and output.result():
                code = await self._exit_code()
                with contextlib.suppress(*GONE):
                    await self.ws.send_bytes(bytes([ERROR]) + json.dumps(exit_status(code, self.opts.command)).encode())
                    await self.ws.close(1000)
                logger.info("exec %s %s ended with exit code %s", self.exec_id[:12], self.opts.command, code)
            else:
                logger.info("exec %s: the client went away before the process ended", self.exec_id[:12])
        finally:
            for t in (output, client):
                t.cancel()
            await asyncio.gather(output, client, return_exceptions=True)
            self.hijacked.close()

    async def _pump_output(self) -> bool:
        """Process output → channels 1/2. True when the output ended, False when the client went away first."""
        demux = None if self.opts.tty else Demuxer()
        data = self.hijacked.pending
        while True:
            if data:
                pieces = [(STDOUT, data)] if demux is None else demux.feed(data)
                try:
                    for channel, payload in pieces:
                        await self.ws.send_bytes(bytes([channel]) + payload)
                except GONE:
                    return False
            try:
                data = await self.loop.sock_recv(self.sock, 65536)
            except OSError:
                return True
            if not data:
                return True

    async def _pump_client(self) -> None:
        """Client frames until it disconnects: stdin data, stdin close (v5), resize."""
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            frame = message.get("bytes")
            if not frame:
                continue    # text frames are not part of the channel protocol
            channel, payload = frame[0], frame[1:]
            if channel == STDIN and self.opts.stdin and payload:
                await self.loop.sock_sendall(self.sock, payload)
            elif channel == RESIZE and self.opts.tty:
                await self._resize(payload)
            elif channel == CLOSE and payload[:1] == bytes([STDIN]) and self.protocol.startswith("v5"):
                with contextlib.suppress(OSError):
                    self.sock.shutdown(socket.SHUT_WR)

    async def _resize(self, payload: bytes) -> None:
        try:
            size = json.loads(payload)
            width, height = int(size["Width"]), int(size["Height"])
        except (ValueError, KeyError, TypeError):
            logger.info("exec %s: ignoring malformed resize %r", self.exec_id[:12], payload[:100])
            return
        # dockerd answers the hijack before the process exists; a resize that early is refused, so retry briefly.
        for _ in range(20):
            try:
                await asyncio.to_thread(self.api.exec_resize, self.exec_id, height=height, width=width)
                return
            except docker.errors.APIError:
                await asyncio.sleep(0.05)
        logger.warning("exec %s: could not resize the terminal to %dx%d", self.exec_id[:12], width, height)

    async def _exit_code(self) -> int | None:
        # The stream ends as the process exits; dockerd records the exit code a moment later.
        for _ in range(40):
            info = await asyncio.to_thread(self.api.exec_inspect, self.exec_id)
            if not info.get("Running"):
                return info.get("ExitCode")
            await asyncio.sleep(0.05)
        return None


def choose_subprotocol(ws: WebSocket) -> str | None:
    offered = [p.strip() for p in ws.scope.get("subprotocols", [])]
    return next((p for p in SUBPROTOCOLS if p in offered), None)


# -- the server --------------------------------------------------------------------------------------------

class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: the kubelet process owns SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield

    async def shutdown(self, sockets=None) -> None:
        # An idle keep-alive TLS connection (the apiserver's pool) is closed with a close_notify the idle
        # peer never answers, which would hold shutdown for its whole grace period: drop those at once.
        for conn in list(self.server_state.connections):
            cycle = getattr(conn, "cycle", False)
            if cycle is None or getattr(cycle, "response_complete", False):
                conn.transport.abort()
        await super().shutdown(sockets)


class KubeletServer:
    """The kubelet's HTTPS API, served inside the running event loop (`await start()` … `await stop()`)."""

    def __init__(self, *, docker: docker.DockerClient, node_name: str, bind_address: str = "0.0.0.0",
                 port: int = 10250, cert_file: str, key_file: str, token_file: str | None,
                 stats: ResourceStats | None = None, api: AsyncClient | None = None, webhook_authz: bool = True):
        self.docker = docker
        self.stats = stats
        self.node_name = node_name
        self.bind_address = bind_address
        self.port = port
        self.cert_file, self.key_file = cert_file, key_file
        # `api`: the kubelet's apiserver client, to delegate authentication and authorization to it.
        self.auth = KubeletAuth(node_name, token_file=token_file, client=api, webhook_authz=webhook_authz)
        if not self.auth.configured:
            logger.warning("kubelet API: neither a token file nor webhook authentication; every request but "
                           "/healthz will be refused")
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task | None = None

    def app(self) -> Starlette:
        routes = [
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/containerLogs/{namespace}/{pod}/{container}", self.container_logs, methods=["GET"]),
            Route("/exec/{namespace}/{pod}/{container}", self.exec_without_upgrade, methods=["GET", "POST"]),
            WebSocketRoute("/exec/{namespace}/{pod}/{container}", self.exec),
            Route("/metrics/resource", self.resource_metrics, methods=["GET"]),
        ]
        app = Starlette(routes=routes)
        app.add_middleware(BearerAuth, auth=self.auth)
        return app

    async def start(self) -> None:
        """Bind (port 0 picks a free port, then `self.port` tells which) and serve in a background task."""
        sock = socket.socket(socket.AF_INET6 if ":" in self.bind_address else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.bind_address, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app(), ssl_certfile=self.cert_file, ssl_keyfile=self.key_file,
                                lifespan="off", access_log=False, log_level="warning", ws="websockets-sansio",
                                ws_ping_interval=None, timeout_graceful_shutdown=1)
        self._server = _EmbeddedServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="kubelet-server")
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("kubelet API server stopped during startup")
            await asyncio.sleep(0.01)
        logger.info("kubelet API serving on https://%s:%d for node %s", self.bind_address, self.port, self.node_name)

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._server = self._task = None

    # -- handlers ----------------------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok")

    async def resource_metrics(self, request: Request) -> Response:
        if self.stats is None:
            return KubeletError(404, "NotFound", "resource metrics are not collected on this node").response()
        try:
            node, containers, failed = await asyncio.to_thread(self.stats.collect)
        except (OSError, docker.errors.DockerException) as e:
            return KubeletError(503, "ServiceUnavailable", f"reading resource usage failed: {e}").response()
        return PlainTextResponse(render(node, containers, failed), media_type="text/plain; version=0.0.4")

    async def _find(self, ref: ContainerRef, previous: bool) -> dict[str, Any]:
        try:
            rows = await asyncio.to_thread(attempts, self.docker, self.node_name, ref)
        except docker.errors.DockerException as e:
            raise KubeletError(503, "ServiceUnavailable", f"container runtime unavailable: {e}") from e
        return pick(rows, ref, previous)

    @staticmethod
    def _ref(request: Request | WebSocket) -> ContainerRef:
        p = request.path_params
        return ContainerRef(p["namespace"], p["pod"], p["container"])

    async def container_logs(self, request: Request) -> Response:
        try:
            opts = LogOptions.from_query(request.query_params)
            ref = self._ref(request)
            row = await self._find(ref, opts.previous)
            stream = await self._open_logs(row["Id"], ref, opts)
        except KubeletError as e:
            return e.response()
        return StreamingResponse(self._relay_logs(stream, row["Id"], opts.limit_bytes), media_type="text/plain")

    async def _open_logs(self, container_id: str, ref: ContainerRef, opts: LogOptions):
        """Docker's log stream, opened before answering so that its failures still get a proper Status."""
        try:
            return await asyncio.to_thread(self.docker.api.logs, container_id, **opts.docker_kwargs())
        except docker.errors.NotFound as e:
            raise KubeletError(404, "NotFound", f"{ref.describe()} not found") from e
        except docker.errors.DockerException as e:
            raise KubeletError(503, "ServiceUnavailable", f"container runtime unavailable: {e}") from e

    @staticmethod
    async def _relay_logs(stream, container_id: str, limit_bytes: int | None) -> AsyncIterator[bytes]:
        pipe = ThreadPipe(lambda: iter(stream), name=f"logs-{container_id[:12]}")
        left = limit_bytes
        try:
            async for chunk in pipe:
                if left is not None:
                    chunk = chunk[:left]
                    left -= len(chunk)
                yield chunk
                if left is not None and left <= 0:
                    return
        except docker.errors.DockerException as e:
            logger.warning("log stream of container %s failed: %s", container_id[:12], e)
        finally:
            pipe.close()
            with contextlib.suppress(Exception):
                await asyncio.to_thread(stream.close)     # unblocks the thread's read

    async def exec_without_upgrade(self, request: Request) -> Response:
        return KubeletError(400, "BadRequest", "Upgrade request required").response()

    async def exec(self, ws: WebSocket) -> None:
        protocol = choose_subprotocol(ws)
        try:
            if protocol is None:
                raise KubeletError(400, "BadRequest", f"none of the offered subprotocols is supported; "
                                                      f"use one of {list(SUBPROTOCOLS)}")
            opts = ExecOptions.from_query(ws.query_params)
            ref = self._ref(ws)
            row = await self._find(ref, previous=False)
            if row.get("State") != "running":
                raise KubeletError(400, "BadRequest", f"{ref.describe()} is not running")
            exec_id, hijacked = await self._start_exec(row["Id"], opts)
        except KubeletError as e:
            return await deny_websocket(ws, e.response())
        await ws.accept(subprotocol=protocol)
        logger.info("exec %s in %s/%s/%s: %s", exec_id[:12], ref.namespace, ref.pod, ref.container, opts.command)
        await ExecSession(ws=ws, api=self.docker.api, exec_id=exec_id, hijacked=hijacked, opts=opts,
                          protocol=protocol).run()

    async def _start_exec(self, container_id: str, opts: ExecOptions) -> tuple[str, Hijacked]:
        api = self.docker.api

        def start() -> tuple[str, Any]:
            exec_id = api.exec_create(container_id, opts.command, stdin=opts.stdin, stdout=opts.stdout,
                                      stderr=opts.stderr, tty=opts.tty)["Id"]
            return exec_id, api.exec_start(exec_id, socket=True, tty=opts.tty)

        try:
            exec_id, raw = await asyncio.to_thread(start)
        except docker.errors.APIError as e:
            raise KubeletError(500, "InternalError", f"failed to exec in container: {e.explanation or e}") from e
        except docker.errors.DockerException as e:
            raise KubeletError(503, "ServiceUnavailable", f"container runtime unavailable: {e}") from e
        return exec_id, Hijacked.of(raw)
