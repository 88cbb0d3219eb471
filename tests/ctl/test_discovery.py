"""Resource names as kubectl users type them, resolved against discovery-shaped ResourceDefs."""
import pytest

from api.registry import ResourceDef
from ctl.discovery import Discovery, ResourceArg, UsageError, parse_resource_args, resolve

RESOURCES = [
    ResourceDef("", "v1", "Pod", "pods", short_names=("po",)),
    ResourceDef("", "v1", "Service", "services", short_names=("svc",)),
    ResourceDef("", "v1", "Event", "events", short_names=("ev",)),
    ResourceDef("apps", "v1", "Deployment", "deployments", short_names=("deploy",)),
    ResourceDef("events.k8s.io", "v1", "Event", "events"),
    ResourceDef("example.com", "v1", "Widget", "widgets", short_names=("po",)),
]


@pytest.mark.parametrize("name, group, plural", [
    ("pods", "", "pods"), ("pod", "", "pods"), ("po", "", "pods"), ("PODS", "", "pods"),
    ("deploy", "apps", "deployments"), ("deployment.apps", "apps", "deployments"),
    ("deployments.v1.apps", "apps", "deployments"), ("events", "", "events"),
    ("events.events.k8s.io", "events.k8s.io", "events"), ("widget", "example.com", "widgets"),
])
def test_resolve_plural_singular_short_and_qualified_names(name, group, plural):
    rd = resolve(RESOURCES, name)
    assert (rd.group, rd.plural) == (group, plural)


def test_core_group_wins_an_ambiguous_short_name():
    assert resolve(RESOURCES, "po").kind == "Pod"


def test_plural_beats_another_kinds_short_name():
    extra = [ResourceDef("x.io", "v1", "Thing", "things", short_names=("services",))] + RESOURCES
    assert resolve(extra, "services").kind == "Service"


@pytest.mark.parametrize("name", ["foo", "deployments.batch", "pods.v2"])
def test_unknown_names_are_kubectl_errors(name):
    with pytest.raises(UsageError, match=f'the server doesn\'t have a resource type "{name}"'):
        resolve(RESOURCES, name)


def test_discovery_reads_legacy_documents_and_subresources():
    docs = {
        "/api/v1": {"resources": [{"name": "pods", "kind": "Pod", "namespaced": True, "shortNames": ["po"],
                                   "verbs": ["get"], "categories": ["all"]},
                                  {"name": "pods/log", "kind": "Pod", "namespaced": True}]},
        "/apis": {"groups": [{"name": "apps", "preferredVersion": {"version": "v1"}}]},
        "/apis/apps/v1": {"resources": [{"name": "deployments", "kind": "Deployment", "namespaced": True,
                                         "shortNames": ["deploy"]},
                                        {"name": "deployments/scale", "kind": "Scale", "namespaced": True}]},
    }

    class FakeClient:
        def request(self, method, path):
            return docs[path]

    d = Discovery.fetch(FakeClient())
    assert [(r.group, r.plural) for r in d.resources] == [("", "pods"), ("apps", "deployments")]
    assert d.resolve("po").subresources == ("log",) and d.resolve("deploy").subresources == ("scale",)
    assert [r.plural for r in d.category("all")] == ["pods"]
    assert d.for_object({"apiVersion": "apps/v1", "kind": "Deployment"}).plural == "deployments"
    with pytest.raises(UsageError, match='no matches for kind "Gadget" in version "x/v1"'):
        d.for_object({"apiVersion": "x/v1", "kind": "Gadget", "metadata": {"name": "g"}})


@pytest.mark.parametrize("args, expected", [
    (["pods"], [ResourceArg("pods")]),
    (["pods", "a", "b"], [ResourceArg("pods", ("a", "b"))]),
    (["po,svc"], [ResourceArg("po"), ResourceArg("svc")]),
    (["po,svc", "x"], [ResourceArg("po", ("x",)), ResourceArg("svc", ("x",))]),
    (["pod/a", "svc/b"], [ResourceArg("pod", ("a",)), ResourceArg("svc", ("b",))]),
    ([], []),
])
def test_parse_resource_args(args, expected):
    assert parse_resource_args(args) == expected


def test_type_slash_name_cannot_mix_with_a_separate_type():
    with pytest.raises(UsageError, match="no need to specify a resource type as a separate argument"):
        parse_resource_args(["pods", "pod/a"])
    with pytest.raises(UsageError, match="single resource and name"):
        parse_resource_args(["pod/"])
