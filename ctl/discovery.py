"""What the server serves, from its discovery documents, and how users name it on the command line.

`Discovery.fetch` reads `/api/v1`, `/apis` and each group's preferred version (the legacy documents
every apiserver serves) into `ResourceDef`s, the type the client library already routes by. Nothing is
taken from the local registry: the CLI knows what this server says, as kubectl does.

Resolving a name follows kubectl's RESTMapper: a name may be a plural (`pods`), a singular (`pod`), a
short name (`po`), or any of these qualified by group (`deployments.apps`) or version and group
(`deployments.v1.apps`); matching is case-insensitive; the core group wins, then groups in the order
discovery lists them.

`parse_resource_args` turns kubectl's positional forms into (type, names) pairs: `TYPE`, `TYPE NAME...`,
`TYPE1,TYPE2 [NAME...]` and `TYPE/NAME...`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from api.registry import ResourceDef

Obj = dict[str, Any]


class UsageError(Exception):
    """A command line kubectl would reject before talking to the server ("error: ..." and exit code 1)."""


def _resource_defs(group: str, version: str, resources: list[Obj]) -> list[ResourceDef]:
    subs: dict[str, list[str]] = {}
    for r in resources:
        base, _, sub = r["name"].partition("/")
        if sub:
            subs.setdefault(base, []).append(sub)
    return [ResourceDef(group=group, version=version, kind=r["kind"], plural=r["name"],
                        namespaced=bool(r.get("namespaced")), subresources=tuple(subs.get(r["name"], ())),
                        short_names=tuple(r.get("shortNames") or ()), categories=tuple(r.get("categories") or ()),
                        verbs=tuple(r.get("verbs") or ()))
            for r in resources if "/" not in r["name"]]


@dataclass
class Discovery:
    resources: list[ResourceDef]

    @classmethod
    def fetch(cls, client: Any) -> "Discovery":
        found = _resource_defs("", "v1", client.request("GET", "/api/v1").get("resources") or [])
        for group in client.request("GET", "/apis").get("groups") or []:
            preferred = (group.get("preferredVersion") or (group.get("versions") or [{}])[0]).get("version")
            if not preferred:
                continue
            doc = client.request("GET", f"/apis/{group['name']}/{preferred}")
            found += _resource_defs(group["name"], preferred, doc.get("resources") or [])
        return cls(found)

    def resolve(self, name: str) -> ResourceDef:
        return resolve(self.resources, name)

    def for_object(self, obj: Obj) -> ResourceDef:
        api_version, kind = obj.get("apiVersion") or "", obj.get("kind") or ""
        group, _, version = api_version.rpartition("/")
        for rd in self.resources:
            if rd.kind == kind and rd.group == group and rd.version == version:
                return rd
        for rd in self.resources:   # a version this server does not prefer: still the same kind
            if rd.kind == kind and rd.group == group:
                return rd
        raise UsageError(f'resource mapping not found for name: "{(obj.get("metadata") or {}).get("name", "")}" '
                         f'namespace: "{(obj.get("metadata") or {}).get("namespace", "")}" from "": '
                         f'no matches for kind "{kind}" in version "{api_version}"\n'
                         f'ensure CRDs are installed first')

    def category(self, name: str) -> list[ResourceDef]:
        return [rd for rd in self.resources if name in rd.categories]


def resolve(resources: list[ResourceDef], name: str) -> ResourceDef:
    """The resource `name` designates (see the module docstring); UsageError when none does."""
    lowered = name.lower()
    resource, _, qualifier = lowered.partition(".")
    version, group = None, qualifier
    if qualifier:
        head, _, rest = qualifier.partition(".")
        if head[:1] == "v" and head[1:2].isdigit():
            version, group = head, rest
    candidates = [rd for rd in resources if not qualifier or (rd.group == group and version in (None, rd.version))]
    if not qualifier:
        candidates.sort(key=lambda rd: rd.group != "")
    for names_of in (lambda rd: (rd.plural,), lambda rd: (rd.singular,), lambda rd: rd.short_names):
        for rd in candidates:
            if resource in names_of(rd):
                return rd
    raise UsageError(f'the server doesn\'t have a resource type "{name}"')


@dataclass(frozen=True)
class ResourceArg:
    """One resource type from the command line and the names given for it (empty: all of that type)."""

    type: str
    names: tuple[str, ...] = ()


def parse_resource_args(args: list[str]) -> list[ResourceArg]:
    if not args:
        return []
    if any("/" in a for a in args):
        if not all("/" in a for a in args):
            raise UsageError("there is no need to specify a resource type as a separate argument when passing "
                             "arguments in resource/name form (e.g. 'kubectl get resource/<resource_name>' "
                             "instead of 'kubectl get resource resource/<resource_name>'")
        out: list[ResourceArg] = []
        for a in args:
            type_, _, name = a.partition("/")
            if not type_ or not name:
                raise UsageError(f"arguments in resource/name form must have a single resource and name: {a!r}")
            out.append(ResourceArg(type_, (name,)))
        return out
    types = [t for t in args[0].split(",") if t]
    if not types:
        raise UsageError(f"invalid resource type {args[0]!r}")
    return [ResourceArg(t, tuple(args[1:])) for t in types]


def kind_name(rd: ResourceDef) -> str:
    """kubectl's `kind.group` prefix for object names: `pod`, `deployment.apps`."""
    return f"{rd.kind.lower()}.{rd.group}" if rd.group else rd.kind.lower()


def resource_name(rd: ResourceDef) -> str:
    """kubectl's `resource.group` used in messages: `pods`, `deployments.apps`."""
    return f"{rd.plural}.{rd.group}" if rd.group else rd.plural
