"""Applies nftables renderings: one `nft -f` transaction per sync, usually a small diff.

The backend keeps the last state it loaded and the service ports it came from. Each sync derives the
new desired state from that one by swapping the fragments of the ports that changed
(`nftables.update`, equal to a full `render` but cheap at 10,000 services) and sends only the
difference. There is no periodic full reload — at 10,000 services a rebuild costs
seconds while a diff of an unchanged cluster is empty; the table is rebuilt from scratch only when the
kernel's content is unknown: at start, or after a failed `nft -f` (which left nothing changed, the
transaction being atomic, but we stop trusting our picture of it).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from . import nftables
from .model import NodeContext, ServicePort
from .runner import Runner, run

logger = logging.getLogger(__name__)


class NftablesBackend:
    mode = "nftables"

    def __init__(self, *, runner: Runner = run) -> None:
        self.run = runner
        self.applied: nftables.State | None = None
        self._applied_from: tuple[tuple[ServicePort, ...], NodeContext] | None = None
        self.last_input = ""
        self.last_apply_seconds = 0.0

    def sync(self, services: Sequence[ServicePort], ctx: NodeContext, *, full: bool = False) -> None:
        old = self.applied
        if old is not None and self._applied_from is not None and self._applied_from[1] == ctx:
            new = nftables.update(old, self._applied_from[0], services, ctx)
        else:
            new = nftables.render(services, ctx)
        text = nftables.script(new, old, ctx)
        self.last_input = text
        if not text:
            self._applied_from = (tuple(services), ctx)
            return
        self.applied = self._applied_from = None
        started = time.perf_counter()
        self.run(["nft", "-f", "-"], input=text)
        self.last_apply_seconds = time.perf_counter() - started
        self.applied, self._applied_from = new, (tuple(services), ctx)
        logger.debug("nftables: %s sync, %d statements", "full" if old is None else "partial", text.count("\n"))

    def cleanup(self) -> None:
        self.run(["nft", "-f", "-"], input=f"add table {nftables.TABLE}\ndelete table {nftables.TABLE}\n")
        self.applied = None
