"""An in-memory fake apiserver behind `httpx.MockTransport`, for unit tests of client-side logic.

It speaks the same wire format as the real apiserver for the parts clients lean on — get, paginated
list, create (AlreadyExists), update with resourceVersion precondition (Conflict), `/status`, merge and
JSON patch, delete (finalizers, preconditions), delete-collection, `pods/binding`, `serviceaccounts/<name>/token`
(a TokenRequest answered with a fake token, see `issued_tokens`), and watch with replay
from a resourceVersion, BOOKMARKs, `timeoutSeconds` and 410 Expired for compacted history — so
controllers and client code can be tested through the real `AsyncClient`/`Client` without a server:

    fake = FakeAPIServer()
    client = fake.async_client()          # or fake.client() (sync; watches replay history then end)
    ...
    fake.actions                           # [(method, path, params, body)] as sent

Fault injection: `fake.down = True` fails every request with httpx.ConnectError; `drop_watches()` breaks
open watch streams with httpx.ReadError; `compact()` forgets event history (watches from older
resourceVersions get 410); `reactors` may answer a request first (return an httpx.Response, or None to
pass). Selectors and patches use the apiserver's own `api.selectors` and `api.patch`. Simplifications:
no validation or defaulting, no graceful pod deletion, and watch filters on the new object only
(an object leaving a selector is not turned into DELETED).
"""
from __future__ import annotations

import asyncio
import base64
import copy
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from typing import Any

import httpx
import orjson

from api import errors, patch, registry
from api.errors import APIError
from api.registry import ResourceDef
from api.selectors import parse_field_selector, parse_label_selector
from client.kubeconfig import Config
from client.resources import object_key
from client.rest import AsyncClient, Client

Obj = dict[str, Any]
Reactor = Callable[[httpx.Request], "httpx.Response | None"]

_DROP = object()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeAPIServer:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], Obj] = {}  # (group_resource, key) -> object
        self.rv = 0
        self.history: list[tuple[int, ResourceDef, str, Obj]] = []
        self.compacted_rv = 0
        self.actions: list[tuple[str, str, dict[str, str], Any]] = []
        self.reactors: list[Reactor] = []
        self.down = False
        self._watchers: list[tuple[ResourceDef, dict[str, str], str | None, asyncio.Queue[Any]]] = []
        self._uids = (str(uuid.UUID(int=i)) for i in itertools.count(1))
        self.clock: Callable[[], float] = time.time    # what TokenRequest expirations are counted from
        self.issued_tokens: list[tuple[str, Obj]] = []  # (token, TokenRequest spec) in the order issued

    # -- clients -----------------------------------------------------------------------------------

    def config(self) -> Config:
        return Config(server="https://fake.minik8s", token="fake-token", insecure=True)

    def async_client(self, **kw: Any) -> AsyncClient:
        return AsyncClient(self.config(), transport=httpx.MockTransport(lambda r: self.handle(r, streaming=True)),
                           **kw)

    def client(self, **kw: Any) -> Client:
        return Client(self.config(), transport=httpx.MockTransport(lambda r: self.handle(r, streaming=False)), **kw)

    # -- test controls -----------------------------------------------------------------------------

    def seed(self, obj: Obj) -> Obj:
        """Store an object as if created through the API (emits ADDED) — earlier, so a namespace being
        deleted may already hold it."""
        rd = registry.by_kind(obj["apiVersion"], obj["kind"])
        assert rd is not None, obj
        return self._create(rd, (obj.get("metadata") or {}).get("namespace"), copy.deepcopy(obj), seeding=True)

    def get_object(self, res: ResourceDef, key: str) -> Obj | None:
        return self.objects.get((res.group_resource, key))

    def drop_watches(self) -> None:
        for *_, queue in self._watchers:
            queue.put_nowait(_DROP)

    def compact(self) -> None:
        self.history.clear()
        self.compacted_rv = self.rv

    def bookmark(self) -> None:
        for rd, _, _, queue in self._watchers:
            queue.put_nowait(("BOOKMARK", {"kind": rd.kind, "apiVersion": rd.api_version,
                                           "metadata": {"resourceVersion": str(self.rv)}}))

    def watch_count(self) -> int:
        return len(self._watchers)

    # -- dispatch ----------------------------------------------------------------------------------

    def handle(self, request: httpx.Request, *, streaming: bool) -> httpx.Response:
        params = dict(request.url.params)
        body = orjson.loads(request.content) if request.content else None
        self.actions.append((request.method, request.url.path, params, body))
        if self.down:
            raise httpx.ConnectError("fake apiserver is down", request=request)
        for reactor in self.reactors:
            answer = reactor(request)
            if answer is not None:
                return answer
        try:
            return self._route(request, params, body, streaming)
        except APIError as e:
            return httpx.Response(e.code, json=e.status())

    def _route(self, request: httpx.Request, params: dict[str, str], body: Any, streaming: bool) -> httpx.Response:
        rd, ns, name, sub = self._parse_path(request.url.path)
        method = request.method
        if name is None:
            if method == "GET" and params.get("watch") in ("1", "true"):
                return self._watch(rd, ns, params, streaming)
            if method == "GET":
                return _ok(self._list(rd, ns, params))
            if method == "POST":
                return _ok(self._create(rd, ns, body), 201)
            if method == "DELETE":
                return _ok(self._delete_collection(rd, ns, params, body))
        elif method == "GET" and not sub:
            return _ok(self._get(rd, ns, name))
        elif method == "PUT":
            return _ok(self._update(rd, ns, name, body, sub))
        elif method == "PATCH":
            return _ok(self._patch(rd, ns, name, body, request.headers.get("content-type", ""), sub))
        elif method == "DELETE" and not sub:
            return _ok(self._delete(rd, ns, name, body or {}))
        elif method == "POST" and rd.plural == "pods" and sub == "binding":
            return _ok(self._bind(ns, name, body), 201)
        elif method == "POST" and rd.plural == "serviceaccounts" and sub == "token":
            return _ok(self._token_request(rd, ns, name, body), 201)
        raise errors.method_not_allowed(f"fake apiserver: {method} {request.url.path} is not supported")

    def _parse_path(self, path: str) -> tuple[ResourceDef, str | None, str | None, str | None]:
        parts = path.strip("/").split("/")
        if parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        else:
            group, version, rest = parts[1], parts[2], parts[3:]
        ns = None
        if len(rest) >= 3 and rest[0] == "namespaces" and registry.lookup(group, version, rest[2]):
            ns, rest = rest[1], rest[2:]
        rd = registry.lookup(group, version, rest[0]) if rest else None
        if rd is None:
            raise errors.not_found("resource", path)
        return rd, ns, (rest[1] if len(rest) > 1 else None), (rest[2] if len(rest) > 2 else None)

    # -- storage -----------------------------------------------------------------------------------

    def _key(self, rd: ResourceDef, ns: str | None, name: str) -> tuple[str, str]:
        return rd.group_resource, f"{ns}/{name}" if rd.namespaced else name

    def _get(self, rd: ResourceDef, ns: str | None, name: str) -> Obj:
        obj = self.objects.get(self._key(rd, ns, name))
        if obj is None:
            raise errors.not_found(rd.plural, name, rd.group)
        return copy.deepcopy(obj)

    def _record(self, rd: ResourceDef, kind: str, obj: Obj) -> None:
        self.history.append((self.rv, rd, kind, copy.deepcopy(obj)))
        for wrd, params, ns, queue in self._watchers:
            if wrd == rd and self._visible(rd, obj, ns, params):
                queue.put_nowait((kind, copy.deepcopy(obj)))

    def _store(self, rd: ResourceDef, obj: Obj, kind: str) -> Obj:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.objects[(rd.group_resource, object_key(obj))] = obj
        self._record(rd, kind, obj)
        return copy.deepcopy(obj)

    def _create(self, rd: ResourceDef, ns: str | None, obj: Obj, *, seeding: bool = False) -> Obj:
        meta = obj.setdefault("metadata", {})
        if rd.namespaced:
            meta["namespace"] = ns or meta.get("namespace") or "default"
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if (rd.group_resource, object_key(obj)) in self.objects:
            raise errors.already_exists(rd.plural, meta["name"], rd.group)
        namespace = self.objects.get(("namespaces", meta.get("namespace", ""))) if rd.namespaced else None
        if namespace is not None and namespace["metadata"].get("deletionTimestamp") and not seeding:
            ns = meta["namespace"]  # refused as the apiserver does, cause and all
            raise errors.APIError(403, "Forbidden", f"unable to create new content in namespace {ns} because it is "
                                  "being terminated", name=ns, kind="namespaces",
                                  causes=[errors.Cause("metadata.namespace", f"namespace {ns} is being terminated",
                                                       "NamespaceTerminating")])
        obj.setdefault("apiVersion", rd.api_version)
        obj.setdefault("kind", rd.kind)
        meta.update(uid=next(self._uids), creationTimestamp=_now())
        if rd.tracks_generation:
            meta["generation"] = 1
        return self._store(rd, obj, "ADDED")

    def _check_rv(self, rd: ResourceDef, current: Obj, wanted: str | None) -> None:
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            raise errors.conflict(rd.plural, current["metadata"]["name"],
                                  "the object has been modified; please apply your changes to the latest "
                                  "version and try again", rd.group)

    def _write(self, rd: ResourceDef, old: Obj, new: Obj, sub: str | None) -> Obj:
        if sub == "status":
            new = {**old, "status": new.get("status")}
        elif rd.has_status:
            new = {**new, "status": old.get("status")}
        for immutable in ("uid", "creationTimestamp", "namespace", "name"):
            if immutable in old["metadata"]:
                new["metadata"][immutable] = old["metadata"][immutable]
        if rd.tracks_generation and new.get("spec") != old.get("spec"):
            new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
        if new == old:
            return copy.deepcopy(old)
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            return self._remove(rd, new)
        return self._store(rd, new, "MODIFIED")

    def _update(self, rd: ResourceDef, ns: str | None, name: str, body: Obj, sub: str | None) -> Obj:
        old = self._get(rd, ns, name)
        self._check_rv(rd, old, (body.get("metadata") or {}).get("resourceVersion"))
        new = copy.deepcopy(body)
        new["metadata"] = {**new.get("metadata", {}), "resourceVersion": old["metadata"]["resourceVersion"]}
        return self._write(rd, old, new, sub)

    def _patch(self, rd: ResourceDef, ns: str | None, name: str, body: Any, content_type: str,
               sub: str | None) -> Obj:
        old = self._get(rd, ns, name)
        if content_type.startswith("application/json-patch+json"):
            new = patch.json_patch(old, body)
        elif content_type.startswith("application/strategic-merge-patch+json"):
            new = patch.strategic_merge_patch(old, body)
        else:
            new = patch.merge_patch(old, body)
        self._check_rv(rd, old, (new.get("metadata") or {}).get("resourceVersion"))
        return self._write(rd, old, new, sub)

    def _remove(self, rd: ResourceDef, obj: Obj) -> Obj:
        self.objects.pop((rd.group_resource, object_key(obj)), None)
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self._record(rd, "DELETED", obj)
        return copy.deepcopy(obj)

    def _delete(self, rd: ResourceDef, ns: str | None, name: str, options: Obj) -> Obj:
        obj = self._get(rd, ns, name)
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != obj["metadata"]["uid"]:
            raise errors.conflict(rd.plural, name, "Precondition failed: UID mismatch", rd.group)
        self._check_rv(rd, obj, pre.get("resourceVersion"))
        if obj["metadata"].get("finalizers"):
            if obj["metadata"].get("deletionTimestamp"):
                return obj
            obj["metadata"]["deletionTimestamp"] = _now()
            return self._store(rd, obj, "MODIFIED")
        return self._remove(rd, obj)

    def _delete_collection(self, rd: ResourceDef, ns: str | None, params: dict[str, str], options: Any) -> Obj:
        listed = self._list(rd, ns or ("default" if rd.namespaced else None), params)
        for item in listed["items"]:
            self._delete(rd, item["metadata"].get("namespace"), item["metadata"]["name"], options or {})
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}

    def _bind(self, ns: str | None, name: str, binding: Obj) -> Obj:
        pods = registry.lookup("", "v1", "pods")
        assert pods is not None
        pod = self._get(pods, ns, name)
        if pod["spec"].get("nodeName"):
            raise errors.conflict("pods", name, f"pod {name} is already assigned to node "
                                                f"{pod['spec']['nodeName']!r}")
        pod["spec"]["nodeName"] = binding["target"]["name"]
        self._store(pods, pod, "MODIFIED")
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}

    def _token_request(self, rd: ResourceDef, ns: str | None, name: str, request: Obj) -> Obj:
        """A TokenRequest for an existing ServiceAccount: a unique fake token, expiring as asked."""
        self._get(rd, ns, name)
        spec = dict((request or {}).get("spec") or {})
        spec.setdefault("expirationSeconds", 3600)
        token = f"fake-token-{ns}-{name}-{len(self.issued_tokens) + 1}"
        self.issued_tokens.append((token, copy.deepcopy(spec)))
        expires = datetime.fromtimestamp(self.clock() + int(spec["expirationSeconds"]), timezone.utc)
        return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "metadata": {"name": name, "namespace": ns, "creationTimestamp": None},
                "spec": spec, "status": {"token": token,
                                         "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}}

    # -- reads -------------------------------------------------------------------------------------

    def _visible(self, rd: ResourceDef, obj: Obj, ns: str | None, params: dict[str, str]) -> bool:
        meta = obj.get("metadata") or {}
        if ns and meta.get("namespace") != ns:
            return False
        labels = params.get("labelSelector")
        if labels and not parse_label_selector(labels).matches(meta.get("labels")):
            return False
        fields = params.get("fieldSelector")
        return not fields or parse_field_selector(fields).matches(lambda path: rd.field_value(obj, path))

    def _list(self, rd: ResourceDef, ns: str | None, params: dict[str, str]) -> Obj:
        items = sorted(
            ((key, obj) for (gr, key), obj in self.objects.items()
             if gr == rd.group_resource and self._visible(rd, obj, ns, params)),
            key=lambda kv: kv[0],
        )
        snapshot = str(self.rv)
        if token := params.get("continue"):
            state = orjson.loads(base64.urlsafe_b64decode(token))
            if int(state["rv"]) < self.compacted_rv:
                raise errors.gone("The provided continue parameter is too old to display a consistent list "
                                  "result. You can start a new list without the continue parameter.")
            snapshot = state["rv"]
            items = [kv for kv in items if kv[0] > state["after"]]
        meta: Obj = {"resourceVersion": snapshot}
        limit = int(params.get("limit") or 0)
        if limit and len(items) > limit:
            items = items[:limit]
            state = {"rv": snapshot, "after": items[-1][0]}
            meta["continue"] = base64.urlsafe_b64encode(orjson.dumps(state)).decode()
        return {"kind": rd.list_kind, "apiVersion": rd.api_version, "metadata": meta,
                "items": [copy.deepcopy(obj) for _, obj in items]}

    def _watch(self, rd: ResourceDef, ns: str | None, params: dict[str, str], streaming: bool) -> httpx.Response:
        rv = params.get("resourceVersion")
        if rv in (None, "", "0"):
            initial = [("ADDED", obj) for obj in self._list(rd, ns, params)["items"]]
        elif int(rv) < self.compacted_rv:
            status = errors.gone(f"too old resource version: {rv} ({self.compacted_rv})").status()
            initial = [("ERROR", status)]
        else:
            initial = [(kind, copy.deepcopy(obj)) for at, wrd, kind, obj in self.history
                       if at > int(rv) and wrd == rd and self._visible(rd, obj, ns, params)]
        if not streaming or (initial and initial[-1][0] == "ERROR"):
            return httpx.Response(200, headers={"content-type": "application/json"},
                                  content=b"".join(_line(k, o) for k, o in initial))
        queue: asyncio.Queue[Any] = asyncio.Queue()
        for event in initial:
            queue.put_nowait(event)
        entry = (rd, params, ns, queue)
        self._watchers.append(entry)
        timeout = float(params["timeoutSeconds"]) if params.get("timeoutSeconds") else None
        return httpx.Response(200, headers={"content-type": "application/json"},
                              content=self._stream(entry, timeout))

    async def _stream(self, entry: Any, timeout: float | None) -> AsyncIterator[bytes]:
        queue = entry[3]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        try:
            while True:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that arrives
                # together with an event, and a stopped informer would then never finish.
                try:
                    async with asyncio.timeout_at(deadline):
                        event = await queue.get()
                except TimeoutError:
                    return
                if event is None:
                    return
                if event is _DROP:
                    raise httpx.ReadError("fake apiserver dropped the watch")
                yield _line(*event)
        finally:
            self._watchers.remove(entry)


def _line(kind: str, obj: Obj) -> bytes:
    return orjson.dumps({"type": kind, "object": obj}) + b"\n"


def _ok(body: Obj, code: int = 200) -> httpx.Response:
    return httpx.Response(code, json=body)
