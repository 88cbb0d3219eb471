"""Field sets, merging, pruning and conflicts of server-side apply (api/managedfields.py), on plain dicts."""
import copy
import json

import pytest

from api import managedfields as mf
from api.errors import APIError

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"


def deployment(replicas=3, image="web:1", labels=None, **spec):
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "d", **({"labels": labels} if labels else {})},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": image}]}}, **spec}}


def apply(live, config, entries=None, manager="alice", force=False, sub=None, has_status=True, time=T1):
    live = copy.deepcopy(live)
    return mf.apply(live, copy.deepcopy(config), entries if entries is not None else mf.live_entries(live),
                    manager=manager, api_version="apps/v1", subresource=sub, has_status=has_status, force=force,
                    time=time)


def update_entries(live, new, entries, manager="bob", sub=None, time=T1):
    changes = mf.compare(mf.scoped(live, sub, True), mf.scoped(new, sub, True))
    return mf.after_update(entries, changes, manager=manager, api_version="apps/v1", subresource=sub, time=time)


def paths(node):
    return sorted(mf.readable(p) for p in mf.members(node))


def entry(entries, manager, operation=mf.APPLY):
    found = [e for e in entries if e["manager"] == manager and e["operation"] == operation]
    return found[0] if found else None


# -- field sets in Kubernetes' FieldsV1 form --------------------------------------------------------


def test_apply_configuration_owns_leaves_and_list_items_in_fieldsv1_form():
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "uid": "u", "labels": {"app": "web"}},
           "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}],
                                    "args": ["a", "b"]}],
                    "tolerations": [{"key": "k"}]},
           "status": {"phase": "Running"}}
    assert mf.fieldset(mf.scoped(pod, None, True), nodes=False) == {
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {
            "f:containers": {'k:{"name":"c"}': {".": {}, "f:name": {}, "f:image": {}, "f:args": {},
                                                "f:ports": {'k:{"containerPort":80,"protocol":"TCP"}': {
                                                    ".": {}, "f:containerPort": {}}}}},
            "f:tolerations": {}}}


def test_a_write_that_adds_maps_owns_their_nodes_too():
    new = {"metadata": {"labels": {"a": "1"}, "finalizers": ["x"]}, "data": {"k": "v"}}
    added = mf.compare({}, mf.scoped(new, None, False)).added
    assert added == {"f:metadata": {"f:labels": {".": {}, "f:a": {}}, "f:finalizers": {".": {}, 'v:"x"': {}}},
                     "f:data": {".": {}, "f:k": {}}}


def test_compare_reports_added_modified_and_removed_paths():
    live = deployment(labels={"a": "1"})
    new = deployment(replicas=5, image="web:2", labels={"b": "2"})
    changes = mf.compare(mf.scoped(live, None, True), mf.scoped(new, None, True))
    assert paths(changes.added) == [".metadata.labels.b"]
    assert paths(changes.modified) == ['.spec.replicas', '.spec.template.spec.containers[name="web"].image']
    assert paths(changes.removed) == [".metadata.labels.a"]


def test_atomic_maps_and_lists_are_single_fields():
    live = deployment(tolerations=None)
    new = copy.deepcopy(live)
    new["spec"]["selector"]["matchLabels"]["tier"] = "x"
    new["spec"]["template"]["spec"]["containers"][0]["args"] = ["--v"]
    changes = mf.compare(mf.scoped(live, None, True), mf.scoped(new, None, True))
    assert paths(changes.touched) == [".spec.selector", '.spec.template.spec.containers[name="web"].args']


def test_set_operations_keep_the_member_marker_straight():
    a = {"f:spec": {"f:replicas": {}, "f:paused": {}}, "f:metadata": {"f:labels": {".": {}, "f:a": {}}}}
    b = {"f:spec": {"f:replicas": {}}, "f:metadata": {"f:labels": {"f:a": {}}}}
    assert mf.difference(a, b) == {"f:spec": {"f:paused": {}}, "f:metadata": {"f:labels": {}}}
    assert mf.intersection(a, b) == b
    assert mf.union(b, {"f:metadata": {"f:labels": {}}}) == {"f:spec": {"f:replicas": {}},
                                                              "f:metadata": {"f:labels": {".": {}, "f:a": {}}}}
    assert mf.difference(a, a) is None


def test_paths_read_as_kubernetes_prints_them():
    node = {"f:spec": {"f:ports": {'k:{"port":80,"protocol":"TCP"}': {"f:targetPort": {}}}},
            "f:metadata": {"f:finalizers": {'v:"x"': {}}}}
    assert paths(node) == ['.metadata.finalizers[="x"]', '.spec.ports[port=80,protocol="TCP"].targetPort']


# -- merging a configuration ------------------------------------------------------------------------


def test_merge_uses_associative_keys_sets_and_atomic_lists():
    live = {"spec": {"containers": [{"name": "a", "image": "1", "ports": [{"containerPort": 80, "protocol": "TCP",
                                                                           "name": "http"}]},
                                    {"name": "b", "image": "1"}],
                     "tolerations": [{"key": "x"}, {"key": "y"}]},
            "metadata": {"finalizers": ["f1"], "labels": {"keep": "1", "drop": "1"}}}
    config = {"spec": {"containers": [{"name": "a", "image": "2", "ports": [{"containerPort": 80}]}],
                       "tolerations": [{"key": "z"}]},
              "metadata": {"finalizers": ["f2"], "labels": {"drop": None, "new": "1"}}}
    merged = mf.merge(copy.deepcopy(live), config)
    assert merged["spec"]["containers"] == [
        {"name": "a", "image": "2", "ports": [{"containerPort": 80, "protocol": "TCP", "name": "http"}]},
        {"name": "b", "image": "1"}]
    assert merged["spec"]["tolerations"] == [{"key": "z"}]
    assert merged["metadata"]["finalizers"] == ["f1", "f2"]
    assert merged["metadata"]["labels"] == {"keep": "1", "new": "1"}


def test_merge_orders_items_as_the_configuration_does_and_keeps_live_only_items_in_place():
    live = {"env": [{"name": n, "value": "l"} for n in ("A", "B", "C")]}
    config = {"env": [{"name": "C", "value": "c"}, {"name": "N", "value": "n"}, {"name": "A", "value": "a"}]}
    live_obj = {"spec": {"containers": [{"name": "x", **live}]}}
    merged = mf.merge(copy.deepcopy(live_obj), {"spec": {"containers": [{"name": "x", **config}]}})
    assert [(e["name"], e["value"]) for e in merged["spec"]["containers"][0]["env"]] == [
        ("B", "l"), ("C", "c"), ("N", "n"), ("A", "a")]


# -- apply ------------------------------------------------------------------------------------------


def test_apply_to_nothing_creates_and_owns_the_configuration():
    merged, entries = apply(None, deployment())
    assert merged == deployment()
    assert entries == [{"manager": "alice", "operation": "Apply", "apiVersion": "apps/v1", "time": T1,
                        "fieldsType": "FieldsV1", "fieldsV1": mf.fieldset(mf.scoped(deployment(), None, True),
                                                                          nodes=False)}]
    assert '.spec.replicas' in paths(entries[0]["fieldsV1"])


def test_reapplying_without_a_field_removes_it_unless_another_manager_owns_it():
    live, entries = apply(None, deployment(labels={"a": "1", "b": "2"}))
    live["metadata"]["managedFields"] = entries
    config = deployment(labels={"a": "1"})
    del config["spec"]["replicas"]
    merged, entries2 = apply(live, config)
    assert "replicas" not in merged["spec"]
    assert merged["metadata"]["labels"] == {"a": "1"}
    assert ".spec.replicas" not in paths(entry(entries2, "alice")["fieldsV1"])
    # bob shares replicas (same value, no conflict); alice dropping it leaves it to bob
    _, shared = apply(live, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                             "spec": {"replicas": 3}}, manager="bob")
    live["metadata"]["managedFields"] = shared
    merged, entries3 = apply(live, config)
    assert merged["spec"]["replicas"] == 3
    assert paths(entry(entries3, "bob")["fieldsV1"]) == [".spec.replicas"]


def test_dropping_all_labels_removes_the_emptied_map():
    live, entries = apply(None, deployment(labels={"a": "1"}))
    live["metadata"]["managedFields"] = entries
    merged, _ = apply(live, deployment())
    assert "labels" not in merged["metadata"]


def test_a_different_value_on_a_field_someone_else_updated_is_a_conflict():
    live, entries = apply(None, deployment(replicas=3), time=T0)
    live["metadata"]["managedFields"] = entries
    scaled = copy.deepcopy(live)
    scaled["spec"]["replicas"] = 5
    entries = update_entries(live, scaled, entries, manager="kubectl", sub="scale")
    assert paths(entry(entries, "kubectl", mf.UPDATE)["fieldsV1"]) == [".spec.replicas"]
    assert ".spec.replicas" not in paths(entry(entries, "alice")["fieldsV1"])
    scaled["metadata"]["managedFields"] = entries
    with pytest.raises(APIError) as e:
        apply(scaled, deployment(replicas=3, image="web:2"))
    assert e.value.code == 409 and e.value.reason == "Conflict"
    assert e.value.message == ('Apply failed with 1 conflict: conflict with "kubectl" with subresource "scale" '
                               f'using apps/v1 at {T1}: .spec.replicas')
    assert [(c.field, c.reason) for c in e.value.causes] == [(".spec.replicas", "FieldManagerConflict")]
    assert e.value.causes[0].message == f'conflict with "kubectl" with subresource "scale" using apps/v1 at {T1}'


def test_force_takes_conflicting_fields_over():
    live, entries = apply(None, deployment(replicas=3))
    live["metadata"]["managedFields"] = entries
    _, entries = apply(live, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                              "spec": {"replicas": 4, "paused": True}}, manager="bob", force=True)
    assert ".spec.replicas" not in paths(entry(entries, "alice")["fieldsV1"])
    assert paths(entry(entries, "bob")["fieldsV1"]) == [".spec.paused", ".spec.replicas"]


def test_several_conflicts_are_listed_per_manager():
    live, entries = apply(None, deployment(replicas=3, image="web:1"))
    live["metadata"]["managedFields"] = entries
    with pytest.raises(APIError) as e:
        apply(live, deployment(replicas=4, image="web:2"), manager="bob")
    assert e.value.message == ('Apply failed with 2 conflicts: conflicts with "alice":\n- .spec.replicas\n'
                               '- .spec.template.spec.containers[name="web"].image')
    assert len(e.value.causes) == 2


def test_an_apply_configuration_must_identify_list_items():
    config = deployment()
    config["spec"]["template"]["spec"]["containers"].append({"image": "x"})
    with pytest.raises(APIError) as e:
        apply(None, config)
    assert e.value.code == 400 and 'omits key field "name"' in e.value.message
    config["spec"]["template"]["spec"]["containers"][1]["name"] = "web"
    with pytest.raises(APIError) as e:
        apply(None, config)
    assert e.value.code == 400 and "duplicate entries" in e.value.message


def test_status_apply_owns_status_only():
    live = {**deployment(), "status": {"replicas": 1}}
    config = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
              "spec": {"replicas": 9}, "status": {"replicas": 2, "conditions": [{"type": "Available",
                                                                                 "status": "True"}]}}
    merged, entries = apply(live, config, sub="status")
    assert merged["status"]["replicas"] == 2
    assert entries[0]["subresource"] == "status"
    assert paths(entries[0]["fieldsV1"]) == ['.status.conditions[type="Available"]',
                                             '.status.conditions[type="Available"].status',
                                             '.status.conditions[type="Available"].type', ".status.replicas"]


def test_a_kept_item_keeps_its_key_fields_when_its_applier_lets_go():
    live, entries = apply(None, deployment())
    live["metadata"]["managedFields"] = entries
    changed = copy.deepcopy(live)
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "web:9"
    live["metadata"]["managedFields"] = update_entries(live, changed, entries, manager="bob")
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "web:9"
    config = deployment()
    config["spec"]["template"]["spec"]["containers"] = [{"name": "side", "image": "s"}]
    merged, _ = apply(live, config)
    assert merged["spec"]["template"]["spec"]["containers"] == [{"name": "web", "image": "web:9"},
                                                                 {"name": "side", "image": "s"}]


# -- updates ----------------------------------------------------------------------------------------


def test_an_update_takes_what_it_changes_and_leaves_the_time_alone_when_it_takes_nothing():
    live, entries = apply(None, deployment(), time=T0)
    new = copy.deepcopy(live)
    new["spec"]["replicas"] = 7
    after = update_entries(live, new, entries)
    assert [(e["manager"], e["operation"]) for e in after] == [("alice", "Apply"), ("bob", "Update")]
    assert paths(entry(after, "bob", mf.UPDATE)["fieldsV1"]) == [".spec.replicas"]
    assert ".spec.replicas" not in paths(entry(after, "alice")["fieldsV1"])
    assert update_entries(live, copy.deepcopy(live), entries) is entries


def test_removing_a_field_takes_it_from_its_owners():
    live, entries = apply(None, deployment(labels={"a": "1"}))
    new = copy.deepcopy(live)
    del new["metadata"]["labels"]
    after = update_entries(live, new, entries)
    assert ".metadata.labels.a" not in paths(entry(after, "alice")["fieldsV1"])
    assert entry(after, "bob", mf.UPDATE) is None


def test_requested_entries_clear_replace_or_fall_back_to_live():
    live = [{"manager": "a", "operation": "Update", "fieldsType": "FieldsV1", "fieldsV1": {"f:x": {}}}]
    assert mf.requested_entries(mf.MISSING, live) is live
    assert mf.requested_entries([], live) == []
    assert mf.requested_entries([{}], live) == []
    assert mf.requested_entries([{"manager": "z", "operation": "Apply", "fieldsV1": {"bad": 1}}], live) is live
    own = [{"manager": "z", "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": {"f:y": {}}}]
    assert mf.requested_entries(own, live) is own
    with pytest.raises(APIError) as e:
        mf.requested_entries([{"manager": "z", "operation": "Patch", "fieldsV1": {}}], live)
    assert e.value.code == 422 and e.value.causes[0].field == "metadata.managedFields[0].operation"


def test_a_noop_apply_keeps_the_old_timestamps():
    writer = mf.Writer("alice", api_version="apps/v1", subresource=None, has_status=True)
    live, entries = apply(None, deployment(), time=T0)
    live["metadata"]["managedFields"] = entries
    merged = writer.apply(copy.deepcopy(live), deployment(), force=False)
    merged["metadata"].pop("managedFields")
    assert writer.entries(live, merged) is entries
    changed = writer.apply(copy.deepcopy(live), deployment(replicas=4), force=False)
    changed["metadata"].pop("managedFields")
    assert writer.entries(live, changed)[0]["time"] != T0


def test_manager_comes_from_field_manager_or_user_agent():
    assert mf.manager_from("helm", "kubectl/v1.32") == "helm"
    assert mf.manager_from(None, "kubectl/v1.32.0 (linux/amd64) kubernetes/abc") == "kubectl"
    assert mf.manager_from(None, None) == ""


def test_kubectls_first_server_side_apply_takes_what_its_client_side_applies_set():
    config = deployment(replicas=2)
    live = {**copy.deepcopy(config), "metadata": {**config["metadata"], "annotations": {
        mf.LAST_APPLIED: json.dumps(config)}}}
    live["spec"]["paused"] = True  # set by someone else, not in the last applied configuration
    csa = update_entries({}, live, [], manager="kubectl-client-side-apply")
    live["metadata"]["managedFields"] = csa
    newer = deployment(replicas=3)
    newer["spec"]["paused"] = False
    writer = mf.Writer("kubectl", api_version="apps/v1", subresource=None, has_status=True)
    with pytest.raises(APIError) as e:  # paused was not in the last applied configuration: still a conflict
        writer.apply(copy.deepcopy(live), copy.deepcopy(newer), force=False)
    assert [c.field for c in e.value.causes] == [".spec.paused"]
    merged = writer.apply(copy.deepcopy(live), deployment(replicas=3), force=False)
    assert merged["spec"]["replicas"] == 3
    assert json.loads(merged["metadata"]["annotations"][mf.LAST_APPLIED])["spec"]["replicas"] == 3
    assert "f:replicas" not in entry(writer.applied, "kubectl-client-side-apply", mf.UPDATE)["fieldsV1"]["f:spec"]
    other = mf.Writer("helm", api_version="apps/v1", subresource=None, has_status=True)
    with pytest.raises(APIError):  # only kubectl's own history counts
        other.apply(copy.deepcopy(live), deployment(replicas=3), force=False)
