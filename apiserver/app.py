"""The apiserver's ASGI application: authentication, discovery, health, and the generic REST routes.

Routes are few and generic — `/api/v1/{path}` and `/apis/{group}/{version}/{path}` — and hand the rest
of the path to `RestHandler`, which consults the registry. The exceptions are `pods/log` and `pods/exec`,
which are not stored data but a relay to the pod's kubelet (`apiserver.proxy`), and the resource metrics
API (`apiserver.metrics`), computed from the kubelets' usage; they are routed ahead of the generic ones.
Every `APIError` becomes a Status response; anything unexpected is logged and answered as a 500 Status
(never a bare stack trace).
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import hmac
import inspect
import logging
import platform
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.websockets import WebSocket, WebSocketState

from api import errors, registry
from api.errors import APIError
from api.rbac import AUTHENTICATED, UserInfo
from apiserver import bootstrap, openapi
from apiserver.authz import Authorize, Authorizer, RBACAdmission, answer_review, current_user
from apiserver.nodeauthz import NodeRestriction
from apiserver.serviceaccounts import (DEFAULT_ISSUER, TokenAuthenticator, TokenIssuer, mount_api_access,
                                       token_request)
from apiserver.allocator import ServiceAllocator
from apiserver.metrics import MetricsAPI
from apiserver.pki import read_token_file
from apiserver.proxy import KUBELET_CLIENT_USER, KubeletProxy, deny_websocket
from apiserver.rest import RestHandler, json_response, read_body
from apiserver.storage import Store
from apiserver.watchcache import WatchCache

logger = logging.getLogger(__name__)

Obj = dict[str, Any]

VERSION = {"major": "1", "minor": "31", "gitVersion": "v1.31.0-minik8s.0.1.0", "gitCommit": "0" * 40,
           "gitTreeState": "clean", "buildDate": "2026-11-22T00:00:00Z",
           "goVersion": f"python{platform.python_version()}", "compiler": "cpython",
           "platform": f"linux/{'amd64' if platform.machine() == 'x86_64' else platform.machine()}"}
PUBLIC_PATHS = {"/healthz", "/livez", "/readyz", "/version"}
BEARER_SUBPROTOCOL = "base64url.bearer.authorization.k8s.io."
SUBRESOURCE_VERBS = {"binding": ["create"], "eviction": ["create"], "token": ["create"], "log": ["get"], "exec": ["create", "get"],
                     "finalize": ["update"]}


@dataclass
class Settings:
    etcd_servers: list[tuple[str, int]] = field(default_factory=lambda: [("127.0.0.1", 2379)])
    token_file: Path | None = None
    service_cidr: str = "10.96.0.0/12"
    node_port_range: tuple[int, int] = (30000, 32767)
    advertise_address: str = "127.0.0.1"
    secure_port: int = 6443
    watch_window: int = 10000
    kubelet_certificate_authority: Path | None = None   # None: kubelet serving certs are not verified
    kubelet_timeout: float = 5.0
    authorization_mode: str = "Node,RBAC"
    service_account_signing_key: Path | None = None  # None: a key made at start-up
    service_account_issuer: str = DEFAULT_ISSUER
    api_audiences: list[str] = field(default_factory=list)
    admission_plugins: tuple[str, ...] = ()  # optional ones switched on: "ServiceAccount"


class TokenAuth:
    """ASGI middleware: a valid bearer token is required everywhere but the health and version paths.

    WebSocket handshakes (exec) are checked the same way and refused with a 401 Status. Besides the
    Authorization header they may carry the token as Kubernetes' subprotocol
    `base64url.bearer.authorization.k8s.io.<base64url token>`, for clients that cannot set headers.
    """

    def __init__(self, app, authenticate: Callable[[str | None], UserInfo | None]):
        self.app = app
        self.authenticate = authenticate

    @staticmethod
    def presented_token(scope) -> str | None:
        for k, v in scope["headers"]:
            if k == b"authorization":
                header = v.decode("latin-1")
                return header[7:].strip() if header.startswith("Bearer ") else None
        for proto in scope.get("subprotocols", []) if scope["type"] == "websocket" else []:
            if proto.startswith(BEARER_SUBPROTOCOL):
                encoded = proto[len(BEARER_SUBPROTOCOL):]
                with contextlib.suppress(ValueError):
                    return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
        return None

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket") or scope["path"] in PUBLIC_PATHS:
            return await self.app(scope, receive, send)
        user = self.authenticate(self.presented_token(scope))
        if user is None:
            if scope["type"] == "websocket":
                return await deny_websocket(WebSocket(scope, receive, send), errors.unauthorized())
            response = json_response(errors.unauthorized().status(), 401)
            return await response(scope, receive, send)
        scope.setdefault("state", {})["user"] = user
        return await self.app(scope, receive, send)


def load_tokens(path: Path | None) -> dict[str, UserInfo]:
    """Static tokens; every authenticated user is also in `system:authenticated`, as in Kubernetes."""
    if path is None:
        return {}
    return {tok: UserInfo(user, tuple(dict.fromkeys([*groups, AUTHENTICATED])), uid)
            for tok, user, uid, groups in read_token_file(path)}


class Authenticator:
    """Bearer token -> user: the static token file first, then ServiceAccount JWTs (`fallback`). Used for
    every request and to answer TokenReviews."""

    def __init__(self, tokens: "StaticTokens", fallback: Callable[[str], UserInfo | None] | None = None):
        self.tokens = tokens
        self.fallback = fallback

    def __call__(self, presented: str | None) -> UserInfo | None:
        if not presented:
            return None
        user = self.tokens.lookup(presented)
        if user is None and self.fallback is not None:
            user = self.fallback(presented)
        if user is None and self.tokens.reload():
            user = self.tokens.lookup(presented)  # the token file changed: a node added, say
        return user


def answer_token_review(authenticate: Callable[[str | None], UserInfo | None], body: Any,
                        audiences: list[str]) -> Obj:
    """authentication.k8s.io/v1 TokenReview: `status.authenticated` and the user behind `spec.token`."""
    if not isinstance(body, dict) or not isinstance(body.get("spec"), dict):
        raise errors.bad_request("a TokenReview needs a spec")
    spec = body["spec"]
    token = spec.get("token")
    if not isinstance(token, str) or not token:
        raise errors.invalid("TokenReview", "", [errors.Cause("spec.token", "Required value: token must not be "
                                                                            "empty", "FieldValueRequired")],
                             "authentication.k8s.io")
    user = authenticate(token)
    status: Obj = {"authenticated": user is not None}
    if user is not None:
        status["user"] = {"username": user.name, "uid": user.uid, "groups": list(user.groups)}
        status["audiences"] = spec.get("audiences") or audiences
    else:
        status["error"] = "invalid bearer token"
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "metadata": {"creationTimestamp": None}, "spec": {k: v for k, v in spec.items() if k != "token"},
            "status": status}


class StaticTokens:
    """`--token-auth-file`, re-read when it changes. Kubernetes reads it once; re-reading lets
    `minik8s bootstrap --node NAME` add a node's identity without restarting the apiserver. The file is
    looked at only when a presented token is unknown, so known tokens cost no system call."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self.tokens: dict[str, UserInfo] = {}
        self.reload()

    def lookup(self, presented: str) -> UserInfo | None:
        for token, user in self.tokens.items():
            if hmac.compare_digest(token, presented):
                return user
        return None

    def reload(self) -> bool:
        """Re-read the file if it changed since the last read; True if it did."""
        if self.path is None:
            return False
        try:
            st = self.path.stat()
        except OSError:
            return False
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return False
        try:
            tokens = load_tokens(self.path)
        except (OSError, ValueError) as e:
            logger.warning("token file %s: %s; keeping the tokens read before", self.path, e)
            return False
        if self._stamp is not None:
            logger.info("token file %s changed: %d identities", self.path, len(tokens))
        self.tokens, self._stamp = tokens, stamp
        return True


def discovery_resources(group: str, version: str) -> list[dict[str, Any]]:
    out = []
    for rd in registry.RESOURCES + registry.REVIEWS + registry.METRICS:
        if rd.group != group or rd.version != version:
            continue
        out.append({"name": rd.plural, "singularName": rd.singular, "namespaced": rd.namespaced, "kind": rd.kind,
                    "verbs": list(rd.verbs), "shortNames": list(rd.short_names),
                    "categories": list(rd.categories)})
        for sub in rd.subresources:
            entry = {"name": f"{rd.plural}/{sub}", "singularName": "", "namespaced": rd.namespaced,
                     "kind": rd.kind, "verbs": SUBRESOURCE_VERBS.get(sub, ["get", "patch", "update"])}
            if sub == "scale":
                entry.update(group="autoscaling", version="v1", kind="Scale")
            elif sub == "binding":
                entry.update(kind="Binding")
            elif sub == "token":
                entry.update(group="authentication.k8s.io", version="v1", kind="TokenRequest")
            elif sub == "eviction":
                entry.update(group="policy", version="v1", kind="Eviction")
            elif sub == "exec":
                entry.update(kind="PodExecOptions")
            out.append(entry)
    return out


async def keep_gc_out_of_the_way(freeze_every: float = 1.0, full_every: float = 600.0) -> None:
    """Keep Python's cyclic collector from stalling the event loop.

    The watch cache holds hundreds of thousands of long-lived dicts; a full collection walks all of them
    (measured: p99 create latency of 150-450 ms). Survivors are moved to the permanent generation every
    second, so automatic collections only ever look at young objects. Our cached objects are plain JSON
    trees without cycles, freed by reference counting; anything cyclic that got frozen is reclaimed by a
    full collection every ten minutes — one pause, instead of many."""
    loop = asyncio.get_running_loop()
    last_full = loop.time()
    gc.collect()
    while True:
        gc.freeze()
        await asyncio.sleep(freeze_every)
        if loop.time() - last_full >= full_every:
            gc.unfreeze()
            gc.collect()
            last_full = loop.time()


def split_resource_path(path: str) -> tuple[str, str, list[str]] | None:
    """(group, version, segments) for a resource request path; None for discovery, health and the
    kubelet relays (pods/log, pods/exec), which the FastAPI routes serve."""
    if path.startswith("/api/v1/"):
        group, version, rest = "", "v1", path[8:]
    elif path.startswith("/apis/"):
        group, _, tail = path[6:].partition("/")
        version, _, rest = tail.partition("/")
        if not group or not version:
            return None
    else:
        return None
    parts = [p for p in rest.split("/") if p]
    if not parts or (len(parts) == 5 and parts[2] == "pods" and parts[4] in ("log", "exec") and not group):
        return None
    if group in ("authorization.k8s.io", "authentication.k8s.io", "metrics.k8s.io"):  # reviews, metrics: not stored
        return None
    return group, version, parts


async def guarded(request: Request, fn, *args) -> Response:
    try:
        return await fn(request, *args)
    except APIError as e:
        return json_response(e.status(), e.code)
    except TimeoutError as e:
        return json_response(errors.timeout(f"the request timed out: {e}").status(), 504)
    except Exception:
        logger.exception("internal error serving %s %s", request.method, request.url.path)
        return json_response(errors.internal("an internal error occurred; see the apiserver log").status(), 500)


def guarded_route(fn) -> Callable[[Request], Any]:
    async def route(request: Request) -> Response:
        return await guarded(request, fn)
    return route


class ResourceRoutes:
    """Resource requests go straight to the generic handler; everything else to the FastAPI app.

    Resource reads and writes are the hot path (thousands a second); they skip the framework's routing
    and middleware layers, which cost a quarter of the CPU per request when measured. Authentication
    has already happened in `TokenAuth`, the outermost layer.
    """

    def __init__(self, handler: RestHandler, fallback):
        self.handler = handler
        self.fallback = fallback

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            target = split_resource_path(scope["path"])
            if target is not None:
                response = await guarded(Request(scope, receive), self.handler.handle, *target)
                return await response(scope, receive, send)
        return await self.fallback(scope, receive, send)


def _fastapi(**kw: Any) -> FastAPI:
    """FastAPI with its per-request OpenTelemetry hooks off where the installed version has them."""
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters:
        kw["telemetry"] = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}
    return FastAPI(**kw)


def create_app(settings: Settings):
    store = Store(settings.etcd_servers)
    cache = WatchCache(store, window=settings.watch_window)
    allocator = ServiceAllocator(store, settings.service_cidr, settings.node_port_range)
    authorizer = Authorizer(cache, settings.authorization_mode)
    issuer = TokenIssuer(settings.service_account_signing_key, settings.service_account_issuer,
                         settings.api_audiences)
    mutating = []
    if "ServiceAccount" in settings.admission_plugins:
        mutating.append(lambda rd, obj: mount_api_access(obj, cache) if rd.kind == "Pod" else None)
    admission = [RBACAdmission(authorizer)]
    if "Node" in authorizer.modes:
        admission.append(NodeRestriction(current_user.get))
    handler = RestHandler(store, cache, allocator, admission=admission, mutating=mutating,
                          connectors={("ServiceAccount", "token"): lambda ns, name, body: token_request(
                              issuer, cache, ns or "", name, body,
                              user=current_user.get() if "Node" in authorizer.modes else None)})
    tokens = StaticTokens(settings.token_file)
    authenticate = Authenticator(tokens, fallback=TokenAuthenticator(issuer, cache))
    kubelet_token = next((tok for tok, user in tokens.tokens.items() if user.name == KUBELET_CLIENT_USER), None)
    kubelets = KubeletProxy(store, token=kubelet_token, ca_file=settings.kubelet_certificate_authority,
                            timeout=settings.kubelet_timeout)
    metrics = MetricsAPI(cache, kubelets)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await store.connect()
        await cache.start()
        await bootstrap.ensure_system_objects(handler, settings.advertise_address, settings.secure_port)
        gc_task = asyncio.create_task(keep_gc_out_of_the_way())
        logger.info("apiserver ready")
        yield
        gc_task.cancel()
        await kubelets.close()
        await cache.stop()
        await store.close()

    app = _fastapi(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)

    async def answer_access_review(request: Request) -> Response:
        rd = next((r for r in registry.REVIEWS if r.plural == request.path_params["plural"]), None)
        if rd is None:
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        body = await read_body(request)
        return json_response(answer_review(authorizer, rd.kind, body, request.scope["state"]["user"]), 201)

    async def access_review(request: Request) -> Response:
        return await guarded(request, answer_access_review)

    async def answer_token_review_request(request: Request) -> Response:
        body = await read_body(request)
        return json_response(answer_token_review(authenticate, body, issuer.audiences), 201)

    async def token_review(request: Request) -> Response:
        return await guarded(request, answer_token_review_request)

    async def pod_log(request: Request) -> Response:
        return await guarded(request, kubelets.logs)

    async def pod_exec_without_upgrade(request: Request) -> Response:
        return await guarded(request, kubelets.exec_without_upgrade)

    async def pod_exec(ws: WebSocket) -> None:
        try:
            await kubelets.exec(ws)
        except Exception:
            logger.exception("internal error serving exec %s", ws.url.path)
            if ws.client_state == WebSocketState.CONNECTING:
                await deny_websocket(ws, errors.internal("an internal error occurred; see the apiserver log"))


    async def api_versions(request: Request) -> Response:
        return json_response({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{settings.advertise_address}:{settings.secure_port}"}]})

    def group_doc(name: str, versions: list[str]) -> dict[str, Any]:
        vs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
        return {"name": name, "versions": vs, "preferredVersion": vs[0]}

    async def api_groups(request: Request) -> Response:
        groups = [group_doc(g, vs) for g, vs in registry.groups().items() if g]
        return json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})

    async def api_group(request: Request) -> Response:
        g = request.path_params["group"]
        vs = registry.groups().get(g)
        if not g or vs is None:
            return json_response(errors.APIError(404, "NotFound", "the server could not find the requested "
                                                                  "resource").status(), 404)
        return json_response({"kind": "APIGroup", "apiVersion": "v1"} | group_doc(g, vs))

    def resource_list(group: str, version: str) -> Response:
        res = discovery_resources(group, version)
        if not res:
            return json_response(errors.APIError(404, "NotFound", "the server could not find the requested "
                                                                  "resource").status(), 404)
        gv = f"{group}/{version}" if group else version
        return json_response({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": res})

    async def core_resources(request: Request) -> Response:
        return resource_list("", "v1")

    async def group_resources(request: Request) -> Response:
        return resource_list(request.path_params["group"], request.path_params["version"])

    async def version(request: Request) -> Response:
        return json_response(VERSION)

    async def openapi_root(request: Request) -> Response:
        return json_response(openapi.root_document())

    async def openapi_group_version(request: Request) -> Response:
        gv = request.path_params["gv"].strip("/")
        doc = openapi.group_version_document(gv)
        if not doc["paths"]:
            return json_response(APIError(404, "NotFound", "the server could not find the requested resource").status(), 404)
        return json_response(doc)

    async def live(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def ready(request: Request) -> Response:
        if not cache.ready.is_set():
            return PlainTextResponse("[-]watch-cache not synced\nreadyz check failed", 500)
        try:
            await store.current_revision()
        except Exception as e:
            return PlainTextResponse(f"[-]etcd failed: {e!r}\nreadyz check failed", 500)
        return PlainTextResponse("ok")

    r = app.router
    r.add_route("/version", version, ["GET"])
    r.add_route("/openapi/v3", openapi_root, ["GET"])
    r.add_route("/openapi/v3/{gv:path}", openapi_group_version, ["GET"])
    r.add_route("/healthz", live, ["GET"])
    r.add_route("/livez", live, ["GET"])
    r.add_route("/readyz", ready, ["GET"])
    r.add_route("/api", api_versions, ["GET"])
    r.add_route("/api/v1", core_resources, ["GET"])
    r.add_route("/api/v1/namespaces/{namespace}/pods/{name}/log", pod_log, ["GET"])
    r.add_route("/api/v1/namespaces/{namespace}/pods/{name}/exec", pod_exec_without_upgrade, ["GET", "POST"])
    r.add_websocket_route("/api/v1/namespaces/{namespace}/pods/{name}/exec", pod_exec)
    r.add_route("/apis/authorization.k8s.io/v1/{plural:str}", access_review, ["POST"])
    r.add_route("/apis/authentication.k8s.io/v1/tokenreviews", token_review, ["POST"])
    for path, endpoint in metrics.routes():
        r.add_route(path, guarded_route(endpoint), ["GET"])
    r.add_route("/apis", api_groups, ["GET"])
    r.add_route("/apis/{group}", api_group, ["GET"])
    r.add_route("/apis/{group}/{version}", group_resources, ["GET"])

    async def not_found(request: Request, exc) -> Response:
        return json_response(APIError(404, "NotFound", "the server could not find the requested resource").status(), 404)

    async def method_not_allowed(request: Request, exc) -> Response:
        return json_response(errors.method_not_allowed(f"{request.method} is not supported here").status(), 405)

    app.add_exception_handler(404, not_found)
    app.add_exception_handler(405, method_not_allowed)
    return TokenAuth(Authorize(ResourceRoutes(handler, app), authorizer, PUBLIC_PATHS), authenticate)
