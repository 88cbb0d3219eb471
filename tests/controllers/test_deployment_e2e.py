"""Deployments and ReplicaSets end to end: real processes, real containers (the `cluster` fixture)."""
from __future__ import annotations

import threading
import time

import pytest

from controllers import deployment_util as du
from tests.cluster import wait_for

APPS = "/apis/apps/v1/namespaces/{ns}"


def deployment(name, replicas, image="minik8s/myapp:v1", *, surge=1, unavailable=1, probe=False, paused=False):
    container = {"name": "web", "image": image, "ports": [{"containerPort": 80}]}
    if probe:
        # Readiness is the web server answering on :80 inside the pod. An httpGet probe would say the same,
        # but on the two-node e2e cluster the kubelet's probe cannot reach pod IPs yet (it times out).
        container["readinessProbe"] = {"exec": {"command": ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:80/"]},
                                       "periodSeconds": 1, "timeoutSeconds": 3, "failureThreshold": 3}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "paused": paused, "selector": {"matchLabels": {"app": name}},
                     "strategy": {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [container], "terminationGracePeriodSeconds": 5}}}}


def is_ready(pod):
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def live_pods(http, ns, app):
    items = http.get(f"/api/v1/namespaces/{ns}/pods", params={"labelSelector": f"app={app}"}).json()["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")
            and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]


def get_deployment(http, ns, name):
    return http.get(f"{APPS.format(ns=ns)}/deployments/{name}").json()


def rollout_complete(http, ns, name):
    d = get_deployment(http, ns, name)
    s, want = d.get("status") or {}, d["spec"]["replicas"]
    done = s.get("observedGeneration", 0) >= d["metadata"]["generation"] and \
        s.get("updatedReplicas") == s.get("replicas") == s.get("availableReplicas") == want
    return d if done else None


def replicasets(http, ns, app):
    return http.get(f"{APPS.format(ns=ns)}/replicasets", params={"labelSelector": f"app={app}"}).json()["items"]


def image_of(pod):
    return pod["spec"]["containers"][0]["image"]


@pytest.fixture
def ns(cluster):
    with cluster.http() as http:
        name = cluster.new_namespace(http, "deploy")
        yield name
        # Our own objects first (the garbage collector may not be running), then the namespace.
        for d in http.get(f"{APPS.format(ns=name)}/deployments").json().get("items", []):
            http.delete(f"{APPS.format(ns=name)}/deployments/{d['metadata']['name']}")
        for rs in http.get(f"{APPS.format(ns=name)}/replicasets").json().get("items", []):
            http.delete(f"{APPS.format(ns=name)}/replicasets/{rs['metadata']['name']}")
        http.delete(f"/api/v1/namespaces/{name}/pods")
        http.delete(f"/api/v1/namespaces/{name}", params={"propagationPolicy": "Background"})


def create(http, ns, obj):
    r = http.post(f"{APPS.format(ns=ns)}/deployments", json=obj)
    assert r.status_code == 201, r.text


def test_a_deleted_pod_is_replaced_within_two_seconds(cluster, ns):
    with cluster.http() as http:
        create(http, ns, deployment("heal", 3))
        wait_for(lambda: rollout_complete(http, ns, "heal"), 60, what="3 available replicas")
        victim = live_pods(http, ns, "heal")[0]["metadata"]["name"]
        assert http.delete(f"/api/v1/namespaces/{ns}/pods/{victim}").status_code == 200
        deleted = time.monotonic()
        pods = wait_for(lambda: (lambda ps: ps if len(ps) == 3 and victim not in {p["metadata"]["name"] for p in ps}
                                 else None)(live_pods(http, ns, "heal")), 10, 0.02, "a replacement pod")
        healed = time.monotonic() - deleted
        assert healed <= 2.0, f"took {healed:.2f}s"
        assert len(pods) == 3


def test_rolling_update_keeps_three_ready_and_at_most_five_pods(cluster, ns):
    with cluster.http() as http:
        create(http, ns, deployment("roll", 4, probe=True))
        wait_for(lambda: rollout_complete(http, ns, "roll"), 90, what="4 available v1 replicas")
        assert all(is_ready(p) for p in live_pods(http, ns, "roll"))

        samples: list[tuple[int, int]] = []
        details: list[list[tuple[str, bool, str]]] = []
        stop = threading.Event()

        def sample():
            with cluster.http() as h:
                while not stop.is_set():
                    pods = live_pods(h, ns, "roll")
                    samples.append((sum(is_ready(p) for p in pods), len(pods)))
                    details.append([(p["metadata"]["name"][-11:], is_ready(p), image_of(p)[-2:]) for p in pods])
                    time.sleep(0.1)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            patch = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "minik8s/myapp:v2"}]}}}}
            r = http.patch(f"{APPS.format(ns=ns)}/deployments/roll", json=patch,
                           headers={"Content-Type": "application/strategic-merge-patch+json"})
            assert r.status_code == 200, r.text

            def done():
                pods = live_pods(http, ns, "roll")
                return rollout_complete(http, ns, "roll") and len(pods) == 4 and \
                    all(is_ready(p) and image_of(p) == "minik8s/myapp:v2" for p in pods)
            wait_for(done, 120, what="4 ready v2 pods")
        finally:
            stop.set()
            sampler.join()
        assert len(samples) > 10
        bad = [(i, samples[i], details[i]) for i in range(len(samples)) if samples[i][0] < 3 or samples[i][1] > 5]
        assert not bad, f"{len(bad)} of {len(samples)} samples out of bounds, first: {bad[0]}; all: {samples}"


def test_rollback_restores_the_old_hash_and_reuses_its_replicaset(cluster, ns):
    with cluster.http() as http:
        create(http, ns, deployment("undo", 2, surge=1, unavailable=0))
        v1 = wait_for(lambda: rollout_complete(http, ns, "undo"), 60, what="v1 rolled out")
        [rs1] = replicasets(http, ns, "undo")
        v1_template = rs1["spec"]["template"]
        r = http.patch(f"{APPS.format(ns=ns)}/deployments/undo",
                       json={"spec": {"template": {"spec": {"containers": [{"name": "web",
                                                                            "image": "minik8s/myapp:v2"}]}}}},
                       headers={"Content-Type": "application/strategic-merge-patch+json"})
        assert r.status_code == 200
        wait_for(lambda: rollout_complete(http, ns, "undo") and
                 all(image_of(p) == "minik8s/myapp:v2" for p in live_pods(http, ns, "undo")), 60, what="v2")
        assert v1["metadata"]["annotations"][du.REVISION] == "1"

        # What `kubectl rollout undo` sends: the old ReplicaSet's template without pod-template-hash.
        restored = {k: v for k, v in v1_template.items()}
        restored["metadata"] = {**v1_template["metadata"],
                                "labels": {k: v for k, v in v1_template["metadata"]["labels"].items()
                                           if k != du.HASH_LABEL}}
        r = http.patch(f"{APPS.format(ns=ns)}/deployments/undo",
                       json=[{"op": "replace", "path": "/spec/template", "value": restored}],
                       headers={"Content-Type": "application/json-patch+json"})
        assert r.status_code == 200, r.text

        def back():
            pods = live_pods(http, ns, "undo")
            d = rollout_complete(http, ns, "undo")
            return d if d and len(pods) == 2 and all(image_of(p) == "minik8s/myapp:v1" for p in pods) else None
        d = wait_for(back, 60, what="rolled back to v1")
        sets = {rs["metadata"]["uid"]: rs for rs in replicasets(http, ns, "undo")}
        assert len(sets) == 2 and rs1["metadata"]["uid"] in sets
        reused = sets[rs1["metadata"]["uid"]]
        assert reused["spec"]["replicas"] == 2
        assert reused["metadata"]["annotations"][du.REVISION] == "3"
        assert d["metadata"]["annotations"][du.REVISION] == "3"
        hash1 = rs1["metadata"]["labels"][du.HASH_LABEL]
        assert {p["metadata"]["labels"][du.HASH_LABEL] for p in live_pods(http, ns, "undo")} == {hash1}


def test_a_paused_deployment_waits_and_resumes(cluster, ns):
    with cluster.http() as http:
        create(http, ns, deployment("pause", 2))
        wait_for(lambda: rollout_complete(http, ns, "pause"), 60, what="rolled out")
        base = f"{APPS.format(ns=ns)}/deployments/pause"
        http.patch(base, json={"spec": {"paused": True}}, headers={"Content-Type": "application/merge-patch+json"})
        r = http.patch(base, json={"spec": {"template": {"spec": {"containers": [{"name": "web",
                                                                                 "image": "minik8s/myapp:v2"}]}}}},
                       headers={"Content-Type": "application/strategic-merge-patch+json"})
        generation = r.json()["metadata"]["generation"]

        def observed():
            d = get_deployment(http, ns, "pause")
            return d if d["status"].get("observedGeneration", 0) >= generation else None
        d = wait_for(observed, 30, what="the paused change observed")
        cond = du.get_condition(d["status"], "Progressing")
        assert cond["reason"] == "DeploymentPaused"
        assert len(replicasets(http, ns, "pause")) == 1
        assert all(image_of(p) == "minik8s/myapp:v1" for p in live_pods(http, ns, "pause"))

        http.patch(base, json={"spec": {"paused": False}}, headers={"Content-Type": "application/merge-patch+json"})
        wait_for(lambda: rollout_complete(http, ns, "pause") and len(live_pods(http, ns, "pause")) == 2 and
                 all(image_of(p) == "minik8s/myapp:v2" for p in live_pods(http, ns, "pause")), 60, what="resumed")
        assert len(replicasets(http, ns, "pause")) == 2
