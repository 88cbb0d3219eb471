"""autoscaling/v2 HorizontalPodAutoscaler: defaulting and validation as Kubernetes does them, and the kind
served by the real apiserver (discovery, short name, category, defaults on create, 422 on bad specs)."""
from __future__ import annotations

import copy

from api import registry

HPA = registry.lookup("autoscaling", "v2", "horizontalpodautoscalers")


def hpa(**spec):
    base = {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 5}
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default"}, "spec": {**base, **spec}}


def causes(obj):
    obj = copy.deepcopy(obj)
    HPA.default(obj)
    return {c.field: c.message for c in HPA.validate(obj)}


def test_defaults_min_replicas_and_cpu_metric_and_leaves_behavior_absent():
    obj = hpa()
    HPA.default(obj)
    assert obj["spec"]["minReplicas"] == 1
    assert obj["spec"]["metrics"] == [{"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": 80}}}]
    assert "behavior" not in obj["spec"]


def test_a_given_behavior_gets_kubernetes_default_rules():
    obj = hpa(behavior={"scaleDown": {"stabilizationWindowSeconds": 60}})
    HPA.default(obj)
    assert obj["spec"]["behavior"] == {
        "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                    "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15},
                                 {"type": "Percent", "value": 100, "periodSeconds": 15}]},
        "scaleDown": {"stabilizationWindowSeconds": 60, "selectPolicy": "Max",
                      "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}}


def test_valid_hpa_has_no_causes():
    assert causes(hpa(minReplicas=2, metrics=[
        {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "64Mi"}}},
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}],
        behavior={"scaleUp": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}})) == {}


def test_replica_bounds():
    assert causes(hpa(minReplicas=0))["spec.minReplicas"].startswith("Invalid value: 0")
    assert causes(hpa(minReplicas=4, maxReplicas=3))["spec.maxReplicas"] == \
        "Invalid value: 3: must be greater than or equal to `minReplicas`"
    obj = hpa()
    del obj["spec"]["maxReplicas"]
    assert causes(obj)["spec.maxReplicas"] == "Required value"


def test_scale_target_ref_is_required():
    obj = hpa()
    del obj["spec"]["scaleTargetRef"]
    assert causes(obj) == {"spec.scaleTargetRef": "Required value"}
    assert causes(hpa(scaleTargetRef={"kind": "Deployment"})) == {"spec.scaleTargetRef.name": "Required value"}


def test_metric_targets():
    def metric(target, name="cpu"):
        return causes(hpa(metrics=[{"type": "Resource", "resource": {"name": name, "target": target}}]))
    assert metric({"type": "Utilization"})["spec.metrics[0].resource.target.averageUtilization"] == \
        "Required value: must set either a target raw value or a target utilization"
    assert metric({"type": "Utilization", "averageUtilization": 0})[
        "spec.metrics[0].resource.target.averageUtilization"].startswith("Invalid value: 0")
    assert "spec.metrics[0].resource.target.averageValue" in metric(
        {"type": "AverageValue", "averageValue": "100m", "averageUtilization": 50})
    assert metric({"type": "Bogus", "averageUtilization": 5})["spec.metrics[0].resource.target.type"] == \
        'Invalid value: "Bogus": must be either Utilization, Value, or AverageValue'
    assert metric({"type": "Utilization", "averageUtilization": 50}, name="")[
        "spec.metrics[0].resource.name"].startswith("Required value")
    assert "spec.metrics[0].type" in causes(hpa(metrics=[{"resource": {}}]))


def test_behavior_bounds():
    got = causes(hpa(behavior={"scaleDown": {"stabilizationWindowSeconds": 3601, "selectPolicy": "Most",
                                             "policies": [{"type": "Pods", "value": 0, "periodSeconds": 1801}]}}))
    assert set(got) == {"spec.behavior.scaleDown.stabilizationWindowSeconds", "spec.behavior.scaleDown.selectPolicy",
                        "spec.behavior.scaleDown.policies[0].value", "spec.behavior.scaleDown.policies[0].periodSeconds"}


def test_served_by_the_apiserver(http, namespace):
    resources = {r["name"]: r for r in http.get("/apis/autoscaling/v2").json()["resources"]}
    assert resources["horizontalpodautoscalers"]["shortNames"] == ["hpa"]
    assert resources["horizontalpodautoscalers"]["categories"] == ["all"]
    assert "horizontalpodautoscalers/status" in resources
    base = f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers"
    body = hpa()
    del body["metadata"]["namespace"]
    created = http.post(base, json=body)
    assert created.status_code == 201, created.text
    assert created.json()["spec"]["minReplicas"] == 1
    bad = http.post(base, json={**hpa(minReplicas=3, maxReplicas=2), "metadata": {"name": "bad"}})
    assert bad.status_code == 422, bad.text
    assert bad.json()["details"]["causes"][0]["field"] == "spec.maxReplicas"
