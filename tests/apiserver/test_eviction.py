"""The eviction API and PodDisruptionBudgets against the real apiserver on etcd (no controller-manager here:
the budget's status is written through /status as the disruption controller would)."""
from __future__ import annotations

import threading

EVICTION = {"apiVersion": "policy/v1", "kind": "Eviction"}


def pods_url(ns, name=""):
    return f"/api/v1/namespaces/{ns}/pods" + (f"/{name}" if name else "")


def pdbs_url(ns, name=""):
    return f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets" + (f"/{name}" if name else "")


def running_pod(http, ns, name, *, ready=True, labels=None):
    r = http.post(pods_url(ns), json={"metadata": {"name": name, "labels": labels or {"app": "web"}},
                                      "spec": {"nodeName": "nowhere", "containers": [{"name": "c", "image": "x"}]}})
    assert r.status_code == 201, r.text
    p = r.json()
    p["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    r = http.put(pods_url(ns, name) + "/status", json=p)
    assert r.status_code == 200, r.text


def budget(http, ns, name="web", *, allowed, healthy, desired, selector=None, **spec):
    body = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name},
            "spec": {"selector": selector if selector is not None else {"matchLabels": {"app": "web"}}, **spec}}
    r = http.post(pdbs_url(ns), json=body)
    assert r.status_code == 201, r.text
    obj = r.json()
    obj["status"] = {"observedGeneration": obj["metadata"]["generation"], "disruptionsAllowed": allowed,
                     "currentHealthy": healthy, "desiredHealthy": desired, "expectedPods": healthy}
    r = http.put(pdbs_url(ns, name) + "/status", json=obj)
    assert r.status_code == 200, r.text
    return r.json()


def evict(http, ns, name, **params):
    return http.post(pods_url(ns, name) + "/eviction", params=params,
                     json={**EVICTION, "metadata": {"name": name}, "deleteOptions": {"gracePeriodSeconds": 0}})


def exists(http, ns, name):
    return http.get(pods_url(ns, name)).status_code == 200


def test_budget_is_spent_then_evictions_are_refused(http, namespace):
    for name in ("a", "b", "c"):
        running_pod(http, namespace, name)
    budget(http, namespace, minAvailable=2, allowed=1, healthy=3, desired=2)

    r = evict(http, namespace, "a", dryRun="All")
    assert r.status_code == 201 and exists(http, namespace, "a")
    assert http.get(pdbs_url(namespace, "web")).json()["status"]["disruptionsAllowed"] == 1  # dry run: unchanged

    assert evict(http, namespace, "a").status_code == 201
    assert not exists(http, namespace, "a")
    status = http.get(pdbs_url(namespace, "web")).json()["status"]
    assert status["disruptionsAllowed"] == 0 and list(status["disruptedPods"]) == ["a"]

    r = evict(http, namespace, "b")
    assert r.status_code == 429, r.text
    body = r.json()
    assert body["reason"] == "TooManyRequests"
    assert body["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert body["details"]["causes"][0]["reason"] == "DisruptionBudget"
    assert "needs 2 healthy pods and has 3 currently" in body["details"]["causes"][0]["message"]
    assert exists(http, namespace, "b")

    # A pod the budget does not select is not its business.
    running_pod(http, namespace, "db", labels={"app": "db"})
    assert evict(http, namespace, "db").status_code == 201


def test_concurrent_evictions_spend_one_disruption_once(http, namespace, apiserver):
    for name in ("a", "b", "c", "d"):
        running_pod(http, namespace, name)
    budget(http, namespace, minAvailable=3, allowed=1, healthy=4, desired=3)
    codes: dict[str, int] = {}

    def go(name):
        with apiserver.http() as h:
            codes[name] = evict(h, namespace, name).status_code

    threads = [threading.Thread(target=go, args=(n,)) for n in ("a", "b", "c", "d")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes.values()) == [201, 429, 429, 429], codes
    assert sum(exists(http, namespace, n) for n in "abcd") == 3


def test_stale_budget_and_pods_that_bypass_it(http, namespace):
    running_pod(http, namespace, "a")
    created = budget(http, namespace, maxUnavailable=1, allowed=1, healthy=1, desired=0)
    # The spec changes after the controller last looked: generation moves ahead of observedGeneration.
    created["spec"]["maxUnavailable"] = 0
    r = http.put(pdbs_url(namespace, "web"), json=created)
    assert r.status_code == 200, r.text
    r = evict(http, namespace, "a")
    assert r.status_code == 429 and "still being processed" in r.json()["details"]["causes"][0]["message"]

    # Pending pods (never ran) disrupt nothing.
    r = http.post(pods_url(namespace), json={"metadata": {"name": "pending", "labels": {"app": "web"}},
                                              "spec": {"containers": [{"name": "c", "image": "x"}]}})
    assert r.status_code == 201
    assert evict(http, namespace, "pending").status_code == 201


def test_unhealthy_pods_follow_the_unhealthy_pod_eviction_policy(http, namespace):
    running_pod(http, namespace, "sick", ready=False)
    running_pod(http, namespace, "fine")
    budget(http, namespace, minAvailable=2, allowed=0, healthy=1, desired=2)
    # IfHealthyBudget (default): the budget is not met, so even an unready pod stays.
    assert evict(http, namespace, "sick").status_code == 429
    r = http.get(pdbs_url(namespace, "web")).json()
    r["spec"]["unhealthyPodEvictionPolicy"] = "AlwaysAllow"
    assert http.put(pdbs_url(namespace, "web"), json=r).status_code == 200
    r = http.get(pdbs_url(namespace, "web")).json()
    r["status"]["observedGeneration"] = r["metadata"]["generation"]
    assert http.put(pdbs_url(namespace, "web") + "/status", json=r).status_code == 200
    assert evict(http, namespace, "sick").status_code == 201       # AlwaysAllow: unready pods may go
    assert evict(http, namespace, "fine").status_code == 429       # a ready one still needs the budget
    assert http.get(pdbs_url(namespace, "web")).json()["status"].get("disruptedPods") in (None, {})


def test_two_budgets_for_one_pod_are_refused_and_bad_budgets_rejected(http, namespace):
    running_pod(http, namespace, "a")
    budget(http, namespace, "one", minAvailable=1, allowed=1, healthy=1, desired=0)
    budget(http, namespace, "two", selector={}, minAvailable=0, allowed=1, healthy=1, desired=0)
    r = evict(http, namespace, "a")
    assert r.status_code == 500 and "more than one PodDisruptionBudget" in r.json()["message"]
    assert exists(http, namespace, "a")

    for spec, why in (({"minAvailable": 1, "maxUnavailable": 1}, "cannot be both set"),
                      ({"minAvailable": "120%"}, "must not be greater than 100%"),
                      ({"maxUnavailable": -1}, "greater than or equal to 0"),
                      ({"minAvailable": 1, "unhealthyPodEvictionPolicy": "Sometimes"}, "Unsupported value")):
        r = http.post(pdbs_url(namespace), json={"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                                                  "metadata": {"name": "bad"}, "spec": spec})
        assert r.status_code == 422 and why in r.text, (spec, r.text)
    assert http.get(pdbs_url(namespace, "bad")).status_code == 404

    table = http.get(pdbs_url(namespace), headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}).json()
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Min Available", "Max Unavailable",
                                                               "Allowed Disruptions", "Age"]
    assert table["rows"][0]["cells"][:4] == ["one", "1", "N/A", 1]
