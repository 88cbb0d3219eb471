"""Applies iptables renderings: one `iptables-restore --noflush` per sync.

The backend remembers the last ruleset it loaded. A partial sync hands that to `restore_input`, which
writes the dispatch chains and only the per-service chains that differ; a full sync (the first one,
the periodic one, and the one after any failure) reads the kernel's tables (`iptables-save`), rewrites
all our chains, deletes leftovers (e.g. chains of services deleted while the proxy was down), and and
inserts, in the same restore, whichever jumps from the built-in chains the save showed missing — never one
twice.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from . import iptables
from .model import NodeContext, ServicePort
from .runner import CommandError, Runner, run

logger = logging.getLogger(__name__)

JUMP_COMMENT = "minik8s service portals"


class IptablesBackend:
    mode = "iptables"

    def __init__(self, *, runner: Runner = run, wait: str = "5") -> None:
        self.run = runner
        self.wait = ["-w", wait]
        self.applied: iptables.Ruleset | None = None
        self.last_input = ""
        self.last_apply_seconds = 0.0

    def save(self) -> dict[str, str]:
        return {t: self.run(["iptables-save", "-t", t]) for t in ("filter", "nat")}

    @staticmethod
    def _jump_rule(extra: str, target: str) -> list[str]:
        return [*extra.split(), "-m", "comment", "--comment", JUMP_COMMENT, "-j", target]

    @staticmethod
    def missing_jumps(saved: dict[str, str], jumps=iptables.JUMPS) -> dict[str, list[str]]:
        """Per table, the restore lines inserting the built-in chains' jumps that `saved` (iptables-save
        output) lacks. Reading the save we made anyway avoids one `iptables -C` per jump, each of which
        lists the whole table, and putting them in the same restore avoids a process per jump."""
        out: dict[str, list[str]] = {}
        for table, chain, target, extra in jumps:
            rule = f'{extra + " " if extra else ""}-m comment --comment "{JUMP_COMMENT}" -j {target}'
            if f"-A {chain} {rule}" not in saved[table].splitlines():
                out.setdefault(table, []).append(f"-I {chain} 1 {rule}")
        return out

    @staticmethod
    def with_lines(text: str, lines: dict[str, list[str]]) -> str:
        """`text` with `lines[table]` added at the end of that table's section (before its COMMIT)."""
        out, table = [], None
        for line in text.splitlines():
            if line.startswith("*"):
                table = line[1:]
            if line == "COMMIT" and table in lines:
                out += lines.pop(table)
            out.append(line)
        for table, extra in lines.items():   # a table the rendering did not touch this time
            out += [f"*{table}", *extra, "COMMIT"]
        return "\n".join(out) + "\n"

    def _check(self, table: str, chain: str, rule: list[str]) -> bool:
        try:
            self.run(["iptables", *self.wait, "-t", table, "-C", chain, *rule])
            return True
        except CommandError:
            return False

    def sync(self, services: Sequence[ServicePort], ctx: NodeContext, *, full: bool = False) -> None:
        new = iptables.render(services, ctx)
        old, existing, saved = self.applied, None, None
        if full or old is None:
            saved = self.save()
            old, existing = None, {t: iptables.chains_in_save(text) for t, text in saved.items()}
        text = iptables.restore_input(new, old, existing)
        if saved is not None:
            text = self.with_lines(text, self.missing_jumps(saved))
        self.applied = None
        self.last_input = text
        started = time.perf_counter()
        self.run(["iptables-restore", *self.wait, "--noflush"], input=text)
        self.last_apply_seconds = time.perf_counter() - started
        self.applied = new
        logger.debug("iptables: %s sync loaded %d lines", "full" if old is None else "partial", text.count("\n"))

    def cleanup(self, jumps=iptables.JUMPS, extra_chains: tuple[str, ...] = ()) -> None:
        """Remove every jump and chain of ours (`minik8s proxy --cleanup`, tests)."""
        for table, chain, target, extra in jumps:
            rule = self._jump_rule(extra, target)
            while self._check(table, chain, rule):
                self.run(["iptables", *self.wait, "-t", table, "-D", chain, *rule])
        existing = {t: iptables.chains_in_save(text) for t, text in self.save().items()}
        lines = []
        for table in ("filter", "nat"):
            ours = sorted(c for c in existing[table] if c in iptables.FIXED[table] or c in extra_chains
                          or c.startswith(iptables.SERVICE_PREFIXES))
            lines += [f"*{table}"] + [f":{c} - [0:0]" for c in ours] + [f"-X {c}" for c in ours] + ["COMMIT"]
        self.run(["iptables-restore", *self.wait, "--noflush"], input="\n".join(lines) + "\n")
        self.applied = None
