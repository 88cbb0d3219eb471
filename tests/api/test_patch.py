import copy

import pytest

from api.errors import APIError
from api.patch import ATOMIC, json_patch, list_strategy, merge_patch, strategic_merge_patch


def pod():
    return {
        "metadata": {"name": "p", "labels": {"app": "web", "tier": "fe"}, "finalizers": ["a", "b"],
                     "ownerReferences": [{"uid": "u1", "name": "rs"}]},
        "spec": {
            "containers": [
                {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}],
                 "ports": [{"containerPort": 80}], "volumeMounts": [{"name": "v", "mountPath": "/v"}]},
                {"name": "side", "image": "side:1"},
            ],
            "volumes": [{"name": "v", "emptyDir": {}}],
            "tolerations": [{"key": "k1", "operator": "Exists"}],
            "nodeSelector": {"disk": "ssd"},
        },
    }


# --- merge patch ---------------------------------------------------------------------------------

def test_merge_patch_merges_maps_and_null_deletes():
    out = merge_patch(pod(), {"metadata": {"labels": {"tier": None, "new": "x"}}})
    assert out["metadata"]["labels"] == {"app": "web", "new": "x"}


def test_merge_patch_replaces_lists():
    out = merge_patch(pod(), {"spec": {"containers": [{"name": "only", "image": "x"}]}})
    assert out["spec"]["containers"] == [{"name": "only", "image": "x"}]


def test_merge_patch_does_not_mutate_inputs():
    doc, patch = pod(), {"spec": {"nodeSelector": {"disk": None}}}
    before_doc, before_patch = copy.deepcopy(doc), copy.deepcopy(patch)
    merge_patch(doc, patch)
    assert doc == before_doc and patch == before_patch


def test_merge_patch_creates_missing_maps():
    assert merge_patch({}, {"a": {"b": {"c": 1, "d": None}}}) == {"a": {"b": {"c": 1}}}


# --- json patch ----------------------------------------------------------------------------------

def test_json_patch_applies_operations():
    out = json_patch(pod(), [{"op": "replace", "path": "/spec/containers/0/image", "value": "app:2"},
                             {"op": "add", "path": "/metadata/labels/x", "value": "y"},
                             {"op": "remove", "path": "/spec/nodeSelector"}])
    assert out["spec"]["containers"][0]["image"] == "app:2"
    assert out["metadata"]["labels"]["x"] == "y"
    assert "nodeSelector" not in out["spec"]


def test_json_patch_does_not_mutate_input():
    doc = pod()
    json_patch(doc, [{"op": "remove", "path": "/spec/nodeSelector"}])
    assert "nodeSelector" in doc["spec"]


def test_json_patch_failed_test_is_422():
    with pytest.raises(APIError) as exc:
        json_patch(pod(), [{"op": "test", "path": "/metadata/name", "value": "other"}])
    assert exc.value.code == 422 and exc.value.reason == "Invalid"


def test_json_patch_passing_test_applies():
    out = json_patch(pod(), [{"op": "test", "path": "/metadata/name", "value": "p"},
                             {"op": "replace", "path": "/metadata/name", "value": "q"}])
    assert out["metadata"]["name"] == "q"


@pytest.mark.parametrize("ops", [
    [{"op": "bogus", "path": "/a"}],
    [{"op": "remove", "path": "/nope"}],
    [{"op": "add"}],
    [{"op": "replace", "path": "/spec/containers/9/image", "value": "x"}],
    {"op": "add", "path": "/a", "value": 1},
    ["not an op"],
])
def test_json_patch_malformed_is_400(ops):
    with pytest.raises(APIError) as exc:
        json_patch(pod(), ops)
    assert exc.value.code == 400


# --- strategic merge patch -----------------------------------------------------------------------

def names(items):
    return [i["name"] for i in items]


def test_smp_merges_containers_by_name():
    out = strategic_merge_patch(pod(), {"spec": {"containers": [{"name": "app", "image": "app:2"}]}})
    assert names(out["spec"]["containers"]) == ["app", "side"]
    assert out["spec"]["containers"][0]["image"] == "app:2"
    assert out["spec"]["containers"][0]["env"] == [{"name": "A", "value": "1"}]


def test_smp_appends_new_list_elements():
    out = strategic_merge_patch(pod(), {"spec": {"containers": [{"name": "new", "image": "n"}]}})
    assert names(out["spec"]["containers"]) == ["app", "side", "new"]


def test_smp_merges_nested_env_ports_and_mounts_by_their_keys():
    patch = {"spec": {"containers": [{"name": "app", "env": [{"name": "B", "value": "2"}],
                                      "ports": [{"containerPort": 80, "name": "http"}],
                                      "volumeMounts": [{"name": "v2", "mountPath": "/w"}]}]}}
    app = strategic_merge_patch(pod(), patch)["spec"]["containers"][0]
    assert names(app["env"]) == ["A", "B"]
    assert app["ports"] == [{"containerPort": 80, "name": "http"}]
    assert [m["mountPath"] for m in app["volumeMounts"]] == ["/v", "/w"]


def test_smp_merges_service_ports_by_port():
    svc = {"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]}}
    out = strategic_merge_patch(svc, {"spec": {"ports": [{"port": 443, "targetPort": 8443}]}})
    assert out["spec"]["ports"][1] == {"port": 443, "name": "https", "targetPort": 8443}


def test_smp_merges_conditions_by_type():
    doc = {"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "Other", "status": "True"}]}}
    out = strategic_merge_patch(doc, {"status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    assert out["status"]["conditions"] == [{"type": "Ready", "status": "True"}, {"type": "Other", "status": "True"}]


def test_smp_merges_owner_references_by_uid():
    out = strategic_merge_patch(pod(), {"metadata": {"ownerReferences": [{"uid": "u2", "name": "x"}]}})
    assert [r["uid"] for r in out["metadata"]["ownerReferences"]] == ["u1", "u2"]


def test_smp_replaces_lists_without_merge_key():
    out = strategic_merge_patch(pod(), {"spec": {"tolerations": [{"key": "k2", "operator": "Exists"}]}})
    assert out["spec"]["tolerations"] == [{"key": "k2", "operator": "Exists"}]


def test_smp_merges_finalizers_as_a_set():
    out = strategic_merge_patch(pod(), {"metadata": {"finalizers": ["b", "c"]}})
    assert out["metadata"]["finalizers"] == ["a", "b", "c"]


def test_smp_null_deletes_key():
    out = strategic_merge_patch(pod(), {"spec": {"nodeSelector": None}, "metadata": {"labels": {"tier": None}}})
    assert "nodeSelector" not in out["spec"]
    assert out["metadata"]["labels"] == {"app": "web"}


def test_smp_delete_directive_in_list_element():
    out = strategic_merge_patch(pod(), {"spec": {"containers": [{"name": "side", "$patch": "delete"}]}})
    assert names(out["spec"]["containers"]) == ["app"]


def test_smp_replace_directive_in_list():
    patch = {"spec": {"containers": [{"name": "z", "image": "z"}, {"$patch": "replace"}]}}
    assert names(strategic_merge_patch(pod(), patch)["spec"]["containers"]) == ["z"]


def test_smp_replace_directive_in_map():
    out = strategic_merge_patch(pod(), {"metadata": {"labels": {"$patch": "replace", "only": "me"}}})
    assert out["metadata"]["labels"] == {"only": "me"}


def test_smp_delete_directive_in_map():
    out = strategic_merge_patch(pod(), {"spec": {"nodeSelector": {"$patch": "delete"}}})
    assert "nodeSelector" not in out["spec"]


def test_smp_merge_directive_is_default():
    out = strategic_merge_patch(pod(), {"metadata": {"labels": {"$patch": "merge", "x": "y"}}})
    assert out["metadata"]["labels"] == {"app": "web", "tier": "fe", "x": "y"}


def test_smp_retain_keys_clears_unlisted_fields():
    doc = {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}
    out = strategic_merge_patch(doc, {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}})
    assert out["spec"]["strategy"] == {"type": "Recreate"}


def test_smp_retain_keys_must_cover_patched_keys():
    with pytest.raises(APIError) as exc:
        strategic_merge_patch({}, {"spec": {"$retainKeys": ["a"], "b": 1}})
    assert exc.value.code == 400


def test_smp_delete_from_primitive_list():
    out = strategic_merge_patch(pod(), {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}})
    assert out["metadata"]["finalizers"] == ["b"]


def test_smp_set_element_order():
    patch = {"spec": {"$setElementOrder/containers": [{"name": "side"}, {"name": "app"}],
                      "containers": [{"name": "app", "image": "app:2"}]}}
    out = strategic_merge_patch(pod(), patch)
    assert names(out["spec"]["containers"]) == ["side", "app"]
    assert out["spec"]["containers"][1]["image"] == "app:2"


def test_smp_strips_directives_from_new_values():
    out = strategic_merge_patch({}, {"spec": {"containers": [{"name": "a", "env": [{"name": "X", "$patch": "delete"}]}]}})
    assert out == {"spec": {"containers": [{"name": "a", "env": []}]}}


def test_smp_missing_merge_key_is_400():
    with pytest.raises(APIError) as exc:
        strategic_merge_patch(pod(), {"spec": {"containers": [{"image": "x"}]}})
    assert exc.value.code == 400


def test_smp_unknown_directive_is_400():
    with pytest.raises(APIError):
        strategic_merge_patch(pod(), {"metadata": {"labels": {"$patch": "explode"}}})


def test_smp_does_not_mutate_inputs():
    doc = pod()
    patch = {"spec": {"containers": [{"name": "side", "$patch": "delete"}]}}
    before_doc, before_patch = copy.deepcopy(doc), copy.deepcopy(patch)
    strategic_merge_patch(doc, patch)
    assert doc == before_doc and patch == before_patch


def test_list_strategy_is_public_for_client_side_apply():
    assert list_strategy(("spec", "containers")) == "name"
    assert list_strategy(("spec", "containers", "ports")) == "containerPort"
    assert list_strategy(("spec", "ports")) == "port"
    assert list_strategy(("metadata", "finalizers")) is None
    assert list_strategy(("spec", "finalizers")) is ATOMIC
    assert list_strategy(("spec", "args")) is ATOMIC
