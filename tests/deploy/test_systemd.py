"""deploy/systemd: the unit files, their env files and install.sh, tested without systemd as PID 1.

- every ExecStart, after substitution of its env file, parses with its component's own argparse parser
  (etcd's ETCD_* variables are checked against `etcd --help`);
- `systemd-analyze verify` accepts the staged units without a warning;
- install.sh is idempotent, keeps edited env files, and `--dry-run` writes nothing;
- end to end: install.sh stages a control plane + node into a temporary root, then every unit's
  ExecStart runs as a real process the way systemd would start it (env file exported and substituted,
  CapabilityBoundingSet / AmbientCapabilities / NoNewPrivileges applied with setpriv), with paths
  rewritten into the staging root, inside a network namespace of the test's own (so the units' default
  ports are free and kube-proxy's rules never touch the host's); the node goes Ready, a Deployment's pod
  runs, answers on its pod IP and through its ClusterIP, and cluster DNS resolves the Service.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from tests.deploy.systemd_units import expand_exec, parse_env_file, parse_unit, referenced_vars, unit_value

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "deploy" / "systemd"
INSTALL = SYSTEMD / "install.sh"
MINIK8S = Path(sys.executable).with_name("minik8s")
UNITS = ["etcd", "apiserver", "controller-manager", "scheduler", "kubelet", "proxy", "dns"]
NODE_IP = "10.78.0.1"          # on a port-less bridge inside the test's network namespace only
SAMPLE = {"NODE_NAME": "node-a", "NODE_IP": NODE_IP, "SECURE_PORT": "6443", "ADVERTISE_ADDRESS": NODE_IP,
          "CLUSTER_CIDR": "10.244.0.0/16", "SERVICE_CIDR": "10.96.0.0/12", "NETWORK_BACKEND": "host-gw",
          "PROXY_MODE": "iptables"}


def subcommand_parser(subcommand: str) -> argparse.ArgumentParser:
    from cli.main import SUBCOMMANDS

    assert subcommand in SUBCOMMANDS, f"`minik8s {subcommand}` is not a subcommand"
    parser = argparse.ArgumentParser(prog=f"minik8s {subcommand}", add_help=False)
    importlib.import_module(SUBCOMMANDS[subcommand]).add_arguments(parser)
    return parser


def template_env(unit: str) -> dict[str, str]:
    text = (SYSTEMD / "env" / f"{unit}.env").read_text()
    for key, value in SAMPLE.items():
        text = text.replace(f"@{key}@", value)
    assert "@" not in text.replace("# ", ""), f"{unit}.env: a placeholder install.sh does not fill"
    with tempfile.NamedTemporaryFile("w", suffix=".env", delete=False) as f:
        f.write(text)
    try:
        return parse_env_file(Path(f.name))
    finally:
        os.unlink(f.name)


def install(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(INSTALL), "--root", str(root), "--minik8s-bin", str(MINIK8S),
                           "--node-ip", NODE_IP, "--node-name", "node-a", *args],
                          capture_output=True, text=True, timeout=120)


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): (p.read_text() if p.is_file() else "<dir>") for p in sorted(root.rglob("*"))}


# ---- static checks ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("unit", [u for u in UNITS if u != "etcd"])
def test_exec_start_parses_with_the_components_parser(unit):
    spec = parse_unit(SYSTEMD / "units" / f"minik8s-{unit}.service")
    env = template_env(unit)
    cmdline = unit_value(spec, "Service", "ExecStart")
    assert unit_value(spec, "Service", "EnvironmentFile") == f"/etc/minik8s/{unit}.env"
    assert referenced_vars(cmdline) <= set(env), f"variables without a value: {referenced_vars(cmdline) - set(env)}"
    unused = set(env) - referenced_vars(cmdline) - {"DOCKER_HOST"}
    assert not unused, f"{unit}.env sets variables ExecStart never uses: {unused}"
    argv = expand_exec(cmdline, env)
    assert argv[0] == "/opt/minik8s/bin/minik8s"
    parser = subcommand_parser(argv[1])
    try:
        parser.parse_args(argv[2:])
    except SystemExit:
        pytest.fail(f"minik8s {argv[1]} rejects {argv[2:]}")
    assert "" not in argv, f"an empty flag value in {argv}"
    # EXTRA_ARGS reaches the command line as separate words
    assert expand_exec(cmdline, {**env, "EXTRA_ARGS": "--a 1  --b"})[-3:] == ["--a", "1", "--b"]


def test_etcd_env_names_only_etcd_flags():
    env = template_env("etcd")
    spec = parse_unit(SYSTEMD / "units" / "minik8s-etcd.service")
    assert expand_exec(unit_value(spec, "Service", "ExecStart"), env) == ["/usr/bin/etcd"]
    help_text = subprocess.run(["etcd", "--help"], capture_output=True, text=True).stdout
    for key in env:
        if key == "ETCD_EXTRA_ARGS":
            continue
        flag = "--" + key.removeprefix("ETCD_").lower().replace("_", "-")
        assert f"  {flag} " in help_text or f"  {flag}\n" in help_text, f"etcd has no {flag} (from {key})"


def test_units_order_and_restart():
    for unit in UNITS:
        spec = parse_unit(SYSTEMD / "units" / f"minik8s-{unit}.service")
        assert unit_value(spec, "Service", "Restart") == "on-failure", unit
        assert "network-online.target" in unit_value(spec, "Unit", "After"), unit
        assert unit_value(spec, "Install", "WantedBy") == "multi-user.target", unit
    after = lambda u: unit_value(parse_unit(SYSTEMD / "units" / f"minik8s-{u}.service"), "Unit", "After")  # noqa: E731
    assert "minik8s-etcd.service" in after("apiserver")
    assert "minik8s-apiserver.service" in after("controller-manager")
    assert "minik8s-apiserver.service" in after("scheduler")
    assert "docker.service" in after("kubelet")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify(tmp_path):
    done = install(tmp_path)
    assert done.returncode == 0, done.stderr
    units = sorted(str(p) for p in (tmp_path / "etc/systemd/system").glob("minik8s-*.service"))
    assert len(units) == len(UNITS)
    verify = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True)
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr


def test_install_is_idempotent_and_keeps_env_edits(tmp_path):
    assert install(tmp_path).returncode == 0
    first = tree(tmp_path)
    assert "etc/minik8s/pki/ca.crt" in first and "etc/minik8s/kubeconfigs/node.kubeconfig" in first
    kubelet_env = tmp_path / "etc/minik8s/kubelet.env"
    kubelet_env.write_text(kubelet_env.read_text().replace("EXTRA_ARGS=", "EXTRA_ARGS=--node-labels a=b"))
    again = install(tmp_path)
    assert again.returncode == 0, again.stderr
    assert "kept" in again.stdout
    second = tree(tmp_path)
    changed = {k for k in first if first[k] != second.get(k)}
    assert changed == {"etc/minik8s/kubelet.env"}, changed
    assert set(second) == set(first)
    # credentials are not world-readable
    assert not (tmp_path / "etc/minik8s/pki/ca.key").stat().st_mode & 0o007


def test_dry_run_writes_nothing(tmp_path):
    done = install(tmp_path, "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "bootstrap" in done.stdout and "+ " in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_node_role_needs_the_control_planes_credentials(tmp_path):
    done = install(tmp_path / "node", "--role", "node")
    assert done.returncode != 0 and "--credentials" in done.stderr
    assert install(tmp_path / "cp", "--role", "control-plane").returncode == 0
    # The control plane has issued no identity for this node's kubelet yet.
    done = install(tmp_path / "node", "--role", "node", "--credentials", str(tmp_path / "cp/etc/minik8s"))
    assert done.returncode != 0 and "no kubelet credentials for node node-a" in done.stderr, done.stderr
    assert install(tmp_path / "cp", "--role", "control-plane", "--cluster-node", "node-a").returncode == 0
    done = install(tmp_path / "node", "--role", "node", "--credentials", str(tmp_path / "cp/etc/minik8s"))
    assert done.returncode == 0, done.stderr
    own = (tmp_path / "node/etc/minik8s/kubeconfigs/node.kubeconfig").read_text()
    assert "system:node:node-a" in own
    node_files = {str(p.relative_to(tmp_path / "node/etc/minik8s")) for p in (tmp_path / "node/etc/minik8s").rglob("*")
                  if p.is_file() and not p.name.endswith(".env")}
    assert "pki/kubelet.key" in node_files and "kubeconfigs/kube-proxy.kubeconfig" in node_files
    assert "pki/ca.key" not in node_files and "admin.kubeconfig" not in node_files
    assert "tokens.csv" not in node_files and not any("kube-controller-manager" in f for f in node_files)
    assert sorted(p.name for p in (tmp_path / "node/etc/systemd/system").iterdir()) == [
        "minik8s-dns.service", "minik8s-kubelet.service", "minik8s-proxy.service"]


# ---- end to end -------------------------------------------------------------------------------------------

def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespace, dockerd, iptables)"
    for tool in ("etcd", "docker", "nsenter", "setpriv", "ip", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        return "dockerd is not running (bash deploy/ensure-dockerd.sh)"
    for image in ("minik8s/pause:3.9", "minik8s/myapp:v1"):
        if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode != 0:
            return f"{image} is missing (bash deploy/images/build.sh)"
    return None


def setpriv_args(spec: dict) -> list[str]:
    """CapabilityBoundingSet=, AmbientCapabilities= and NoNewPrivileges= of a unit, as a setpriv prefix.

    User= is not applied: this machine's venv lives under /root (mode 0700), which no other user can
    enter; the processes run as uid 0 with the unit's capabilities only.
    """
    args = ["setpriv"]
    bounding = unit_value(spec, "Service", "CapabilityBoundingSet")
    if bounding is not None:
        caps = [c.lower().removeprefix("cap_") for c in bounding.split()]
        args.append("--bounding-set=" + ",".join(["-all", *(f"+{c}" for c in caps)]))
        args.append("--inh-caps=" + ",".join(["-all", *(f"+{c}" for c in caps)]))
    ambient = unit_value(spec, "Service", "AmbientCapabilities")
    if ambient:
        args.append("--ambient-caps=" + ",".join(f"+{c.lower().removeprefix('cap_')}" for c in ambient.split()))
    if unit_value(spec, "Service", "NoNewPrivileges") == "yes":
        args.append("--no-new-privs")
    return [*args, "--"]


class StagedHost:
    """The staged units running as processes in a network namespace: a one-machine cluster."""

    def __init__(self, stage: Path):
        self.stage = stage
        self.netns = f"mksd{os.urandom(2).hex()}"
        self.procs: dict[str, subprocess.Popen] = {}
        self.node_name = f"sd-{os.urandom(2).hex()}"

    def rewrite(self, text: str) -> str:
        for path in ("/etc/minik8s", "/var/lib/minik8s"):
            text = text.replace(path, f"{self.stage}{path}")
        return text

    def argv(self, unit: str) -> tuple[list[str], dict[str, str]]:
        spec = parse_unit(self.stage / f"etc/systemd/system/minik8s-{unit}.service")
        env_file = Path(self.rewrite(unit_value(spec, "Service", "EnvironmentFile")))
        env = {k: self.rewrite(v) for k, v in parse_env_file(env_file).items()}
        argv = [self.rewrite(a) for a in expand_exec(unit_value(spec, "Service", "ExecStart"), env)]
        return setpriv_args(spec) + argv, env

    def start(self, unit: str) -> None:
        argv, env = self.argv(unit)
        log = open(self.stage / f"{unit}.log", "ab")
        base = {k: os.environ[k] for k in ("PATH", "LANG") if k in os.environ}
        self.procs[unit] = subprocess.Popen(["nsenter", f"--net=/run/netns/{self.netns}", "--", *argv],
                                            env={**base, **env, "HOME": str(self.stage / "var/lib/minik8s")},
                                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        log.close()

    def tail(self, unit: str) -> str:
        path = self.stage / f"{unit}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def alive(self) -> None:
        for unit, proc in self.procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"{unit} exited with {proc.returncode}:\n{self.tail(unit)}")

    def in_ns(self, fn):
        from lab.lab import in_netns
        return in_netns(f"/run/netns/{self.netns}", fn)

    def api(self, method: str, path: str, **kw) -> httpx.Response:
        admin = (self.stage / "etc/minik8s/admin.kubeconfig").read_text()
        token = next(line.split()[-1] for line in admin.splitlines() if "token:" in line)
        ctx = ssl.create_default_context(cafile=str(self.stage / "etc/minik8s/pki/ca.crt"))

        def call() -> httpx.Response:
            with httpx.Client(base_url=f"https://{NODE_IP}:6443", verify=ctx, timeout=10,
                              headers={"Authorization": f"Bearer {token}"}) as c:
                return c.request(method, path, **kw)
        return self.in_ns(call)

    def wait(self, fn, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while True:
            self.alive()
            with contextlib.suppress(httpx.TransportError):
                value = fn()
                if value:
                    return value
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {u}\n{self.tail(u)[-800:]}" for u in self.procs)
                raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs}")
            time.sleep(0.5)

    def stop(self) -> None:
        for unit in reversed(list(self.procs)):
            proc = self.procs[unit]
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        import docker

        from kubelet import labels
        client = docker.from_env()
        for c in client.api.containers(all=True, filters=labels.selector(self.node_name)):
            client.api.remove_container(c["Id"], force=True)
        client.close()
        with open("/proc/mounts") as f:
            mounts = [line.split()[1] for line in f if line.split()[1].startswith(str(self.stage) + "/")]
        for target in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", target], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)


@pytest.fixture
def stage():
    # not under pytest's tmp_path: its parents are private, and the staged tree must be traversable
    path = Path(tempfile.mkdtemp(prefix="minik8s-systemd-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_staged_units_run_a_cluster(stage):
    problem = _missing()
    if problem:
        pytest.skip(problem)
    host = StagedHost(stage)
    # the node's name is the test's own (its containers are found by it): install.sh writes it into the env
    # files and issues the kubelet's identity, system:node:<name>, for it
    done = install(stage, "--role", "all", "--node-name", host.node_name)
    assert done.returncode == 0, done.stderr
    kubelet_env = stage / "etc/minik8s/kubelet.env"
    kubelet_env.write_text(kubelet_env.read_text().replace(
        "EXTRA_ARGS=", "EXTRA_ARGS=--node-status-update-frequency 2 --relist-period 2"))
    subprocess.run(["ip", "netns", "add", host.netns], check=True)
    try:
        subprocess.run(["ip", "-n", host.netns, "-batch", "-"], check=True, text=True, input=(
            "link set lo up\nlink add node0 type bridge\n"
            f"addr add {NODE_IP}/32 dev node0\nlink set node0 up\n"))
        started = time.monotonic()
        for unit in UNITS:
            host.start(unit)
            if unit == "etcd":
                host.wait(lambda: host.in_ns(lambda: httpx.get("http://127.0.0.1:2379/health").status_code == 200),
                          30, "etcd")
            if unit == "apiserver":
                host.wait(lambda: host.api("GET", "/readyz").status_code == 200, 60, "apiserver ready")
        dns = subprocess.run(["nsenter", f"--net=/run/netns/{host.netns}", "--", sys.executable,
                              str(ROOT / "deploy/kube-dns.py"), "--kubeconfig",
                              str(stage / "etc/minik8s/admin.kubeconfig"), NODE_IP],
                             capture_output=True, text=True, timeout=90, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert dns.returncode == 0, dns.stderr

        def node_ready():
            r = host.api("GET", f"/api/v1/nodes/{host.node_name}")
            if r.status_code != 200:
                return False
            conds = {c["type"]: c["status"] for c in (r.json().get("status") or {}).get("conditions") or []}
            return conds.get("Ready") == "True" and r.json()["spec"].get("podCIDR")
        host.wait(node_ready, 60, "node Ready with a podCIDR")
        ready_after = time.monotonic() - started

        assert host.api("POST", "/api/v1/namespaces", json={"metadata": {"name": "web"}}).status_code == 201
        labels = {"app": "web"}
        deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                      "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                               "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                                   {"name": "web", "image": "minik8s/myapp:v1", "imagePullPolicy": "Never"}]}}}}
        assert host.api("POST", "/apis/apps/v1/namespaces/web/deployments", json=deployment).status_code == 201
        service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                   "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 80}]}}
        created = host.api("POST", "/api/v1/namespaces/web/services", json=service)
        assert created.status_code == 201, created.text
        cluster_ip = created.json()["spec"]["clusterIP"]

        def running_pod():
            items = host.api("GET", "/api/v1/namespaces/web/pods").json()["items"]
            return next((p for p in items if p["status"].get("phase") == "Running" and p["status"].get("podIP")
                         and p["spec"].get("nodeName") == host.node_name), None)
        pod = host.wait(running_pod, 90, "the Deployment's pod Running on the node")

        def get(url: str) -> str:
            return host.in_ns(lambda: httpx.get(url, timeout=3).text)
        assert "Version: v1" in host.wait(lambda: get(f"http://{pod['status']['podIP']}/"), 30, "pod answers")
        assert "Version: v1" in host.wait(lambda: get(f"http://{cluster_ip}/"), 30, "ClusterIP answers")
        # a pod resolves the Service through resolv.conf -> 10.96.0.10 -> kube-proxy -> minik8s dns
        sandbox = subprocess.run(["docker", "ps", "-q", "--filter", f"label=io.kubernetes.pod.uid={pod['metadata']['uid']}",
                                  "--filter", "label=io.kubernetes.container.name=web"],
                                 capture_output=True, text=True, check=True).stdout.split()[0]
        lookup = host.wait(lambda: (r := subprocess.run(
            ["docker", "exec", sandbox, "nslookup", "web.web.svc.cluster.local"], capture_output=True, text=True,
            timeout=20)).returncode == 0 and cluster_ip in r.stdout and r.stdout, 30, "DNS answer in the pod")
        assert cluster_ip in lookup
        print(f"staged units: node Ready {ready_after:.1f}s after the first unit started")
        host.alive()
    finally:
        host.stop()
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert host.netns not in left
