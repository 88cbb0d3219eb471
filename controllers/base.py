"""The shape every controller shares: informer handlers enqueue keys, workers call `reconcile(key)`.

A controller subclass declares its informers in `setup()` (through the shared factory) and implements
`reconcile(key)`, which reads the caches, compares desired with observed state and writes the
difference. It is level-triggered: handlers never pass event types along, only keys. Errors are retried
with per-key backoff by the workqueue; success forgets the key.
"""
from __future__ import annotations

import logging
from typing import Any

from client.events import EventRecorder
from client.factory import InformerFactory
from client.resources import object_key
from client.rest import AsyncClient
from client.workqueue import WorkQueue, run_workers

logger = logging.getLogger(__name__)

Obj = dict[str, Any]


class Controller:
    name = "controller"
    workers = 2

    def __init__(self, client: AsyncClient, factory: InformerFactory, recorder: EventRecorder, **options: Any):
        self.client = client
        self.factory = factory
        self.recorder = recorder
        self.options = options
        self.queue = WorkQueue(self.name)
        self.setup()

    @classmethod
    def add_arguments(cls, group) -> None:
        """Command-line flags of this controller (an argparse group); parsed values arrive in `options`."""

    def setup(self) -> None:
        """Create informers and register handlers."""

    def enqueue(self, obj: Obj) -> None:
        self.queue.add(object_key(obj))

    def enqueue_handlers(self) -> dict:
        """Handlers that enqueue the object's own key on every change."""
        return {"on_add": self.enqueue, "on_update": lambda old, new: self.enqueue(new), "on_delete": self.enqueue}

    async def reconcile(self, key: str) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        logger.info("starting %s controller with %d workers", self.name, self.workers)
        try:
            await run_workers(self.queue, self.reconcile, self.workers)
        finally:
            self.queue.shut_down()
