"""`pods/log` and `pods/exec`: the apiserver answers them by proxying to the kubelet of the pod's node.

As in Kubernetes, the apiserver reads the pod (404 if missing, 400 while it has no node), picks the
container (the only one, or `?container=`), reads the Node for the kubelet's address (`status.addresses`,
InternalIP first) and port (`status.daemonEndpoints.kubeletEndpoint.Port`), and calls the kubelet's own
API over HTTPS (`/containerLogs/...`, `/exec/...`), authenticating as `system:kube-apiserver-kubelet-client`
with that identity's bearer token. The kubelet's serving certificate is verified against
`--kubelet-certificate-authority` when given; without it verification is skipped, as Kubernetes does.

- Logs are streamed through as the kubelet writes them (a chunked response), so `follow=true` works.
- Exec is a WebSocket on both sides, speaking the channel protocol (`v5.channel.k8s.io` or
  `v4.channel.k8s.io`, see `kubelet.server`): the apiserver accepts the client's upgrade only after the
  kubelet accepted its own, with the subprotocol the kubelet chose, then copies frames both ways
  unchanged; whichever side closes first closes the other. A plain GET/POST is 400 "Upgrade request
  required" (kubectl then falls back to SPDY, which we do not speak).

Errors are Status objects: the kubelet's own refusals (404 container not found, 400 ...) are relayed with
their code; failing to reach the kubelet is 503 ServiceUnavailable, a broken or untrusted kubelet 502 —
each bounded by `--kubelet-timeout`, so a dead node never hangs a request.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

import httpx
import websockets
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from api import errors, registry
from api.errors import APIError
from apiserver.rest import json_response
from apiserver.storage import Store

logger = logging.getLogger(__name__)

KUBELET_CLIENT_USER = "system:kube-apiserver-kubelet-client"
SUBPROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
LOG_INT_PARAMS = {"tailLines": 0, "sinceSeconds": 1, "limitBytes": 1}     # name -> minimum
LOG_PASSTHROUGH = ("follow", "previous", "timestamps", "sinceTime", *LOG_INT_PARAMS)
EXEC_PASSTHROUGH = ("stdin", "stdout", "stderr", "tty")
ADDRESS_PREFERENCE = ("InternalIP", "ExternalIP", "Hostname")
DEFAULT_KUBELET_PORT = 10250
CLIENT_GONE = (OSError, RuntimeError, WebSocketDisconnect)   # what sending to a departed WebSocket client raises

PODS = registry.lookup("", "v1", "pods")
NODES = registry.lookup("", "v1", "nodes")


def unavailable(message: str) -> APIError:
    return APIError(503, "ServiceUnavailable", message)


def bad_gateway(message: str) -> APIError:
    return APIError(502, "BadGateway", message)


async def deny_websocket(ws: WebSocket, error: APIError) -> None:
    """Refuse a WebSocket handshake with an HTTP Status answer (ASGI denial response), else close 1008."""
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(json_response(error.status(), error.code))
    else:
        await ws.close(code=1008, reason=error.message[:120])


@dataclass(frozen=True)
class Target:
    """Where one container of one pod is served: the kubelet's host and port, and names for messages."""

    namespace: str
    pod: str
    container: str
    node: str
    host: str
    port: int

    def url(self, scheme: str, endpoint: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        q = urllib.parse.quote
        return f"{scheme}://{host}:{self.port}/{endpoint}/{q(self.namespace)}/{q(self.pod)}/{q(self.container)}"

    def describe(self) -> str:
        return f"the kubelet on node {self.node} ({self.host}:{self.port})"


def choose_container(pod: dict[str, Any], requested: str | None) -> str:
    name = pod["metadata"]["name"]
    spec = pod.get("spec") or {}
    names = [c.get("name") for c in spec.get("containers") or []]
    init_names = [c.get("name") for c in spec.get("initContainers") or []]
    if requested:
        if requested not in names and requested not in init_names:
            raise errors.bad_request(f"container {requested} is not valid for pod {name}")
        return requested
    if len(names) == 1:
        return names[0]
    raise errors.bad_request(f"a container name must be specified for pod {name}, choose one of: "
                             f"[{' '.join(names)}]" + (f" or one of the init containers: [{' '.join(init_names)}]"
                                                       if init_names else ""))


def kubelet_address(node: dict[str, Any]) -> tuple[str, int]:
    status = node.get("status") or {}
    by_type: dict[str, str] = {}
    for a in status.get("addresses") or []:
        if isinstance(a, dict) and a.get("address"):
            by_type.setdefault(a.get("type", ""), a["address"])
    host = next((by_type[t] for t in ADDRESS_PREFERENCE if t in by_type), None)
    if host is None:
        raise unavailable(f"node {node['metadata']['name']} has no address for its kubelet")
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") or DEFAULT_KUBELET_PORT
    return host, int(port)


def log_params(request: Request) -> dict[str, str]:
    q = request.query_params
    for name, minimum in LOG_INT_PARAMS.items():
        raw = q.get(name)
        if raw is None:
            continue
        try:
            ok = int(raw) >= minimum
        except ValueError:
            ok = False
        if not ok:
            raise errors.bad_request(f"{name}: Invalid value: {raw!r}: must be an integer >= {minimum}")
    return {k: q[k] for k in LOG_PASSTHROUGH if k in q}


def relayed(code: int, body: bytes, target: Target) -> APIError:
    """The kubelet's refusal as our Status: its 4xx kept, its 5xx reported as a bad gateway."""
    try:
        st = json.loads(body)
    except ValueError:
        st = None
    st = st if isinstance(st, dict) else {}
    message = st.get("message") or body.decode("utf-8", "replace").strip()[:500] or f"HTTP {code}"
    if 400 <= code < 500:
        return APIError(code, st.get("reason") or "BadRequest", message)
    return bad_gateway(f"{target.describe()} answered {code}: {message}")


class KubeletProxy:
    """Serves `pods/log` and `pods/exec` by finding the pod's kubelet and relaying to it."""

    def __init__(self, store: Store, *, token: str | None, ca_file: Path | None, timeout: float = 5.0):
        self.store = store
        self.token = token
        self.timeout = timeout
        if ca_file is not None:
            self.ssl = ssl.create_default_context(cafile=str(ca_file))
        else:
            self.ssl = ssl.create_default_context()
            self.ssl.check_hostname = False
            self.ssl.verify_mode = ssl.CERT_NONE
        self.http = httpx.AsyncClient(verify=self.ssl, timeout=httpx.Timeout(timeout, read=None))
        if token is None:
            logger.warning("no token for %s in the token file: kubelets will refuse pods/log and pods/exec",
                           KUBELET_CLIENT_USER)

    async def close(self) -> None:
        await self.http.aclose()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def locate(self, namespace: str, name: str, container: str | None) -> Target:
        pod = await self.store.get(f"{PODS.storage_prefix()}{namespace}/{name}")
        if pod is None:
            raise errors.not_found("pods", name)
        chosen = choose_container(pod, container)
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            raise errors.bad_request(f"pod {name} does not have a host assigned")
        node = await self.store.get(f"{NODES.storage_prefix()}{node_name}")
        if node is None:
            raise unavailable(f"node {node_name} of pod {name} not found")
        host, port = kubelet_address(node)
        return Target(namespace, name, chosen, node_name, host, port)

    async def _send(self, target: Target, req: httpx.Request, *, stream: bool = False) -> httpx.Response:
        """Send to a kubelet within the timeout; failures become the Status errors Kubernetes answers."""
        try:
            return await asyncio.wait_for(self.http.send(req, stream=stream), self.timeout)
        except (httpx.TimeoutException, TimeoutError) as e:
            raise unavailable(f"timed out waiting for {target.describe()}") from e
        except httpx.ConnectError as e:
            raise self._connect_error(target, e) from e
        except httpx.HTTPError as e:
            raise bad_gateway(f"error talking to {target.describe()}: {e}") from e

    async def fetch(self, node: dict[str, Any], path: str) -> bytes:
        """GET `path` from a node's kubelet (as the kubelet-client identity), bounded by the timeout."""
        host, port = kubelet_address(node)
        target = Target("", "", "", node["metadata"]["name"], host, port)
        url = f"https://{f'[{host}]' if ':' in host else host}:{port}{path}"
        r = await self._send(target, self.http.build_request("GET", url, headers=self._headers()))
        if r.status_code != 200:
            raise relayed(r.status_code, r.content, target)
        return r.content

    # -- pods/log ----------------------------------------------------------------------------------------

    async def logs(self, request: Request) -> Response:
        p = request.path_params
        params = log_params(request)
        target = await self.locate(p["namespace"], p["name"], request.query_params.get("container"))
        req = self.http.build_request("GET", target.url("https", "containerLogs"), params=params,
                                      headers=self._headers())
        upstream = await self._send(target, req, stream=True)
        if upstream.status_code != 200:
            try:
                body = await asyncio.wait_for(upstream.aread(), self.timeout)
            except (httpx.HTTPError, TimeoutError):
                body = b""
            finally:
                await upstream.aclose()
            raise relayed(upstream.status_code, body, target)
        return StreamingResponse(self._relay(upstream, target), media_type="text/plain")

    @staticmethod
    def _connect_error(target: Target, e: Exception) -> APIError:
        cause = e.__cause__ or e.__context__
        if isinstance(cause, ssl.SSLError) or "CERTIFICATE" in str(e).upper():
            return bad_gateway(f"TLS handshake with {target.describe()} failed: {e}")
        return unavailable(f"error trying to reach {target.describe()}: {e or type(e).__name__}")

    @staticmethod
    async def _relay(upstream: httpx.Response, target: Target) -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        except httpx.HTTPError as e:
            logger.info("log stream from %s broke off: %s", target.describe(), e)
        finally:
            await upstream.aclose()

    # -- pods/exec ---------------------------------------------------------------------------------------

    async def exec_without_upgrade(self, request: Request) -> Response:
        return json_response(errors.bad_request("Upgrade request required").status(), 400)

    async def exec(self, ws: WebSocket) -> None:
        try:
            offered = [s for s in ws.scope.get("subprotocols", []) if s in SUBPROTOCOLS]
            if not offered:
                raise errors.bad_request(f"a WebSocket subprotocol is required, one of {list(SUBPROTOCOLS)}")
            q = ws.query_params
            commands = q.getlist("command")
            if not commands:
                raise errors.bad_request("you must specify at least one command for the container")
            p = ws.path_params
            target = await self.locate(p["namespace"], p["name"], q.get("container"))
            query = urllib.parse.urlencode([("command", c) for c in commands] +
                                           [(k, q[k]) for k in EXEC_PASSTHROUGH if k in q])
            upstream = await self._connect(f"{target.url('wss', 'exec')}?{query}", offered, target)
        except APIError as e:
            return await deny_websocket(ws, e)
        try:
            await ws.accept(subprotocol=upstream.subprotocol)
            logger.info("exec in pod %s/%s container %s via %s: %s", target.namespace, target.pod,
                        target.container, target.describe(), commands)
            await splice(ws, upstream)
        finally:
            await upstream.close()

    async def _connect(self, url: str, subprotocols: list[str], target: Target):
        try:
            return await websockets.connect(url, subprotocols=subprotocols, additional_headers=self._headers(),
                                            ssl=self.ssl, open_timeout=self.timeout, max_size=None,
                                            compression=None, ping_interval=20, ping_timeout=20)
        except websockets.InvalidStatus as e:
            raise relayed(e.response.status_code, e.response.body or b"", target) from e
        except ssl.SSLError as e:
            raise bad_gateway(f"TLS handshake with {target.describe()} failed: {e}") from e
        except (OSError, TimeoutError) as e:
            raise unavailable(f"error trying to reach {target.describe()}: {e or type(e).__name__}") from e
        except websockets.WebSocketException as e:
            raise bad_gateway(f"error talking to {target.describe()}: {e}") from e


async def splice(client: WebSocket, upstream) -> None:
    """Copy messages both ways until one side closes, then close the other with the same code."""
    async def from_client() -> int | None:
        """The client's close code once it leaves; None when the upstream closed under us."""
        while True:
            message = await client.receive()
            if message["type"] == "websocket.disconnect":
                return message.get("code", 1000)
            data = message.get("bytes")
            if data is None:
                data = message.get("text")
            if data is not None:
                try:
                    await upstream.send(data)
                except websockets.ConnectionClosed:
                    return None

    async def from_upstream() -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for message in upstream:
                if isinstance(message, bytes):
                    await client.send_bytes(message)
                else:
                    await client.send_text(message)

    to_up = asyncio.create_task(from_client())
    to_client = asyncio.create_task(from_upstream())
    try:
        done, _ = await asyncio.wait({to_up, to_client}, return_when=asyncio.FIRST_COMPLETED)
        client_code = to_up.result() if to_up in done else None
        if client_code is None:
            code = upstream.close_code if upstream.close_code not in (None, 1005, 1006) else 1000
            with contextlib.suppress(*CLIENT_GONE):
                await client.close(code=code, reason=upstream.close_reason or "")
        else:
            await upstream.close(code=client_code if client_code not in (1005, 1006) else 1000)
    finally:
        for t in (to_up, to_client):
            t.cancel()
        await asyncio.gather(to_up, to_client, return_exceptions=True)
