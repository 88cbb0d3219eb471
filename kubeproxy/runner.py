"""Running the netfilter tools: one subprocess per call, input on stdin, failures as exceptions.

Every rule write of the proxy goes through `run` so a backend can be tested with a fake that records
commands, and so a failed `iptables-restore`/`nft -f` surfaces with the tool's own message (the sync
then retries with a full rebuild).
"""
from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable, Sequence

logger = logging.getLogger(__name__)

Runner = Callable[..., str]


class CommandError(RuntimeError):
    def __init__(self, cmd: Sequence[str], code: int, stderr: str) -> None:
        super().__init__(f"{' '.join(cmd)} exited with {code}: {stderr.strip()[:2000]}")
        self.cmd, self.code, self.stderr = list(cmd), code, stderr


def run(cmd: Sequence[str], input: str | None = None, *, check: bool = True, timeout: float = 300) -> str:
    proc = subprocess.run(list(cmd), input=input, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise CommandError(cmd, proc.returncode, proc.stderr)
    return proc.stdout


def sysctl(name: str, value: str) -> None:
    """Write /proc/sys directly: no dependency on procps, and it fails loudly when the key is absent."""
    path = "/proc/sys/" + name.replace(".", "/")
    with open(path, "w") as f:
        f.write(value)
