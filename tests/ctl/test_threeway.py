"""Client-side apply's three-way patch: each case is checked by applying the patch with the apiserver's
own strategic merge (api/patch.py) to the live object."""
import orjson

from api.patch import strategic_merge_patch
from ctl.threeway import LAST_APPLIED, last_applied, last_applied_json, three_way_patch, with_last_applied


def deployment(**spec_extra):
    container = {"name": "web", "image": "app:v1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [container]}}, **spec_extra}}


def live_after_apply(config):
    """What the server holds after `apply` created `config`, plus what the server and others added."""
    live = with_last_applied(config)
    live["metadata"]["uid"] = "u1"
    live["spec"]["strategy"] = {"type": "RollingUpdate"}                       # defaulted by the server
    live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "IfNotPresent"
    live["status"] = {"replicas": 2}
    return live


def apply(original, new, live):
    patch = three_way_patch(original, with_last_applied(new), live)
    return patch, strategic_merge_patch(live, patch)


def test_reapplying_the_same_config_is_an_empty_patch():
    config = deployment()
    patch, _ = apply(config, config, live_after_apply(config))
    assert patch == {}


def test_changed_and_removed_fields_are_patched_and_the_rest_kept():
    old = deployment()
    new = deployment()
    new["spec"]["replicas"] = 3
    del new["metadata"]["labels"]["tier"]
    new["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "A", "value": "1"}]
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "app:v2"
    patch, result = apply(old, new, live_after_apply(old))
    assert patch["metadata"]["labels"] == {"tier": None}
    assert result["metadata"]["labels"] == {"app": "web"}
    assert result["spec"]["replicas"] == 3
    container = result["spec"]["template"]["spec"]["containers"][0]
    assert container == {"name": "web", "image": "app:v2", "env": [{"name": "A", "value": "1"}],
                         "imagePullPolicy": "IfNotPresent"}                   # the server's default survives
    assert result["spec"]["strategy"] == {"type": "RollingUpdate"} and result["status"] == {"replicas": 2}
    assert last_applied(result) == new


def test_fields_someone_else_set_are_left_alone_but_config_fields_are_restored():
    config = deployment()
    live = live_after_apply(config)
    live["metadata"]["labels"]["owner"] = "ops"          # added by another client: not ours to remove
    live["spec"]["replicas"] = 7                         # drifted: the config says 2
    _, result = apply(config, config, live)
    assert result["metadata"]["labels"] == {"app": "web", "tier": "front", "owner": "ops"}
    assert result["spec"]["replicas"] == 2


def test_removed_container_is_deleted_by_merge_key_and_order_follows_the_config():
    old = deployment()
    old["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "side:1"})
    new = deployment()
    new["spec"]["template"]["spec"]["containers"].insert(0, {"name": "log", "image": "log:1"})
    patch, result = apply(old, new, live_after_apply(old))
    containers = patch["spec"]["template"]["spec"]["containers"]
    assert {"name": "sidecar", "$patch": "delete"} in containers
    assert patch["spec"]["template"]["spec"]["$setElementOrder/containers"] == [{"name": "log"}, {"name": "web"}]
    assert [c["name"] for c in result["spec"]["template"]["spec"]["containers"]] == ["log", "web"]


def test_atomic_lists_are_replaced_whole():
    old = deployment()
    old["spec"]["template"]["spec"]["containers"][0]["command"] = ["sh", "-c", "a"]
    new = deployment()
    new["spec"]["template"]["spec"]["containers"][0]["command"] = ["sh"]
    _, result = apply(old, new, live_after_apply(old))
    assert result["spec"]["template"]["spec"]["containers"][0]["command"] == ["sh"]


def test_finalizers_merge_as_a_set():
    old = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "finalizers": ["a/x", "b/y"]}}
    new = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "finalizers": ["b/y", "c/z"]}}
    live = with_last_applied(old)
    live["metadata"]["finalizers"].append("server/keep")
    patch, result = apply(old, new, live)
    assert patch["metadata"]["$deleteFromPrimitiveList/finalizers"] == ["a/x"]
    assert sorted(result["metadata"]["finalizers"]) == ["b/y", "c/z", "server/keep"]


def test_without_last_applied_nothing_is_deleted():
    config = deployment()
    live = live_after_apply(config)
    del live["metadata"]["annotations"]
    live["metadata"]["labels"]["extra"] = "1"
    patch, result = apply(None, config, live)
    assert result["metadata"]["labels"]["extra"] == "1"
    assert LAST_APPLIED in patch["metadata"]["annotations"]


def test_last_applied_json_omits_itself_and_sorts_keys():
    config = with_last_applied({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "c"}})
    text = last_applied_json(config)
    assert text == '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}\n'
    assert orjson.loads(config["metadata"]["annotations"][LAST_APPLIED]) == orjson.loads(text)
