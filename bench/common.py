"""What the benchmarks share: their own etcd and apiserver, a scratch directory, CPU time of a process.

Imported as `bench.common` by scripts that have put the repository root first on sys.path.

`ControlPlane(directory).start()` runs etcd and `minik8s apiserver` (HTTPS with a CA made here, bearer
tokens for every component identity) on free loopback ports, as tests/conftest.py does, and returns once
`/readyz` answers; `stop()` ends both. Both run in their own sessions, so a Ctrl-C in the terminal
reaches only the benchmark, which then stops them in order.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx

from apiserver.pki import ensure_pki, ensure_tokens, node_identities, node_identity
from cli.etcd import EtcdProcess, free_port
from client.kubeconfig import Config, write_kubeconfig

ROOT = Path(__file__).resolve().parent.parent


class ControlPlane:
    """etcd + apiserver as child processes keeping their data, certificates and logs in `directory`."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.etcd: EtcdProcess | None = None
        self.apiserver: subprocess.Popen | None = None
        self.port = 0
        self.url = ""
        self.ca = Path()
        self.tokens: dict[str, str] = {}

    @property
    def token(self) -> str:
        return self.tokens["admin"]

    @property
    def log(self) -> Path:
        return self.dir / "apiserver.log"

    def start(self, ready_timeout: float = 30) -> "ControlPlane":
        self.dir.mkdir(parents=True, exist_ok=True)
        self.etcd = EtcdProcess(self.dir / "etcd", free_port(), free_port(), log_path=self.dir / "etcd.log").start()
        pki = ensure_pki(self.dir / "pki")
        self.tokens = ensure_tokens(self.dir / "tokens.csv")
        self.ca = pki["ca"]
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "cli.main", "apiserver", "--etcd-servers", self.etcd.url,
               "--secure-port", str(self.port), "--bind-address", "127.0.0.1",
               "--tls-cert-file", str(pki["cert"]), "--tls-private-key-file", str(pki["key"]),
               "--token-auth-file", str(self.dir / "tokens.csv")]
        with open(self.log, "ab") as out:
            self.apiserver = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                              start_new_session=True)
        self._wait_ready(ready_timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        ctx = self.ssl_context()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.apiserver.poll() is not None:
                raise RuntimeError(f"apiserver exited with {self.apiserver.returncode}; log:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", context=ctx, timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"apiserver not ready in {timeout}s; log:\n{self.log_tail()}")

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def config(self, identity: str = "admin") -> Config:
        return Config(server=self.url, token=self.tokens[identity], ca_file=str(self.ca))

    def kubeconfig(self, identity: str) -> Path:
        """A kubeconfig file for `identity` (e.g. `system:kube-scheduler`), for a component process."""
        return write_kubeconfig(self.dir / f"{identity.replace(':', '-')}.kubeconfig", server=self.url,
                                ca_pem=self.ca.read_bytes(), token=self.tokens[identity], user=identity)

    def node_kubeconfig(self, node: str) -> Path:
        """A kubeconfig for the kubelet of `node` (its own identity, added to the token file the running
        apiserver re-reads)."""
        self.tokens = ensure_tokens(self.dir / "tokens.csv", node_identities([node]))
        return self.kubeconfig(node_identity(node))

    def http(self, identity: str = "admin", timeout: float = 60) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=self.ssl_context(), timeout=timeout,
                            headers={"Authorization": f"Bearer {self.tokens[identity]}"})

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        stop_process(self.apiserver)
        if self.etcd is not None:
            self.etcd.stop()


def stop_process(proc: subprocess.Popen | None, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if it is still running after `timeout` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def scratch_dir(prefix: str, *, keep: bool = False) -> Iterator[Path]:
    """A temporary directory, removed on the way out unless `keep` (then its path is printed)."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield directory
    finally:
        if keep:
            print(f"(kept {directory})")
        else:
            shutil.rmtree(directory, ignore_errors=True)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc): a cost other load cannot skew."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
