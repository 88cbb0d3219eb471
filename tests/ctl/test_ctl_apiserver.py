"""`minik8s ctl` end to end against a real apiserver and etcd (no controllers, no kubelets: where a
controller would act, the test writes what it would write)."""
from __future__ import annotations

import json
import os

import yaml

from tests.ctl.conftest import ROOT, Ctl

POD = """apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: {app}}}
spec:
  containers: [{{name: c, image: "minik8s/busybox:1.36"}}]
"""


def make_pods(ctl: Ctl, *specs: tuple[str, str]) -> None:
    docs = "---\n".join(POD.format(name=name, app=app) for name, app in specs)
    r = ctl("create", "-f", "-", input=docs)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"pod/{name} created" for name, _ in specs]


def read_line_with(proc, text: str) -> str:
    """Read the watch's output until a line containing `text` (the caller's timeout bounds the wait)."""
    for line in proc.stdout:
        if text in line:
            return line
    raise AssertionError(f"stream ended before {text!r}: {proc.stderr.read()}")


def test_get_prints_the_servers_table(ctl):
    make_pods(ctl, ("web", "web"), ("db", "db"))
    r = ctl("get", "pods")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert [line.split()[:4] for line in lines[1:]] == [["db", "0/1", "Pending", "0"], ["web", "0/1", "Pending", "0"]]
    assert lines[0].index("READY") == len("NAME") + 3            # widest cell of the column + 3
    wide = [line.split() for line in ctl("get", "po", "web", "-o", "wide").stdout.splitlines()]
    columns = dict(zip(wide[0], wide[1]))                       # the server's order; priority-1 columns added
    assert (columns["NAME"], columns["IP"], columns["NODE"]) == ("web", "<none>", "<none>")


def test_get_selectors_labels_all_namespaces_and_several_types(ctl):
    make_pods(ctl, ("web", "web"), ("db", "db"))
    assert ctl("get", "po", "-l", "app=web", "-o", "name").stdout == "pod/web\n"
    assert ctl("get", "po", "-l", "app!=web", "-o", "name").stdout == "pod/db\n"
    assert ctl("get", "po", "--field-selector", "metadata.name=db", "-o", "name").stdout == "pod/db\n"
    labels = ctl("get", "pod/web", "--show-labels").stdout.splitlines()
    assert labels[0].split()[-1] == "LABELS" and labels[1].split()[-1] == "app=web"
    everywhere = ctl("get", "pods", "-A", "-l", "app=web", namespace=None).stdout.splitlines()
    assert everywhere[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert [ctl.namespace, "web"] in [line.split()[:2] for line in everywhere[1:]]
    assert ctl("apply", "-f", "-", input="{apiVersion: v1, kind: ConfigMap, metadata: {name: cfg}}").returncode == 0
    tables = [t.splitlines() for t in ctl("get", "po,cm").stdout.split("\n\n")]
    assert [row.split()[0] for row in tables[0]] == ["NAME", "pod/db", "pod/web"]
    assert [row.split()[0] for row in tables[1]] == ["NAME", "configmap/cfg"]


def test_get_object_formats(ctl):
    make_pods(ctl, ("web", "web"))
    obj = yaml.safe_load(ctl("get", "pod", "web", "-o", "yaml").stdout)
    assert (obj["kind"], obj["metadata"]["name"], obj["metadata"]["namespace"]) == ("Pod", "web", ctl.namespace)
    listed = json.loads(ctl("get", "pods", "-o", "json").stdout)
    assert listed["kind"] == "List" and [(i["kind"], i["metadata"]["name"]) for i in listed["items"]] == [("Pod", "web")]
    r = ctl("get", "pods", "-o", "jsonpath={range .items[*]}{.metadata.name}={.spec.containers[0].image}{\"\\n\"}{end}")
    assert r.stdout == "web=minik8s/busybox:1.36\n"


def test_get_errors_and_exit_codes(ctl):
    r = ctl("get", "pods", "nope")
    assert (r.returncode, r.stderr) == (1, 'Error from server (NotFound): pods "nope" not found\n')
    r = ctl("get", "widgets")
    assert (r.returncode, r.stderr) == (1, 'error: the server doesn\'t have a resource type "widgets"\n')
    r = ctl("get", "pods")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", f"No resources found in {ctl.namespace} namespace.\n")
    r = ctl("get", "pods", "-o", "xml")
    assert r.returncode == 1 and r.stderr.startswith('error: unable to match a printer suitable for the output format "xml"')
    r = ctl("get", "pods", "--no-such-flag")
    assert r.returncode == 1 and r.stderr.startswith("error: unknown flag: --no-such-flag")
    r = ctl("get", "pods", "nope", "--ignore-not-found")
    assert (r.returncode, r.stderr) == (0, "")


def test_get_watch_streams_rows(ctl):
    make_pods(ctl, ("first", "w"))
    proc = ctl.spawn("get", "pods", "-w", "--output-watch-events")
    try:
        assert read_line_with(proc, "NAME").split()[:2] == ["EVENT", "NAME"]
        assert read_line_with(proc, "first").split()[:2] == ["ADDED", "first"]
        make_pods(ctl, ("second", "w"))
        assert read_line_with(proc, "second").split()[:2] == ["ADDED", "second"]
        assert ctl("delete", "pod", "second", "--grace-period", "0", "--force").returncode == 0
        assert read_line_with(proc, "DELETED").split()[1] == "second"
    finally:
        proc.kill()
        proc.wait()


def test_apply_creates_then_configures_then_leaves_unchanged(ctl, tmp_path):
    manifest = tmp_path / "app.yaml"
    manifest.write_text("""apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web, tier: front}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: "minik8s/myapp:v1", env: [{name: A, value: "1"}, {name: B, value: "2"}]}
      - {name: side, image: "minik8s/busybox:1.36"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {a: "1", b: "2"}
""")
    r = ctl("apply", "-f", str(manifest))
    assert (r.returncode, r.stdout) == (0, "deployment.apps/web created\nconfigmap/settings created\n"), r.stderr
    r = ctl("apply", "-f", str(tmp_path))                          # a directory: the same files
    assert r.stdout == "deployment.apps/web unchanged\nconfigmap/settings unchanged\n"

    # someone scales by hand and adds a label; the config drops a label, a container, an env var and a key
    assert ctl("scale", "deploy/web", "--replicas", "5").returncode == 0
    assert ctl("label", "deploy", "web", "owner=ops").returncode == 0
    changed = (manifest.read_text().replace(", tier: front", "").replace(', {name: B, value: "2"}', "")
               .replace('      - {name: side, image: "minik8s/busybox:1.36"}\n', "").replace('b: "2"', 'c: "3"'))
    r = ctl("apply", "-f", "-", input=changed)
    assert r.stdout == "deployment.apps/web configured\nconfigmap/settings configured\n", r.stderr
    d = json.loads(ctl("get", "deploy", "web", "-o", "json").stdout)
    assert d["metadata"]["labels"] == {"app": "web", "owner": "ops"}
    assert d["spec"]["replicas"] == 2                               # the config says 2 again
    assert [(c["name"], c.get("env")) for c in d["spec"]["template"]["spec"]["containers"]] == [
        ("web", [{"name": "A", "value": "1"}])]
    assert d["spec"]["strategy"]["type"] == "RollingUpdate"         # server defaults survive
    assert ctl("get", "cm", "settings", "-o", "jsonpath={.data}").stdout == '{"a":"1","c":"3"}'
    assert ctl("apply", "-f", "-", input=changed).stdout.count("unchanged") == 2


def test_apply_and_create_errors_are_per_object(ctl):
    docs = POD.format(name="ok", app="x") + "---\n" + POD.format(name="Bad_Name", app="x")
    r = ctl("apply", "-f", "-", input=docs)
    assert r.returncode == 1 and r.stdout == "pod/ok created\n"
    assert 'is invalid' in r.stderr and "Bad_Name" in r.stderr
    r = ctl("create", "-f", "-", input=POD.format(name="ok", app="x"))
    assert (r.returncode, r.stderr) == (1, 'Error from server (AlreadyExists): error when creating "STDIN": '
                                           'pods "ok" already exists\n')
    pinned = POD.format(name="ok", app="x").replace("  name: ok\n", f"  name: ok\n  namespace: {ctl.namespace}\n")
    r = ctl("apply", "-f", "-", input=pinned, namespace="other")
    assert (r.returncode, r.stderr) == (1, f'error: the namespace from the provided object "{ctl.namespace}" does not '
                                           'match the namespace "other". You must pass '
                                           f"'--namespace={ctl.namespace}' to perform this operation.\n")
    r = ctl("apply", "-f", "/nonexistent.yaml")
    assert (r.returncode, r.stderr) == (1, 'error: the path "/nonexistent.yaml" does not exist\n')


def test_delete_waits_until_finalizers_are_gone(ctl, http):
    cm = {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}
    assert http.post(f"/api/v1/namespaces/{ctl.namespace}/configmaps", json=cm).status_code == 201
    proc = ctl.spawn("delete", "configmap", "held")
    try:
        assert read_line_with(proc, "deleted") == 'configmap "held" deleted\n'
        assert proc.poll() is None                                  # still waiting: the finalizer holds it
        r = http.patch(f"/api/v1/namespaces/{ctl.namespace}/configmaps/held", json={"metadata": {"finalizers": None}},
                       headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 200
        assert proc.wait(30) == 0
    finally:
        proc.kill()
    assert http.get(f"/api/v1/namespaces/{ctl.namespace}/configmaps/held").status_code == 404


def test_delete_by_name_selector_and_missing(ctl):
    make_pods(ctl, ("a", "x"), ("b", "x"), ("c", "y"))
    r = ctl("delete", "pods", "-l", "app=x", "--grace-period", "0", "--force")
    assert r.returncode == 0 and r.stdout == 'pod "a" deleted\npod "b" deleted\n'
    assert "Immediate deletion does not wait" in r.stderr
    r = ctl("delete", "pod/c", "pod/nope", "--grace-period", "0", "--force")
    assert r.returncode == 1 and r.stdout == 'pod "c" deleted\n'
    assert r.stderr.endswith('Error from server (NotFound): pods "nope" not found\n')
    r = ctl("delete", "pods")
    assert (r.returncode, r.stderr) == (1, "error: resource(s) were provided, but no name was specified\n")
    assert ctl("get", "pods", "-o", "name").stdout == ""


def test_scale_label_annotate(ctl):
    assert ctl("create", "deployment", "web", "--image", "minik8s/myapp:v1").returncode == 0
    r = ctl("scale", "deployment", "web", "--replicas", "4")
    assert (r.returncode, r.stdout) == (0, "deployment.apps/web scaled\n")
    r = ctl("scale", "deploy/web", "--replicas", "1", "--current-replicas", "3")
    assert (r.returncode, r.stderr) == (1, "error: Expected replicas to be 3, was 4\n")
    assert ctl("get", "deploy", "web", "-o", "jsonpath={.spec.replicas}").stdout == "4"
    assert ctl("label", "deploy", "web", "tier=front").stdout == "deployment.apps/web labeled\n"
    r = ctl("label", "deploy", "web", "tier=back")
    assert (r.returncode, r.stderr) == (1, "error: 'tier' already has a value (front), and --overwrite is false\n")
    assert ctl("label", "deploy/web", "tier=back", "--overwrite").returncode == 0
    assert ctl("annotate", "deploy", "web", "note=hello world").stdout == "deployment.apps/web annotated\n"
    d = json.loads(ctl("get", "deploy/web", "-o", "json").stdout)
    assert d["metadata"]["labels"]["tier"] == "back" and d["metadata"]["annotations"]["note"] == "hello world"
    assert ctl("label", "deploy", "web", "tier-").stdout == "deployment.apps/web unlabeled\n"
    assert "tier" not in json.loads(ctl("get", "deploy/web", "-o", "json").stdout)["metadata"]["labels"]


def test_describe_pod_service_and_deployment_with_events(ctl, http):
    make_pods(ctl, ("web", "web"))
    pod = http.get(f"/api/v1/namespaces/{ctl.namespace}/pods/web").json()
    event = {"metadata": {"name": "web.1"}, "type": "Warning", "reason": "BackOff", "message": "Back-off pulling",
             "involvedObject": {"kind": "Pod", "name": "web", "namespace": ctl.namespace,
                                "uid": pod["metadata"]["uid"], "apiVersion": "v1"},
             "source": {"component": "kubelet"}, "count": 1}
    assert http.post(f"/api/v1/namespaces/{ctl.namespace}/events", json=event).status_code == 201
    text = ctl("describe", "pod", "web").stdout
    lines = text.splitlines()
    assert lines[0].split() == ["Name:", "web"] and lines[1].split() == ["Namespace:", ctl.namespace]
    assert lines[0].index("web") == lines[1].index(ctl.namespace)      # values aligned like kubectl's
    assert "Labels:           app=web" in lines
    assert ["Image:", "minik8s/busybox:1.36"] in [line.split() for line in lines]
    events = text[text.index("Events:"):].splitlines()
    assert events[1].split() == ["Type", "Reason", "Age", "From", "Message"]
    assert events[3].split()[:2] == ["Warning", "BackOff"] and events[3].endswith("kubelet  Back-off pulling")

    svc = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {selector: {app: web}, ports: [{name: http, port: 80}]}\n"
    assert ctl("apply", "-f", "-", input=svc).returncode == 0
    text = ctl("describe", "svc/web").stdout
    assert "Selector:          app=web" in text and "Port:              http  80/TCP" in text
    assert text.rstrip().endswith("Events:            <none>")
    assert ctl("create", "deployment", "api", "--image", "minik8s/myapp:v1", "--replicas", "3").returncode == 0
    text = ctl("describe", "deploy", "ap").stdout                      # a name prefix finds it, as in kubectl
    assert "Replicas:               3 desired | 0 updated | 0 total | 0 available | 0 unavailable" in text
    r = ctl("describe", "pod", "zzz")
    assert (r.returncode, r.stderr) == (1, 'Error from server (NotFound): pods "zzz" not found\n')


def deployment_status(http, ns: str, name: str, **status) -> None:
    d = http.get(f"/apis/apps/v1/namespaces/{ns}/deployments/{name}").json()
    body = {"status": {"observedGeneration": d["metadata"]["generation"], **status}}
    r = http.patch(f"/apis/apps/v1/namespaces/{ns}/deployments/{name}/status", json=body,
                   headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text


def test_rollout_status_follows_the_deployment(ctl, http):
    assert ctl("create", "deployment", "web", "--image", "minik8s/myapp:v1", "--replicas", "2").returncode == 0
    deployment_status(http, ctl.namespace, "web", replicas=2, updatedReplicas=1, availableReplicas=0)
    proc = ctl.spawn("rollout", "status", "deployment/web", "--timeout", "60")
    try:
        assert "1 out of 2 new replicas have been updated" in read_line_with(proc, "Waiting")
        deployment_status(http, ctl.namespace, "web", replicas=2, updatedReplicas=2, availableReplicas=1)
        assert "1 of 2 updated replicas are available" in read_line_with(proc, "available")
        deployment_status(http, ctl.namespace, "web", replicas=2, updatedReplicas=2, availableReplicas=2)
        assert read_line_with(proc, "rolled out") == 'deployment "web" successfully rolled out\n'
        assert proc.wait(30) == 0
    finally:
        proc.kill()


def test_rollout_history_undo_and_restart(ctl, http):
    assert ctl("create", "deployment", "web", "--image", "minik8s/myapp:v2").returncode == 0
    d = http.get(f"/apis/apps/v1/namespaces/{ctl.namespace}/deployments/web").json()
    owner = [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": d["metadata"]["uid"],
              "controller": True}]
    for revision, image in ((1, "minik8s/myapp:v1"), (2, "minik8s/myapp:v2")):     # what the controller makes
        template = {"metadata": {"labels": {"app": "web", "pod-template-hash": f"h{revision}"}},
                    "spec": {"containers": [{"name": "myapp", "image": image}]}}
        rs = {"metadata": {"name": f"web-h{revision}", "labels": {"app": "web"}, "ownerReferences": owner,
                           "annotations": {"deployment.kubernetes.io/revision": str(revision),
                                           "kubernetes.io/change-cause": f"image {image}"}},
              "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web", "pod-template-hash": f"h{revision}"}},
                       "template": template}}
        assert http.post(f"/apis/apps/v1/namespaces/{ctl.namespace}/replicasets", json=rs).status_code == 201
    r = ctl("rollout", "history", "deployment", "web")
    assert r.stdout.splitlines() == ["deployment.apps/web ", "REVISION  CHANGE-CAUSE",
                                     "1         image minik8s/myapp:v1", "2         image minik8s/myapp:v2", ""]
    assert "minik8s/myapp:v1" in ctl("rollout", "history", "deploy/web", "--revision", "1").stdout
    r = ctl("rollout", "undo", "deploy/web")
    assert (r.returncode, r.stdout) == (0, "deployment.apps/web rolled back\n"), r.stderr
    d = json.loads(ctl("get", "deploy/web", "-o", "json").stdout)
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "minik8s/myapp:v1"
    assert "pod-template-hash" not in d["spec"]["template"]["metadata"]["labels"]
    assert d["metadata"]["annotations"]["kubernetes.io/change-cause"] == "image minik8s/myapp:v1"
    assert ctl("rollout", "restart", "deploy/web").stdout == "deployment.apps/web restarted\n"
    restarted = ctl("get", "deploy/web", "-o", "jsonpath={.spec.template.metadata.annotations}").stdout
    assert "kubectl.kubernetes.io/restartedAt" in restarted


def test_cordon_and_drain(ctl, http):
    node = f"ctl-node-{os.urandom(3).hex()}"
    assert http.post("/api/v1/nodes", json={"metadata": {"name": node}}).status_code == 201
    try:
        assert ctl("cordon", node).stdout == f"node/{node} cordoned\n"
        assert ctl("cordon", node).stdout == f"node/{node} already cordoned\n"
        assert http.get(f"/api/v1/nodes/{node}").json()["spec"]["unschedulable"] is True
        assert ctl("uncordon", node).stdout == f"node/{node} uncordoned\n"
        for name in ("bare", "managed"):
            pod = {"metadata": {"name": name}, "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]}}
            if name == "managed":
                pod["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs",
                                                       "uid": "u-1", "controller": True}]
            assert http.post(f"/api/v1/namespaces/{ctl.namespace}/pods", json=pod).status_code == 201
        r = ctl("drain", node)
        assert r.returncode == 1
        assert f"cannot delete Pods that declare no controller (use --force to override): {ctl.namespace}/bare" in r.stderr
        assert len(ctl("get", "pods", "-o", "name").stdout.split()) == 2     # nothing evicted
        r = ctl("drain", node, "--force", "--grace-period", "0", "--timeout", "30")
        assert r.returncode == 0, r.stderr
        out = r.stdout.splitlines()
        assert out[0] == f"node/{node} already cordoned" and out[-1] == f"node/{node} drained"
        assert f"evicting pod {ctl.namespace}/bare" in out and f"evicting pod {ctl.namespace}/managed" in out
        assert ctl("get", "pods", "-o", "name").stdout == ""
    finally:
        http.delete(f"/api/v1/nodes/{node}")


def test_version_api_resources_cluster_info(ctl, apiserver):
    r = ctl("version")
    assert r.returncode == 0 and r.stdout.splitlines()[1].startswith("Server Version: v1.")
    assert json.loads(ctl("version", "-o", "json").stdout)["serverVersion"]["major"] == "1"
    rows = [line.split() for line in ctl("api-resources").stdout.splitlines()]
    assert rows[0] == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    assert ["deployments", "deploy", "apps/v1", "true", "Deployment"] in rows
    assert ["nodes", "no", "v1", "false", "Node"] in rows
    assert "pods" in ctl("api-resources", "--namespaced", "true", "-o", "name").stdout.split()
    assert ctl("cluster-info").stdout.startswith(f"Kubernetes control plane is running at {apiserver.url}\n")


def test_kubeconfig_from_the_environment_and_namespace_from_the_context(ctl, tmp_path):
    import subprocess
    import sys

    doc = yaml.safe_load(open(ctl.kubeconfig))
    doc["contexts"][0]["context"]["namespace"] = ctl.namespace
    path = tmp_path / "ctx.kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    make_pods(ctl, ("here", "x"))
    env = {**os.environ, "KUBECONFIG": str(path)}
    r = subprocess.run([sys.executable, "-m", "cli.main", "ctl", "get", "pods", "-o", "name"], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, "pod/here\n"), r.stderr
    env["KUBECONFIG"] = str(tmp_path / "missing")
    r = subprocess.run([sys.executable, "-m", "cli.main", "ctl", "get", "pods"], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.startswith("error: cannot read kubeconfig")


def test_unreachable_server_is_reported_like_kubectl(tmp_path, apiserver):
    import socket

    from client.kubeconfig import write_kubeconfig

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]          # closed again: nothing listens there
    path = tmp_path / "nowhere.kubeconfig"
    write_kubeconfig(path, server=f"https://127.0.0.1:{port}", ca_pem=apiserver.ca.read_bytes(), token="t")
    r = Ctl(str(path), None)("get", "pods")
    assert (r.returncode, r.stderr) == (1, f"The connection to the server 127.0.0.1:{port} was refused - did you "
                                           "specify the right host or port?\n")
