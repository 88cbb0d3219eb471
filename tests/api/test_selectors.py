import pytest

from api.errors import APIError
from api.selectors import (
    label_value_errors,
    matches_selector_dict,
    parse_field_selector,
    parse_label_selector,
    qualified_name_errors,
    selector_from_dict,
    validate_selector_dict,
)


def test_equality_forms_are_equivalent():
    assert str(parse_label_selector("a=b")) == str(parse_label_selector("a==b")) == "a=b"


def test_string_form_is_canonical_and_sorted():
    sel = parse_label_selector(" tier , app in ( web, db ) ,!canary, env!=prod ")
    assert str(sel) == "app in (db,web),!canary,env!=prod,tier"


def test_parsed_selector_round_trips():
    sel = parse_label_selector("a in (x,y),b notin (z),c,!d,e=f")
    assert parse_label_selector(str(sel)) == sel


def test_empty_string_selects_everything():
    sel = parse_label_selector("")
    assert sel.empty
    assert sel.matches({}) and sel.matches(None)


@pytest.mark.parametrize("text, labels, expected", [
    ("a=b", {"a": "b"}, True),
    ("a=b", {"a": "c"}, False),
    ("a!=b", {}, True),
    ("a!=b", {"a": "b"}, False),
    ("a in (x,y)", {"a": "y"}, True),
    ("a in (x,y)", {}, False),
    ("a notin (x,y)", {}, True),
    ("a notin (x,y)", {"a": "x"}, False),
    ("a", {"a": ""}, True),
    ("a", {}, False),
    ("!a", {}, True),
    ("!a", {"a": "1"}, False),
    ("a>3", {"a": "4"}, True),
    ("a<3", {"a": "x"}, False),
    ("app=web,tier", {"app": "web"}, False),
])
def test_label_selector_matching(text, labels, expected):
    assert parse_label_selector(text).matches(labels) is expected


def test_empty_value_is_allowed():
    assert parse_label_selector("a=").matches({"a": ""})


def test_prefixed_keys_are_accepted():
    assert parse_label_selector("app.kubernetes.io/name=web").matches({"app.kubernetes.io/name": "web"})


@pytest.mark.parametrize("bad", ["a=b=c", "a in x", "a in ()", "=b", "a,", ",a", "a b", "!", "a in (x",
                                 "a=-x", "Bad/Key/x=1", "a>b", "-a=b"])
def test_bad_label_selector_is_bad_request(bad):
    with pytest.raises(APIError) as exc:
        parse_label_selector(bad)
    assert exc.value.code == 400
    assert bad in exc.value.message


def test_selector_dict_none_matches_nothing():
    assert not selector_from_dict(None).matches({})
    assert not matches_selector_dict(None, {"a": "b"})


def test_selector_dict_empty_matches_everything():
    assert selector_from_dict({}).empty
    assert matches_selector_dict({}, {"a": "b"})


def test_selector_dict_combines_labels_and_expressions():
    sel = {"matchLabels": {"app": "web"},
           "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]},
                                {"key": "canary", "operator": "DoesNotExist"}]}
    assert matches_selector_dict(sel, {"app": "web", "tier": "fe"})
    assert not matches_selector_dict(sel, {"app": "web", "tier": "fe", "canary": "1"})
    assert not matches_selector_dict(sel, {"app": "web", "tier": "db"})


def test_invalid_selector_dict_is_bad_request():
    with pytest.raises(APIError) as exc:
        selector_from_dict({"matchExpressions": [{"key": "a", "operator": "Near"}]})
    assert exc.value.code == 400


def test_validate_selector_dict_requires_values_for_in():
    causes = validate_selector_dict({"matchExpressions": [{"key": "a", "operator": "In"}]}, "spec.selector")
    assert [c.field for c in causes] == ["spec.selector.matchExpressions[0].values"]
    assert causes[0].reason == "FieldValueRequired"


def test_validate_selector_dict_forbids_values_for_exists():
    causes = validate_selector_dict({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
                                    "s")
    assert causes[0].reason == "FieldValueForbidden"


def test_validate_selector_dict_rejects_unknown_operator():
    causes = validate_selector_dict({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}, "s")
    assert causes[0].reason == "FieldValueNotSupported"
    assert causes[0].field == "s.matchExpressions[0].operator"


def test_validate_selector_dict_rejects_wrong_types():
    assert validate_selector_dict("app=web", "s")
    assert validate_selector_dict({"matchLabels": ["a"]}, "s")
    assert validate_selector_dict({"matchExpressions": "x"}, "s")
    assert validate_selector_dict({"matchLabels": {"a": 1}}, "s")


def test_qualified_names():
    assert qualified_name_errors("example.com/My_name") == ()
    assert qualified_name_errors("/a") == ("prefix part must be non-empty",)
    assert qualified_name_errors("Example.com/a")
    assert qualified_name_errors("a" * 64)
    assert qualified_name_errors("a/b/c")


def test_label_values():
    assert label_value_errors("") == ()
    assert label_value_errors("a" * 64) == ("must be no more than 63 characters",)
    assert label_value_errors("a b")


def test_field_selector_parses_all_operators():
    sel = parse_field_selector("metadata.name=a,spec.nodeName!=,status.phase==Running")
    assert sel.requirements == [("metadata.name", "=", "a"), ("spec.nodeName", "!=", ""),
                                ("status.phase", "=", "Running")]


def test_field_selector_matches():
    fields = {"metadata.name": "a", "spec.nodeName": "n1"}
    assert parse_field_selector("metadata.name=a,spec.nodeName!=n2").matches(lambda p: fields.get(p, ""))
    assert not parse_field_selector("spec.nodeName=").matches(lambda p: fields.get(p, ""))


def test_field_selector_empty_matches_everything():
    sel = parse_field_selector("")
    assert sel.empty and sel.matches(lambda p: "x")


def test_field_selector_unescapes_values():
    assert parse_field_selector(r"a=x\,y\=z").requirements == [("a", "=", "x,y=z")]


@pytest.mark.parametrize("bad", ["abc", "=x", r"a=\q", "a=b,c"])
def test_bad_field_selector_is_bad_request(bad):
    with pytest.raises(APIError) as exc:
        parse_field_selector(bad)
    assert exc.value.code == 400
