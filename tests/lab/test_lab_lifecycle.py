"""The lab's own life cycle: made by the Python API, used through the `minik8s lab` command, and torn
down by `minik8s lab down` from a fresh process (only the state file links the two) — leaving no
namespace, link, route, iptables rule, mount, cgroup folder or process behind, even with a pod running;
and a lab whose `up()` fails half-way removes what it had made.
"""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab import Lab

ROOT = Path(__file__).resolve().parents[2]


def minik8s(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def own_lab(lab_pool, tmp_path_factory):
    lab_pool.close()      # one lab at a time on this machine
    lab = Lab(tmp_path_factory.mktemp("lifecycle"), nodes=1, name=f"lc{secrets.token_hex(2)}")
    try:
        yield lab.up()
    finally:
        if (lab.dir / "lab.json").exists():
            lab.down()


def test_load_exec_and_down_from_a_fresh_process_leave_nothing(own_lab):
    lab = own_lab
    node = lab.nodes[0]
    with lab.http() as http:
        pod = {"metadata": {"name": "sleeper"},
               "spec": {"nodeName": node.name, "terminationGracePeriodSeconds": 1,
                        "containers": [{"name": "c", "image": "minik8s/busybox:1.36",
                                        "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]}]}}
        assert http.post("/api/v1/namespaces/default/pods", json=pod).status_code == 201
        deadline = time.monotonic() + 60
        while http.get("/api/v1/namespaces/default/pods/sleeper").json()["status"].get("phase") != "Running":
            assert time.monotonic() < deadline, "pod did not start"
            time.sleep(0.2)

    tag = f"minik8s/lab-load-test:{secrets.token_hex(3)}"
    subprocess.run(["docker", "tag", "minik8s/busybox:1.36", tag], check=True)
    try:
        assert minik8s("lab", "load", "--data-dir", str(lab.dir), tag).returncode == 0
        assert lab.docker(node, "image", "inspect", tag).returncode == 0
    finally:
        subprocess.run(["docker", "rmi", tag], capture_output=True)

    done = minik8s("lab", "exec", "--data-dir", str(lab.dir), node.name, "--", "ip", "-br", "addr", "show", "eth0")
    assert node.ip in done.stdout

    pids = [pid for _role, pid, running in lab.processes() if running]
    assert len(pids) >= 7        # etcd, apiserver, controller-manager, scheduler, dockerd, kubelet, agent
    done = minik8s("lab", "down", "--data-dir", str(lab.dir))
    assert done.returncode == 0, done.stdout + done.stderr

    assert lab.leftovers() == []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"mk-{lab.name}-" not in netns
    assert not any(name.startswith(f"mk-{lab.name}") for name in os.listdir("/sys/class/net"))
    assert not [pid for pid in pids if os.path.exists(f"/proc/{pid}")]
    assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline_mentions(p, str(lab.dir))]
    assert not (lab.dir / "lab.json").exists() and (lab.dir / "logs").is_dir()


def _cmdline_mentions(proc: Path, text: str) -> bool:
    try:
        return text in (proc / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def test_a_failed_up_tears_itself_down(lab_pool, tmp_path_factory):
    lab_pool.close()
    lab = Lab(tmp_path_factory.mktemp("failing"), nodes=1, name=f"lf{secrets.token_hex(2)}",
              kubelet_flags=["--no-such-flag"])
    with pytest.raises(RuntimeError, match="kubelet/node1 exited"):
        lab.up(timeout=30)
    assert lab.leftovers() == []
    assert sorted(os.listdir(lab.dir)) == ["logs"]
