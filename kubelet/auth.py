"""Who may call the kubelet's own API (logs, exec, metrics), and what they may do there.

Two ways, as the real kubelet has them:

- A static token file (`--authentication-token-file`): the caller's token must be a row of it, and only the
  apiserver's kubelet-client identity or `system:masters` may do anything. Simple, but the node then holds
  every identity's token, the admin's included.
- Delegation to the apiserver (`--authentication-token-webhook`, with `--authorization-mode Webhook`,
  what a node should run): a presented token is sent in a TokenReview, and the user it names is checked
  with a SubjectAccessReview for the request's verb on `nodes/<subresource>` of this node — `proxy` for
  logs and exec, `metrics` for `/metrics/...`, `stats` for `/stats/...` (Kubernetes' mapping). The node
  then needs nothing but its own credentials. Answers are cached like the kubelet's webhook caches do
  (a known token for 2 minutes, an unknown one for 30 s; an authorization for 5 minutes, a refusal for
  30 s), so a log stream or an exec session costs the apiserver one review pair at most.

A token the static file knows is judged by the file; any other goes to the webhook when there is one.
"""
from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apiserver.pki import read_token_file
from client.rest import AsyncClient

Obj = dict[str, Any]

KUBELET_CLIENT_USER = "system:kube-apiserver-kubelet-client"
MASTERS_GROUP = "system:masters"
AUTHN_TTL, AUTHN_NEGATIVE_TTL = 120.0, 30.0
AUTHZ_TTL, AUTHZ_NEGATIVE_TTL = 300.0, 30.0
CACHE_LIMIT = 10_000
VERBS = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


@dataclass(frozen=True)
class Caller:
    user: str
    groups: tuple[str, ...]
    uid: str = ""


@dataclass(frozen=True)
class Refusal:
    code: int
    reason: str
    message: str


def subresource_for(path: str) -> str:
    """The `nodes/<subresource>` a kubelet path is about (Kubernetes' kubelet authorizer attributes)."""
    first = path.strip("/").split("/", 1)[0]
    return {"metrics": "metrics", "stats": "stats", "logs": "log", "spec": "spec"}.get(first, "proxy")


class _TTLCache:
    def __init__(self) -> None:
        self._items: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any) -> tuple[bool, Any]:
        hit = self._items.get(key)
        if hit is None or hit[0] < time.monotonic():
            return False, None
        return True, hit[1]

    def put(self, key: Any, value: Any, ttl: float) -> None:
        if len(self._items) >= CACHE_LIMIT:
            self._items.clear()
        self._items[key] = (time.monotonic() + ttl, value)


class KubeletAuth:
    def __init__(self, node_name: str, *, token_file: str | Path | None = None,
                 client: AsyncClient | None = None, webhook_authz: bool = True) -> None:
        self.node_name = node_name
        self.static = {tok: Caller(user, tuple(groups), uid) for tok, user, uid, groups in
                       (read_token_file(Path(token_file)) if token_file else [])}
        self.client = client           # set: delegate unknown tokens to the apiserver (TokenReview)
        self.webhook_authz = webhook_authz and client is not None
        self._authn = _TTLCache()
        self._authz = _TTLCache()

    @property
    def configured(self) -> bool:
        return bool(self.static) or self.client is not None

    async def check(self, header: str | None, method: str, path: str) -> Refusal | None:
        """None when the request may go ahead, else the 401/403 to answer."""
        if not header or not header.startswith("Bearer "):
            return Refusal(401, "Unauthorized", "Unauthorized")
        token = header[7:].strip()
        caller = self._static_caller(token)
        from_file = caller is not None
        if caller is None and self.client is not None:
            caller = await self._review_token(token)
        if caller is None:
            return Refusal(401, "Unauthorized", "Unauthorized")
        verb, sub = VERBS.get(method, method.lower()), subresource_for(path)
        if from_file or not self.webhook_authz:
            if caller.user == KUBELET_CLIENT_USER or MASTERS_GROUP in caller.groups:
                return None
        elif await self._review_access(caller, verb, sub):
            return None
        return Refusal(403, "Forbidden", f"Forbidden (user={caller.user}, verb={verb}, resource=nodes, "
                                         f"subresource={sub})")

    def _static_caller(self, token: str) -> Caller | None:
        for known, caller in self.static.items():
            if hmac.compare_digest(known, token):
                return caller
        return None

    async def _review_token(self, token: str) -> Caller | None:
        key = hashlib.sha256(token.encode()).digest()
        hit, caller = self._authn.get(key)
        if hit:
            return caller
        review = await self.client.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", json={
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}})
        status = review.get("status") or {}
        caller = None
        if status.get("authenticated"):
            user = status.get("user") or {}
            caller = Caller(str(user.get("username") or ""), tuple(user.get("groups") or ()), str(user.get("uid") or ""))
        self._authn.put(key, caller, AUTHN_TTL if caller else AUTHN_NEGATIVE_TTL)
        return caller

    async def _review_access(self, caller: Caller, verb: str, sub: str) -> bool:
        key = (caller, verb, sub)
        hit, allowed = self._authz.get(key)
        if hit:
            return allowed
        review = await self.client.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", json={
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": caller.user, "groups": list(caller.groups), "uid": caller.uid,
                     "resourceAttributes": {"verb": verb, "resource": "nodes", "subresource": sub,
                                            "name": self.node_name}}})
        allowed = bool((review.get("status") or {}).get("allowed"))
        self._authz.put(key, allowed, AUTHZ_TTL if allowed else AUTHZ_NEGATIVE_TTL)
        return allowed
