"""Every field of every kind, replaced by a value of the wrong type, is answered with a 4xx Status, never a 500."""
import asyncio
import copy

import pytest

TEMPLATE = {"metadata": {"labels": {"app": "a"}},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "ports": [{"containerPort": 80}],
                                     "env": [{"name": "A", "value": "b"}],
                                     "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "64Mi"}},
                                     "livenessProbe": {"httpGet": {"path": "/", "port": 80}}}],
                     "volumes": [{"name": "v", "emptyDir": {}}]}}
SELECTOR = {"matchLabels": {"app": "a"}}

SAMPLES = {
    ("", "v1", "pods"): {"metadata": {"name": "p"}, "spec": copy.deepcopy(TEMPLATE["spec"])},
    ("", "v1", "services"): {"metadata": {"name": "s"}, "spec": {"type": "NodePort", "selector": {"app": "a"},
                                                                 "ports": [{"name": "h", "port": 80, "targetPort": 8080}]}},
    ("", "v1", "endpoints"): {"metadata": {"name": "e"}, "subsets": [{"addresses": [{"ip": "10.244.0.5"}],
                                                                      "ports": [{"port": 80}]}]},
    ("", "v1", "configmaps"): {"metadata": {"name": "c"}, "data": {"k": "v"}},
    ("", "v1", "secrets"): {"metadata": {"name": "s"}, "type": "Opaque", "data": {"k": "dg=="}},
    ("", "v1", "serviceaccounts"): {"metadata": {"name": "sa"}},
    ("", "v1", "events"): {"metadata": {"name": "ev"}, "involvedObject": {"kind": "Pod", "name": "p"},
                           "reason": "R", "message": "m", "type": "Normal"},
    ("apps", "v1", "deployments"): {"metadata": {"name": "d"}, "spec": {"replicas": 2, "selector": SELECTOR,
                                                                          "template": TEMPLATE}},
    ("apps", "v1", "replicasets"): {"metadata": {"name": "r"}, "spec": {"replicas": 2, "selector": SELECTOR,
                                                                          "template": TEMPLATE}},
    ("apps", "v1", "statefulsets"): {"metadata": {"name": "s"}, "spec": {"serviceName": "s", "selector": SELECTOR,
                                                                           "template": TEMPLATE}},
    ("apps", "v1", "daemonsets"): {"metadata": {"name": "d"}, "spec": {"selector": SELECTOR, "template": TEMPLATE}},
    ("apps", "v1", "controllerrevisions"): {"metadata": {"name": "cr"}, "revision": 1, "data": {"a": 1}},
    ("batch", "v1", "jobs"): {"metadata": {"name": "j"}, "spec": {"template": {
        "spec": {**TEMPLATE["spec"], "restartPolicy": "Never"}}}},
    ("batch", "v1", "cronjobs"): {"metadata": {"name": "cj"}, "spec": {"schedule": "*/5 * * * *", "jobTemplate": {
        "spec": {"template": {"spec": {**TEMPLATE["spec"], "restartPolicy": "OnFailure"}}}}}},
    ("coordination.k8s.io", "v1", "leases"): {"metadata": {"name": "l"}, "spec": {"holderIdentity": "me",
                                                                                   "leaseDurationSeconds": 15}},
}
WRONG = ["x", 7, -1, 1.5, True, None, [], {}, ["x"], {"x": 1}]


def paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from paths(v, prefix + (i,))


def replaced(doc, path, value):
    out = copy.deepcopy(doc)
    cur = out
    for p in path[:-1]:
        cur = cur[p]
    cur[path[-1]] = value
    return out


def url(gvr, ns):
    g, v, plural = gvr
    return f"/api/v1/namespaces/{ns}/{plural}" if not g else f"/apis/{g}/{v}/namespaces/{ns}/{plural}"


@pytest.mark.parametrize("gvr", list(SAMPLES), ids=lambda g: g[2])
async def test_wrong_types_never_cause_a_500(apiserver, namespace, gvr):
    sample = copy.deepcopy(SAMPLES[gvr])
    if "involvedObject" in sample:
        sample["involvedObject"]["namespace"] = namespace
    async with apiserver.ahttp() as c:
        ok = await c.post(url(gvr, namespace), json=sample)
        assert ok.status_code == 201, ok.text
        bodies = [replaced(sample, p, w) for p in paths(sample) if p and p != ("metadata", "name") for w in WRONG]
        sem = asyncio.Semaphore(20)

        async def send(i, body):
            body = copy.deepcopy(body)
            if isinstance(body.get("metadata"), dict):
                body["metadata"]["name"] = f"m{i}"
            async with sem:
                create = await c.post(url(gvr, namespace), json=body)
                patch = await c.patch(f"{url(gvr, namespace)}/{sample['metadata']['name']}", json=body,
                                      headers={"Content-Type": "application/merge-patch+json"})
            return body, create, patch

        results = await asyncio.gather(*(send(i, b) for i, b in enumerate(bodies)))
    crashes = [(b, r.status_code, r.text[:200]) for b, *rs in results for r in rs if r.status_code >= 500]
    assert not crashes, crashes[:3]
    for _, create, patch in results:
        for r in (create, patch):
            if r.status_code >= 400:
                assert r.json()["kind"] == "Status"
