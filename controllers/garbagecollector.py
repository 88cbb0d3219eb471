"""Garbage collector: cascading deletion through `metadata.ownerReferences`, as Kubernetes does it.

The dependency graph is the informers' caches. Every kind that can be owned is watched (every kind in
the registry but Events and Namespaces); an index `byOwner` maps an owner's uid to the objects that
reference it, and `uids` maps each uid we have seen to its (resource, key). Work items are
`<group_resource>/<object key>` (e.g. `replicasets.apps/ns/web`, `nodes/n1`) and one `reconcile` per item
does, level-triggered, whichever of these applies:

- The item is being deleted with the `orphan` finalizer: remove its reference from every dependent,
  then remove the finalizer (the apiserver then deletes it).
- The item is being deleted with the `foregroundDeletion` finalizer: its dependents are queued (each
  one's own reconcile deletes it, see below); once no dependent that references it with
  `blockOwnerDeletion: true` is left, the finalizer is removed.
- Otherwise its owner references are classified, as Kubernetes' `attemptToDeleteItem` does:
  *solid* (the owner exists), *dangling* (it does not) and *waiting* (it exists but is being deleted in
  the foreground). An owner missing from the cache is looked up with a live GET before it counts as
  dangling, and an owner that exists under the same name with another uid is dangling too, so a cache
  lag never deletes anything. With a solid owner left, dangling and waiting references are removed from
  the item; without one, the item is deleted — in the foreground when a waiting owner has to wait for
  the item's own dependents, else with the policy its own finalizers ask for (default Background).
  Every delete carries a uid precondition, so a recreated object of the same name is never hit.

Owners of kinds the registry does not know are treated as solid: what cannot be verified is not
collected. Handlers queue an item when it appears, when its references or deletion state change, its
dependents when it is deleted, and owners waiting in the foreground when one of their dependents changes.
"""
from __future__ import annotations

import logging
from typing import Any

from api import registry
from api.errors import APIError
from api.registry import ResourceDef
from client.informer import Informer
from client.resources import object_key
from controllers.base import Controller

logger = logging.getLogger(__name__)

Obj = dict[str, Any]

ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"
BY_OWNER = "garbagecollector-byOwner"
SKIPPED_KINDS = {"Event", "Namespace"}


def owner_uids(obj: Obj) -> list[str]:
    return [r["uid"] for r in (obj.get("metadata") or {}).get("ownerReferences") or [] if r.get("uid")]


def finalizers(obj: Obj) -> list[str]:
    return list((obj.get("metadata") or {}).get("finalizers") or [])


def is_deleting(obj: Obj) -> bool:
    return bool(obj["metadata"].get("deletionTimestamp"))


def is_deleting_dependents(obj: Obj) -> bool:
    return is_deleting(obj) and FOREGROUND in finalizers(obj)


def _deletion_state(obj: Obj) -> tuple:
    meta = obj.get("metadata") or {}
    return (bool(meta.get("deletionTimestamp")), tuple(meta.get("finalizers") or ()),
            tuple((r.get("uid"), r.get("blockOwnerDeletion")) for r in meta.get("ownerReferences") or []))


class GarbageCollector(Controller):
    name = "garbagecollector"
    workers = 4

    def setup(self) -> None:
        self.informers: dict[str, tuple[ResourceDef, Informer]] = {}
        self.uids: dict[str, tuple[str, str]] = {}
        for rd in registry.RESOURCES:
            if rd.kind in SKIPPED_KINDS or "delete" not in rd.verbs or "watch" not in rd.verbs:
                continue
            inf = self.factory.informer(rd)
            inf.add_index(BY_OWNER, owner_uids)
            self.informers[rd.group_resource] = (rd, inf)
            inf.add_handler(on_add=lambda obj, gr=rd.group_resource: self._added(gr, obj),
                            on_update=lambda old, new, gr=rd.group_resource: self._updated(gr, old, new),
                            on_delete=lambda obj, gr=rd.group_resource: self._deleted(gr, obj))

    # -- graph -----------------------------------------------------------------------------------

    def _item(self, gr: str, obj: Obj) -> str:
        return f"{gr}/{object_key(obj)}"

    def _added(self, gr: str, obj: Obj) -> None:
        self.uids[obj["metadata"].get("uid")] = (gr, object_key(obj))
        self.queue.add(self._item(gr, obj))
        self._poke_waiting_owners(obj)

    def _updated(self, gr: str, old: Obj, new: Obj) -> None:
        self.uids[new["metadata"].get("uid")] = (gr, object_key(new))
        if old is new or _deletion_state(old) != _deletion_state(new):
            self.queue.add(self._item(gr, new))
            self._poke_waiting_owners(old)
            self._poke_waiting_owners(new)

    def _deleted(self, gr: str, obj: Obj) -> None:
        uid = obj["metadata"].get("uid")
        if self.uids.get(uid) == (gr, object_key(obj)):
            del self.uids[uid]
        for dep_gr, dep in self.dependents(uid):
            self.queue.add(self._item(dep_gr, dep))
        self._poke_waiting_owners(obj)

    def _poke_waiting_owners(self, obj: Obj) -> None:
        """Owners deleting in the foreground re-check whether their blocking dependents are gone."""
        for uid in owner_uids(obj):
            owner = self.cached_by_uid(uid)
            if owner is not None and is_deleting_dependents(owner[1]):
                self.queue.add(self._item(owner[0], owner[1]))

    def cached_by_uid(self, uid: str) -> tuple[str, Obj] | None:
        where = self.uids.get(uid)
        if where is None:
            return None
        obj = self.informers[where[0]][1].store.get(where[1])
        if obj is None or obj["metadata"].get("uid") != uid:
            return None
        return where[0], obj

    def dependents(self, uid: str) -> list[tuple[str, Obj]]:
        return [(gr, dep) for gr, (_, inf) in self.informers.items() for dep in inf.store.by_index(BY_OWNER, uid)]

    # -- reconcile -------------------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        gr, _, obj_key = key.partition("/")
        if gr not in self.informers:
            return
        rd, inf = self.informers[gr]
        obj = inf.store.get(obj_key)
        if obj is None:
            return
        if is_deleting(obj):
            if ORPHAN in finalizers(obj):
                await self._orphan_dependents(rd, obj)
            elif FOREGROUND in finalizers(obj):
                await self._delete_dependents_first(rd, obj)
            return
        if owner_uids(obj):
            await self._collect_if_unowned(rd, obj)

    async def _orphan_dependents(self, rd: ResourceDef, owner: Obj) -> None:
        uid = owner["metadata"]["uid"]
        for gr, dep in self.dependents(uid):
            await self._remove_references(self.informers[gr][0], dep, {uid})
        await self._remove_finalizer(rd, owner, ORPHAN)
        logger.info("orphaned the dependents of %s %s", rd.kind, object_key(owner))
        self.recorder.event(owner, "Normal", "OrphanedDependents", "Removed this owner from its dependents")

    async def _delete_dependents_first(self, rd: ResourceDef, owner: Obj) -> None:
        uid = owner["metadata"]["uid"]
        blocking = []
        for gr, dep in self.dependents(uid):
            ref = next((r for r in dep["metadata"].get("ownerReferences") or [] if r.get("uid") == uid), {})
            if ref.get("blockOwnerDeletion"):
                blocking.append(dep)
            if not is_deleting_dependents(dep):
                self.queue.add(self._item(gr, dep))
        if blocking:
            logger.debug("%s %s waits for %d dependents", rd.kind, object_key(owner), len(blocking))
            return
        await self._remove_finalizer(rd, owner, FOREGROUND)
        logger.info("%s %s: dependents gone, foreground deletion finishes", rd.kind, object_key(owner))

    async def _collect_if_unowned(self, rd: ResourceDef, obj: Obj) -> None:
        solid, dangling, waiting = [], [], []
        for ref in obj["metadata"].get("ownerReferences") or []:
            state = await self._owner_state(obj, ref)
            {"solid": solid, "dangling": dangling, "waiting": waiting}[state].append(ref)
        if solid:
            stale = {r["uid"] for r in dangling + waiting}
            if stale:
                await self._remove_references(rd, obj, stale)
            return
        own_dependents = self.dependents(obj["metadata"]["uid"])
        if waiting and own_dependents:
            # The waiting owner must also wait for our dependents: delete ourselves in the foreground.
            policy = "Foreground"
        elif ORPHAN in finalizers(obj):
            policy = "Orphan"
        elif FOREGROUND in finalizers(obj):
            policy = "Foreground"
        else:
            policy = "Background"
        await self._delete(rd, obj, policy)

    async def _owner_state(self, obj: Obj, ref: Obj) -> str:
        cached = self.cached_by_uid(ref.get("uid", ""))
        if cached is not None:
            return "waiting" if is_deleting_dependents(cached[1]) else "solid"
        owner_rd = registry.by_kind(ref.get("apiVersion", ""), ref.get("kind", ""))
        if owner_rd is None:
            logger.debug("owner kind %s/%s of %s is unknown; keeping it", ref.get("apiVersion"), ref.get("kind"),
                         object_key(obj))
            return "solid"
        namespace = obj["metadata"].get("namespace") if owner_rd.namespaced else None
        if owner_rd.namespaced and not namespace:
            return "dangling"  # a cluster-scoped object cannot be owned by a namespaced one
        live = await self.client.get_or_none(owner_rd, ref.get("name", ""), namespace)
        if live is None or live["metadata"].get("uid") != ref.get("uid"):
            return "dangling"
        return "waiting" if is_deleting_dependents(live) else "solid"

    # -- writes ----------------------------------------------------------------------------------

    async def _delete(self, rd: ResourceDef, obj: Obj, policy: str) -> None:
        meta = obj["metadata"]
        try:
            await self.client.delete(rd, meta["name"], meta.get("namespace"), propagation_policy=policy,
                                     preconditions={"uid": meta["uid"]})
        except APIError as e:
            if e.code in (404, 409):  # gone already, or replaced by a new object of the same name
                return
            raise
        logger.info("deleted %s %s (%s): all of its owners are gone", rd.kind, object_key(obj), policy)
        self.recorder.event(obj, "Normal", "GarbageCollected",
                            f"Deleted {rd.kind} {meta['name']} ({policy}): its owners are gone")

    async def _remove_references(self, rd: ResourceDef, obj: Obj, uids: set[str]) -> None:
        meta = obj["metadata"]

        async def attempt() -> None:
            live = await self.client.get_or_none(rd, meta["name"], meta.get("namespace"))
            if live is None or live["metadata"].get("uid") != meta.get("uid"):
                return
            refs = live["metadata"].get("ownerReferences") or []
            kept = [r for r in refs if r.get("uid") not in uids]
            if len(kept) == len(refs):
                return
            patch = {"metadata": {"ownerReferences": kept or None, "uid": meta["uid"],
                                  "resourceVersion": live["metadata"]["resourceVersion"]}}
            await self.client.patch(rd, meta["name"], patch, meta.get("namespace"))
            logger.info("removed owner references %s from %s %s", sorted(uids), rd.kind, object_key(obj))
        await self._ignore_not_found(self.client.retry_on_conflict(attempt))

    async def _remove_finalizer(self, rd: ResourceDef, obj: Obj, finalizer: str) -> None:
        meta = obj["metadata"]

        async def attempt() -> None:
            live = await self.client.get_or_none(rd, meta["name"], meta.get("namespace"))
            if live is None or live["metadata"].get("uid") != meta.get("uid") or finalizer not in finalizers(live):
                return
            kept = [f for f in finalizers(live) if f != finalizer]
            patch = {"metadata": {"finalizers": kept or None, "resourceVersion": live["metadata"]["resourceVersion"]}}
            await self.client.patch(rd, meta["name"], patch, meta.get("namespace"))
        await self._ignore_not_found(self.client.retry_on_conflict(attempt))

    @staticmethod
    async def _ignore_not_found(coro) -> None:
        try:
            await coro
        except APIError as e:
            if e.code != 404:
                raise

