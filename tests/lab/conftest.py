"""The multi-node lab as a pytest fixture: real nodes (network namespaces with their own dockerd), a real
control plane, real kubelets, pod network backend and (once it exists) kube-proxy.

    def test_x(lab):                       # Lab with 2 nodes, host-gw, kube-proxy in iptables mode
        with lab.http() as http: ...       # admin client for the lab's apiserver
        lab.pod_exec(pod, "c", ["wget", ...]); lab.exec("node1", ["ip", "route"])

Options are module attributes:

    LAB_OPTIONS = {"nodes": 3}                                         # fixed options of this module
    LAB_MATRIX = {"proxy_mode": ["iptables", "nftables", "ipvs"],      # every test runs once per
                  "network_backend": ["host-gw", "vxlan"]}             # combination (one lab each)

A matrix entry with proxy mode ipvs is skipped, with the reason, where the kernel has no IPVS; a test can
also parametrize `lab` indirectly with a dict of options itself. Building a lab takes
~8 s, so labs are pooled for the session: the same options give the same lab, and only one lab lives
at a time (asking for other options tears the previous one down). Every lab is torn down at the end of
the session, and teardown is checked: anything left behind fails the session loudly.
"""
from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lab import Lab, ipvs_available

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS: dict[str, Any] = {"nodes": 2, "network_backend": "host-gw", "proxy_mode": "iptables"}


def pytest_generate_tests(metafunc) -> None:
    matrix: dict[str, list] = getattr(metafunc.module, "LAB_MATRIX", None) or {}
    if not matrix or "lab" not in metafunc.fixturenames:
        return
    params = []
    for combo in itertools.product(*matrix.values()):
        options = dict(zip(matrix, combo))
        marks = []
        if options.get("proxy_mode") == "ipvs" and not ipvs_available():
            marks.append(pytest.mark.skip(reason="this kernel has no IPVS (CONFIG_IP_VS): ipvs mode is "
                                                 "unit-tested only"))
        params.append(pytest.param(options, id="-".join(map(str, combo)), marks=marks))
    metafunc.parametrize("lab", params, indirect=True, scope="module")


def _missing_requirements() -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root"
    for tool in ("nsenter", "dockerd", "docker", "etcd", "ip", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if subprocess.run(["docker", "image", "inspect", "minik8s/pause:3.9"], capture_output=True).returncode != 0:
        return "the host dockerd has no minik8s/pause:3.9 (run `make images`)"
    return None


class LabPool:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.current: tuple[tuple, Lab] | None = None

    def get(self, **options: Any) -> Lab:
        key = tuple(sorted({**DEFAULTS, **options}.items()))
        if self.current and self.current[0] == key and self.current[1].state is not None:
            return self.current[1]
        self.close()
        lab = Lab(self.base / f"lab{len(list(self.base.iterdir()))}", **dict(key))
        lab.up()
        self.current = (key, lab)
        return lab

    def close(self) -> None:
        if self.current is None:
            return
        lab = self.current[1]
        self.current = None
        if lab.state is None:
            return
        lab.down()
        left = lab.leftovers()
        assert not left, f"lab {lab.name} left behind: {left}"


@pytest.fixture(scope="session")
def lab_pool(tmp_path_factory):
    problem = _missing_requirements()
    if problem:
        pytest.skip(problem)
    pool = LabPool(tmp_path_factory.mktemp("labs"))
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def lab(request, lab_pool) -> Lab:
    options = dict(getattr(request.module, "LAB_OPTIONS", {}))
    options.update(getattr(request, "param", None) or {})
    return lab_pool.get(**options)
