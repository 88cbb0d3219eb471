"""`minik8s ctl logs`, `exec` and rollouts against the whole two-node cluster with real containers."""
from __future__ import annotations

import json
import re
import time

import pytest

from tests.cluster import wait_for
from tests.ctl.conftest import Ctl

TWO_CONTAINERS = """apiVersion: v1
kind: Pod
metadata: {name: talker}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: printer, image: "minik8s/busybox:1.36", command: [sh, -c, "echo one; echo two; echo three; exec sleep 300"]}
  - name: ticker
    image: "minik8s/busybox:1.36"
    command: [sh, -c, "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.2; done"]
"""


def deployment(image: str) -> str:
    return f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  strategy: {{rollingUpdate: {{maxSurge: 2, maxUnavailable: 1}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{{name: web, image: "{image}"}}]
"""


@pytest.fixture(scope="module")
def cluster_ctl(cluster):
    with cluster.http() as http:
        namespace = cluster.new_namespace(http, "ctl")
    return Ctl(cluster.kubeconfig("admin"), namespace)


@pytest.fixture(scope="module")
def talker(cluster, cluster_ctl):
    """A running pod with two containers: one printed three lines, the other ticks every 0.2 s."""
    assert cluster_ctl("apply", "-f", "-", input=TWO_CONTAINERS).returncode == 0
    with cluster.http() as http:
        def printed():
            pod = http.get(f"/api/v1/namespaces/{cluster_ctl.namespace}/pods/talker").json()
            running = (pod.get("status") or {}).get("phase") == "Running"
            return running and cluster_ctl("logs", "talker", "-c", "printer").stdout.endswith("three\n")
        wait_for(printed, 60, 0.2, "pod talker Running and printing")
    return "talker"


def test_logs(cluster_ctl, talker):
    r = cluster_ctl("logs", talker)
    assert (r.returncode, r.stdout) == (0, "one\ntwo\nthree\n")
    assert r.stderr == 'Defaulted container "printer" out of: printer, ticker\n'
    assert cluster_ctl("logs", f"pod/{talker}", "printer", "--tail", "1").stdout == "three\n"
    stamped = cluster_ctl("logs", talker, "-c", "printer", "--timestamps").stdout.splitlines()
    assert stamped[0].endswith("Z one") and len(stamped) == 3
    assert cluster_ctl("logs", talker, "-c", "printer", "--since", "1h").stdout == "one\ntwo\nthree\n"
    r = cluster_ctl("logs", talker, "-c", "nope")
    assert r.returncode == 1 and r.stderr.startswith("Error from server (BadRequest)")
    r = cluster_ctl("logs", talker, "-c", "printer", "--previous")
    assert r.returncode == 1 and "previous terminated container" in r.stderr


def test_logs_follow_streams(cluster_ctl, talker):
    proc = cluster_ctl.spawn("logs", talker, "-c", "ticker", "-f", "--tail", "1")
    try:
        seen = []
        for line in proc.stdout:
            seen.append((time.monotonic(), int(line.strip().removeprefix("tick-"))))
            if len(seen) == 6:
                break
        numbers = [n for _, n in seen]
        assert numbers == list(range(numbers[0], numbers[0] + 6))     # consecutive, as they were printed
        assert seen[-1][0] - seen[1][0] > 0.5                          # arriving over time, not all at once
    finally:
        proc.kill()
        proc.wait()


def test_exec_output_exit_codes_and_stdin(cluster_ctl, talker):
    r = cluster_ctl("exec", talker, "-c", "printer", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (r.returncode, r.stdout) == (3, "out\n")
    assert r.stderr == "err\ncommand terminated with exit code 3\n"
    r = cluster_ctl("exec", "-i", talker, "-c", "printer", "--", "wc", "-l", input="a\nb\nc\n")
    assert (r.returncode, r.stdout.strip()) == (0, "3")
    r = cluster_ctl("exec", talker, "-n", cluster_ctl.namespace, "-q", "--", "cat", "/etc/hostname")
    assert r.returncode == 0 and r.stdout.strip() == talker
    r = cluster_ctl("exec", "-it", talker, "-c", "printer", "--", "echo", "hi", input="")
    assert (r.returncode, r.stdout) == (0, "hi\n")
    assert r.stderr == "Unable to use a TTY - input is not a terminal or the right kind of file\n"
    r = cluster_ctl("exec", "ghost", "--", "true")
    assert (r.returncode, r.stderr) == (1, 'Error from server (NotFound): pods "ghost" not found\n')


def test_deployment_apply_rollout_undo_and_logs(cluster, cluster_ctl):
    assert cluster_ctl("apply", "-f", "-", input=deployment("minik8s/myapp:v1")).returncode == 0
    r = cluster_ctl("rollout", "status", "deploy/web", "--timeout", "60")
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == 'deployment "web" successfully rolled out', r.stderr

    r = cluster_ctl("apply", "-f", "-", input=deployment("minik8s/myapp:v2"))
    assert r.stdout == "deployment.apps/web configured\n"
    r = cluster_ctl("rollout", "status", "deployment", "web", "--timeout", "60")
    assert r.returncode == 0 and r.stdout.endswith('deployment "web" successfully rolled out\n'), r.stderr
    history = cluster_ctl("rollout", "history", "deploy/web").stdout.splitlines()
    assert [line.split()[0] for line in history[2:4]] == ["1", "2"]

    assert cluster_ctl("rollout", "undo", "deploy/web").stdout == "deployment.apps/web rolled back\n"
    assert cluster_ctl("rollout", "status", "deploy/web", "--timeout", "60").returncode == 0
    with cluster.http() as http:
        def only_v1():
            items = http.get(f"/api/v1/namespaces/{cluster_ctl.namespace}/pods",
                             params={"labelSelector": "app=web"}).json()["items"]
            live = [p for p in items if not p["metadata"].get("deletionTimestamp")]
            return len(live) == 2 and all(p["spec"]["containers"][0]["image"] == "minik8s/myapp:v1" for p in live)
        wait_for(only_v1, 60, 0.2, "two v1 pods after the undo")
    images = cluster_ctl("get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].spec.containers[0].image}")
    assert "minik8s/myapp:v1" in images.stdout.split()
    d = json.loads(cluster_ctl("get", "deploy", "web", "-o", "json").stdout)
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"

    r = cluster_ctl("logs", "deploy/web")
    assert r.returncode == 0 and re.match(r"Found \d pods, using pod/web-", r.stderr), r.stderr
    r = cluster_ctl("delete", "deploy", "web", "--cascade", "foreground", "--timeout", "60")
    assert (r.returncode, r.stdout) == (0, 'deployment.apps "web" deleted\n'), r.stderr
    assert cluster_ctl("get", "deploy,rs", "-o", "name").stdout == ""


def test_exec_interactive_tty_passes_the_window_size(cluster_ctl, talker):
    """`exec -it` from a real terminal: raw mode, the terminal's size forwarded, keystrokes to the shell."""
    import fcntl
    import os
    import pty
    import select
    import struct
    import subprocess
    import termios

    from tests.ctl.conftest import ROOT, ctl_command

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    proc = subprocess.Popen(ctl_command(cluster_ctl.kubeconfig, cluster_ctl.namespace, "exec", "-it", talker, "-c",
                                        "printer", "--", "sh"), stdin=slave, stdout=slave, stderr=slave, cwd=ROOT)
    os.close(slave)
    try:
        os.write(master, b"stty size; exit 7\r")
        seen = b""
        while b"33 101" not in seen:
            ready, _, _ = select.select([master], [], [], 20)
            assert ready, f"no output for 20 s: {seen!r}"
            try:
                chunk = os.read(master, 4096)
            except OSError:             # EIO: the last holder of the terminal's other side has gone
                chunk = b""
            assert chunk, f"terminal closed early: {seen!r} (exit code {proc.wait(10)})"
            seen += chunk
        assert proc.wait(30) == 7
    finally:
        proc.kill()
        os.close(master)


GUARDED = """apiVersion: apps/v1
kind: Deployment
metadata: {{name: guarded}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: guarded}}}}
  template:
    metadata: {{labels: {{app: guarded}}}}
    spec:
      terminationGracePeriodSeconds: 1
      nodeSelector: {{kubernetes.io/hostname: {node}}}
      containers: [{{name: web, image: "minik8s/myapp:v1"}}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {{name: guarded}}
spec:
  minAvailable: 1
  selector: {{matchLabels: {{app: guarded}}}}
"""


def test_drain_respects_a_pod_disruption_budget(cluster, cluster_ctl):
    """Both pods are pinned to one node, so their replacements cannot start while it is drained: the
    disruption controller's budget lets one go and holds the other until drain times out; uncordoned, the
    replacement starts, the budget allows one disruption again and the eviction goes through."""
    node = cluster.kubelets[0].name
    ns = cluster_ctl.namespace
    assert cluster_ctl("apply", "-f", "-", input=GUARDED.format(node=node)).returncode == 0
    assert cluster_ctl("rollout", "status", "deploy/guarded", "--timeout", "60").returncode == 0
    with cluster.http() as http:
        def budget():
            return http.get(f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/guarded").json().get("status") or {}
        wait_for(lambda: budget().get("currentHealthy") == 2 and budget().get("disruptionsAllowed") == 1, 30, 0.1,
                 "the budget to count two healthy pods")
        assert (budget()["expectedPods"], budget()["desiredHealthy"]) == (2, 1)
        try:
            r = cluster_ctl("drain", node, "-l", "app=guarded", "--timeout", "7")
            assert r.returncode == 1, (r.stdout, r.stderr)
            assert "Cannot evict pod as it would violate the pod's disruption budget." in r.stderr
            assert "drain did not complete within 7s" in r.stderr

            def live():
                items = http.get(f"/api/v1/namespaces/{ns}/pods", params={"labelSelector": "app=guarded"}).json()["items"]
                return [p for p in items if not p["metadata"].get("deletionTimestamp")]
            assert len([p for p in live() if p["spec"].get("nodeName") == node]) >= 1  # the budget kept one
            wait_for(lambda: budget().get("disruptionsAllowed") == 0 and budget().get("currentHealthy") == 1, 30, 0.1,
                     "the budget to see one healthy pod")
        finally:
            assert cluster_ctl("uncordon", node).returncode == 0
        wait_for(lambda: budget().get("currentHealthy") == 2 and budget().get("disruptionsAllowed") == 1, 60, 0.1,
                 "the replacement to be counted")
        r = cluster_ctl("get", "pdb", "guarded")
        assert r.stdout.split("\n")[1].split()[:4] == ["guarded", "1", "N/A", "1"], r.stdout
        victim = next(p for p in http.get(f"/api/v1/namespaces/{ns}/pods",
                                          params={"labelSelector": "app=guarded"}).json()["items"]
                      if not p["metadata"].get("deletionTimestamp"))
        r = http.post(f"/api/v1/namespaces/{ns}/pods/{victim['metadata']['name']}/eviction",
                      json={"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": victim["metadata"]["name"]}})
        assert r.status_code == 201, r.text
    assert cluster_ctl("delete", "deploy,pdb", "guarded").returncode == 0
