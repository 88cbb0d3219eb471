"""Authorization: every authenticated request is checked against RBAC before anything else happens.

`request_attributes` turns a method and path into Kubernetes' request attributes (verb, API group,
resource, subresource, name, namespace — or a non-resource path), the way the apiserver's RequestInfo
resolver does: `GET` on a collection is `list` (or `watch` with `?watch=true`), `DELETE` on one is
`deletecollection`, `namespaces/<n>/status` is the status subresource of namespace `n`, and a pod exec
is `create` on `pods/exec` whatever the HTTP method (as Kubernetes ≥ 1.31 authorizes WebSocket exec).

`Authorizer` evaluates `api.rbac` rules against the Roles, ClusterRoles and bindings in the watch cache
(no etcd read per request; the policy is rebuilt only when one of those objects changes, and decisions
are memoised until then). In front of it (`--authorization-mode Node,RBAC`, the default) the node
authorizer (`apiserver/nodeauthz.py`) decides what depends on which kubelet asks; `AlwaysAllow` turns
authorization off.

`RBACAdmission` is the escalation check Kubernetes makes on RBAC writes: creating or updating a Role
needs either every rule it grants or the `escalate` verb on it; a binding needs either every rule of the
role it references or the `bind` verb on that role. Without it, anyone allowed to create RoleBindings
could make themselves cluster-admin.

The `Authorize` ASGI layer sits right after authentication; a refusal is a 403 Forbidden Status with
Kubernetes' message (`pods "web" is forbidden: User "jane" cannot get resource "pods" in API group "" in
the namespace "shop"`).
"""
from __future__ import annotations

import contextvars
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from starlette.websockets import WebSocket

from api import errors, rbac, registry
from api.errors import APIError
from api.rbac import Attributes, Policy, UserInfo
from api.selectors import parse_field_selector
from apiserver.nodeauthz import NodeAuthorizer
from apiserver.proxy import deny_websocket
from apiserver.rest import json_response

if TYPE_CHECKING:
    from apiserver.watchcache import WatchCache

logger = logging.getLogger(__name__)

Obj = dict[str, Any]

MODES = ("Node", "RBAC", "AlwaysAllow")
RBAC_KINDS = ("ClusterRole", "Role", "ClusterRoleBinding", "RoleBinding")
NAMESPACE_SUBRESOURCES = {"status", "finalize"}
MEMO_LIMIT = 50_000

# The user of the request being served (set by `Authorize`), for admission checks deeper in the stack.
current_user: contextvars.ContextVar[UserInfo | None] = contextvars.ContextVar("current_user", default=None)

_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}


def request_attributes(method: str, path: str, query: str = "") -> Attributes:
    if path.startswith("/api/v1/"):
        group, rest = "", path[len("/api/v1/"):]
    elif path.startswith("/apis/") and path.count("/") >= 4:
        group, _version, rest = path[len("/apis/"):].split("/", 2)
    else:
        return Attributes(verb=method.lower(), resource_request=False, path=path)
    parts = [p for p in rest.split("/") if p]
    if not parts:
        return Attributes(verb=method.lower(), resource_request=False, path=path)
    namespace = ""
    if parts[0] == "namespaces" and len(parts) > 1:
        namespace = parts[1]
        if len(parts) > 2 and parts[2] not in NAMESPACE_SUBRESOURCES:
            parts = parts[2:]
    resource = parts[0]
    name = parts[1] if len(parts) > 1 else ""
    sub = parts[2] if len(parts) > 2 else ""
    if method == "GET" or method == "HEAD":
        if not name:
            params = parse_qs(query)
            verb = "watch" if params.get("watch", [""])[0] in ("1", "true", "True") else "list"
            name = _name_from_field_selector(params.get("fieldSelector", [""])[0])
        else:
            verb = "get"
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = _VERBS.get(method, method.lower())
    if resource == "pods" and sub == "exec":
        verb = "create"
    return Attributes(verb=verb, api_group=group, resource=resource, subresource=sub, name=name,
                      namespace=namespace)


def _name_from_field_selector(text: str) -> str:
    """A list or watch of one object by `fieldSelector=metadata.name=<name>` is about that name, as in
    Kubernetes' RequestInfo: RBAC resourceNames and the node authorizer can then allow it."""
    if "metadata.name" not in text:
        return ""
    try:
        requirements = parse_field_selector(text).requirements
    except APIError:
        return ""
    names = {value for path, op, value in requirements if path == "metadata.name" and op == "="}
    return names.pop() if len(names) == 1 else ""


def forbidden(user: UserInfo, a: Attributes, reason: str = "") -> APIError:
    """Kubernetes' Forbidden Status for a refused request."""
    who = f'User "{user.name}" cannot {a.verb}'
    if not a.resource_request:
        message = f'forbidden: {who} path "{a.path}"'
        return APIError(403, "Forbidden", message + (f": {reason}" if reason else ""))
    group_resource = f"{a.resource}.{a.api_group}" if a.api_group else a.resource
    subject = f'{group_resource} "{a.name}"' if a.name else group_resource
    where = f'in the namespace "{a.namespace}"' if a.namespace else "at the cluster scope"
    message = (f'{subject} is forbidden: {who} resource "{a.resource_with_sub}" in API group '
               f'"{a.api_group}" {where}')
    return APIError(403, "Forbidden", message + (f": {reason}" if reason else ""), name=a.name or None,
                    kind=a.resource, group=a.api_group)


class Authorizer:
    """The authorizers of `--authorization-mode` (a comma-separated list) asked in order: the first to allow
    or refuse decides; when none has an opinion the request is refused."""

    def __init__(self, cache: "WatchCache", mode: str = "Node,RBAC") -> None:
        self.modes = tuple(m.strip() for m in mode.split(",") if m.strip())
        unknown = [m for m in self.modes if m not in MODES]
        if unknown or not self.modes:
            raise ValueError(f"unknown authorization mode {mode!r}; a list of {', '.join(MODES)}")
        self.mode = "AlwaysAllow" if "AlwaysAllow" in self.modes else mode
        self.nodes = NodeAuthorizer(cache)
        self._caches = [cache.cache_for(registry.lookup(rbac.GROUP, "v1", plural))
                        for plural in ("clusterroles", "roles", "clusterrolebindings", "rolebindings")]
        self._seen: tuple[int, ...] | None = None
        self._policy = Policy()
        self._memo: dict[tuple[UserInfo, Attributes], bool] = {}

    def policy(self) -> Policy:
        stamp = tuple(c.changes for c in self._caches)
        if stamp != self._seen:
            self._policy = Policy.from_objects(obj for c in self._caches for obj in c.objects.values())
            self._memo.clear()
            self._seen = stamp
        return self._policy

    def allowed(self, user: UserInfo, attrs: Attributes) -> bool:
        return self.authorize(user, attrs)[0]

    def authorize(self, user: UserInfo, attrs: Attributes) -> tuple[bool, str]:
        """(allowed, why not) — the reason comes from the node authorizer when it has one."""
        if rbac.MASTERS in user.groups:
            return True, ""
        reason = ""
        for mode in self.modes:
            if mode == "AlwaysAllow":
                return True, ""
            if mode == "Node":
                verdict, reason = self.nodes.decide(user, attrs)
                if verdict is not None:
                    return verdict, reason
            elif self._rbac_allows(user, attrs):
                return True, ""
        return False, reason

    def _rbac_allows(self, user: UserInfo, attrs: Attributes) -> bool:
        policy = self.policy()
        key = (user, attrs)
        verdict = self._memo.get(key)
        if verdict is None:
            if len(self._memo) >= MEMO_LIMIT:
                self._memo.clear()
            verdict = self._memo[key] = policy.allows(user, attrs)
        return verdict

    def rules(self, user: UserInfo, namespace: str) -> list[Obj]:
        return list(self.policy().rules_for(user, namespace))


def impersonation(scope) -> tuple[str | None, list[str]]:
    """The `Impersonate-User` and `Impersonate-Group` headers of a request (`kubectl --as`)."""
    user, groups = None, []
    for k, v in scope["headers"]:
        if k == b"impersonate-user":
            user = v.decode("latin-1")
        elif k == b"impersonate-group":
            groups.append(v.decode("latin-1"))
    return user, groups


class Authorize:
    """ASGI layer between authentication (which put `user` in the scope's state) and the routes.

    Impersonation first, as Kubernetes does it: with `Impersonate-User` (and `Impersonate-Group`) the
    requester needs the `impersonate` verb on those users and groups, and the request then runs as the
    impersonated user (also in `system:authenticated`)."""

    def __init__(self, app, authorizer: Authorizer, public_paths: set[str]) -> None:
        self.app = app
        self.authorizer = authorizer
        self.public_paths = public_paths

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket") or scope["path"] in self.public_paths:
            return await self.app(scope, receive, send)
        user: UserInfo = scope["state"]["user"]
        method = "GET" if scope["type"] == "websocket" else scope["method"]
        as_user, as_groups = impersonation(scope)
        if as_user is not None or as_groups:
            checks = [Attributes("impersonate", resource="users", name=as_user or "")] if as_user else []
            checks += [Attributes("impersonate", resource="groups", name=g) for g in as_groups]
            refused = next((a for a in checks if not self.authorizer.allowed(user, a)), None)
            if refused is not None or as_user is None:
                err = forbidden(user, refused) if refused else errors.bad_request(
                    "Impersonate-Group requires Impersonate-User")
                return await self._deny(scope, receive, send, err)
            user = UserInfo(as_user, tuple(dict.fromkeys([*as_groups, rbac.AUTHENTICATED])))
            scope["state"]["user"] = user
        attrs = request_attributes(method, scope["path"], scope.get("query_string", b"").decode("latin-1"))
        allowed, reason = self.authorizer.authorize(user, attrs)
        if not allowed:
            logger.info("forbidden: %s %s %s/%s %s/%s%s", user.name, attrs.verb, attrs.api_group,
                        attrs.resource_with_sub or attrs.path, attrs.namespace, attrs.name,
                        f" ({reason})" if reason else "")
            return await self._deny(scope, receive, send, forbidden(user, attrs, reason))
        token = current_user.set(user)
        try:
            return await self.app(scope, receive, send)
        finally:
            current_user.reset(token)

    @staticmethod
    async def _deny(scope, receive, send, err: APIError) -> None:
        if scope["type"] == "websocket":
            return await deny_websocket(WebSocket(scope, receive, send), err)
        return await json_response(err.status(), err.code)(scope, receive, send)


class RBACAdmission:
    """Refuse RBAC writes that would grant more than the writer holds (see the module docstring)."""

    def __init__(self, authorizer: Authorizer) -> None:
        self.authorizer = authorizer

    def __call__(self, rd: registry.ResourceDef, new: Obj, old: Obj | None) -> None:
        if rd.group != rbac.GROUP or rd.kind not in RBAC_KINDS or self.authorizer.mode == "AlwaysAllow":
            return
        user = current_user.get()
        if user is None or rbac.MASTERS in user.groups:
            return
        meta = new.get("metadata") or {}
        namespace = meta.get("namespace") or ""
        if rd.kind in ("Role", "ClusterRole"):
            if self.authorizer.allowed(user, Attributes("escalate", api_group=rbac.GROUP, resource=rd.plural,
                                                        name=meta.get("name", ""), namespace=namespace)):
                return
            wanted = [r for r in new.get("rules") or () if isinstance(r, dict)]
            what = f'{rd.kind} "{meta.get("name")}"'
        else:
            ref = new.get("roleRef") or {}
            plural = "clusterroles" if ref.get("kind") == "ClusterRole" else "roles"
            ref_ns = "" if plural == "clusterroles" else namespace
            if self.authorizer.allowed(user, Attributes("bind", api_group=rbac.GROUP, resource=plural,
                                                        name=ref.get("name", ""), namespace=namespace or ref_ns)):
                return
            wanted = self.authorizer.policy().role_rules(ref, namespace)
            what = f'{rd.kind} "{meta.get("name")}" (for {ref.get("kind")} "{ref.get("name")}")'
        held = self.authorizer.rules(user, namespace)
        missing = [r for r in wanted if not rbac.covers(held, r)]
        if missing:
            raise errors.APIError(403, "Forbidden", f'{rd.group_resource} "{meta.get("name")}" is forbidden: '
                                  f'user "{user.name}" is attempting to grant RBAC permissions not currently held '
                                  f'in {what}: {missing}')


def review_attributes(spec: Obj) -> Attributes:
    """The request attributes a (Self)SubjectAccessReview spec asks about."""
    ra = spec.get("resourceAttributes")
    if isinstance(ra, dict):
        return Attributes(verb=str(ra.get("verb") or ""), api_group=str(ra.get("group") or ""),
                          resource=str(ra.get("resource") or ""), subresource=str(ra.get("subresource") or ""),
                          name=str(ra.get("name") or ""), namespace=str(ra.get("namespace") or ""))
    nra = spec.get("nonResourceAttributes")
    if isinstance(nra, dict):
        return Attributes(verb=str(nra.get("verb") or ""), resource_request=False, path=str(nra.get("path") or ""))
    raise errors.invalid("SubjectAccessReview", "", [errors.Cause(
        "spec", "Invalid value: exactly one of nonResourceAttributes or resourceAttributes must be specified")],
        "authorization.k8s.io")


def answer_review(authorizer: Authorizer, kind: str, body: Any, requester: UserInfo) -> Obj:
    """Fill `status` of a SelfSubjectAccessReview (about the requester) or SubjectAccessReview (about
    `spec.user`/`spec.groups`), as `kubectl auth can-i` sends them."""
    if not isinstance(body, dict) or not isinstance(body.get("spec"), dict):
        raise errors.bad_request(f"a {kind} needs a spec")
    spec = body["spec"]
    attrs = review_attributes(spec)
    if kind == "SelfSubjectAccessReview":
        user = requester
    else:
        if not spec.get("user") and not spec.get("groups"):
            raise errors.invalid(kind, "", [errors.Cause("spec.user", "Invalid value: at least one of user or "
                                                                      "group must be specified")],
                                 "authorization.k8s.io")
        user = UserInfo(str(spec.get("user") or ""), tuple(str(g) for g in spec.get("groups") or ()),
                        str(spec.get("uid") or ""))
    allowed = authorizer.allowed(user, attrs)
    status: Obj = {"allowed": allowed}
    if not allowed:
        status["reason"] = "no RBAC policy matched"
    return {"apiVersion": "authorization.k8s.io/v1", "kind": kind,
            "metadata": {k: v for k, v in (body.get("metadata") or {}).items() if k in ("name", "generateName")},
            "spec": spec, "status": status}
