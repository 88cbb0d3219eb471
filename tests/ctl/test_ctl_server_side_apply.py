"""`minik8s ctl apply --server-side` against a real apiserver: field managers, conflicts, --force-conflicts."""
import json

import yaml

MANIFEST = """apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "minik8s/myapp:v1"}]
"""


def managers(ctl):
    d = json.loads(ctl("get", "deploy", "web", "-o", "json").stdout)
    return {(e["manager"], e["operation"], e.get("subresource")) for e in d["metadata"]["managedFields"]}


def test_server_side_apply_conflicts_with_a_scale_until_forced(ctl, tmp_path):
    manifest = tmp_path / "web.yaml"
    manifest.write_text(MANIFEST)
    r = ctl("apply", "--server-side", "-f", str(manifest))
    assert (r.returncode, r.stdout) == (0, "deployment.apps/web serverside-applied\n"), r.stderr
    assert managers(ctl) == {("kubectl", "Apply", None)}
    shown = yaml.safe_load(ctl("get", "deploy", "web", "-o", "yaml").stdout)
    assert shown["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:replicas"] == {}

    assert ctl("scale", "deploy/web", "--replicas", "5").returncode == 0
    assert ("minik8s-ctl", "Update", "scale") in managers(ctl)
    r = ctl("apply", "--server-side", "-f", str(manifest))
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith('Error from server (Conflict): error when applying "') and \
        'Apply failed with 1 conflict: conflict with "minik8s-ctl" with subresource "scale" using apps/v1 at ' \
        in r.stderr and r.stderr.rstrip().endswith(": .spec.replicas"), r.stderr
    assert ctl("get", "deploy", "web", "-o", "jsonpath={.spec.replicas}").stdout == "5"

    r = ctl("apply", "--server-side", "--force-conflicts", "-f", str(manifest))
    assert (r.returncode, r.stdout) == (0, "deployment.apps/web serverside-applied\n"), r.stderr
    assert ctl("get", "deploy", "web", "-o", "jsonpath={.spec.replicas}").stdout == "2"
    assert ("minik8s-ctl", "Update", "scale") not in managers(ctl)  # it owned only replicas, now taken


def test_server_side_apply_with_another_field_manager_shares_equal_fields(ctl, tmp_path):
    manifest = tmp_path / "web.yaml"
    manifest.write_text(MANIFEST)
    assert ctl("apply", "--server-side", "-f", str(manifest)).returncode == 0
    r = ctl("apply", "--server-side", "--field-manager", "ci", "-f", "-", input=MANIFEST.replace("app: web}}\nspec",
                                                                                                  "app: web, ci: x}}\nspec"))
    assert r.returncode == 0, r.stderr
    assert managers(ctl) == {("kubectl", "Apply", None), ("ci", "Apply", None)}
    d = json.loads(ctl("get", "deploy", "web", "-o", "json").stdout)
    assert d["metadata"]["labels"] == {"app": "web", "ci": "x"}
