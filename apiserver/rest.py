"""Generic REST handlers: every kind and verb is served by this one module, driven by the registry.

A request path is resolved to (resource, namespace, name, subresource); the verb comes from the HTTP
method plus `?watch`. Reads are answered from the watch cache (after a consistent-read sync), writes go
to etcd as guarded transactions through `Storage`. Anything wrong with the request raises `APIError`,
which the app renders as a Kubernetes Status.
"""
from __future__ import annotations

import asyncio
import base64
import copy
import datetime
import logging
import random
from collections.abc import Callable, Sequence
from typing import Any, AsyncIterator

import orjson
import yaml
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from api import errors, managedfields, registry
from api.errors import APIError, Cause
from api.patch import json_patch, merge_patch, strategic_merge_patch
from api.registry import ResourceDef
from api.selectors import parse_field_selector, parse_label_selector
from apiserver import eviction, openapi, strategy, tables
from apiserver.allocator import Exhausted, ServiceAllocator, requested
from apiserver.storage import CompareFailed, SideEffects, Store
from apiserver.watchcache import WatchCache

logger = logging.getLogger(__name__)

Obj = dict[str, Any]
MAX_BODY = 3 * 1024 * 1024
JSON = "application/json"
NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def json_response(obj: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(obj), status_code=status, media_type=JSON)


class Target:
    """What a request path names."""

    __slots__ = ("rd", "namespace", "name", "sub")

    def __init__(self, rd: ResourceDef, namespace: str | None, name: str | None, sub: str | None):
        self.rd, self.namespace, self.name, self.sub = rd, namespace, name, sub

    def key(self, name: str | None = None) -> str:
        name = name or self.name
        if self.rd.namespaced:
            return f"{self.rd.storage_prefix()}{self.namespace}/{name}"
        return f"{self.rd.storage_prefix()}{name}"

    def prefix(self) -> str:
        if self.rd.namespaced and self.namespace:
            return f"{self.rd.storage_prefix()}{self.namespace}/"
        return self.rd.storage_prefix()


def resolve(group: str, version: str, parts: list[str]) -> Target:
    """Map path segments after the group-version to a Target, as Kubernetes' installer lays paths out."""
    def rd_for(plural: str) -> ResourceDef:
        rd = registry.lookup(group, version, plural)
        if rd is None:
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        return rd

    n = len(parts)
    if n >= 3 and parts[0] == "namespaces":
        rd = registry.lookup(group, version, parts[2])
        if rd is not None and rd.namespaced:
            if n > 5:
                raise APIError(404, "NotFound", "the server could not find the requested resource")
            return _checked(Target(rd, parts[1], parts[3] if n > 3 else None, parts[4] if n > 4 else None))
    if n == 0 or n > 3:
        raise APIError(404, "NotFound", "the server could not find the requested resource")
    rd = rd_for(parts[0])
    return _checked(Target(rd, None, parts[1] if n > 1 else None, parts[2] if n > 2 else None))


def _checked(t: Target) -> Target:
    if t.sub is not None and t.sub not in t.rd.subresources:
        raise APIError(404, "NotFound", "the server could not find the requested resource")
    if t.name is not None and t.name == "":
        raise APIError(404, "NotFound", "the server could not find the requested resource")
    return t


async def read_body(request: Request) -> Obj | list:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY:
        raise errors.too_large("the request body is larger than the 3 MiB limit")
    if length is not None and length.isdigit():
        raw = await request.body()
    else:  # chunked: count as it arrives so an endless body cannot exhaust memory
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                raise errors.too_large("the request body is larger than the 3 MiB limit")
            chunks.append(chunk)
        raw = b"".join(chunks)
    request.state.raw_body = raw
    ctype = (request.headers.get("content-type") or JSON).split(";")[0].strip().lower()
    if not raw.strip():
        raise errors.bad_request("the request body is empty")
    try:
        if ctype.endswith("yaml"):
            return _yaml_or_json(raw)
        return orjson.loads(raw)
    except (orjson.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError, RecursionError) as e:
        raise errors.bad_request(f"the request body could not be decoded: {str(e).splitlines()[0]}") from None


def _yaml_or_json(raw: bytes) -> Any:
    """A YAML body; JSON (what kubectl sends as an apply patch) is YAML too but parses faster as JSON."""
    if raw.lstrip().startswith(b"{"):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return yaml.safe_load(raw)


def _require_object(body: Any, what: str = "object") -> Obj:
    if not isinstance(body, dict):
        raise errors.bad_request(f"the request body must be a JSON {what}, got {type(body).__name__}")
    meta = body.get("metadata")
    if meta is None:
        body["metadata"] = {}
    elif not isinstance(meta, dict):
        raise errors.bad_request("metadata must be an object")
    return body


def _copy(obj: Obj) -> Obj:
    """A deep copy of a stored (JSON-shaped) object; several times faster than copy.deepcopy."""
    return orjson.loads(orjson.dumps(obj))


def _write_options(request: Request, t: Target, options: str, *, patch: bool = False,
                   apply: bool = False) -> tuple[managedfields.Writer, bool, bool]:
    """The write's field manager, dryRun and force, checked as Kubernetes checks Create/Update/
    PatchOptions (422 naming the option)."""
    q = request.query_params
    causes = []
    manager = q.get("fieldManager")
    if apply and not manager:
        causes.append(Cause("fieldManager", "Required value: is required for apply patch", "FieldValueRequired"))
    if manager and len(manager.encode()) > managedfields.MAX_MANAGER_LENGTH:
        causes.append(Cause("fieldManager", f"Too long: may not be more than {managedfields.MAX_MANAGER_LENGTH} bytes",
                            "FieldValueTooLong"))
    elif manager and not manager.isprintable():
        causes.append(Cause("fieldManager", f"Invalid value: {manager!r}: must only contain printable characters"))
    force = q.get("force")
    if patch and not apply and force is not None:
        causes.append(Cause("force", "Forbidden: may not be specified for non-apply patch", "FieldValueForbidden"))
    dry_run = q.getlist("dryRun")
    for value in dry_run:
        if value != "All":
            causes.append(Cause("dryRun", f'Unsupported value: "{value}": supported values: "All"',
                                "FieldValueNotSupported"))
    if causes:
        raise errors.invalid(options, "", causes, "meta.k8s.io")
    forced = False
    if apply and force not in (None, ""):
        if force.lower() not in ("true", "false", "1", "0", "t", "f"):
            raise errors.bad_request(f'invalid value for force: "{force}" is not a boolean')
        forced = force.lower() in ("true", "1", "t")
    writer = managedfields.Writer(managedfields.manager_from(manager, request.headers.get("user-agent")),
                                  api_version=t.rd.api_version, subresource=t.sub, has_status=t.rd.has_status)
    return writer, bool(dry_run), forced


def _touches_managed_fields(kind: str, patch: Any) -> bool:
    """Whether a merge/strategic/JSON patch may change metadata.managedFields (else the stored ones stay)."""
    if kind == "json":
        paths = [op.get(k) for op in patch if isinstance(op, dict) for k in ("path", "from")] \
            if isinstance(patch, list) else []
        return any(isinstance(p, str) and (p in ("", "/metadata") or p.startswith("/metadata/managedFields"))
                   for p in paths)
    meta = patch.get("metadata") if isinstance(patch, dict) else None
    return isinstance(meta, dict) and "managedFields" in meta


def _int_param(request: Request, name: str) -> int | None:
    v = request.query_params.get(name)
    if v is None or v == "":
        return None
    try:
        return int(v)
    except ValueError:
        raise errors.bad_request(f'invalid value for {name}: "{v}" is not an integer') from None


def _rv_param(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    try:
        rv = int(value)
        if rv < 0:
            raise ValueError
        return rv
    except ValueError:
        raise errors.bad_request(f'invalid resource version: "{value}"') from None


class Filter:
    """A request's label and field selectors as one predicate."""

    def __init__(self, rd: ResourceDef, request: Request):
        self.labels = parse_label_selector(request.query_params.get("labelSelector") or "")
        self.fields = parse_field_selector(request.query_params.get("fieldSelector") or "")
        for path, _, _ in self.fields.requirements:
            if not rd.field_selectable(path):
                raise errors.bad_request(f'field label not supported: {path}')
        self.rd = rd
        self.trivial = self.labels.empty and not self.fields.requirements

    def __call__(self, obj: Obj) -> bool:
        if self.trivial:
            return True
        if not self.labels.matches(obj["metadata"].get("labels")):
            return False
        return self.fields.matches(lambda p: self.rd.field_value(obj, p))


class RestHandler:
    def __init__(self, store: Store, cache: WatchCache, allocator: ServiceAllocator, *,
                 admission: Sequence[Callable[[ResourceDef, Obj, Obj | None], None]] = (),
                 mutating: Sequence[Callable[[ResourceDef, Obj], None]] = (),
                 connectors: dict[tuple[str, str], Callable[[str | None, str, Any], Obj]] | None = None):
        self.store = store
        self.cache = cache
        self.allocator = allocator
        # Changes to a new object before defaulting and validation (e.g. ServiceAccount admission).
        self.mutating = tuple(mutating)
        # POSTed subresources that are answered, not stored: (kind, subresource) -> fn(namespace, name, body).
        self.connectors = dict(connectors or {})
        # Checks on a write after validation, before it is stored: (kind, new object, old or None);
        # they raise an APIError to refuse (e.g. RBAC escalation, apiserver/authz.py).
        self.admission = tuple(admission)

    # -- entry point ---------------------------------------------------------------------------------

    async def handle(self, request: Request, group: str, version: str, parts: list[str]) -> Response:
        t = resolve(group, version, parts)
        if t.rd.namespaced and t.namespace is None and t.name is not None:
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        m = request.method
        if t.name is None:
            if m == "GET":
                if request.query_params.get("watch") in ("1", "true", "True"):
                    return await self.watch(request, t)
                return await self.list(request, t)
            if m == "POST":
                return await self.create(request, t)
            if m == "DELETE":
                return await self.delete_collection(request, t)
        else:
            if m == "GET":
                if t.sub == "scale":
                    return json_response(self._scale(t.rd, await self._get_current(t)))
                obj = await self._get_current(t)
                if t.sub is None and tables.wants_table(request.headers.get("accept")):
                    return json_response(tables.table(t.rd, [obj], obj["metadata"]["resourceVersion"]))
                return json_response(obj)
            if m == "PUT":
                return await self.update(request, t)
            if m == "PATCH":
                return await self.patch(request, t)
            if m == "DELETE" and t.sub is None:
                return await self.delete(request, t)
            if m == "POST" and t.sub == "binding":
                return await self.bind(request, t)
            if m == "POST" and t.sub == "eviction":
                return await self.evict(request, t)
            if m == "POST" and (t.rd.kind, t.sub) in self.connectors:
                body = await read_body(request)
                return json_response(self.connectors[(t.rd.kind, t.sub)](t.namespace, t.name, body), 201)
        raise errors.method_not_allowed(f"{m} is not supported on this resource")

    # -- reads ---------------------------------------------------------------------------------------

    async def _get_current(self, t: Target) -> Obj:
        obj = await self.store.get(t.key())
        if obj is None:
            raise errors.not_found(t.rd.plural, t.name, t.rd.group)
        return obj

    async def _read_for_write(self, t: Target, attempt: int, want_rv: int | None) -> Obj:
        """The object a write starts from. The first attempt takes it from the watch cache — safe, because
        the write is a transaction guarded by the revision read, so a stale copy only costs a retry —
        and every retry (or a client precondition the cached copy does not match) reads etcd.
        Kubernetes' GuaranteedUpdate starts from the cache the same way. Never mutate the result."""
        if attempt == 0:
            cached = self.cache.cache_for(t.rd).objects.get(t.key())
            if cached is not None and (want_rv is None or int(cached["metadata"]["resourceVersion"]) == want_rv):
                return cached
        return await self._get_current(t)

    async def list(self, request: Request, t: Target) -> Response:
        flt = Filter(t.rd, request)
        limit = _int_param(request, "limit") or 0
        cont = request.query_params.get("continue")
        rv = request.query_params.get("resourceVersion")
        as_table = tables.wants_table(request.headers.get("accept"))
        if limit > 0 or cont:
            return await self._list_paged(t, flt, limit, cont, as_table)
        if rv in (None, ""):
            try:
                await self.cache.sync()
            except TimeoutError:
                return await self._list_paged(t, flt, 0, None, as_table)
        else:
            want = _rv_param(rv)
            if want and not await self.cache.wait_for(want, timeout=3.0):
                raise errors.timeout(f"Too large resource version: {want}, current: {self.cache.revision}")
        cache = self.cache.cache_for(t.rd)
        revision = self.cache.revision
        keys = [k for k, obj in cache.items(t.namespace) if flt(obj)]
        if as_table:
            return json_response(tables.table(t.rd, [cache.objects[k] for k in keys], str(revision)))
        return self._list_response(t.rd, [cache.serialized(k) for k in keys], revision, None)

    async def _list_paged(self, t: Target, flt: Filter, limit: int, cont: str | None,
                          as_table: bool = False) -> Response:
        start, revision = None, 0
        if cont:
            try:
                token = orjson.loads(base64.urlsafe_b64decode(cont.encode() + b"=="))
                start, revision = token["start"], int(token["rv"])
                if not start.startswith(t.prefix()):
                    raise ValueError
            except Exception:
                raise errors.bad_request("continue key is not valid") from None
        items: list[Obj] = []
        more = True
        try:
            while more and (limit == 0 or len(items) < limit):
                want = (limit - len(items)) if limit else 0
                page, revision, more = await self.store.list(t.prefix(), start=start, limit=want, revision=revision)
                for obj in page:
                    if flt(obj):
                        items.append(obj)
                if page:
                    start = _key_of(t.rd, page[-1]) + "\x00"
                if not page:
                    more = False
        except Exception as e:
            if "compacted" in str(e):
                raise errors.gone("The provided continue parameter is too old to display a consistent list result. "
                                  "You can start a new list without the continue parameter.") from None
            raise
        token = None
        if more:
            token = base64.urlsafe_b64encode(orjson.dumps({"start": start, "rv": revision})).decode().rstrip("=")
        if as_table:
            return json_response(tables.table(t.rd, items, str(revision), token))
        return self._list_response(t.rd, [orjson.dumps(o) for o in items], revision, token)

    @staticmethod
    def _list_response(rd: ResourceDef, items: list[bytes], revision: int, cont: str | None) -> Response:
        meta: dict[str, Any] = {"resourceVersion": str(revision)}
        if cont:
            meta["continue"] = cont
        head = orjson.dumps({"kind": rd.list_kind, "apiVersion": rd.api_version, "metadata": meta})
        body = head[:-1] + b',"items":[' + b",".join(items) + b"]}"
        return Response(body, media_type=JSON)

    async def watch(self, request: Request, t: Target) -> Response:
        flt = Filter(t.rd, request)
        rv_text = request.query_params.get("resourceVersion")
        timeout = _int_param(request, "timeoutSeconds")
        bookmarks = request.query_params.get("allowWatchBookmarks") in ("1", "true", "True")
        initial = request.query_params.get("sendInitialEvents") in ("1", "true", "True")
        if initial and not bookmarks:
            raise errors.bad_request("sendInitialEvents requires allowWatchBookmarks=true")
        rv = _rv_param(rv_text)
        if rv_text in (None, "") or rv == 0 or initial:
            if rv_text in (None, "") and not initial:
                await self.cache.sync()
            elif initial and rv_text not in (None, "", "0"):
                await self.cache.wait_for(rv or 0)
            send_state, start = True, self.cache.revision
        else:
            send_state, start = False, rv
        cache = self.cache.cache_for(t.rd)
        ns = t.namespace if t.rd.namespaced else None
        snapshot = []
        if send_state:
            snapshot = [obj for _, obj in cache.items(t.namespace) if flt(obj)]
        watcher = self.cache.subscribe(t.rd, start, flt, ns)
        if watcher is None:
            gone = errors.gone(f"too old resource version: {rv} ({cache.window_start})")
            line = orjson.dumps({"type": "ERROR", "object": gone.status()}) + b"\n"
            return Response(line, media_type=JSON)
        rd = t.rd
        revision_at_start = start
        as_table = tables.wants_table(request.headers.get("accept"))

        def line(kind: str, obj: Obj, ev=None) -> bytes:
            if as_table:
                obj = tables.table(rd, [obj], obj["metadata"].get("resourceVersion", ""))
            elif ev is not None:
                return ev.line()
            return orjson.dumps({"type": kind, "object": obj}) + b"\n"

        async def stream() -> AsyncIterator[bytes]:
            deadline = None if not timeout else asyncio.get_running_loop().time() + timeout
            last_rv = revision_at_start
            try:
                for obj in snapshot:
                    yield line("ADDED", obj)
                if initial:
                    yield self._bookmark(rd, revision_at_start, initial_end=True)
                while True:
                    wait = 5.0 if bookmarks else 60.0
                    if deadline is not None:
                        wait = min(wait, deadline - asyncio.get_running_loop().time())
                        if wait <= 0:
                            return
                    try:
                        async with asyncio.timeout(wait):  # not wait_for: it can swallow a cancellation
                            ev = await watcher.queue.get()
                    except TimeoutError:
                        if bookmarks and self.cache.revision > last_rv:
                            last_rv = self.cache.revision
                            yield self._bookmark(rd, last_rv)
                        continue
                    if ev is None:
                        return
                    last_rv = ev.rv
                    yield line(ev.type, ev.obj, ev)
            finally:
                watcher.close()

        return StreamingResponse(stream(), media_type=JSON)

    @staticmethod
    def _bookmark(rd: ResourceDef, rv: int, initial_end: bool = False) -> bytes:
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return orjson.dumps({"type": "BOOKMARK", "object": {"kind": rd.kind, "apiVersion": rd.api_version,
                                                             "metadata": meta}}) + b"\n"

    # -- create --------------------------------------------------------------------------------------

    def _check_type(self, rd: ResourceDef, body: Obj) -> None:
        kind, api_version = body.get("kind"), body.get("apiVersion")
        if kind is not None and kind != rd.kind:
            raise errors.bad_request(f"the body is a {kind!s}, not a {rd.kind} as the URL says")
        if api_version is not None and api_version != rd.api_version:
            raise errors.bad_request(f"the body has apiVersion {api_version!s}, expected {rd.api_version}")

    def _check_namespace(self, t: Target, body: Obj) -> None:
        meta = body["metadata"]
        if t.rd.namespaced:
            ns = meta.get("namespace")
            if ns not in (None, "") and ns != t.namespace:
                raise errors.bad_request("the namespace of the provided object does not match the namespace "
                                         "sent on the request")
            meta["namespace"] = t.namespace
        elif meta.get("namespace"):
            meta.pop("namespace")

    async def _namespace_usable(self, ns: str) -> None:
        key = f"/registry/namespaces/{ns}"
        obj = self.cache.cache_for(registry.lookup("", "v1", "namespaces")).objects.get(key)
        if obj is None:
            obj = await self.store.get(key)
        if obj is None:
            raise errors.not_found("namespaces", ns)
        if obj["metadata"].get("deletionTimestamp") or (obj.get("status") or {}).get("phase") == "Terminating":
            raise APIError(403, "Forbidden", f'unable to create new content in namespace {ns} because it is being '
                                             f'terminated', name=ns, kind="namespaces",
                           causes=[Cause("metadata.namespace", f"namespace {ns} is being terminated",
                                         "NamespaceTerminating")])

    def _invalid(self, rd: ResourceDef, obj: Obj, causes: list[Cause]) -> APIError:
        return errors.invalid(rd.kind, str(obj["metadata"].get("name") or ""), causes, rd.group)

    async def create(self, request: Request, t: Target) -> Response:
        if t.sub is not None:
            raise errors.method_not_allowed(f"POST is not supported on {t.rd.plural}/{t.sub}")
        fields, dry_run, _ = _write_options(request, t, "CreateOptions")
        body = _require_object(await read_body(request))
        warnings = self._field_validation(request, t.rd, body)
        self._check_type(t.rd, body)
        if t.rd.namespaced and not t.namespace:
            raise errors.bad_request("a namespaced object must be created inside a namespace")
        self._check_namespace(t, body)
        requested = body["metadata"].pop("managedFields", managedfields.MISSING)
        obj = await self._create_object(t, body, lambda new: fields.entries(None, new, requested), dry_run)
        return _warned(json_response(obj, 201), warnings)

    async def _create_object(self, t: Target, body: Obj, entries: Callable[[Obj], list[Obj]],
                             dry_run: bool) -> Obj:
        """Admit, default, validate and store a new object; `entries` gives its managedFields."""
        meta = body["metadata"]
        generate = meta.get("generateName")
        generated = not meta.get("name") and isinstance(generate, str) and bool(generate)
        if generated:
            meta["name"] = generate + "".join(random.choices(NAME_CHARS, k=5))
        for mutate in self.mutating:
            mutate(t.rd, body)
        strategy.prepare_for_create(t.rd, body)
        t.rd.default(body)
        causes = t.rd.validate(body)
        if t.rd.kind == "Service" and not causes:
            causes += self.allocator.check_requested(body)
        if causes:
            raise self._invalid(t.rd, body, causes)
        for admit in self.admission:
            admit(t.rd, body, None)
        if t.rd.namespaced:
            await self._namespace_usable(t.namespace)
        owned = entries(body)
        if owned:
            body["metadata"]["managedFields"] = owned
        for attempt in range(8):
            obj = copy.deepcopy(body) if t.rd.kind == "Service" else body
            side = await self._allocate(t.rd, obj, None, set(), set())
            if dry_run:
                return obj
            try:
                rev = await self.store.create(t.key(obj["metadata"]["name"]), obj, side)
            except CompareFailed as e:
                if e.current is not None:
                    if generated and attempt < 7:
                        body["metadata"]["name"] = generate + "".join(random.choices(NAME_CHARS, k=5))
                        continue
                    raise errors.already_exists(t.rd.plural, obj["metadata"]["name"], t.rd.group) from None
                if e.side_key_taken and self._was_requested(body, e.side_key_taken):
                    raise self._invalid(t.rd, body, [self._taken_cause(e.side_key_taken)]) from None
                continue
            obj["metadata"]["resourceVersion"] = str(rev)
            return obj
        raise errors.internal("could not allocate a free address after several attempts")

    @staticmethod
    def _was_requested(original: Obj, side_key: str) -> bool:
        ip, ports = requested(original)
        value = side_key.rsplit("/", 1)[1]
        return value == ip or (value.isdigit() and int(value) in ports)

    @staticmethod
    def _taken_cause(side_key: str) -> Cause:
        value = side_key.rsplit("/", 1)[1]
        if value.isdigit():
            return Cause("spec.ports[].nodePort", f"Invalid value: {value}: provided port is already allocated")
        return Cause("spec.clusterIPs", f'Invalid value: ["{value}"]: failed to allocate IP {value}: '
                                        f'provided IP is already allocated')

    async def _allocate(self, rd: ResourceDef, obj: Obj, old: Obj | None, avoid_ips: set[str],
                        avoid_ports: set[int]) -> SideEffects | None:
        if rd.kind != "Service":
            return None
        try:
            await self.allocator.fill(obj, old, avoid_ips, avoid_ports)
        except Exhausted as e:
            raise errors.invalid("Service", obj["metadata"]["name"],
                                 [Cause("spec.ports[].nodePort", str(e))]) from None
        return self.allocator.side_effects(obj, old)

    # -- update / patch ------------------------------------------------------------------------------

    async def update(self, request: Request, t: Target) -> Response:
        fields, dry_run, _ = _write_options(request, t, "UpdateOptions")
        body = _require_object(await read_body(request))
        if t.sub == "scale":
            return await self._update_scale(request, t, body, fields, dry_run)
        warnings = self._field_validation(request, t.rd, body)
        self._check_type(t.rd, body)
        self._check_namespace(t, body)
        name = body["metadata"].get("name")
        if name not in (None, "") and name != t.name:
            raise errors.bad_request(f'the name of the object ({name}) does not match the name on the URL ({t.name})')
        body["metadata"]["name"] = t.name
        want_rv = _rv_param(str(body["metadata"].get("resourceVersion") or "")) if body["metadata"].get(
            "resourceVersion") not in (None, "") else None
        requested = body["metadata"].pop("managedFields", managedfields.MISSING)

        def make(_current: Obj) -> Obj:
            new = copy.deepcopy(body)  # entries are never mutated: they need no copy
            if requested is not managedfields.MISSING:
                new["metadata"]["managedFields"] = requested
            return new

        result = await self._write(t, make, want_rv, fields=fields, dry_run=dry_run)
        return _warned(json_response(result), warnings)

    async def patch(self, request: Request, t: Target) -> Response:
        ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        kinds = {"application/apply-patch+yaml": "apply", "application/merge-patch+json": "merge",
                 "application/json-patch+json": "json", "application/strategic-merge-patch+json": "strategic"}
        if ctype not in kinds:
            raise errors.unsupported_media_type(f"the body of the request was in an unknown format - accepted "
                                                f"media types include: {', '.join(kinds)}")
        kind = kinds[ctype]
        fields, dry_run, force = _write_options(request, t, "PatchOptions", patch=True, apply=kind == "apply")
        body = await read_body(request)
        warnings = self._field_validation(request, t.rd, body if kind != "json" and t.sub is None else None)
        if kind == "apply":
            result, created = await self._apply(request, t, body, fields, force, dry_run)
            return _warned(json_response(result, 201 if created else 200), warnings)
        if kind == "json" and not isinstance(body, list):
            raise errors.bad_request("a JSON patch must be a list of operations")
        if kind != "json" and not isinstance(body, dict):
            raise errors.bad_request("a merge patch must be a JSON object")

        keeps_entries = not _touches_managed_fields(kind, body)

        def apply(current: Obj) -> Obj:
            if keeps_entries:  # the patch functions copy what they are given: spare them the entries
                current["metadata"].pop("managedFields", None)
            base = self._scale(t.rd, current) if t.sub == "scale" else current
            if kind == "merge":
                out = merge_patch(base, body)
            elif kind == "json":
                out = json_patch(base, body)
            else:
                out = strategic_merge_patch(base, body)
            if not isinstance(out, dict) or not isinstance(out.get("metadata", {}), dict):
                raise errors.bad_request("the patch produced something that is not an object")
            if t.sub == "scale":
                out = self._apply_scale(t.rd, current, out)
            out.setdefault("metadata", {})
            return out

        want_rv = None
        if isinstance(body, dict) and isinstance(body.get("metadata"), dict) and body["metadata"].get("resourceVersion"):
            want_rv = _rv_param(str(body["metadata"]["resourceVersion"]))
        result = await self._write(t, apply, want_rv, patch=True, fields=fields, dry_run=dry_run)
        return _warned(json_response(self._scale(t.rd, result) if t.sub == "scale" else result), warnings)

    async def _apply(self, request: Request, t: Target, body: Any, fields: managedfields.Writer, force: bool,
                     dry_run: bool) -> tuple[Obj, bool]:
        """Server-side apply (api/managedfields.py): merge the configuration into the live object by
        field ownership, or create the object from it when there is none. Returns (object, created)."""
        if t.sub not in (None, "status"):
            raise errors.unsupported_media_type(f"apply patches are not supported on {t.rd.plural}/{t.sub}")
        config = _require_object(body, "object (an apply configuration)")
        meta = config["metadata"]
        if "managedFields" in meta:
            raise errors.bad_request("metadata.managedFields must be nil")
        if config.get("apiVersion") != t.rd.api_version:
            raise errors.bad_request(f"Incorrect version specified in apply patch. Specified patch version: "
                                     f"{config.get('apiVersion') or ''}, expected: {t.rd.api_version}")
        if config.get("kind") != t.rd.kind:
            raise errors.bad_request(f"Incorrect kind specified in apply patch. Specified patch kind: "
                                     f"{config.get('kind') or ''}, expected: {t.rd.kind}")
        if meta.get("name") != t.name:
            raise errors.bad_request(f'the name of the object ({meta.get("name") or ""}) does not match the name on '
                                     f'the URL ({t.name})')
        self._check_namespace(t, config)
        want_rv = _rv_param(str(meta["resourceVersion"])) if meta.get("resourceVersion") not in (None, "") else None
        for k in ("resourceVersion", "uid", "creationTimestamp", "generation", "selfLink", "deletionTimestamp",
                  "deletionGracePeriodSeconds"):
            meta.pop(k, None)
        try:  # every attempt merges a fresh copy: merging consumes the configuration
            raw = orjson.dumps(config, option=orjson.OPT_NON_STR_KEYS)
        except TypeError as e:
            raise errors.bad_request(f"the apply configuration is not JSON-shaped: {e}") from None
        for _ in range(4):
            try:
                make = lambda cur: fields.apply(cur, orjson.loads(raw), force=force)  # noqa: E731
                return await self._write(t, make, want_rv, patch=True, fields=fields, dry_run=dry_run), False
            except APIError as e:
                if e.code != 404 or t.sub is not None or want_rv is not None:
                    raise
            new = fields.apply(None, orjson.loads(raw), force=force)
            try:
                return await self._create_object(t, new, lambda _obj: fields.applied, dry_run), True
            except APIError as e:
                if e.reason != "AlreadyExists":
                    raise
        raise errors.conflict(t.rd.plural, t.name, "too many concurrent writers; try again", t.rd.group)

    @staticmethod
    def _field_validation(request: Request, rd: ResourceDef, body: Any) -> list[str]:
        return openapi.check_fields(request.query_params.get("fieldValidation"), rd,
                                    getattr(request.state, "raw_body", None), body)

    async def _write(self, t: Target, make, want_rv: int | None, patch: bool = False, *,
                     fields: managedfields.Writer, dry_run: bool = False) -> Obj:
        """Read the current object, derive the new one, and store it guarded by the revision read.

        Without a resourceVersion precondition a lost race is retried against the fresh object (as
        Kubernetes' GuaranteedUpdate does); with one, it is a 409 Conflict. `fields` records who wrote
        what in metadata.managedFields; with `dry_run` the result is answered, not stored."""
        sub = None if t.sub == "scale" else t.sub
        for attempt in range(16):
            current = await self._read_for_write(t, attempt, want_rv)
            cur_rv = int(current["metadata"]["resourceVersion"])
            if want_rv is not None and want_rv != cur_rv:
                raise errors.conflict(t.rd.plural, t.name, "the object has been modified; please apply your "
                                                           "changes to the latest version and try again", t.rd.group)
            new = make(_copy(current))
            if not isinstance(new.get("metadata"), dict):
                raise errors.bad_request("metadata must be an object")
            self._check_type(t.rd, new)
            new_meta = new["metadata"]
            requested = new_meta.pop("managedFields", managedfields.MISSING)
            if new_meta.get("name") not in (None, t.name):
                raise errors.bad_request("the name of the object does not match the name on the URL")
            new_meta["name"] = t.name
            if t.rd.namespaced:
                new_meta["namespace"] = t.namespace
            new = strategy.prepare_for_update(t.rd, new, current, sub)
            t.rd.default(new)
            causes = t.rd.validate(new, current)
            if t.rd.kind == "Service" and sub is None and not causes:
                causes += self.allocator.check_requested(new)
            if causes:
                raise self._invalid(t.rd, new, causes)
            for admit in self.admission:
                admit(t.rd, new, current)
            new_meta = new["metadata"]
            new_meta.pop("managedFields", None)
            new_meta["resourceVersion"] = current["metadata"]["resourceVersion"]
            owned = fields.entries(current, new, requested)
            if owned:
                new_meta["managedFields"] = owned
            if dry_run:
                return new
            if new_meta.get("deletionTimestamp") and not new_meta.get("finalizers") and \
                    not self._awaits_kubelet(t.rd, new) and not _namespace_finalizers(new):
                try:
                    return await self._final_delete(t, new, cur_rv)
                except CompareFailed:
                    continue
            if new == current:
                return current
            side = await self._allocate(t.rd, new, current, set(), set()) if sub is None else None
            try:
                rev = await self.store.update(t.key(), new, cur_rv, side)
            except CompareFailed as e:
                if e.side_key_taken and self._was_requested(new, e.side_key_taken) and \
                        e.side_key_taken not in self.allocator.held_keys(current):
                    raise self._invalid(t.rd, new, [self._taken_cause(e.side_key_taken)]) from None
                if e.current is None:
                    raise errors.not_found(t.rd.plural, t.name, t.rd.group) from None
                if want_rv is not None:
                    raise errors.conflict(t.rd.plural, t.name, "the object has been modified; please apply your "
                                                               "changes to the latest version and try again",
                                          t.rd.group) from None
                continue
            new_meta["resourceVersion"] = str(rev)
            return new
        raise errors.conflict(t.rd.plural, t.name, "too many concurrent writers; try again", t.rd.group)

    @staticmethod
    def _awaits_kubelet(rd: ResourceDef, obj: Obj) -> bool:
        """A pod being deleted gracefully stays until its kubelet deletes it with grace 0."""
        return rd.kind == "Pod" and bool(obj["metadata"].get("deletionGracePeriodSeconds"))

    # -- scale ---------------------------------------------------------------------------------------

    @staticmethod
    def _scale(rd: ResourceDef, obj: Obj) -> Obj:
        meta = obj["metadata"]
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        sel = status.get("selector") or ""
        if not sel:
            from api.selectors import selector_from_dict
            sel = str(selector_from_dict(spec.get("selector") or {}))
        return {
            "kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {"name": meta["name"], "namespace": meta.get("namespace"), "uid": meta.get("uid"),
                         "resourceVersion": meta.get("resourceVersion"),
                         "creationTimestamp": meta.get("creationTimestamp")},
            "spec": {"replicas": spec.get("replicas", 0)},
            "status": {"replicas": status.get("replicas", 0), "selector": sel},
        }

    @staticmethod
    def _apply_scale(rd: ResourceDef, current: Obj, scale: Obj) -> Obj:
        replicas = (scale.get("spec") or {}).get("replicas") if isinstance(scale.get("spec"), dict) else None
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise errors.invalid("Scale", current["metadata"]["name"],
                                 [Cause("spec.replicas", f"Invalid value: {replicas!r}: must be a non-negative integer")],
                                 "autoscaling")
        out = copy.deepcopy(current)
        out.setdefault("spec", {})["replicas"] = replicas
        rv = (scale.get("metadata") or {}).get("resourceVersion")
        if rv:
            out["metadata"]["resourceVersion"] = rv
        return out

    async def _update_scale(self, request: Request, t: Target, body: Obj, fields: managedfields.Writer,
                            dry_run: bool) -> Response:
        want = body["metadata"].get("resourceVersion")
        want_rv = _rv_param(str(want)) if want not in (None, "") else None
        result = await self._write(t, lambda cur: self._apply_scale(t.rd, cur, body), want_rv, fields=fields,
                                   dry_run=dry_run)
        return json_response(self._scale(t.rd, result))

    # -- binding -------------------------------------------------------------------------------------

    async def bind(self, request: Request, t: Target) -> Response:
        body = _require_object(await read_body(request))
        target = body.get("target")
        node = target.get("name") if isinstance(target, dict) else None
        if not isinstance(node, str) or not node:
            raise errors.invalid("Binding", t.name, [Cause("target.name", "Required value", "FieldValueRequired")])
        for attempt in range(16):
            pod = copy.deepcopy(await self._read_for_write(t, attempt, None))
            rv = int(pod["metadata"]["resourceVersion"])
            if pod["metadata"].get("deletionTimestamp"):
                raise errors.conflict("pods", t.name, "pod is being deleted, cannot be assigned to a host")
            if (pod.get("spec") or {}).get("nodeName"):
                raise errors.conflict("pods", t.name, f'pod {t.name} is already assigned to node '
                                                      f'"{pod["spec"]["nodeName"]}"')
            pod["spec"]["nodeName"] = node
            conds = [c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") != "PodScheduled"]
            conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                          "lastTransitionTime": strategy.now_rfc3339()})
            pod.setdefault("status", {})["conditions"] = conds
            try:
                await self.store.update(t.key(), pod, rv)
            except CompareFailed:
                continue
            return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                  "code": 201}, 201)
        raise errors.conflict("pods", t.name, "too many concurrent writers")

    # -- eviction ------------------------------------------------------------------------------------

    async def evict(self, request: Request, t: Target) -> Response:
        """policy/v1 Eviction: the pod's PodDisruptionBudget is asked first (apiserver/eviction.py), then
        the pod is deleted with the eviction's DeleteOptions."""
        body = _require_object(await read_body(request))
        name = body["metadata"].get("name")
        if name not in (None, t.name):
            raise errors.bad_request("name in URL does not match name in Eviction object")
        opts = body.get("deleteOptions") or {}
        if not isinstance(opts, dict):
            raise errors.bad_request("deleteOptions must be an object")
        pod = Target(t.rd, t.namespace, t.name, None)
        dry_run = request.query_params.get("dryRun") == "All" or "All" in (opts.get("dryRun") or [])
        preconditions = await eviction.admit(self.store, pod.key(), t.namespace or "", t.name or "", dry_run=dry_run)
        if dry_run:
            await self._get_current(pod)
        else:
            if preconditions:
                opts = {**opts, "preconditions": {**preconditions, **(opts.get("preconditions") or {})}}
            await self._delete_one(pod, opts)
        return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                              "code": 201}, 201)

    # -- delete --------------------------------------------------------------------------------------

    async def _delete_options(self, request: Request) -> Obj:
        opts: Obj = {}
        if request.headers.get("content-length") not in (None, "0") or request.headers.get("transfer-encoding"):
            raw = await request.body()
            if len(raw) > MAX_BODY:
                raise errors.too_large("the request body is larger than the 3 MiB limit")
            if raw.strip():
                try:
                    opts = orjson.loads(raw)
                except orjson.JSONDecodeError as e:
                    raise errors.bad_request(f"the DeleteOptions could not be decoded: {e}") from None
                if not isinstance(opts, dict):
                    raise errors.bad_request("DeleteOptions must be an object")
        q = request.query_params
        if "gracePeriodSeconds" in q:
            opts["gracePeriodSeconds"] = _int_param(request, "gracePeriodSeconds")
        if "propagationPolicy" in q:
            opts["propagationPolicy"] = q["propagationPolicy"]
        if "orphanDependents" in q:
            opts["orphanDependents"] = q["orphanDependents"] in ("true", "1")
        policy = opts.get("propagationPolicy")
        if policy not in (None, "Orphan", "Foreground", "Background"):
            raise errors.invalid("DeleteOptions", "", [Cause("propagationPolicy", f'Unsupported value: "{policy}": '
                                 'supported values: "Foreground", "Background", "Orphan"', "FieldValueNotSupported")])
        grace = opts.get("gracePeriodSeconds")
        if grace is not None and (not isinstance(grace, int) or isinstance(grace, bool)):
            raise errors.bad_request("gracePeriodSeconds must be an integer")
        return opts

    async def delete(self, request: Request, t: Target) -> Response:
        opts = await self._delete_options(request)
        return json_response(await self._delete_one(t, opts))

    async def _delete_one(self, t: Target, opts: Obj) -> Obj:
        pre = opts.get("preconditions") or {}
        policy = opts.get("propagationPolicy")
        if policy is None and opts.get("orphanDependents") is not None:
            policy = "Orphan" if opts["orphanDependents"] else "Background"
        for _ in range(16):
            current = await self._get_current(t)
            meta = current["metadata"]
            rv = int(meta["resourceVersion"])
            if pre.get("uid") and pre["uid"] != meta.get("uid"):
                raise errors.conflict(t.rd.plural, t.name, f'Precondition failed: UID in precondition: {pre["uid"]}, '
                                                           f'UID in object meta: {meta.get("uid")}', t.rd.group)
            if pre.get("resourceVersion") and str(pre["resourceVersion"]) != meta["resourceVersion"]:
                raise errors.conflict(t.rd.plural, t.name, "Precondition failed: resourceVersion in precondition "
                                                           f'{pre["resourceVersion"]}, resourceVersion in object meta: '
                                                           f'{meta["resourceVersion"]}', t.rd.group)
            new = copy.deepcopy(current)
            nmeta = new["metadata"]
            finalizers = list(nmeta.get("finalizers") or [])
            if policy == "Orphan" and "orphan" not in finalizers:
                finalizers.append("orphan")
            if policy == "Foreground" and "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
            if policy in ("Orphan", "Foreground"):
                # The policy chosen last wins, as in Kubernetes.
                drop = "foregroundDeletion" if policy == "Orphan" else "orphan"
                finalizers = [f for f in finalizers if f != drop]
            grace = strategy.pod_delete_grace(current, opts.get("gracePeriodSeconds")) if t.rd.kind == "Pod" else 0
            if nmeta.get("deletionGracePeriodSeconds") is not None:
                grace = min(grace, nmeta["deletionGracePeriodSeconds"])
            if not finalizers and grace == 0 and not _namespace_finalizers(new):
                try:
                    return await self._final_delete(t, current, rv)
                except CompareFailed as e:
                    if e.current is None:
                        raise errors.not_found(t.rd.plural, t.name, t.rd.group) from None
                    continue
            if finalizers:
                nmeta["finalizers"] = finalizers
            now = datetime.datetime.now(datetime.timezone.utc)
            if not nmeta.get("deletionTimestamp") or grace < (nmeta.get("deletionGracePeriodSeconds") or 0):
                nmeta["deletionTimestamp"] = strategy.rfc3339(now + datetime.timedelta(seconds=grace))
                nmeta["deletionGracePeriodSeconds"] = grace
            if t.rd.kind == "Namespace":
                new.setdefault("status", {})["phase"] = "Terminating"
            if t.rd.tracks_generation and not current["metadata"].get("deletionTimestamp"):
                nmeta["generation"] = int(nmeta.get("generation") or 0) + 1
            if new == current:
                return current
            try:
                new_rv = await self.store.update(t.key(), new, rv)
            except CompareFailed as e:
                if e.current is None:
                    raise errors.not_found(t.rd.plural, t.name, t.rd.group) from None
                continue
            nmeta["resourceVersion"] = str(new_rv)
            return new
        raise errors.conflict(t.rd.plural, t.name, "too many concurrent writers", t.rd.group)

    async def _final_delete(self, t: Target, obj: Obj, rv: int) -> Obj:
        side = self.allocator.release(obj) if t.rd.kind == "Service" else None
        await self.store.delete(t.key(), rv, side)
        return obj

    async def delete_collection(self, request: Request, t: Target) -> Response:
        flt = Filter(t.rd, request)
        opts = await self._delete_options(request)
        await self.cache.sync()
        cache = self.cache.cache_for(t.rd)
        names = [(obj["metadata"].get("namespace"), obj["metadata"]["name"])
                 for _, obj in cache.items(t.namespace) if flt(obj)]
        deleted = []
        for ns, name in names:
            try:
                deleted.append(await self._delete_one(Target(t.rd, ns, name, None), opts))
            except APIError as e:
                if e.code != 404:
                    raise
        return self._list_response(t.rd, [orjson.dumps(o) for o in deleted], self.cache.revision, None)


def _warned(response: Response, warnings: list[str]) -> Response:
    """Field-validation findings in Warn mode travel as HTTP Warning headers, as Kubernetes sends them."""
    for w in warnings:
        response.headers.append("Warning", f'299 - "{w}"')
    return response


def _namespace_finalizers(obj: Obj) -> list:
    """Namespaces also wait for `spec.finalizers` (emptied through /finalize by the namespace controller)."""
    if obj.get("kind") != "Namespace":
        return []
    spec = obj.get("spec")
    return (spec.get("finalizers") or []) if isinstance(spec, dict) else []


def _key_of(rd: ResourceDef, obj: Obj) -> str:
    meta = obj["metadata"]
    if rd.namespaced:
        return f"{rd.storage_prefix()}{meta['namespace']}/{meta['name']}"
    return f"{rd.storage_prefix()}{meta['name']}"
