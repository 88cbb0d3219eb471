"""IPVS mode end to end, on a kernel that has IP_VS.

This host's kernel has no IP_VS, so the checks (`ipvs_guest.py`) run inside a qemu VM booting Debian's
own kernel (`deploy/qemu/ipvs_vm.py`: image built once and cached, ~10 s per boot, no network device).
On a host whose kernel has IPVS the same checks run directly, in a scratch network namespace.
Skipped, with the reason, only when neither is possible.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUEST = Path(__file__).with_name("ipvs_guest.py")
sys.path.insert(0, str(ROOT / "deploy/qemu"))

import ipvs_vm  # noqa: E402


def host_has_ipvs() -> bool:
    if Path("/proc/net/ip_vs").exists():
        return True
    try:
        subprocess.run(["modprobe", "-q", "ip_vs"], capture_output=True)
    except FileNotFoundError:
        return False
    return Path("/proc/net/ip_vs").exists()


def result_of(output: str) -> dict:
    found = re.search(r"IPVS-RESULT (\{.*\})", output)
    assert found, output[-3000:]
    return json.loads(found.group(1))


@pytest.mark.timeout(300)
def test_ipvs_virtual_services_carry_real_connections():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if host_has_ipvs():
        ns = f"kpipvs-{os.urandom(3).hex()}"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        try:
            subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
            p = subprocess.run(["ip", "netns", "exec", ns, sys.executable, str(GUEST)], capture_output=True,
                               text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
            code, output = p.returncode, p.stdout + p.stderr
        finally:
            subprocess.run(["ip", "netns", "del", ns])
    else:
        import pyroute2
        try:
            code, output = ipvs_vm.run(GUEST.read_text(), {"kubeproxy": ROOT / "kubeproxy",
                                                           "pyroute2": Path(pyroute2.__file__).parent})
        except ipvs_vm.Unavailable as e:
            pytest.skip(f"no kernel with IP_VS here and no VM: {e}")
    result = result_of(output)
    assert code == 0, f"guest checks failed: {json.dumps(result, indent=1)}\n{output[-2000:]}"
    assert set(result["web"]) == {"s1", "s2"} and len(set(result["sticky"])) == 1
    assert result["empty"][0].startswith("error ConnectionRefusedError")
