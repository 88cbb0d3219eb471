"""The Job controller: run pods from a template until enough of them succeed, or give up.

One `reconcile(job key)` does, in Kubernetes' order:

1. Count finished pods exactly once. Every pod is created with the `batch.kubernetes.io/job-tracking`
   finalizer, so a finished pod cannot vanish before it is counted. Counting is crash-safe in three
   steps, as Kubernetes does: the uids of newly finished pods go into `status.uncountedTerminatedPods`
   (one status write), then their finalizers are removed, then they move from "uncounted" into
   `succeeded`/`failed` (the final status write). Indexed Jobs count successes by index instead
   (`completedIndexes`, e.g. "0-2,4"). Uids whose finalizer removal we have not yet seen in the pod
   cache are remembered so a stale cache cannot count them twice.
2. Decide whether the Job is finished: failed pods beyond `backoffLimit` (for restartPolicy OnFailure,
   container restarts of running pods count too) → Failed/BackoffLimitExceeded; running longer than
   `activeDeadlineSeconds` since `startTime` → Failed/DeadlineExceeded; enough successes →
   Complete. A failed Job's active pods are deleted.
3. Otherwise manage the active pods: `suspend` deletes them (condition Suspended); else create or
   delete pods towards min(parallelism, completions - succeeded), one pod per pending index for
   Indexed Jobs. After failures, replacements wait `base * 2^(failures-1)` seconds (`--job-backoff-base`,
   10 s by default as in Kubernetes, capped by `--job-backoff-max`), counted since the last failure;
   the wait is a delayed requeue, never a sleep.
4. Write status (active/ready/succeeded/failed/startTime/completionTime/conditions) with a merge patch
   on `/status` guarded by the Job's resourceVersion; a Conflict only means our cache is behind, and
   the newer Job's watch event requeues the key.
5. A finished Job with `ttlSecondsAfterFinished` is deleted (Background propagation, uid precondition)
   once the TTL has passed since it finished; until then the key is requeued for that moment.

Pods the controller deletes itself (suspend, excess parallelism, a failed Job) get their tracking
finalizer removed first, so they are not counted as failures. The clock is injectable (`clock=`), so
unit tests drive deadlines, backoff and TTLs without sleeping.
"""
from __future__ import annotations

import copy
import logging
import time
from typing import Any, Callable

from api.errors import APIError
from api.selectors import selector_from_dict
from client.resources import object_key
from client.rest import is_conflict, is_namespace_terminating, is_not_found
from controllers.base import Controller
from controllers.common import (Expectations, OwnedPodHandlers, claim, controller_ref, get_condition, is_pod_active,
                                is_pod_ready, merge_diff, parse_time, pod_from_template, rfc3339)

logger = logging.getLogger(__name__)

Obj = dict[str, Any]

TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
COMPLETION_INDEX_ENV = "JOB_COMPLETION_INDEX"
MAX_POD_CREATE_BATCH = 500


def is_finished(job: Obj) -> bool:
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
               for c in (job.get("status") or {}).get("conditions") or [])


def finish_time(job: Obj) -> float | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return parse_time(c.get("lastTransitionTime"))
    return None


def set_condition(conditions: list[Obj], ctype: str, status: str, reason: str, message: str, now: str) -> bool:
    """Add or update a condition in place; True when something changed. lastTransitionTime moves only
    when the status flips, as in Kubernetes."""
    for c in conditions:
        if c.get("type") == ctype:
            if c.get("status") == status and c.get("reason") == reason and c.get("message") == message:
                return False
            if c.get("status") != status:
                c["lastTransitionTime"] = now
            c.update(status=status, reason=reason, message=message, lastProbeTime=now)
            return True
    conditions.append({"type": ctype, "status": status, "lastProbeTime": now, "lastTransitionTime": now,
                       "reason": reason, "message": message})
    return True


# -- completion indexes ------------------------------------------------------------------------------

def completion_index(pod: Obj) -> int | None:
    meta = pod.get("metadata") or {}
    value = (meta.get("annotations") or {}).get(COMPLETION_INDEX, (meta.get("labels") or {}).get(COMPLETION_INDEX))
    try:
        ix = int(value)
    except (TypeError, ValueError):
        return None
    return ix if ix >= 0 else None


def parse_indexes(text: str | None) -> set[int]:
    """ "0-2,4" -> {0, 1, 2, 4}."""
    out: set[int] = set()
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        first, _, last = part.partition("-")
        try:
            out.update(range(int(first), int(last or first) + 1))
        except ValueError:
            continue
    return out


def format_indexes(indexes: set[int]) -> str:
    """{0, 1, 2, 4} -> "0-2,4": ascending, consecutive runs collapsed."""
    runs: list[list[int]] = []
    for ix in sorted(indexes):
        if runs and runs[-1][1] == ix - 1:
            runs[-1][1] = ix
        else:
            runs.append([ix, ix])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


# -- pods --------------------------------------------------------------------------------------------

def is_pod_failed(pod: Obj) -> bool:
    """Failed, or deleted before succeeding: orphaned or evicted pods never reach Failed, so
    Kubernetes counts a terminating pod that has not succeeded as a failure."""
    phase = (pod.get("status") or {}).get("phase")
    return phase == "Failed" or (bool(pod["metadata"].get("deletionTimestamp")) and phase != "Succeeded")


def has_tracking_finalizer(pod: Obj) -> bool:
    return TRACKING_FINALIZER in (pod["metadata"].get("finalizers") or [])


def container_restarts(pod: Obj) -> int:
    status = pod.get("status") or {}
    return sum(int(s.get("restartCount") or 0)
               for s in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []))


def _removal_rank(pod: Obj) -> tuple:
    """Which active pods go first when some must: unscheduled, then pending, then not ready, newest."""
    phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}.get((pod.get("status") or {}).get("phase"), 0)
    created = parse_time(pod["metadata"].get("creationTimestamp")) or 0.0
    return (bool((pod.get("spec") or {}).get("nodeName")), phase_rank, is_pod_ready(pod), -created)


def job_pod(job: Obj, index: int | None) -> Obj:
    """The pod for one more run of `job` (of completion index `index` for Indexed Jobs)."""
    template = copy.deepcopy(job["spec"].get("template") or {})
    pod = pod_from_template(template, job)
    meta, spec = pod["metadata"], pod["spec"]
    meta["finalizers"] = [*(meta.get("finalizers") or []), TRACKING_FINALIZER]
    if index is not None:
        name = job["metadata"]["name"]
        meta["generateName"] = f"{name}-{index}-"
        meta["annotations"][COMPLETION_INDEX] = str(index)
        meta["labels"][COMPLETION_INDEX] = str(index)
        spec.setdefault("hostname", f"{name}-{index}"[:63].rstrip("-."))
        ref = {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}}
        for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            env = [e for e in c.get("env") or [] if e.get("name") != COMPLETION_INDEX_ENV]
            c["env"] = [*env, {"name": COMPLETION_INDEX_ENV, "valueFrom": ref}]
    return pod


class BackoffRecord:
    """Failures since the last success and when the last one was seen (Kubernetes' backoffRecord)."""

    def __init__(self) -> None:
        self.failures = 0
        self.last_failure = 0.0

    def remaining(self, now: float, base: float, maximum: float) -> float:
        if self.failures == 0:
            return 0.0
        delay = min(base * 2 ** min(self.failures - 1, 32), maximum)
        return max(0.0, delay - (now - self.last_failure))


class JobController(Controller):
    name = "job"
    workers = 4

    @classmethod
    def add_arguments(cls, group) -> None:
        group.add_argument("--job-backoff-base", type=float, default=10.0,
                           help="seconds before re-creating a failed Job pod, doubled per further failure")
        group.add_argument("--job-backoff-max", type=float, default=600.0,
                           help="upper bound of the Job pod-failure backoff, in seconds")

    def setup(self) -> None:
        self.clock: Callable[[], float] = self.options.get("clock") or time.time
        self.backoff_base = float(self.options.get("job_backoff_base") or 10.0)
        self.backoff_max = float(self.options.get("job_backoff_max") or 600.0)
        self.expectations = Expectations()
        # uids whose finalizer we removed but whose pod update the cache has not shown yet, per Job key.
        self.finalizer_expectations: dict[str, set[str]] = {}
        self.backoff: dict[str, BackoffRecord] = {}
        self.jobs = self.factory.informer("jobs")
        self.pods = self.factory.informer("pods")
        self.pods.add_index("job:namespace", lambda p: [p["metadata"].get("namespace") or ""])
        self.jobs.add_handler(**self.enqueue_handlers())
        self.pod_events = OwnedPodHandlers("Job", self.jobs.store.list, self.queue.add, self.expectations,
                                           observe=self._pod_observed)
        self.pods.add_handler(**self.pod_events.handlers())

    # -- pod events ----------------------------------------------------------------------------------

    def _pod_observed(self, key: str, pod: Obj, deleted: bool) -> None:
        """A pod gone, or seen without its tracking finalizer, no longer awaits our finalizer removal."""
        if deleted or not has_tracking_finalizer(pod):
            self.finalizer_expectations.get(key, set()).discard(pod["metadata"].get("uid"))

    # -- reconcile -----------------------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        job = self.jobs.store.get(key)
        if job is None:
            self.expectations.forget(key)
            self.backoff.pop(key, None)
            self.finalizer_expectations.pop(key, None)
            await self._release_orphans(key)
            return
        try:
            await self._sync(key, job)
        except APIError as e:
            if is_conflict(e):
                logger.debug("job %s: cache behind the apiserver (%s); waiting for the watch", key, e)
                return
            raise

    async def _release_orphans(self, key: str) -> None:
        """Pods of a deleted Job keep no tracking finalizer: nothing will count them any more."""
        ns, _, name = key.partition("/")
        for pod in self.pods.store.by_index("job:namespace", ns):
            ref = controller_ref(pod)
            if ref and ref.get("kind") == "Job" and ref.get("name") == name and has_tracking_finalizer(pod):
                await self._remove_finalizer(pod)

    async def _sync(self, key: str, job: Obj) -> None:
        ns = job["metadata"]["namespace"]
        spec = job.get("spec") or {}
        status = copy.deepcopy(job.get("status") or {})
        now = self.clock()
        now_s = rfc3339(now)

        pods = await claim(self.client, job, selector_from_dict(spec.get("selector")),
                           self.pods.store.by_index("job:namespace", ns))
        if is_finished(job):
            # Leftover pods must not stay pinned by our finalizer; they were counted or are irrelevant.
            for pod in pods:
                if has_tracking_finalizer(pod):
                    await self._remove_finalizer(pod)
            await self._expire_after_ttl(key, job, now)
            return

        indexed = spec.get("completionMode") == "Indexed"
        completions = spec.get("completions")
        parallelism = int(spec.get("parallelism") if spec.get("parallelism") is not None else 1)
        backoff_limit = int(spec.get("backoffLimit") if spec.get("backoffLimit") is not None else 6)
        expected_rm = self.finalizer_expectations.setdefault(key, set())

        # 1. count finished pods, crash-safely.
        uncounted = status.get("uncountedTerminatedPods") or {}
        unc_succeeded, unc_failed = list(uncounted.get("succeeded") or []), list(uncounted.get("failed") or [])
        completed = parse_indexes(status.get("completedIndexes")) if indexed else set()
        new_indexes: set[int] = set()
        new_failures = new_successes = 0
        to_release: list[Obj] = []
        for pod in pods:
            uid = pod["metadata"]["uid"]
            if not has_tracking_finalizer(pod) or uid in expected_rm:
                continue
            phase = (pod.get("status") or {}).get("phase")
            ix = completion_index(pod)
            if phase == "Succeeded" and uid not in unc_failed:
                to_release.append(pod)
                if indexed:
                    if ix is not None and ix < int(completions or 0) and ix not in completed:
                        new_indexes.add(ix)
                elif uid not in unc_succeeded:
                    unc_succeeded.append(uid)
                    new_successes += 1
            elif is_pod_failed(pod):
                to_release.append(pod)
                valid = not indexed or (ix is not None and ix < int(completions or 0))
                if uid not in unc_failed and valid:
                    unc_failed.append(uid)
                    new_failures += 1
            elif uid in unc_succeeded or uid in unc_failed:
                to_release.append(pod)
        if new_successes or new_failures or new_indexes:
            status["uncountedTerminatedPods"] = {"succeeded": unc_succeeded, "failed": unc_failed}
            if indexed:
                completed |= new_indexes
                status["completedIndexes"] = format_indexes(completed)
            job = await self._write_status(job, status)
            status = copy.deepcopy(job.get("status") or {})
        record = self.backoff.setdefault(key, BackoffRecord())
        if new_successes or new_indexes:
            record.failures = 0
        if new_failures:
            record.failures += new_failures
            record.last_failure = now
        for pod in to_release:
            await self._remove_finalizer(pod)
            expected_rm.add(pod["metadata"]["uid"])
        # Pods whose finalizer is off (or that are gone) are counted for good.
        present_with_finalizer = {p["metadata"]["uid"] for p in pods if has_tracking_finalizer(p)} - expected_rm
        keep_s = [u for u in unc_succeeded if u in present_with_finalizer]
        keep_f = [u for u in unc_failed if u in present_with_finalizer]
        succeeded = int(status.get("succeeded") or 0) + len(unc_succeeded) - len(keep_s)
        failed = int(status.get("failed") or 0) + len(unc_failed) - len(keep_f)
        status["uncountedTerminatedPods"] = {"succeeded": keep_s, "failed": keep_f} if keep_s or keep_f else {}
        if indexed:
            succeeded = len(completed)
        status["succeeded"], status["failed"] = succeeded, failed

        active_pods = [p for p in pods if is_pod_active(p)]
        conditions = status.setdefault("conditions", [])
        suspended = bool(spec.get("suspend"))

        # 2. finished by failure?
        finished: tuple[str, str, str] | None = None
        if failed > backoff_limit or self._past_backoff_limit_on_failure(spec, pods, backoff_limit):
            finished = ("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
        elif not suspended and self._past_deadline(spec, status, now):
            finished = ("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")

        if finished is None:
            # 3. suspend / resume / manage active pods.
            if suspended:
                if set_condition(conditions, "Suspended", "True", "JobSuspended", "Job suspended", now_s):
                    self.recorder.event(job, "Normal", "Suspended", "Job suspended")
                await self._delete_pods(key, job, active_pods)
                active_pods = []
            else:
                cond = get_condition({"status": status}, "Suspended")
                if cond is not None and cond.get("status") == "True":
                    set_condition(conditions, "Suspended", "False", "JobResumed", "Job resumed", now_s)
                    status["startTime"] = now_s  # the deadline counts from the resume
                    self.recorder.event(job, "Normal", "Resumed", "Job resumed")
                if not status.get("startTime"):
                    status["startTime"] = now_s
                active_pods = await self._manage(key, job, active_pods, succeeded, completed, now,
                                                 indexed=indexed, completions=completions, parallelism=parallelism)
            if completions is None:
                complete = succeeded > 0 and not active_pods
            else:
                complete = succeeded >= int(completions) and not active_pods
            if complete and not suspended:
                set_condition(conditions, "Complete", "True", "", "", now_s)
                status["completionTime"] = now_s
                self.recorder.event(job, "Normal", "Completed", "Job completed")
        else:
            ctype, reason, message = finished
            await self._delete_pods(key, job, active_pods)
            active_pods = []
            set_condition(conditions, ctype, "True", reason, message, now_s)
            self.recorder.event(job, "Warning", reason, message)

        if not conditions:
            status.pop("conditions")
        status["active"] = len(active_pods)
        status["ready"] = sum(1 for p in active_pods if is_pod_ready(p))
        if status != (job.get("status") or {}):
            job = await self._write_status(job, status)
        if is_finished(job):
            self.backoff.pop(key, None)
            await self._expire_after_ttl(key, job, now)
            return
        deadline = spec.get("activeDeadlineSeconds")
        start = parse_time(status.get("startTime"))
        if deadline is not None and start is not None and not suspended:
            self.queue.add_after(key, max(0.0, start + int(deadline) - now))

    @staticmethod
    def _past_backoff_limit_on_failure(spec: Obj, pods: list[Obj], backoff_limit: int) -> bool:
        """With restartPolicy OnFailure the kubelet restarts containers in place; Kubernetes counts those
        restarts of still-running pods against the backoff limit."""
        if ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy") != "OnFailure":
            return False
        restarts = sum(container_restarts(p) for p in pods
                       if (p.get("status") or {}).get("phase") in ("Pending", "Running"))
        return restarts > 0 if backoff_limit == 0 else restarts >= backoff_limit

    @staticmethod
    def _past_deadline(spec: Obj, status: Obj, now: float) -> bool:
        deadline = spec.get("activeDeadlineSeconds")
        start = parse_time(status.get("startTime"))
        return deadline is not None and start is not None and now - start >= int(deadline)

    async def _manage(self, key: str, job: Obj, active: list[Obj], succeeded: int, completed: set[int],
                      now: float, *, indexed: bool, completions: int | None, parallelism: int) -> list[Obj]:
        """Create or delete pods towards the wanted number of active ones; returns the active pods left."""
        if completions is None:
            want = len(active) if succeeded > 0 else parallelism
        else:
            want = max(0, min(parallelism, int(completions) - succeeded))
        if not self.expectations.satisfied(key):
            return active
        excess: list[Obj] = []
        if indexed:
            # Duplicates of an index and out-of-range or completed indexes are removed first.
            seen: set[int] = set()
            keep: list[Obj] = []
            for pod in sorted(active, key=_removal_rank, reverse=True):
                ix = completion_index(pod)
                if ix is None or ix >= int(completions or 0) or ix in completed or ix in seen:
                    excess.append(pod)
                else:
                    seen.add(ix)
                    keep.append(pod)
            active = keep
        if len(active) > want:
            ranked = sorted(active, key=_removal_rank)
            excess += ranked[:len(active) - want]
        if excess:
            await self._delete_pods(key, job, excess)
            gone = {p["metadata"]["uid"] for p in excess}
            return [p for p in active if p["metadata"]["uid"] not in gone]
        if len(active) >= want:
            return active
        wait = self.backoff.setdefault(key, BackoffRecord()).remaining(now, self.backoff_base, self.backoff_max)
        if wait > 0:
            logger.debug("job %s: next pod in %.1fs (failure backoff)", key, wait)
            self.queue.add_after(key, wait)
            return active
        diff = min(want - len(active), MAX_POD_CREATE_BATCH)
        if indexed:
            busy = {completion_index(p) for p in active} | completed
            indexes: list[int | None] = [ix for ix in range(int(completions or 0)) if ix not in busy][:diff]
        else:
            indexes = [None] * diff
        self.expectations.expect(key, creations=len(indexes))
        created = list(active)
        for ix in indexes:
            try:
                pod = await self.client.create("pods", job_pod(job, ix), job["metadata"]["namespace"])
            except APIError as e:
                self.expectations.creation_observed(key)
                if is_namespace_terminating(e):
                    return  # the Job goes with its namespace
                self.recorder.event(job, "Warning", "FailedCreate", f"Error creating: {e}")
                raise
            except Exception:
                self.expectations.creation_observed(key)
                raise
            created.append(pod)
            logger.info("job %s: created pod %s", key, pod["metadata"]["name"])
            self.recorder.event(job, "Normal", "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}")
        return created

    async def _delete_pods(self, key: str, job: Obj, pods: list[Obj]) -> None:
        """Delete pods the Job itself no longer wants; their finalizer goes first so they are not
        counted as failures."""
        if not pods:
            return
        self.expectations.expect(key, deletions=[object_key(p) for p in pods])
        for pod in pods:
            meta = pod["metadata"]
            try:
                if has_tracking_finalizer(pod):
                    await self._remove_finalizer(pod)
                    self.finalizer_expectations.setdefault(key, set()).add(meta["uid"])
                await self.client.delete("pods", meta["name"], meta["namespace"],
                                         preconditions={"uid": meta["uid"]})
            except APIError as e:
                self.expectations.deletion_observed(key, object_key(pod))
                if is_not_found(e) or is_conflict(e):
                    continue
                self.recorder.event(job, "Warning", "FailedDelete", f"Error deleting: {e}")
                raise
            logger.info("job %s: deleted pod %s", key, meta["name"])
            self.recorder.event(job, "Normal", "SuccessfulDelete", f"Deleted pod: {meta['name']}")

    async def _remove_finalizer(self, pod: Obj) -> None:
        meta = pod["metadata"]
        patch = {"metadata": {"$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER]}}
        try:
            await self.client.patch("pods", meta["name"], patch, meta["namespace"], patch_type="strategic")
        except APIError as e:
            if not is_not_found(e):
                raise

    async def _write_status(self, job: Obj, status: Obj) -> Obj:
        diff = merge_diff(job.get("status") or {}, status)
        if not diff:
            return job
        body = {"metadata": {"resourceVersion": job["metadata"]["resourceVersion"]}, "status": diff}
        meta = job["metadata"]
        return await self.client.patch("jobs", meta["name"], body, meta["namespace"], subresource="status")

    async def _expire_after_ttl(self, key: str, job: Obj, now: float) -> None:
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        finished_at = finish_time(job)
        if ttl is None or finished_at is None or job["metadata"].get("deletionTimestamp"):
            return
        left = finished_at + int(ttl) - now
        if left > 0:
            self.queue.add_after(key, left)
            return
        meta = job["metadata"]
        # The TTL may have been changed since the cache saw it: decide on a fresh read.
        fresh = await self.client.get_or_none("jobs", meta["name"], meta["namespace"])
        if fresh is None or fresh["metadata"]["uid"] != meta["uid"]:
            return
        ttl = (fresh.get("spec") or {}).get("ttlSecondsAfterFinished")
        if ttl is None or (finish_time(fresh) or now) + int(ttl) > now:
            return
        try:
            await self.client.delete("jobs", meta["name"], meta["namespace"], propagation_policy="Background",
                                     preconditions={"uid": meta["uid"], "resourceVersion": fresh["metadata"]["resourceVersion"]})
        except APIError as e:
            if is_not_found(e) or is_conflict(e):
                return
            raise
        logger.info("job %s: deleted %ds after it finished (ttlSecondsAfterFinished)", key, int(ttl))
