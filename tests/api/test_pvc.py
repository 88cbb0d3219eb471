"""PersistentVolumeClaim and PersistentVolume defaulting and validation."""
import copy

import pytest

from api import registry

DEFS = {r.kind: r for r in registry.RESOURCES}


def check(obj, old=None):
    rd = DEFS[obj["kind"]]
    obj = copy.deepcopy(obj)
    rd.default(obj)
    if old is not None:
        old = copy.deepcopy(old)
        rd.default(old)
    return {c.field: c.reason for c in rd.validate(obj, old)}


def pvc(**spec):
    base = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data-web-0", "namespace": "default", "uid": "u"}, "spec": {**base, **spec}}


def pv(**spec):
    base = {"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "5Gi"}, "hostPath": {"path": "/srv/pv"}}
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv1", "uid": "u"},
            "spec": {**base, **spec}}


def test_defaults():
    claim, volume = pvc(), pv()
    DEFS["PersistentVolumeClaim"].default(claim)
    DEFS["PersistentVolume"].default(volume)
    assert claim["spec"]["volumeMode"] == "Filesystem"
    assert volume["spec"]["persistentVolumeReclaimPolicy"] == "Retain" and volume["spec"]["volumeMode"] == "Filesystem"


def test_valid_claim_and_volume():
    assert check(pvc()) == {}
    assert check(pvc(storageClassName="", selector={"matchLabels": {"tier": "fast"}})) == {}
    assert check(pv()) == {}


@pytest.mark.parametrize("spec, field", [
    ({"accessModes": []}, "spec.accessModes"),
    ({"accessModes": ["ReadWriteSometimes"]}, "spec.accessModes[0]"),
    ({"accessModes": ["ReadWriteOncePod", "ReadOnlyMany"]}, "spec.accessModes"),
    ({"resources": {}}, "spec.resources.requests[storage]"),
    ({"resources": {"requests": {"storage": "lots"}}}, "spec.resources.requests[storage]"),
    ({"resources": {"requests": {"storage": "0"}}}, "spec.resources.requests[storage]"),
    ({"volumeMode": "Raw"}, "spec.volumeMode"),
    ({"storageClassName": "Not_A_Name"}, "spec.storageClassName"),
])
def test_invalid_claims(spec, field):
    assert field in check(pvc(**spec))


def test_claim_spec_is_immutable_except_growing_storage_and_binding():
    old = pvc()
    assert check(pvc(resources={"requests": {"storage": "2Gi"}}), old) == {}
    assert check(pvc(volumeName="pv1"), old) == {}
    assert "spec.resources.requests.storage" in check(pvc(resources={"requests": {"storage": "500Mi"}}), old)
    assert "spec" in check(pvc(accessModes=["ReadWriteMany"]), old)
    assert "spec.volumeName" in check(pvc(volumeName="pv2"), pvc(volumeName="pv1"))


@pytest.mark.parametrize("spec, field", [
    ({"capacity": {}}, "spec.capacity[storage]"),
    ({"hostPath": None}, "spec"),
    ({"nfs": {"server": "s", "path": "/"}}, "spec.nfs"),
    ({"persistentVolumeReclaimPolicy": "Keep"}, "spec.persistentVolumeReclaimPolicy"),
    ({"hostPath": None, "local": {"path": "/mnt"}}, "spec.nodeAffinity"),
    ({"hostPath": {"path": ""}}, "spec.hostPath.path"),
])
def test_invalid_volumes(spec, field):
    assert field in check(pv(**spec))


@pytest.mark.parametrize("kind", ["PersistentVolumeClaim", "PersistentVolume"])
@pytest.mark.parametrize("wrong", ["x", 7, None, [], {}, ["x"], {"x": 1}, True])
def test_wrong_types_give_causes_not_exceptions(kind, wrong):
    sample = pvc() if kind == "PersistentVolumeClaim" else pv()

    def paths(node, prefix=()):
        yield prefix
        if isinstance(node, dict):
            for k, v in node.items():
                yield from paths(v, prefix + (k,))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                yield from paths(v, prefix + (i,))

    for path in paths(sample["spec"], ("spec",)):
        obj = copy.deepcopy(sample)
        cur = obj
        for p in path[:-1]:
            cur = cur[p]
        cur[path[-1]] = wrong
        assert isinstance(check(obj), dict)  # causes by field, never an exception
        assert isinstance(check(obj, sample), dict)
