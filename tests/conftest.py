"""Shared fixtures: a real etcd and a real apiserver process, started once per test session.

Nothing here fakes storage: the apiserver fixture is the `minik8s apiserver` command serving HTTPS
against an etcd child process on free ports in a temporary directory.
"""
from __future__ import annotations

import os
import re
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from apiserver.pki import COMPONENTS, ensure_pki, ensure_tokens, node_identities  # noqa: E402
from cli.etcd import EtcdProcess, free_port  # noqa: E402


@dataclass
class ApiServer:
    url: str
    ca: Path
    tokens: dict[str, str]
    proc: subprocess.Popen
    cmd: list[str]
    log: Path

    @property
    def admin_token(self) -> str:
        return self.tokens["admin"]

    def headers(self, identity: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[identity]}"}

    def http(self, identity: str = "admin", **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=ssl.create_default_context(cafile=str(self.ca)), headers=self.headers(identity), timeout=30, **kw)

    def ahttp(self, identity: str = "admin", **kw) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, verify=ssl.create_default_context(cafile=str(self.ca)), headers=self.headers(identity), timeout=30,
                                 **kw)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def add_identity(self, user: str, groups: list[str]) -> str:
        """A new token in the running apiserver's token file (it re-reads the file); returns the token."""
        path = Path(self.cmd[self.cmd.index("--token-auth-file") + 1])
        self.tokens = ensure_tokens(path, {user: groups})
        return self.tokens[user]

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        wait_ready(self.url, self.ca, self.proc, self.log)


def wait_ready(url: str, ca: Path, proc: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    ctx = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"apiserver exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/readyz", context=ctx, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"apiserver at {url} not ready")


@pytest.fixture(scope="session")
def etcd(tmp_path_factory):
    d = tmp_path_factory.mktemp("etcd")
    proc = EtcdProcess(d / "data", free_port(), free_port(), log_path=d / "etcd.log").start()
    yield proc
    proc.stop()


def start_apiserver(etcd: EtcdProcess, d: Path, *extra: str) -> ApiServer:
    pki = ensure_pki(d / "pki")
    # Besides the components: two plain users for authorization tests (no permissions of their own) and
    # two nodes' kubelets; more nodes come with `add_identity` (the apiserver re-reads the file).
    tokens = ensure_tokens(d / "tokens.csv", {**COMPONENTS, "jane": [], "bob": ["dev-team"],
                                              **node_identities(["node-a", "node-b"])})
    port = free_port()
    cmd = [sys.executable, "-m", "cli.main", "apiserver", "--etcd-servers", etcd.url, "--secure-port", str(port),
           "--bind-address", "127.0.0.1", "--tls-cert-file", str(pki["cert"]),
           "--tls-private-key-file", str(pki["key"]), "--token-auth-file", str(d / "tokens.csv"), *extra]
    server = ApiServer(f"https://127.0.0.1:{port}", pki["ca"], tokens, None, cmd, d / "apiserver.log")  # type: ignore[arg-type]
    server.start()
    return server


@pytest.fixture(scope="session")
def apiserver(etcd, tmp_path_factory):
    server = start_apiserver(etcd, tmp_path_factory.mktemp("apiserver"))
    yield server
    server.proc.terminate()
    server.proc.wait(10)


@pytest.fixture
def http(apiserver):
    with apiserver.http() as c:
        yield c


@pytest.fixture
def namespace(http, request):
    """A fresh namespace per test, so tests never see each other's objects."""
    slug = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower().replace("_", "-"))[:40].strip("-")
    name = f"t-{slug}-{os.urandom(2).hex()}"
    r = http.post("/api/v1/namespaces", json={"metadata": {"name": name}})
    assert r.status_code == 201, r.text
    return name


@pytest.fixture
def kubectl(apiserver, namespace, tmp_path):
    """`kubectl(*args)`: the real kubectl as the admin in the test's namespace (skips where it is missing)."""
    import shutil

    from client.kubeconfig import write_kubeconfig

    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed on this machine")
    kubeconfig = tmp_path / "kubectl.kubeconfig"
    write_kubeconfig(kubeconfig, server=apiserver.url, ca_pem=apiserver.ca.read_bytes(), token=apiserver.admin_token)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "-n", namespace, *args],
                              capture_output=True, text=True, timeout=60)
    return run


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """A whole cluster (own etcd, apiserver, controller-manager, scheduler, two kubelets), started once
    for the end-to-end tests that ask for it."""
    from tests.cluster import Cluster

    c = Cluster(tmp_path_factory.mktemp("cluster"), nodes=2)
    c.controller_manager_flags += os.environ.get("MINIK8S_E2E_CM_FLAGS", "").split()
    try:
        c.start()
    except Exception:
        c.stop()
        raise
    yield c
    c.stop()
