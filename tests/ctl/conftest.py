"""Running the real `minik8s ctl` as a subprocess against a real apiserver (tests/conftest.py's fixtures)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from client.kubeconfig import write_kubeconfig

ROOT = Path(__file__).resolve().parents[2]


def ctl_command(kubeconfig: str, namespace: str | None, *args: str) -> list[str]:
    ns = ["-n", namespace] if namespace else []
    return [sys.executable, "-m", "cli.main", "ctl", "--kubeconfig", kubeconfig, *ns, *args]


class Ctl:
    """`ctl("get", "pods")` runs the command in the test's namespace and returns the CompletedProcess."""

    def __init__(self, kubeconfig: str, namespace: str | None):
        self.kubeconfig, self.namespace = kubeconfig, namespace

    def __call__(self, *args: str, input: str | None = None, namespace: str | None = "") -> subprocess.CompletedProcess:
        ns = self.namespace if namespace == "" else namespace
        return subprocess.run(ctl_command(self.kubeconfig, ns, *args), input=input, capture_output=True, text=True,
                              timeout=90, cwd=ROOT)

    def spawn(self, *args: str) -> subprocess.Popen:
        """A long-running command (a watch, a wait); the caller reads its stdout line by line."""
        return subprocess.Popen(ctl_command(self.kubeconfig, self.namespace, *args), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=ROOT, bufsize=1)


@pytest.fixture(scope="module")
def kubeconfig(apiserver, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("ctl") / "admin.kubeconfig"
    write_kubeconfig(path, server=apiserver.url, ca_pem=apiserver.ca.read_bytes(), token=apiserver.admin_token)
    return str(path)


@pytest.fixture
def ctl(kubeconfig, namespace) -> Ctl:
    return Ctl(kubeconfig, namespace)
