"""volumes.setup for downwardAPI and projected volumes, on a temporary root (no Docker, no apiserver)."""
from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from kubelet import volumes
from kubelet.tokens import key_for

CM = {"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": "CA", "other": "x"}}
SECRET = {"metadata": {"name": "creds"}, "data": {"user": base64.b64encode(b"alice").decode()}}


def objects(kind: str, ns: str, name: str) -> dict | None:
    return {("configmaps", "kube-root-ca.crt"): CM, ("secrets", "creds"): SECRET}.get((kind, name))


def make_pod(volume: dict, labels: dict | None = None) -> dict:
    return {"metadata": {"name": "web", "namespace": "ns", "uid": "uid-1", "labels": labels or {"app": "web"}},
            "spec": {"serviceAccountName": "robot", "volumes": [volume],
                     "containers": [{"name": "app", "resources": {"limits": {"memory": "8Mi"}}}]}}


def tree(path: Path) -> dict[str, tuple[str, int]]:
    """Visible files (through the ..data symlinks) -> (content, mode)."""
    out = {}
    for dirpath, _, names in os.walk(path, followlinks=True):
        rel_dir = Path(dirpath).relative_to(path)
        if any(part.startswith("..") for part in rel_dir.parts):
            continue
        for n in names:
            if n.startswith(".."):
                continue
            p = Path(dirpath) / n
            out[str(rel_dir / n)] = (p.read_text(), stat.S_IMODE(p.stat().st_mode))
    return out


KUBE_API_ACCESS = {"name": "kube-api-access-x7k2p", "projected": {"defaultMode": 0o644, "sources": [
    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1",
                                                                  "fieldPath": "metadata.namespace"}}]}}]}}


def test_kube_api_access_volume(tmp_path):
    pod = make_pod(KUBE_API_ACCESS)
    key = key_for(pod, KUBE_API_ACCESS["projected"]["sources"][0]["serviceAccountToken"])
    paths = volumes.setup(tmp_path, pod, objects, tokens={key: "tok-1"})
    target = paths["kube-api-access-x7k2p"]
    assert target == tmp_path / "pods/uid-1/volumes/kubernetes.io~projected/kube-api-access-x7k2p"
    assert tree(target) == {"token": ("tok-1", 0o644), "ca.crt": ("CA", 0o644), "namespace": ("ns", 0o644)}
    data = os.readlink(target / "..data")
    volumes.setup(tmp_path, pod, objects, tokens={key: "tok-1"})
    assert os.readlink(target / "..data") == data              # nothing changed, nothing rewritten
    volumes.setup(tmp_path, pod, objects, tokens={key: "tok-2"})
    assert os.readlink(target / "..data") != data
    assert (target / "token").read_text() == "tok-2"


def test_projected_modes_items_secret_and_optional(tmp_path):
    vol = {"name": "all", "projected": {"defaultMode": 0o440, "sources": [
        {"secret": {"name": "creds", "items": [{"key": "user", "path": "sec/user", "mode": 0o400}]}},
        {"configMap": {"name": "kube-root-ca.crt"}},
        {"configMap": {"name": "absent", "optional": True}},
        {"secret": {"name": "creds", "items": [{"key": "nokey", "path": "n"}], "optional": True}},
        {"downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                                   {"path": "mem", "resourceFieldRef": {"containerName": "app",
                                                                        "resource": "limits.memory",
                                                                        "divisor": "1Mi"}}]}}]}}
    paths = volumes.setup(tmp_path, make_pod(vol), objects)
    assert tree(paths["all"]) == {"sec/user": ("alice", 0o400), "ca.crt": ("CA", 0o440), "other": ("x", 0o440),
                                  "labels": ('app="web"', 0o440), "mem": ("8", 0o440)}


def test_projected_missing_sources_fail(tmp_path):
    missing = {"name": "p", "projected": {"sources": [{"configMap": {"name": "absent"}}]}}
    with pytest.raises(volumes.VolumeError, match='configmap "absent" not found'):
        volumes.setup(tmp_path, make_pod(missing), objects)
    bad_key = {"name": "p", "projected": {"sources": [{"secret": {"name": "creds", "items": [{"key": "nokey",
                                                                                               "path": "n"}]}}]}}
    with pytest.raises(volumes.VolumeError, match="non-existent secret key: nokey"):
        volumes.setup(tmp_path, make_pod(bad_key), objects)
    with pytest.raises(volumes.VolumeError, match="no token"):
        volumes.setup(tmp_path, make_pod(KUBE_API_ACCESS), objects)


def test_downward_api_volume_follows_label_changes_atomically(tmp_path):
    vol = {"name": "info", "downwardAPI": {"defaultMode": 0o644, "items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "meta/name", "fieldRef": {"fieldPath": "metadata.name"}, "mode": 0o600},
        {"path": "ip", "fieldRef": {"fieldPath": "status.podIP"}}]}}
    paths = volumes.setup(tmp_path, make_pod(vol), objects, pod_ip="10.244.0.9")
    target = paths["info"]
    assert target.parent.name == "kubernetes.io~downward-api"
    assert tree(target) == {"labels": ('app="web"', 0o644), "meta/name": ("web", 0o600), "ip": ("10.244.0.9", 0o644)}
    old = os.readlink(target / "..data")
    volumes.setup(tmp_path, make_pod(vol, labels={"app": "web", "tier": "front"}), objects, pod_ip="10.244.0.9")
    assert (target / "labels").read_text() == 'app="web"\ntier="front"'
    assert os.readlink(target / "..data") != old and not (target / old).exists()


def test_downward_api_bad_item_is_a_volume_error(tmp_path):
    vol = {"name": "info", "downwardAPI": {"items": [{"path": "x", "fieldRef": {"fieldPath": "spec.bogus"}}]}}
    with pytest.raises(volumes.VolumeError, match="unsupported fieldRef"):
        volumes.setup(tmp_path, make_pod(vol), objects)


def test_projected_config_maps_and_secrets_are_referenced_objects():
    from api.podrefs import referenced_objects
    vol = {"name": "p", "projected": {"sources": [{"configMap": {"name": "cm"}}, {"secret": {"name": "s"}},
                                                  {"serviceAccountToken": {"path": "token"}}]}}
    assert referenced_objects(make_pod(vol)) == {("configmaps", "cm"), ("secrets", "s")}
