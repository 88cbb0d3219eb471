"""Role-based access control as Kubernetes defines it, as pure functions over plain objects.

A request is described by `Attributes` (who, verb, API group, resource, subresource, name, namespace — or
a non-resource path such as `/version`). Permissions are `PolicyRule`s held by Roles (one namespace) and
ClusterRoles (cluster-wide), granted to users, groups and ServiceAccounts by RoleBindings (in the
binding's namespace only) and ClusterRoleBindings (everywhere). A request is allowed when any rule
reachable from a binding that names the user matches it; there are no deny rules.

Rule matching follows `rbac/v1` helpers:
- verbs, apiGroups, resources and resourceNames match exactly or through `*`; an empty resourceNames
  list means every name;
- `resources` names subresources as `pods/log`; `*/scale` matches the scale subresource of anything,
  `*` matches every resource and subresource;
- nonResourceURLs match exactly or by a trailing `*` prefix (`/apis/*`).

`covers(owner_rules, rule)` answers the escalation question Kubernetes asks before it lets someone create
or update a Role or a binding: may this user hand out this rule, i.e. does it already hold it?
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

GROUP = "rbac.authorization.k8s.io"
MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
SA_PREFIX = "system:serviceaccount:"


@dataclass(frozen=True)
class UserInfo:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: dict[str, list[str]] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Attributes:
    """One request, as the authorizer sees it."""

    verb: str
    resource_request: bool = True
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    namespace: str = ""
    path: str = ""  # non-resource requests

    @property
    def resource_with_sub(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


# --- one rule ---------------------------------------------------------------------------------------


def _has(values: Iterable[str] | None, wanted: str) -> bool:
    values = values or ()
    return "*" in values or wanted in values


def _resource_matches(resources: Iterable[str] | None, resource: str, subresource: str) -> bool:
    full = f"{resource}/{subresource}" if subresource else resource
    for r in resources or ():
        if r == "*" or r == full:
            return True
        if subresource and r == f"*/{subresource}":
            return True
    return False


def _path_matches(patterns: Iterable[str] | None, path: str) -> bool:
    for p in patterns or ():
        if p == "*" or p == path or (p.endswith("*") and path.startswith(p[:-1])):
            return True
    return False


def rule_allows(rule: Obj, attrs: Attributes) -> bool:
    if not _has(rule.get("verbs"), attrs.verb):
        return False
    if not attrs.resource_request:
        return _path_matches(rule.get("nonResourceURLs"), attrs.path)
    if not _has(rule.get("apiGroups"), attrs.api_group):
        return False
    if not _resource_matches(rule.get("resources"), attrs.resource, attrs.subresource):
        return False
    names = rule.get("resourceNames") or ()
    return not names or attrs.name in names


# --- subjects and bindings --------------------------------------------------------------------------


def subject_matches(subject: Obj, user: UserInfo, binding_namespace: str) -> bool:
    kind = subject.get("kind")
    name = subject.get("name")
    if kind == "User":
        return name == user.name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return user.name == f"{SA_PREFIX}{namespace}:{name}"
    return False


def binds(binding: Obj, user: UserInfo) -> bool:
    namespace = (binding.get("metadata") or {}).get("namespace") or ""
    return any(subject_matches(s, user, namespace) for s in binding.get("subjects") or () if isinstance(s, dict))


class Policy:
    """The RBAC objects of a cluster, looked up by name: what an authorizer evaluates against.

    `cluster_roles[name]`, `roles[(namespace, name)]`, and the bindings as lists.
    """

    def __init__(self, *, cluster_roles: dict[str, Obj] | None = None, roles: dict[tuple[str, str], Obj] | None = None,
                 cluster_role_bindings: list[Obj] | None = None,
                 role_bindings: dict[str, list[Obj]] | None = None) -> None:
        self.cluster_roles = cluster_roles or {}
        self.roles = roles or {}
        self.cluster_role_bindings = cluster_role_bindings or []
        self.role_bindings = role_bindings or {}  # namespace -> bindings

    @classmethod
    def from_objects(cls, objects: Iterable[Obj]) -> "Policy":
        p = cls()
        for obj in objects:
            meta = obj.get("metadata") or {}
            kind = obj.get("kind")
            if kind == "ClusterRole":
                p.cluster_roles[meta.get("name", "")] = obj
            elif kind == "Role":
                p.roles[(meta.get("namespace", ""), meta.get("name", ""))] = obj
            elif kind == "ClusterRoleBinding":
                p.cluster_role_bindings.append(obj)
            elif kind == "RoleBinding":
                p.role_bindings.setdefault(meta.get("namespace", ""), []).append(obj)
        return p

    def role_rules(self, ref: Obj, namespace: str) -> list[Obj]:
        kind, name = ref.get("kind"), ref.get("name", "")
        role = self.cluster_roles.get(name) if kind == "ClusterRole" else self.roles.get((namespace, name))
        return [r for r in (role or {}).get("rules") or () if isinstance(r, dict)]

    def cluster_rules(self, user: UserInfo) -> Iterator[Obj]:
        """Rules the user holds everywhere (through ClusterRoleBindings)."""
        for b in self.cluster_role_bindings:
            if binds(b, user):
                yield from self.role_rules(b.get("roleRef") or {}, "")

    def namespace_rules(self, user: UserInfo, namespace: str) -> Iterator[Obj]:
        """Rules the user holds in one namespace only (through its RoleBindings)."""
        for b in self.role_bindings.get(namespace, ()):
            if binds(b, user):
                yield from self.role_rules(b.get("roleRef") or {}, namespace)

    def rules_for(self, user: UserInfo, namespace: str) -> Iterator[Obj]:
        yield from self.cluster_rules(user)
        if namespace:
            yield from self.namespace_rules(user, namespace)

    def allows(self, user: UserInfo, attrs: Attributes) -> bool:
        if MASTERS in user.groups:
            return True
        return any(rule_allows(r, attrs) for r in self.rules_for(user, attrs.namespace))


# --- escalation -------------------------------------------------------------------------------------


def _covers_values(owner: Iterable[str] | None, wanted: Iterable[str] | None) -> bool:
    owner = set(owner or ())
    return "*" in owner or set(wanted or ()) <= owner


def _covers_resources(owner: Iterable[str] | None, wanted: Iterable[str] | None) -> bool:
    owner = set(owner or ())
    if "*" in owner:
        return True
    for r in wanted or ():
        if r in owner:
            continue
        sub = r.split("/", 1)[1] if "/" in r else None
        if sub is not None and f"*/{sub}" in owner:
            continue
        return False
    return True


def _rule_covers(owner: Obj, rule: Obj) -> bool:
    if not _covers_values(owner.get("verbs"), rule.get("verbs")):
        return False
    if rule.get("nonResourceURLs"):
        # A wanted pattern `/apis/*` is covered by `/apis/*` or `/api*`, as a path would be.
        return all(_path_matches(owner.get("nonResourceURLs"), u) for u in rule["nonResourceURLs"])
    if not _covers_values(owner.get("apiGroups"), rule.get("apiGroups")):
        return False
    if not _covers_resources(owner.get("resources"), rule.get("resources")):
        return False
    owner_names = owner.get("resourceNames") or ()
    return not owner_names or (bool(rule.get("resourceNames")) and set(rule["resourceNames"]) <= set(owner_names))


def covers(owner_rules: list[Obj], rule: Obj) -> bool:
    """Whether holding `owner_rules` implies holding `rule`.

    Like Kubernetes' validation.Covers, a rule is split into one rule per verb, group and resource (each
    piece may be granted by a different owner rule), and each piece must be covered by one owner rule."""
    if rule.get("nonResourceURLs"):
        pieces = [{"verbs": [v], "nonResourceURLs": [u]} for v in rule.get("verbs") or ()
                  for u in rule["nonResourceURLs"]]
    else:
        pieces = [{"verbs": [v], "apiGroups": [g], "resources": [r], "resourceNames": rule.get("resourceNames")}
                  for v in rule.get("verbs") or () for g in rule.get("apiGroups") or ()
                  for r in rule.get("resources") or ()]
    return all(any(_rule_covers(o, piece) for o in owner_rules) for piece in pieces)
