"""Deployment controller: rolls a pod template out through ReplicaSets, one per template.

A reconcile (Kubernetes' syncDeployment) claims the ReplicaSets matching the Deployment's selector, then
takes exactly one of these paths:

- being deleted: only the status is brought up to date;
- paused, or resized (a ReplicaSet's `desired-replicas` annotation differs from spec.replicas): `sync` —
  scale without rolling: the only active ReplicaSet takes the new size, or old ones go to 0 when the new
  one is saturated, or the difference is spread proportionally over all active ReplicaSets
  (`deployment_util.proportional_sizes`); a paused Deployment also prunes its history;
- Recreate: old ReplicaSets to 0; wait until none of their pods runs (terminating ones included);
  then create or grow the new ReplicaSet to full size;
- RollingUpdate: grow the new ReplicaSet within maxSurge (`new_rs_target`), or else shrink old ones
  within maxUnavailable (`old_rs_scale_down`); once complete, prune history beyond
  revisionHistoryLimit (only ReplicaSets already at 0 are deleted).

Every path ends by computing the status (replicas, updated/ready/available/unavailable, observed
generation, collisionCount) with the Available condition and, when a progress deadline is set, the
Progressing condition (NewReplicaSetCreated / FoundNewReplicaSet / ReplicaSetUpdated /
NewReplicaSetAvailable / ProgressDeadlineExceeded / DeploymentPaused / DeploymentResumed), written
through /status only when it changed. A rollout that has not progressed is requeued for the moment its
deadline passes.

Writes: ReplicaSets are scaled by merge patches carrying the cached resourceVersion (a conflict means a
stale cache: the key is retried); the Deployment's `deployment.kubernetes.io/revision` annotation by a
metadata patch (our /status ignores metadata, unlike Kubernetes' deployment status strategy); status by
PUT /status. Rollback is nothing special: a template equal to an older ReplicaSet's (ignoring
pod-template-hash) makes that ReplicaSet the new one again, renumbered to the next revision.
"""
from __future__ import annotations

import copy
import logging
import time
from typing import Any

from api.errors import APIError
from client.rest import is_already_exists, is_conflict, is_namespace_terminating, is_not_found
from controllers import deployment_util as du
from controllers.base import Controller
from controllers.common import claim, controller_ref, parse_time
from controllers.replicaset import BY_CONTROLLER, BY_NAMESPACE, SelectorCache, controlled_and_orphans, ensure_indexes

logger = logging.getLogger(__name__)

Obj = dict[str, Any]

CONFLICT_RETRY_SECONDS = 0.2


class DeploymentController(Controller):
    name = "deployment"
    workers = 5

    @classmethod
    def add_arguments(cls, group) -> None:
        group.add_argument("--concurrent-deployment-syncs", type=int, default=5,
                           help="Deployments reconciled at once")

    def setup(self) -> None:
        self.workers = int(self.options.get("concurrent_deployment_syncs") or self.workers)
        self.now = self.options.get("now") or time.time
        self.selectors = SelectorCache()
        self.deployments = self.factory.informer("deployments")
        self.replicasets = self.factory.informer("replicasets")
        self.pods = self.factory.informer("pods")
        ensure_indexes(self.deployments, namespace=True)
        ensure_indexes(self.replicasets, namespace=True)
        ensure_indexes(self.pods)
        self.deployments.add_handler(on_add=self.enqueue, on_update=lambda old, new: self.enqueue(new),
                                     on_delete=self._deployment_deleted)
        self.replicasets.add_handler(on_add=self._rs_added, on_update=self._rs_updated,
                                     on_delete=self._rs_deleted)
        self.pods.add_handler(on_delete=self._pod_deleted)

    # -- handlers ------------------------------------------------------------------------------------

    def _deployment_deleted(self, d: Obj) -> None:
        self.selectors.forget(d)
        self.enqueue(d)

    def _owner(self, obj: Obj, ref: Obj | None) -> Obj | None:
        if ref is None or ref.get("kind") != "Deployment":
            return None
        d = self.deployments.store.get(f'{obj["metadata"]["namespace"]}/{ref["name"]}')
        return d if d is not None and d["metadata"].get("uid") == ref.get("uid") else None

    def _enqueue_owner(self, obj: Obj, ref: Obj | None) -> None:
        d = self._owner(obj, ref)
        if d is not None:
            self.enqueue(d)

    def _enqueue_matching(self, rs: Obj) -> None:
        labels = rs["metadata"].get("labels") or {}
        for d in self.deployments.store.by_index(BY_NAMESPACE, rs["metadata"].get("namespace", "")):
            if self.selectors.get(d).matches(labels):
                self.enqueue(d)

    def _rs_added(self, rs: Obj) -> None:
        ref = controller_ref(rs)
        if ref is not None:
            self._enqueue_owner(rs, ref)
        elif not rs["metadata"].get("deletionTimestamp"):
            self._enqueue_matching(rs)

    def _rs_updated(self, old: Obj, new: Obj) -> None:
        if old["metadata"].get("resourceVersion") == new["metadata"].get("resourceVersion"):
            return
        old_ref, new_ref = controller_ref(old), controller_ref(new)
        ref_changed = (old_ref or {}).get("uid") != (new_ref or {}).get("uid")
        if ref_changed and old_ref is not None:
            self._enqueue_owner(old, old_ref)
        if new_ref is not None:
            self._enqueue_owner(new, new_ref)
        elif ref_changed or old["metadata"].get("labels") != new["metadata"].get("labels"):
            self._enqueue_matching(new)

    def _rs_deleted(self, rs: Obj) -> None:
        self._enqueue_owner(rs, controller_ref(rs))

    def _pod_deleted(self, pod: Obj) -> None:
        """A Recreate rollout waits for the old pods to be gone: their removal is its cue."""
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return
        rs = self.replicasets.store.get(f'{pod["metadata"]["namespace"]}/{ref["name"]}')
        if rs is None or rs["metadata"].get("uid") != ref.get("uid"):
            return
        d = self._owner(rs, controller_ref(rs))
        if d is not None and not du.is_rolling(d):
            self.enqueue(d)

    # -- reconcile -------------------------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        try:
            await self._reconcile(key)
        except APIError as e:
            if is_not_found(e) or is_namespace_terminating(e):
                return  # the Deployment (or what we wrote to) is gone or going; its events say what's next
            if not is_conflict(e):
                raise
            # Our cache was behind a write (often our own): the informer event that brings it up to date
            # requeues the key; the delayed add covers an event that arrived while we were working.
            logger.debug("deployment %s: %s; retrying once the cache catches up", key, e)
            self.queue.add_after(key, CONFLICT_RETRY_SECONDS)

    async def _reconcile(self, key: str) -> None:
        cached = self.deployments.store.get(key)
        if cached is None:
            return
        d = copy.deepcopy(cached)
        d["status"] = d.get("status") or {}
        raw_selector = (d.get("spec") or {}).get("selector")
        if not raw_selector or not (raw_selector.get("matchLabels") or raw_selector.get("matchExpressions")):
            self.recorder.event(d, "Warning", "SelectingAll",
                                "This deployment is selecting all pods. A non-empty selector is required.")
            if d["status"].get("observedGeneration") != d["metadata"].get("generation"):
                await self._write_status(d, {**d["status"], "observedGeneration": d["metadata"].get("generation")})
            return
        selector = self.selectors.get(d)
        claimed = await claim(self.client, d, selector, controlled_and_orphans(self.replicasets, d),
                              resource="replicasets")
        rss = copy.deepcopy(claimed)  # scaled in place as we write them

        if d["metadata"].get("deletionTimestamp"):
            new_rs, old_rss = await self._new_and_old(d, rss, create=False)
            await self._sync_status(d, old_rss + [new_rs], new_rs)
            return
        await self._check_paused_condition(d)
        if d["spec"].get("paused"):
            await self._sync(d, rss)
            return
        if await self._is_scaling_event(d, rss):
            await self._sync(d, rss)
            return
        if du.is_rolling(d):
            await self._rollout_rolling(d, rss)
        else:
            await self._rollout_recreate(d, rss, selector)

    # -- finding (and creating) the new ReplicaSet -------------------------------------------------------

    async def _new_and_old(self, d: Obj, rss: list[Obj], *, create: bool) -> tuple[Obj | None, list[Obj]]:
        existing = du.find_new_rs(d, rss)
        old_rss = du.find_old_rss(d, rss, existing)
        return await self._new_rs(d, rss, existing, old_rss, create), old_rss

    async def _new_rs(self, d: Obj, rss: list[Obj], existing: Obj | None, old_rss: list[Obj],
                      create: bool) -> Obj | None:
        new_revision = du.max_revision(old_rss) + 1
        if existing is not None:
            wanted = copy.deepcopy(existing)
            annotations_changed = du.set_new_rs_annotations(d, wanted, new_revision, exists=True)
            min_ready = d["spec"].get("minReadySeconds", 0) or 0
            if annotations_changed or (existing["spec"].get("minReadySeconds", 0) or 0) != min_ready:
                await self._patch_rs(existing, {"metadata": {"annotations": wanted["metadata"]["annotations"]},
                                                "spec": {"minReadySeconds": min_ready}})
                return existing
            await self._set_revision(d, existing["metadata"]["annotations"].get(du.REVISION, ""))
            if du.has_progress_deadline(d) and du.get_condition(d["status"], du.PROGRESSING) is None:
                status = copy.deepcopy(d["status"])
                du.set_condition(status, du.new_condition(du.PROGRESSING, "True", du.FOUND_NEW_RS,
                                                          f'Found new replica set "{existing["metadata"]["name"]}"',
                                                          self.now()))
                await self._write_status(d, status)
            return existing
        if not create:
            return None

        new_rs = du.new_rs_object(d, d["status"].get("collisionCount"))
        new_rs["spec"]["replicas"] = du.new_rs_new_replicas(d, old_rss + [new_rs], new_rs)
        du.set_new_rs_annotations(d, new_rs, new_revision, exists=False)
        name, ns = new_rs["metadata"]["name"], d["metadata"]["namespace"]
        already = False
        try:
            created = await self.client.create("replicasets", new_rs, ns)
        except APIError as e:
            if is_already_exists(e):
                found = await self.client.get_or_none("replicasets", name, ns)
                ref = controller_ref(found) if found is not None else None
                if found is not None and ref is not None and ref.get("uid") == d["metadata"]["uid"] and \
                        du.equal_ignore_hash(d["spec"].get("template"), found["spec"].get("template")):
                    created, already = found, True
                else:
                    # Another template owns this hash: a different collisionCount gives a different name.
                    status = {**d["status"], "collisionCount": int(d["status"].get("collisionCount") or 0) + 1}
                    await self._write_status(d, status)
                    logger.info("deployment %s/%s: hash collision on %s, collisionCount now %d", ns,
                                d["metadata"]["name"], name, status["collisionCount"])
                    raise
            else:
                if e.code != 403:  # a terminating namespace refuses creates: nothing to report
                    msg = f'Failed to create new replica set "{name}": {e}'
                    if du.has_progress_deadline(d):
                        status = copy.deepcopy(d["status"])
                        du.set_condition(status, du.new_condition(du.PROGRESSING, "False", du.FAILED_RS_CREATE,
                                                                  msg, self.now()))
                        try:
                            await self._write_status(d, status)
                        except APIError:
                            pass  # the create error below is what gets retried and reported
                    self.recorder.event(d, "Warning", du.FAILED_RS_CREATE, msg)
                raise
        rss.append(created)
        if not already and du.replicas(created) > 0:
            self._scaled_event(d, "up", created, du.replicas(created))
        await self._set_revision(d, str(new_revision))
        if not already and du.has_progress_deadline(d):
            status = copy.deepcopy(d["status"])
            du.set_condition(status, du.new_condition(du.PROGRESSING, "True", du.NEW_RS_CREATED,
                                                      f'Created new replica set "{name}"', self.now()))
            await self._write_status(d, status)
        logger.info("deployment %s/%s: new replica set %s (revision %d, %d replicas)", ns, d["metadata"]["name"],
                    name, new_revision, du.replicas(created))
        return created

    async def _is_scaling_event(self, d: Obj, rss: list[Obj]) -> bool:
        new_rs, old_rss = await self._new_and_old(d, rss, create=False)
        for rs in du.active(old_rss + [new_rs]):
            desired = ((rs["metadata"].get("annotations") or {}).get(du.DESIRED_REPLICAS))
            if desired is not None and desired.isdigit() and int(desired) != du.replicas(d):
                return True
        return False

    # -- the strategies ------------------------------------------------------------------------------

    async def _sync(self, d: Obj, rss: list[Obj]) -> None:
        """Scaling without a rollout (a resized or paused Deployment)."""
        new_rs, old_rss = await self._new_and_old(d, rss, create=False)
        await self._scale(d, new_rs, old_rss)
        if d["spec"].get("paused"):
            await self._cleanup(d, old_rss)
        await self._sync_status(d, old_rss + [new_rs], new_rs)

    async def _scale(self, d: Obj, new_rs: Obj | None, old_rss: list[Obj]) -> None:
        only = du.find_active_or_latest(new_rs, old_rss)
        if only is not None:
            await self._scale_rs_and_record(d, only, du.replicas(d))
            return
        if du.is_saturated(d, new_rs):
            for rs in du.active(old_rss):
                await self._scale_rs_and_record(d, rs, 0)
            return
        if du.is_rolling(d):
            plan, op = du.proportional_sizes(d, new_rs, old_rss)
            for rs, size in plan:
                await self._scale_rs(d, rs, size, op)

    async def _rollout_rolling(self, d: Obj, rss: list[Obj]) -> None:
        new_rs, old_rss = await self._new_and_old(d, rss, create=True)
        assert new_rs is not None
        all_rss = old_rss + [new_rs]
        if await self._scale_rs_and_record(d, new_rs, du.new_rs_target(d, all_rss, new_rs)):
            await self._sync_rollout_status(d, all_rss, new_rs)
            return
        scaled_down = False
        for rs, size in du.old_rs_scale_down(d, all_rss, old_rss, new_rs):
            scaled_down = await self._scale_rs_and_record(d, rs, size) or scaled_down
        if not scaled_down and du.deployment_complete(d, d["status"]):
            await self._cleanup(d, old_rss)
        await self._sync_rollout_status(d, all_rss, new_rs)

    async def _rollout_recreate(self, d: Obj, rss: list[Obj], selector) -> None:
        new_rs, old_rss = await self._new_and_old(d, rss, create=False)
        scaled_down = False
        for rs in du.active(old_rss):
            scaled_down = await self._scale_rs_and_record(d, rs, 0) or scaled_down
        if scaled_down or self._old_pods_running(new_rs, old_rss, selector):
            await self._sync_rollout_status(d, old_rss + [new_rs], new_rs)
            return
        if new_rs is None:
            new_rs, old_rss = await self._new_and_old(d, rss, create=True)
            assert new_rs is not None
        await self._scale_rs_and_record(d, new_rs, du.replicas(d))
        if du.deployment_complete(d, d["status"]):
            await self._cleanup(d, old_rss)
        await self._sync_rollout_status(d, old_rss + [new_rs], new_rs)

    def _old_pods_running(self, new_rs: Obj | None, old_rss: list[Obj], selector) -> bool:
        """Any pod of an old ReplicaSet not finished yet, terminating ones included."""
        if du.sum_status(old_rss, "replicas") > 0:
            return True
        for rs in old_rss:
            for pod in self.pods.store.by_index(BY_CONTROLLER, rs["metadata"]["uid"]):
                if selector.matches(pod["metadata"].get("labels")) and \
                        (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                    return True
        return False

    async def _cleanup(self, d: Obj, old_rss: list[Obj]) -> None:
        """Delete the oldest revisions beyond revisionHistoryLimit, only those already scaled to zero."""
        limit = d["spec"].get("revisionHistoryLimit")
        if limit is None or limit == du.MAX_INT32:
            return
        alive = sorted((rs for rs in old_rss if not rs["metadata"].get("deletionTimestamp")),
                       key=lambda rs: (du.revision(rs), du.creation_key(rs)))
        for rs in alive[:max(0, len(alive) - int(limit))]:
            meta = rs["metadata"]
            if du.status_of(rs, "replicas") or du.replicas(rs) or \
                    meta.get("generation", 0) > du.status_of(rs, "observedGeneration"):
                continue
            try:
                await self.client.delete("replicasets", meta["name"], meta["namespace"],
                                         propagation_policy="Background", preconditions={"uid": meta["uid"]})
                logger.info("deployment %s/%s: deleted old replica set %s (revision %d)", meta["namespace"],
                            d["metadata"]["name"], meta["name"], du.revision(rs))
            except APIError as e:
                if not is_not_found(e):
                    raise

    # -- status ----------------------------------------------------------------------------------------

    async def _check_paused_condition(self, d: Obj) -> None:
        if not du.has_progress_deadline(d):
            return
        cond = du.get_condition(d["status"], du.PROGRESSING)
        paused_recorded = cond is not None and cond.get("reason") == du.PAUSED
        status = copy.deepcopy(d["status"])
        if d["spec"].get("paused") and not paused_recorded:
            du.set_condition(status, du.new_condition(du.PROGRESSING, "Unknown", du.PAUSED, "Deployment is paused",
                                                      self.now()))
        elif not d["spec"].get("paused") and paused_recorded:
            du.set_condition(status, du.new_condition(du.PROGRESSING, "Unknown", du.RESUMED,
                                                      "Deployment is resumed", self.now()))
        else:
            return
        await self._write_status(d, status)

    async def _sync_status(self, d: Obj, all_rss: list[Obj | None], new_rs: Obj | None) -> None:
        rss = [rs for rs in all_rss if rs is not None]
        status = du.calculate_status(d, rss, new_rs, self.now())
        if _normalized(status) != _normalized(d["status"]):
            await self._write_status(d, status)

    async def _sync_rollout_status(self, d: Obj, all_rss: list[Obj | None], new_rs: Obj | None) -> None:
        rss = [rs for rs in all_rss if rs is not None]
        now = self.now()
        status = du.calculate_status(d, rss, new_rs, now)
        if not du.has_progress_deadline(d):
            du.remove_condition(status, du.PROGRESSING)
        current = du.get_condition(d["status"], du.PROGRESSING)
        complete_before = status["replicas"] == status["updatedReplicas"] and current is not None and \
            current.get("reason") == du.NEW_RS_AVAILABLE
        name = new_rs["metadata"]["name"] if new_rs is not None else d["metadata"]["name"]
        if du.has_progress_deadline(d) and not complete_before:
            if du.deployment_complete(d, status):
                du.set_condition(status, du.new_condition(du.PROGRESSING, "True", du.NEW_RS_AVAILABLE,
                                                          f'ReplicaSet "{name}" has successfully progressed.', now))
            elif du.deployment_progressing(d, status):
                cond = du.new_condition(du.PROGRESSING, "True", du.RS_UPDATED, f'ReplicaSet "{name}" is progressing.',
                                        now)
                if current is not None:
                    if current.get("status") == "True":
                        cond["lastTransitionTime"] = current.get("lastTransitionTime", cond["lastTransitionTime"])
                    du.remove_condition(status, du.PROGRESSING)
                du.set_condition(status, cond)
            elif du.deployment_timed_out(d, status, now):
                du.set_condition(status, du.new_condition(du.PROGRESSING, "False", du.TIMED_OUT,
                                                          f'ReplicaSet "{name}" has timed out progressing.', now))
        failure = _replica_failure(rss, new_rs)
        if failure is not None:
            du.set_condition(status, failure)
        else:
            du.remove_condition(status, du.REPLICA_FAILURE)
        if _normalized(status) == _normalized(d["status"]):
            self._requeue_stuck(d, status, now)
            return
        await self._write_status(d, status)

    def _requeue_stuck(self, d: Obj, status: Obj, now: float) -> None:
        """A rollout without progress is looked at again when its deadline passes."""
        current = du.get_condition(d["status"], du.PROGRESSING)
        if not du.has_progress_deadline(d) or current is None or du.deployment_complete(d, status) or \
                current.get("reason") == du.TIMED_OUT:
            return
        since = parse_time(current.get("lastUpdateTime"))
        if since is None:
            return
        after = since + int(d["spec"]["progressDeadlineSeconds"]) - now
        self.queue.add_after(f'{d["metadata"]["namespace"]}/{d["metadata"]["name"]}', max(after, 0.0) + 1.0)

    # -- writes ----------------------------------------------------------------------------------------

    async def _write_status(self, d: Obj, status: Obj) -> None:
        body = {**d, "status": _normalized(status)}
        written = await self.client.update_status("deployments", body)
        d["metadata"], d["status"] = written["metadata"], written.get("status") or {}

    async def _set_revision(self, d: Obj, rev: str) -> None:
        if not rev or (d["metadata"].get("annotations") or {}).get(du.REVISION) == rev:
            return
        meta = d["metadata"]
        written = await self.client.patch("deployments", meta["name"], {
            "metadata": {"resourceVersion": meta["resourceVersion"], "annotations": {du.REVISION: rev}}},
            meta["namespace"])
        d["metadata"] = written["metadata"]

    async def _patch_rs(self, rs: Obj, patch: Obj) -> None:
        """Merge-patch a ReplicaSet guarded by the resourceVersion we read, and update our copy in place."""
        meta = rs["metadata"]
        patch = {**patch, "metadata": {**(patch.get("metadata") or {}), "resourceVersion": meta["resourceVersion"]}}
        written = await self.client.patch("replicasets", meta["name"], patch, meta["namespace"])
        rs.clear()
        rs.update(written)

    async def _scale_rs_and_record(self, d: Obj, rs: Obj | None, size: int) -> bool:
        if rs is None or du.replicas(rs) == size:
            return False
        return await self._scale_rs(d, rs, size, "up" if size > du.replicas(rs) else "down")

    async def _scale_rs(self, d: Obj, rs: Obj, size: int, op: str) -> bool:
        """Set a ReplicaSet's size and its desired/max-replicas annotations; True if the size changed."""
        desired, maximum = du.replicas(d), du.replicas(d) + du.max_surge(d)
        resize = du.replicas(rs) != size
        if not resize and not du.replicas_annotations_need_update(rs, desired, maximum):
            return False
        await self._patch_rs(rs, {"metadata": {"annotations": {du.DESIRED_REPLICAS: str(desired),
                                                               du.MAX_REPLICAS: str(maximum)}},
                                  "spec": {"replicas": size}})
        if resize:
            self._scaled_event(d, op, rs, size)
        return resize

    def _scaled_event(self, d: Obj, op: str, rs: Obj, size: int) -> None:
        logger.info("deployment %s/%s: scaled %s replica set %s to %d", d["metadata"]["namespace"],
                    d["metadata"]["name"], op, rs["metadata"]["name"], size)
        self.recorder.event(d, "Normal", "ScalingReplicaSet", f'Scaled {op} replica set {rs["metadata"]["name"]} '
                                                              f"to {size}")


def _normalized(status: Obj) -> Obj:
    """Status without an empty conditions list, so that {} and {"conditions": []} compare equal."""
    return {k: v for k, v in status.items() if not (k == "conditions" and not v)}


def _replica_failure(rss: list[Obj], new_rs: Obj | None) -> Obj | None:
    """A ReplicaSet's ReplicaFailure condition, the new ReplicaSet's first, as a Deployment condition."""
    for rs in ([new_rs] if new_rs is not None else []) + rss:
        for c in (rs.get("status") or {}).get("conditions") or []:
            if c.get("type") == du.REPLICA_FAILURE:
                return {"type": du.REPLICA_FAILURE, "status": c.get("status"), "reason": c.get("reason"),
                        "message": c.get("message"), "lastTransitionTime": c.get("lastTransitionTime"),
                        "lastUpdateTime": c.get("lastTransitionTime")}
    return None
