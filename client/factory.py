"""Shared informers: one list+watch per resource, however many controllers read it.

Controllers ask the factory for an informer by resource (and optional namespace/selectors); the same
request returns the same informer. `start()` runs every informer made so far, `wait_for_sync()` waits
until all have delivered their first list — controllers start their workers only after that, so they
never act on a half-filled cache (an empty cache would look like "no pods" and cause wrong deletes).
"""
from __future__ import annotations

import asyncio
import logging

from client.informer import Informer
from client.resources import ResourceLike, resolve
from client.rest import AsyncClient

logger = logging.getLogger(__name__)


class InformerFactory:
    def __init__(self, client: AsyncClient, resync_seconds: float | None = None):
        self.client = client
        self.resync_seconds = resync_seconds
        self._informers: dict[tuple, Informer] = {}
        self._tasks: dict[tuple, asyncio.Task] = {}

    def informer(self, res: ResourceLike, namespace: str | None = None, label_selector: str | None = None,
                 field_selector: str | None = None) -> Informer:
        rd = resolve(res)
        key = (rd.group, rd.plural, namespace, label_selector, field_selector)
        inf = self._informers.get(key)
        if inf is None:
            inf = self._informers[key] = Informer(self.client, rd, namespace, label_selector, field_selector,
                                                  self.resync_seconds)
        return inf

    def start(self) -> None:
        for key, inf in self._informers.items():
            if key not in self._tasks:
                self._tasks[key] = asyncio.create_task(inf.run(), name=f"informer-{key[1]}")

    async def wait_for_sync(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(asyncio.gather(*(i.has_synced.wait() for i in self._informers.values())), timeout)

    async def stop(self) -> None:
        for inf in self._informers.values():
            inf.stop()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()
