"""Namespace deletion: empty a Terminating namespace, then release it through `/finalize`.

Deleting a Namespace only marks it (deletionTimestamp, phase Terminating); the apiserver keeps it while
`spec.finalizers` holds `kubernetes`. For such a namespace one pass of `reconcile`:

1. issues a delete-collection for every namespaced kind the registry serves (pods go gracefully, so
   their kubelets stop them first), noting the kinds whose deletion failed;
2. lists each kind again and counts what remains, and which finalizers those objects still carry;
3. writes the status conditions Kubernetes' namespace deleter keeps (`NamespaceDeletionDiscoveryFailure`,
   `NamespaceDeletionGroupVersionParsingFailure`, `NamespaceDeletionContentFailure`,
   `NamespaceContentRemaining`, `NamespaceFinalizersRemaining`; `False` with an "ok" reason when fine),
   only when they changed;
4. if nothing remains, removes `kubernetes` from `spec.finalizers` through `PUT .../finalize` and the
   apiserver deletes the namespace; otherwise it looks again after a delay that doubles per pass (up to
   `MAX_RETRY`), and at once when a pod of the namespace disappears.

Lists are live reads, not caches: "nothing remains" must not be a stale answer.
"""
from __future__ import annotations

import logging
from typing import Any

from api import registry
from api.errors import APIError
from client.resources import path
from client.rest import is_conflict
from controllers.base import Controller
from controllers.common import now_rfc3339

logger = logging.getLogger(__name__)

Obj = dict[str, Any]

FINALIZER = "kubernetes"
FIRST_RETRY = 0.5
MAX_RETRY = 15.0

CONDITION_TYPES = ("NamespaceDeletionDiscoveryFailure", "NamespaceDeletionGroupVersionParsingFailure",
                   "NamespaceDeletionContentFailure", "NamespaceContentRemaining", "NamespaceFinalizersRemaining")
OK = {
    "NamespaceDeletionDiscoveryFailure": ("ResourcesDiscovered", "All resources successfully discovered"),
    "NamespaceDeletionGroupVersionParsingFailure": ("ParsedGroupVersions",
                                                    "All legacy kube types successfully parsed"),
    "NamespaceDeletionContentFailure": ("ContentDeleted",
                                        "All content successfully deleted, may be waiting on finalization"),
    "NamespaceContentRemaining": ("ContentRemoved", "All content successfully removed"),
    "NamespaceFinalizersRemaining": ("ContentRemoved", "All content successfully removed"),
}


def namespaced_kinds() -> list:
    return [rd for rd in registry.RESOURCES if rd.namespaced and "deletecollection" in rd.verbs]


def deletion_conditions(failures: list[str], remaining: dict[str, int], finalizers: dict[str, int]) -> dict[str, Obj]:
    """The problem conditions of one pass (types without a problem are absent)."""
    out: dict[str, Obj] = {}
    if failures:
        out["NamespaceDeletionContentFailure"] = {
            "reason": "ContentDeletionFailed",
            "message": f"Failed to delete all resource types, {len(failures)} remaining: {', '.join(sorted(failures))}"}
    if remaining:
        what = ", ".join(sorted(f"{gr} has {n} resource instances" for gr, n in remaining.items()))
        out["NamespaceContentRemaining"] = {"reason": "SomeResourcesRemain",
                                            "message": f"Some resources are remaining: {what}"}
    if finalizers:
        what = ", ".join(sorted(f"{f} in {n} resource instances" for f, n in finalizers.items()))
        out["NamespaceFinalizersRemaining"] = {"reason": "SomeFinalizerRemain",
                                               "message": f"Some finalizers are remaining: {what}"}
    return out


def merge_conditions(current: list[Obj], problems: dict[str, Obj], now: str) -> list[Obj]:
    """`current` with every deleter condition set from `problems` (True) or to its ok variant (False);
    lastTransitionTime moves only when a status flips."""
    by_type = {c.get("type"): c for c in current}
    out = [c for c in current if c.get("type") not in CONDITION_TYPES]
    for ctype in CONDITION_TYPES:
        if ctype in problems:
            want = {"type": ctype, "status": "True", **problems[ctype]}
        else:
            reason, message = OK[ctype]
            want = {"type": ctype, "status": "False", "reason": reason, "message": message}
        old = by_type.get(ctype)
        same_status = old is not None and old.get("status") == want["status"]
        want["lastTransitionTime"] = old.get("lastTransitionTime", now) if same_status else now
        out.append(want)
    return out


class NamespaceController(Controller):
    name = "namespace"
    workers = 2

    def setup(self) -> None:
        self.namespaces = self.factory.informer("namespaces")
        self.namespaces.add_handler(**self.enqueue_handlers())
        self.pods = self.factory.informer("pods")
        self.pods.add_handler(on_delete=self._pod_gone)
        self._passes: dict[str, int] = {}

    def _pod_gone(self, pod: Obj) -> None:
        ns = self.namespaces.store.get(pod["metadata"].get("namespace", ""))
        if ns is not None and ns["metadata"].get("deletionTimestamp"):
            self.queue.add(ns["metadata"]["name"])

    async def reconcile(self, key: str) -> None:
        ns = self.namespaces.store.get(key)
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            self._passes.pop(key, None)
            return
        if FINALIZER not in ((ns.get("spec") or {}).get("finalizers") or []):
            return
        failures, remaining, finalizers = await self._delete_content(key)
        try:
            ns = await self._write_conditions(ns, deletion_conditions(failures, remaining, finalizers))
        except APIError as e:
            if not is_conflict(e):
                raise
            self.queue.add_after(key, FIRST_RETRY)  # changed meanwhile: redo the pass on the fresh object
            return
        if ns is None:
            return
        if failures or remaining:
            passes = self._passes.get(key, 0)
            self._passes[key] = passes + 1
            self.queue.add_after(key, min(FIRST_RETRY * 2 ** passes, MAX_RETRY))
            logger.info("namespace %s: content remains (%s)%s", key,
                        ", ".join(f"{k}: {v}" for k, v in sorted(remaining.items())) or "none listed",
                        f"; failed kinds: {', '.join(failures)}" if failures else "")
            return
        await self._finalize(ns)
        self._passes.pop(key, None)

    async def _delete_content(self, namespace: str) -> tuple[list[str], dict[str, int], dict[str, int]]:
        failures: list[str] = []
        remaining: dict[str, int] = {}
        finalizers: dict[str, int] = {}
        for rd in namespaced_kinds():
            try:
                await self.client.delete_collection(rd, namespace, propagation_policy="Background")
                items = (await self.client.list(rd, namespace)).get("items") or []
            except APIError as e:
                if e.code == 404:
                    continue
                failures.append(f"{rd.group_resource}: {e.message}")
                continue
            if items:
                remaining[rd.group_resource] = len(items)
            for item in items:
                for f in item["metadata"].get("finalizers") or []:
                    finalizers[f] = finalizers.get(f, 0) + 1
        return failures, remaining, finalizers

    async def _write_conditions(self, ns: Obj, problems: dict[str, Obj]) -> Obj | None:
        status = ns.get("status") or {}
        current = status.get("conditions") or []
        wanted = merge_conditions(current, problems, now_rfc3339())
        if wanted == current:
            return ns
        name = ns["metadata"]["name"]
        patch = {"metadata": {"resourceVersion": ns["metadata"]["resourceVersion"]},
                 "status": {"conditions": wanted}}
        try:
            return await self.client.patch("namespaces", name, patch, subresource="status")
        except APIError as e:
            if e.code == 404:
                return None
            raise

    async def _finalize(self, ns: Obj) -> None:
        name = ns["metadata"]["name"]
        body = {"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name, "resourceVersion": ns["metadata"]["resourceVersion"]},
                "spec": {"finalizers": [f for f in ns["spec"]["finalizers"] if f != FINALIZER]}}
        try:
            await self.client.request("PUT", path(registry.lookup("", "v1", "namespaces"), None, name, "finalize"),
                                      json=body)
        except APIError as e:
            if e.code == 404:
                return
            raise
        logger.info("namespace %s is empty; released its %r finalizer", name, FINALIZER)
