"""The ConfigMaps and Secrets this node's pods read, each watched on its own.

A kubelet must not read every Secret of the cluster: the apiserver's node authorizer lets it read only
objects that a pod bound to its node names, and only one by one. So, like Kubernetes' watch-based
secret and configmap managers, this keeps one small informer per referenced object (a list and watch
in its namespace with `fieldSelector=metadata.name=<name>`), reference-counted by the pods that name it:
the first pod to name an object starts its informer, the last one to go stops it. A change to a watched
object calls `on_change(kind, obj)` (the kubelet then syncs the pods that read it: environment retries,
volume contents).

`get` answers from the object's informer once it has listed; if the informer cannot list (not yet
allowed, say) within a few seconds it falls back to a plain GET, whose error then reaches the pod sync.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from api.errors import APIError
from api.podrefs import referenced_objects
from client.informer import Informer
from client.rest import AsyncClient, is_not_found

logger = logging.getLogger(__name__)

Obj = dict[str, Any]
Key = tuple[str, str, str]  # (plural, namespace, name)

KINDS = ("configmaps", "secrets")
SYNC_TIMEOUT = 5.0


def wanted_objects(pod: Obj) -> set[Key]:
    ns = (pod.get("metadata") or {}).get("namespace") or "default"
    return {(kind, ns, name) for kind, name in referenced_objects(pod) if kind in KINDS}


class ObjectWatches:
    def __init__(self, client: AsyncClient, on_change: Callable[[str, Obj], None]) -> None:
        self.client = client
        self.on_change = on_change
        self._informers: dict[Key, Informer] = {}
        self._tasks: dict[Key, asyncio.Task[None]] = {}
        self._users: dict[Key, set[str]] = {}
        self._by_pod: dict[str, set[Key]] = {}

    def __len__(self) -> int:
        return len(self._informers)

    def track(self, pod: Obj) -> None:
        """Watch what `pod` names now; let go of what it no longer names."""
        uid = (pod.get("metadata") or {}).get("uid")
        if not uid:
            return
        wanted, had = wanted_objects(pod), self._by_pod.get(uid, set())
        for key in wanted - had:
            self._users.setdefault(key, set()).add(uid)
            if key not in self._informers:
                self._start(key)
        for key in had - wanted:
            self._release(key, uid)
        self._by_pod[uid] = wanted

    def forget(self, uid: str) -> None:
        for key in self._by_pod.pop(uid, set()):
            self._release(key, uid)

    async def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        informer = self._informers.get((kind, namespace, name))
        if informer is not None:
            try:
                await informer.wait_for_sync(SYNC_TIMEOUT)
                return informer.store.get(f"{namespace}/{name}")
            except asyncio.TimeoutError:
                logger.info("%s %s/%s: its watch has not listed yet; reading it directly", kind, namespace, name)
        try:
            return await self.client.get(kind, name, namespace)
        except APIError as e:
            if is_not_found(e):
                return None
            raise

    async def stop(self) -> None:
        for informer in self._informers.values():
            informer.stop()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._informers.clear()
        self._tasks.clear()

    def _start(self, key: Key) -> None:
        kind, namespace, name = key
        informer = Informer(self.client, kind, namespace, field_selector=f"metadata.name={name}")
        informer.add_handler(on_add=lambda obj: self.on_change(kind, obj),
                             on_update=lambda old, new: self.on_change(kind, new),
                             on_delete=lambda obj: self.on_change(kind, obj))
        self._informers[key] = informer
        self._tasks[key] = asyncio.create_task(informer.run(), name=f"watch-{kind}-{namespace}-{name}")
        logger.debug("watching %s %s/%s (%d objects watched)", kind, namespace, name, len(self._informers))

    def _release(self, key: Key, uid: str) -> None:
        users = self._users.get(key)
        if users is None:
            return
        users.discard(uid)
        if users:
            return
        del self._users[key]
        informer = self._informers.pop(key, None)
        self._tasks.pop(key, None)
        if informer is not None:
            informer.stop()
