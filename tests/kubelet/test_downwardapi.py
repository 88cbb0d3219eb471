"""downwardAPI files: Kubernetes' rendering of fields, label/annotation maps and resources."""
from __future__ import annotations

import pytest

from kubelet.downwardapi import files, format_map, go_quote, uses_pod_ip
from kubelet.envvars import ConfigError

POD = {
    "metadata": {"name": "web", "namespace": "prod", "uid": "u-1",
                 "labels": {"zone": "b", "app": "web"},
                 "annotations": {"note": 'say "hi"\nbye', "ünï": "cödé"}},
    "spec": {"nodeName": "n1", "serviceAccountName": "robot",
             "containers": [{"name": "app", "resources": {"limits": {"cpu": "250m", "memory": "64Mi"},
                                                           "requests": {"memory": "32Mi"}}},
                            {"name": "bare"}]},
}


def ref(path: str, field: str, mode: int | None = None) -> dict:
    item = {"path": path, "fieldRef": {"fieldPath": field}}
    return {**item, "mode": mode} if mode is not None else item


def test_maps_are_sorted_go_quoted_lines_without_trailing_newline():
    assert format_map({"b": "2", "a": "1"}) == 'a="1"\nb="2"'
    assert go_quote('say "hi"\nbye\\') == '"say \\"hi\\"\\nbye\\\\"'
    assert go_quote("cödé\x01") == '"cödé\\x01"'
    assert format_map(None) == ""


def test_field_refs():
    out = files(POD, [ref("name", "metadata.name"), ref("ns", "metadata.namespace"), ref("uid", "metadata.uid"),
                      ref("labels", "metadata.labels"), ref("annotations", "metadata.annotations"),
                      ref("one", "metadata.labels['zone']"), ref("node", "spec.nodeName"),
                      ref("sa", "spec.serviceAccountName"), ref("ip", "status.podIP", 0o600)],
                default_mode=0o644, pod_ip="10.244.1.5")
    text = {k: v[0].decode() for k, v in out.items()}
    assert text == {"name": "web", "ns": "prod", "uid": "u-1", "labels": 'app="web"\nzone="b"',
                    "annotations": 'note="say \\"hi\\"\\nbye"\nünï="cödé"', "one": "b", "node": "n1",
                    "sa": "robot", "ip": "10.244.1.5"}
    assert out["ip"][1] == 0o600 and out["name"][1] == 0o644


def test_resource_field_refs_with_divisor_round_up():
    def res(resource: str, divisor: str | None = None, container: str = "app") -> str:
        item = {"path": "x", "resourceFieldRef": {"containerName": container, "resource": resource}}
        if divisor:
            item["resourceFieldRef"]["divisor"] = divisor
        return files(POD, [item], default_mode=0o644, pod_ip=None)["x"][0].decode()

    assert res("limits.cpu") == "1"
    assert res("limits.cpu", "1m") == "250"
    assert res("limits.memory") == str(64 * 1024 * 1024)
    assert res("limits.memory", "1Mi") == "64"
    assert res("requests.memory", "1Mi") == "32"
    assert res("requests.cpu", "1m") == "250"           # requests fall back to limits
    assert res("limits.memory", container="bare") == "0"
    with pytest.raises(ConfigError, match="not found"):
        res("limits.cpu", container="nope")
    with pytest.raises(ConfigError, match="unsupported"):
        res("limits.gpu")


def test_uses_pod_ip_looks_into_projected_sources():
    assert not uses_pod_ip(POD)
    pod = {"spec": {"volumes": [{"name": "p", "projected": {"sources": [
        {"downwardAPI": {"items": [ref("ip", "status.podIP")]}}]}}]}}
    assert uses_pod_ip(pod)
