"""The StatefulSet controller: pods with stable identities `<name>-<ordinal>` and storage per ordinal.

Identity: pod `web-2` is labelled `statefulset.kubernetes.io/pod-name=web-2` and
`apps.kubernetes.io/pod-index=2`, gets `hostname=web-2` and `subdomain=<serviceName>` (its stable DNS
name once cluster DNS serves the headless Service), and mounts one PersistentVolumeClaim per
volumeClaimTemplate named `<template>-web-2`. Claims are created before the pod and kept when the set
scales down (persistentVolumeClaimRetentionPolicy Retain, the default); with `whenScaled: Delete` the
claims of removed ordinals are deleted once their pod is gone, and with `whenDeleted: Delete` claims
are owned by the StatefulSet so the garbage collector removes them with it.

`reconcile(sts key)` follows Kubernetes' stateful_set_control:

1. Revisions (controllers/history.py): the update revision is the current template's; the current
   revision is `status.currentRevision` (what the set was last fully rolled out at). Pods carry the
   revision name in `controller-revision-hash`.
2. Ordinals below `replicas` that have no pod get one: from the update revision, except below a
   RollingUpdate `partition`, where the current revision's template is used. Failed or succeeded
   pods are deleted and recreated.
3. OrderedReady (the default) does one step at a time: ordinal i is created only when 0..i-1 are
   Running and Ready (and available for minReadySeconds), nothing proceeds while a pod is
   terminating, and scale-down deletes the highest ordinal first, waiting for it to be gone before
   the next. Parallel creates and deletes all at once.
4. RollingUpdate, once every pod is healthy: delete the highest-ordinal pod (down to `partition`) not
   at the update revision; step 2 recreates it from the new template; wait until it is healthy again.
   OnDelete: pods are only replaced when someone deletes them.
5. Status: replicas, readyReplicas, availableReplicas, currentReplicas, updatedReplicas,
   currentRevision, updateRevision, observedGeneration; when the rollout is complete the current
   revision becomes the update revision. Merge patch on /status, guarded by resourceVersion.
"""
from __future__ import annotations

import copy
import logging
import re
import time
from typing import Any, Callable

from api.errors import APIError
from api.selectors import selector_from_dict
from client.rest import is_already_exists, is_conflict, is_namespace_terminating, is_not_found
from controllers.base import Controller
from controllers.common import (claim, controller_ref, is_pod_available, is_pod_ready, merge_diff, new_controller_ref,
                                pod_from_template)
from controllers.history import (REVISION_HASH_LABEL, owned_revisions, revision_template, sync_revisions,
                                 truncate_history)

logger = logging.getLogger(__name__)

Obj = dict[str, Any]

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"


def ordinal_of(sts: Obj, pod: Obj) -> int | None:
    match = re.fullmatch(re.escape(sts["metadata"]["name"]) + r"-(0|[1-9][0-9]*)", pod["metadata"]["name"])
    return int(match.group(1)) if match else None


def claim_name(template: Obj, sts: Obj, ordinal: int) -> str:
    return f'{template["metadata"]["name"]}-{sts["metadata"]["name"]}-{ordinal}'


def is_terminating(pod: Obj) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def is_running_and_ready(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and is_pod_ready(pod)


def is_finished_pod(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded")


def revision_of(pod: Obj) -> str | None:
    return (pod["metadata"].get("labels") or {}).get(REVISION_HASH_LABEL)


def persistent_volume_claims(sts: Obj, ordinal: int) -> list[Obj]:
    """The claims ordinal `ordinal` mounts, built from the volumeClaimTemplates."""
    spec = sts.get("spec") or {}
    selector_labels = (spec.get("selector") or {}).get("matchLabels") or {}
    policy = spec.get("persistentVolumeClaimRetentionPolicy") or {}
    claims = []
    for template in spec.get("volumeClaimTemplates") or []:
        tmeta = template.get("metadata") or {}
        meta: Obj = {"name": claim_name(template, sts, ordinal), "namespace": sts["metadata"]["namespace"],
                     "labels": {**(tmeta.get("labels") or {}), **selector_labels}}
        if tmeta.get("annotations"):
            meta["annotations"] = dict(tmeta["annotations"])
        if policy.get("whenDeleted") == "Delete":
            meta["ownerReferences"] = [{**new_controller_ref(sts), "controller": False}]
        claims.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta,
                       "spec": copy.deepcopy(template.get("spec") or {})})
    return claims


def stateful_pod(sts: Obj, template: Obj, ordinal: int, revision_name: str) -> Obj:
    name = f'{sts["metadata"]["name"]}-{ordinal}'
    pod = pod_from_template(template, sts, name=name, extra_labels={
        POD_NAME_LABEL: name, POD_INDEX_LABEL: str(ordinal), REVISION_HASH_LABEL: revision_name})
    spec = pod["spec"]
    spec["hostname"] = name
    if sts["spec"].get("serviceName"):
        spec["subdomain"] = sts["spec"]["serviceName"]
    claims = {c["metadata"]["name"]: claim_name(c, sts, ordinal) for c in sts["spec"].get("volumeClaimTemplates") or []}
    if claims:
        volumes = [v for v in spec.get("volumes") or [] if v.get("name") not in claims]
        volumes += [{"name": vol, "persistentVolumeClaim": {"claimName": pvc}} for vol, pvc in claims.items()]
        spec["volumes"] = volumes
    return pod


class StatefulSetController(Controller):
    name = "statefulset"
    workers = 2

    def setup(self) -> None:
        self.clock: Callable[[], float] = self.options.get("clock") or time.time
        self.sets = self.factory.informer("statefulsets")
        self.pods = self.factory.informer("pods")
        self.claims = self.factory.informer("persistentvolumeclaims")
        self.revisions = self.factory.informer("controllerrevisions")
        self.pods.add_index("statefulset:namespace", lambda p: [p["metadata"].get("namespace") or ""])
        self.revisions.add_index("statefulset:namespace", lambda r: [r["metadata"].get("namespace") or ""])
        self.sets.add_handler(**self.enqueue_handlers())
        self.pods.add_handler(on_add=self._pod_changed, on_update=lambda old, new: self._pod_changed(new, old),
                              on_delete=self._pod_changed)

    def _pod_changed(self, pod: Obj, old: Obj | None = None) -> None:
        for p in (pod, old) if old is not None else (pod,):
            ref = controller_ref(p)
            if ref is not None and ref.get("kind") == "StatefulSet":
                self.queue.add(f'{p["metadata"].get("namespace")}/{ref.get("name")}')
            elif ref is None:
                labels = p["metadata"].get("labels") or {}
                for sts in self.sets.store.list():
                    if sts["metadata"].get("namespace") == p["metadata"].get("namespace") and \
                            selector_from_dict((sts.get("spec") or {}).get("selector")).matches(labels):
                        self.enqueue(sts)

    async def reconcile(self, key: str) -> None:
        sts = self.sets.store.get(key)
        if sts is None:
            return
        try:
            await self._sync(key, sts)
        except APIError as e:
            if is_conflict(e):
                logger.debug("statefulset %s: cache behind the apiserver (%s); waiting for the watch", key, e)
                return
            raise

    async def _sync(self, key: str, sts: Obj) -> None:
        ns = sts["metadata"]["namespace"]
        spec = sts["spec"]
        now = self.clock()
        pods = await claim(self.client, sts, selector_from_dict(spec.get("selector")),
                           self.pods.store.by_index("statefulset:namespace", ns))
        if sts["metadata"].get("deletionTimestamp"):
            return
        revisions = owned_revisions(self.revisions.store.by_index("statefulset:namespace", ns), sts)
        update_rev, _ = await sync_revisions(self.client, sts, revisions, resource="statefulsets")
        update_name = update_rev["metadata"]["name"]
        current_name = (sts.get("status") or {}).get("currentRevision")
        current_rev = next((r for r in revisions if r["metadata"]["name"] == current_name), None) or update_rev
        current_name = current_rev["metadata"]["name"]

        replicas = int(spec.get("replicas") if spec.get("replicas") is not None else 1)
        start = int((spec.get("ordinals") or {}).get("start") or 0)
        by_ordinal: dict[int, Obj] = {}
        condemned: list[Obj] = []
        for pod in pods:
            ordinal = ordinal_of(sts, pod)
            if ordinal is None:
                continue
            if start <= ordinal < start + replicas:
                by_ordinal[ordinal] = pod
            else:
                condemned.append(pod)
        condemned.sort(key=lambda p: ordinal_of(sts, p) or 0)

        await self._act(sts, by_ordinal, condemned, range(start, start + replicas), current_rev, update_rev, now)
        await self._write_status(sts, pods, current_name, update_name, now)
        live = {revision_of(p) for p in pods if not is_terminating(p)}
        await truncate_history(self.client, revisions, {r for r in live if r}, spec.get("revisionHistoryLimit"),
                               update_rev)

    def _healthy(self, sts: Obj, pod: Obj, now: float) -> bool:
        return is_running_and_ready(pod) and not is_terminating(pod) and \
            is_pod_available(pod, int(sts["spec"].get("minReadySeconds") or 0), now)

    async def _act(self, sts: Obj, by_ordinal: dict[int, Obj], condemned: list[Obj], ordinals: range,
                   current_rev: Obj, update_rev: Obj, now: float) -> None:
        spec = sts["spec"]
        ordered = (spec.get("podManagementPolicy") or "OrderedReady") == "OrderedReady"
        strategy = spec.get("updateStrategy") or {}
        rolling = strategy.get("type", "RollingUpdate") == "RollingUpdate"
        partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0) if rolling else 0
        update_template = spec.get("template") or {}

        for ordinal in ordinals:
            pod = by_ordinal.get(ordinal)
            if pod is not None and is_finished_pod(pod) and not is_terminating(pod):
                await self._delete_pod(sts, pod, "finished")
                if ordered:
                    return
                continue
            if pod is None:
                if rolling and ordinal < partition and current_rev is not update_rev:
                    template, revision = revision_template(current_rev), current_rev["metadata"]["name"]
                else:
                    template, revision = update_template, update_rev["metadata"]["name"]
                await self._create_claims(sts, ordinal)
                await self._create_pod(sts, stateful_pod(sts, template, ordinal, revision))
                if ordered:
                    return
                continue
            await self._create_claims(sts, ordinal)
            if ordered and not self._healthy(sts, pod, now):
                self._recheck_availability(sts, pod, now)
                return

        # Scale down from the highest ordinal.
        for pod in reversed(condemned):
            if is_terminating(pod):
                if ordered:
                    return
                continue
            await self._delete_pod(sts, pod, "scale down")
            if ordered:
                return
        await self._delete_scaled_claims(sts, by_ordinal, condemned, ordinals)

        if not rolling:
            return
        for ordinal in sorted((o for o in by_ordinal if o >= partition), reverse=True):
            pod = by_ordinal[ordinal]
            if revision_of(pod) != update_rev["metadata"]["name"] and not is_terminating(pod):
                await self._delete_pod(sts, pod, "update")
                return
            if not self._healthy(sts, pod, now):
                return

    def _recheck_availability(self, sts: Obj, pod: Obj, now: float) -> None:
        min_ready = int(sts["spec"].get("minReadySeconds") or 0)
        if min_ready and is_running_and_ready(pod):
            self.queue.add_after(f'{sts["metadata"]["namespace"]}/{sts["metadata"]["name"]}', min_ready)

    async def _create_claims(self, sts: Obj, ordinal: int) -> None:
        for pvc in persistent_volume_claims(sts, ordinal):
            if self.claims.store.get(f'{pvc["metadata"]["namespace"]}/{pvc["metadata"]["name"]}') is not None:
                continue
            try:
                await self.client.create("persistentvolumeclaims", pvc, pvc["metadata"]["namespace"])
            except APIError as e:
                if is_already_exists(e):
                    continue
                self.recorder.event(sts, "Warning", "FailedCreate",
                                    f"create Claim {pvc['metadata']['name']} for Pod {sts['metadata']['name']}-"
                                    f"{ordinal} in StatefulSet {sts['metadata']['name']} failed error: {e}")
                raise
            self.recorder.event(sts, "Normal", "SuccessfulCreate",
                                f"create Claim {pvc['metadata']['name']} Pod {sts['metadata']['name']}-{ordinal} "
                                f"in StatefulSet {sts['metadata']['name']} success")

    async def _delete_scaled_claims(self, sts: Obj, by_ordinal: dict[int, Obj], condemned: list[Obj],
                                    ordinals: range) -> None:
        """whenScaled: Delete removes the claims of ordinals beyond `replicas` once their pods are gone."""
        policy = sts["spec"].get("persistentVolumeClaimRetentionPolicy") or {}
        if policy.get("whenScaled") != "Delete" or condemned:
            return
        ns, name = sts["metadata"]["namespace"], sts["metadata"]["name"]
        names = {t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates") or []}
        for pvc in self.claims.store.list():
            meta = pvc["metadata"]
            match = re.fullmatch(r"(.+)-" + re.escape(name) + r"-(0|[1-9][0-9]*)", meta["name"])
            if meta.get("namespace") != ns or not match or match.group(1) not in names or \
                    int(match.group(2)) in ordinals or meta.get("deletionTimestamp"):
                continue
            try:
                await self.client.delete("persistentvolumeclaims", meta["name"], ns, preconditions={"uid": meta["uid"]})
            except APIError as e:
                if not (is_not_found(e) or is_conflict(e)):
                    raise

    async def _create_pod(self, sts: Obj, pod: Obj) -> None:
        name, set_name = pod["metadata"]["name"], sts["metadata"]["name"]
        try:
            await self.client.create("pods", pod, sts["metadata"]["namespace"])
        except APIError as e:
            if is_already_exists(e):
                return  # the cache is behind; the watch brings the pod
            if is_namespace_terminating(e):
                return  # the StatefulSet goes with its namespace
            self.recorder.event(sts, "Warning", "FailedCreate",
                                f"create Pod {name} in StatefulSet {set_name} failed error: {e}")
            raise
        logger.info("statefulset %s/%s: created pod %s", sts["metadata"]["namespace"], set_name, name)
        self.recorder.event(sts, "Normal", "SuccessfulCreate", f"create Pod {name} in StatefulSet {set_name} successful")

    async def _delete_pod(self, sts: Obj, pod: Obj, why: str) -> None:
        meta, set_name = pod["metadata"], sts["metadata"]["name"]
        try:
            await self.client.delete("pods", meta["name"], meta["namespace"], preconditions={"uid": meta["uid"]})
        except APIError as e:
            if is_not_found(e) or is_conflict(e):
                return
            self.recorder.event(sts, "Warning", "FailedDelete",
                                f"delete Pod {meta['name']} in StatefulSet {set_name} failed error: {e}")
            raise
        logger.info("statefulset %s/%s: deleted pod %s (%s)", meta["namespace"], set_name, meta["name"], why)
        self.recorder.event(sts, "Normal", "SuccessfulDelete",
                            f"delete Pod {meta['name']} in StatefulSet {set_name} successful")

    async def _write_status(self, sts: Obj, pods: list[Obj], current_name: str, update_name: str, now: float) -> None:
        min_ready = int(sts["spec"].get("minReadySeconds") or 0)
        live = [p for p in pods if not is_terminating(p) and ordinal_of(sts, p) is not None]
        replicas = len(live)
        ready = sum(1 for p in live if is_running_and_ready(p))
        available = sum(1 for p in live if is_running_and_ready(p) and is_pod_available(p, min_ready, now))
        current = sum(1 for p in live if revision_of(p) == current_name)
        updated = sum(1 for p in live if revision_of(p) == update_name)
        spec_replicas = int(sts["spec"].get("replicas") if sts["spec"].get("replicas") is not None else 1)
        strategy = (sts["spec"].get("updateStrategy") or {}).get("type", "RollingUpdate")
        if strategy == "RollingUpdate" and updated == spec_replicas == replicas and ready == spec_replicas:
            current_name, current = update_name, updated
        old = sts.get("status") or {}
        status = {**old, "observedGeneration": sts["metadata"].get("generation"), "replicas": replicas,
                  "readyReplicas": ready, "availableReplicas": available, "currentReplicas": current,
                  "updatedReplicas": updated, "currentRevision": current_name, "updateRevision": update_name}
        diff = merge_diff(old, status)
        if diff:
            meta = sts["metadata"]
            await self.client.patch("statefulsets", meta["name"], {"metadata": {"resourceVersion": meta["resourceVersion"]},
                                                                   "status": diff}, meta["namespace"], subresource="status")
