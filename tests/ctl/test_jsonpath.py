"""kubectl's JSONPath templates over plain documents."""
import pytest

from ctl import jsonpath
from ctl.discovery import UsageError

PODS = {"kind": "List", "items": [
    {"metadata": {"name": "a", "labels": {"app.kubernetes.io/name": "web"}},
     "spec": {"containers": [{"name": "c1", "image": "img:1"}, {"name": "c2", "image": "img:2"}]},
     "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}], "restarts": 3}},
    {"metadata": {"name": "b"}, "spec": {"containers": [{"name": "c1", "image": "img:3"}]},
     "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}], "restarts": 0}},
]}


@pytest.mark.parametrize("template, expected", [
    ("{.items[*].metadata.name}", "a b"),
    ("{.items[0].metadata.name}", "a"),
    ("{.items[-1].metadata.name}", "b"),
    ("{.items[0:1].metadata.name}", "a"),
    ("{$.kind}", "List"),
    ("{.items[?(@.status.phase==\"Running\")].metadata.name}", "a"),
    ("{.items[?(@.status.restarts>1)].metadata.name}", "a"),
    ("{.items[?(@.status.phase!='Running')].metadata.name}", "b"),
    ("{.items[0].status.conditions[?(@.type=='Ready')].status}", "True"),
    (r"{.items[0].metadata.labels.app\.kubernetes\.io/name}", "web"),
    ("{.items[0].metadata.labels['app.kubernetes.io/name']}", "web"),
    ("{..image}", "img:1 img:2 img:3"),
    ("{.items[1].spec.containers[0]}", '{"name":"c1","image":"img:3"}'),
    ("{.items[0].missing}", ""),
    ("names: {.items[*].metadata.name}!", "names: a b!"),
    ('{range .items[*]}{.metadata.name}{"\\t"}{.status.phase}{"\\n"}{end}', "a\tRunning\nb\tPending\n"),
    ('{range .items[*]}[{range .spec.containers[*]}{.name},{end}]{end}', "[c1,c2,][c1,]"),
])
def test_render(template, expected):
    assert jsonpath.render(template, PODS) == expected


def test_values_are_raw_results():
    assert jsonpath.values("{.items[*].status.restarts}", PODS) == [3, 0]


@pytest.mark.parametrize("template", ["{.items[*]", "{range .items[*]}{.x}", "{end}", "{.items[abc]}"])
def test_malformed_templates_are_usage_errors(template):
    with pytest.raises(UsageError):
        jsonpath.parse(template)
