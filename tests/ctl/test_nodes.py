"""drain's choice of pods, as plain data."""
from ctl.nodes import plan_drain


def pod(name, *, owner=None, phase="Running", volumes=(), mirror=False):
    meta = {"name": name, "namespace": "ns", "uid": name}
    if owner:
        meta["ownerReferences"] = [{"kind": owner, "name": "o", "uid": "u", "controller": True}]
    if mirror:
        meta["annotations"] = {"kubernetes.io/config.mirror": "x"}
    return {"metadata": meta, "spec": {"volumes": list(volumes)}, "status": {"phase": phase}}


PODS = [pod("rs", owner="ReplicaSet"), pod("ds", owner="DaemonSet"), pod("bare"),
        pod("scratch", owner="ReplicaSet", volumes=[{"name": "v", "emptyDir": {}}]), pod("static", mirror=True),
        pod("done", phase="Succeeded")]


def names(pods):
    return [p["metadata"]["name"] for p in pods]


def test_refusals_name_every_pod_and_the_flag_that_overrides():
    evict, warnings, errors = plan_drain(PODS, ignore_daemonsets=False, force=False, delete_emptydir_data=False)
    assert errors == ["cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): ns/ds",
                      "cannot delete Pods that declare no controller (use --force to override): ns/bare",
                      "cannot delete Pods with local storage (use --delete-emptydir-data to override): ns/scratch"]
    assert names(evict) == ["rs", "done"] and warnings == []


def test_overrides_turn_refusals_into_warnings():
    evict, warnings, errors = plan_drain(PODS, ignore_daemonsets=True, force=True, delete_emptydir_data=True)
    assert errors == []
    assert names(evict) == ["rs", "bare", "scratch", "done"]       # DaemonSet and mirror pods stay
    assert warnings == ["ignoring DaemonSet-managed Pods: ns/ds", "deleting Pods that declare no controller: ns/bare",
                        "deleting Pods with local storage: ns/scratch"]
