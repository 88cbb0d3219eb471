"""The CronJob controller: create a Job from the template at each scheduled time.

`reconcile(cronjob key)` follows Kubernetes' cronjob controller (v2):

1. Reconcile `status.active` with the Jobs the CronJob controls: finished Jobs leave it (event
   SawCompletedJob; a Complete one advances `lastSuccessfulTime`), unfinished ones missing from it
   are added, references to Jobs that no longer exist are dropped (event MissingJob).
2. Nothing more for a CronJob being deleted, suspended, or with a schedule or time zone that does not
   parse (UnparseableSchedule / UnknownTimeZone).
3. The most recent scheduled time not yet handled: scheduling times are walked from
   `lastScheduleTime` (or the creation time), but no further back than `startingDeadlineSeconds`. More
   than 100 missed times gives the Warning TooManyMissedTimes and only the most recent one is started,
   as Kubernetes does. A time older than `startingDeadlineSeconds` is skipped (MissSchedule).
4. `concurrencyPolicy`: Allow starts alongside running Jobs; Forbid skips this time while one runs
   (JobAlreadyActive); Replace deletes the running ones first (Background propagation).
5. The Job is named `<cronjob>-<scheduled time in minutes since the epoch>`, so creating it is
   idempotent: AlreadyExists for a Job we control means it was already started. It carries the
   annotation `batch.kubernetes.io/cronjob-scheduled-timestamp` (RFC 3339 in the CronJob's zone).
6. Finished Jobs beyond `successfulJobsHistoryLimit` / `failedJobsHistoryLimit` are deleted, oldest
   first.
7. The key is requeued for the next scheduled time (plus 100 ms, as Kubernetes) with
   `queue.add_after` — no polling.

Schedules are standard cron (croniter) evaluated in `spec.timeZone` (a `CRON_TZ=`/`TZ=` prefix in
older objects is honoured too) with zoneinfo, so DST shifts follow the zone's rules; `@every <dur>`
is supported as well. The clock is injectable (`clock=`) for tests.
"""
from __future__ import annotations

import copy
import datetime
import logging
import math
import re
import time
import zoneinfo
from typing import Any, Callable

from croniter import croniter

from api.errors import APIError
from client.rest import is_already_exists, is_conflict, is_not_found
from controllers.base import Controller
from controllers.common import controller_ref, is_controlled_by, new_controller_ref, parse_time
from controllers.common import get_condition, merge_diff, rfc3339
from controllers.job import finish_time, is_finished

logger = logging.getLogger(__name__)

Obj = dict[str, Any]

SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"
MAX_MISSED = 100
NEXT_SCHEDULE_DELTA = 0.1
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class ScheduleError(ValueError):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class Schedule:
    """A cron schedule in a time zone: `next_after(t)` and `most_recent(earliest, now)` on Unix times."""

    def __init__(self, expression: str, time_zone: str | None = None):
        text = expression.strip()
        for prefix in ("CRON_TZ=", "TZ="):
            if text.startswith(prefix):
                zone, _, text = text[len(prefix):].partition(" ")
                time_zone = time_zone or zone
                text = text.strip()
        try:
            self.zone = zoneinfo.ZoneInfo(time_zone) if time_zone else datetime.timezone.utc
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ScheduleError("UnknownTimeZone", f"invalid timeZone: {time_zone!r}") from None
        self.every: float | None = None
        if text.startswith("@every "):
            self.every = _parse_duration(text[len("@every "):].strip())
            if not self.every or self.every < 1:
                raise ScheduleError("UnparseableSchedule", f"unparseable schedule: {expression!r}")
        elif not croniter.is_valid(text):
            raise ScheduleError("UnparseableSchedule", f"unparseable schedule: {expression!r}")
        self.expression = text

    def _at(self, t: float) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(t, self.zone)

    def next_after(self, t: float) -> float:
        if self.every is not None:
            return math.floor(t) + self.every
        return float(croniter(self.expression, self._at(t)).get_next(float))

    def _latest_at_or_before(self, now: float, first: float) -> float:
        if self.every is not None:
            return first + math.floor((now - first) / self.every) * self.every
        # croniter's get_prev is exclusive of its start, so start one second past the whole second.
        return float(croniter(self.expression, self._at(math.floor(now) + 1)).get_prev(float))

    def most_recent(self, earliest: float, now: float) -> tuple[float | None, int]:
        """The latest scheduled time in (earliest, now] and how many there were (MAX_MISSED+1 means
        "more than MAX_MISSED")."""
        t = self.next_after(earliest)
        if t > now:
            return None, 0
        first, latest, count = t, t, 0
        while t <= now:
            count += 1
            latest = t
            if count > MAX_MISSED:
                return self._latest_at_or_before(now, first), count
            t = self.next_after(t)
        return latest, count

    def format(self, t: float) -> str:
        return self._at(t).isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse_duration(text: str) -> float | None:
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(a + u for a, u in parts) != text:
        return None
    return sum(float(a) * _UNITS[u] for a, u in parts)


def job_name(cronjob: Obj, scheduled: float) -> str:
    return f'{cronjob["metadata"]["name"]}-{int(scheduled // 60)}'


def job_from_template(cronjob: Obj, scheduled: float, schedule: Schedule) -> Obj:
    template = copy.deepcopy((cronjob.get("spec") or {}).get("jobTemplate") or {})
    tmeta = template.get("metadata") or {}
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": job_name(cronjob, scheduled), "namespace": cronjob["metadata"]["namespace"],
                         "labels": dict(tmeta.get("labels") or {}),
                         "annotations": {**(tmeta.get("annotations") or {}),
                                         SCHEDULED_TIMESTAMP: schedule.format(scheduled)},
                         "ownerReferences": [new_controller_ref(cronjob)]},
            "spec": template.get("spec") or {}}


def job_reference(job: Obj) -> Obj:
    meta = job["metadata"]
    return {"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"], "namespace": meta["namespace"],
            "uid": meta["uid"], "resourceVersion": meta.get("resourceVersion")}


def _start_order(job: Obj) -> tuple:
    meta = job["metadata"]
    start = parse_time((job.get("status") or {}).get("startTime")) or parse_time(meta.get("creationTimestamp"))
    return (start or 0.0, meta["name"])


class CronJobController(Controller):
    name = "cronjob"
    workers = 2

    def setup(self) -> None:
        self.clock: Callable[[], float] = self.options.get("clock") or time.time
        self.cronjobs = self.factory.informer("cronjobs")
        self.jobs = self.factory.informer("jobs")
        self.jobs.add_index("cronjob:namespace", lambda j: [j["metadata"].get("namespace") or ""])
        self.cronjobs.add_handler(**self.enqueue_handlers())
        self.jobs.add_handler(on_add=self._job_changed, on_update=lambda old, new: self._job_changed(new),
                              on_delete=self._job_changed)

    def _job_changed(self, job: Obj) -> None:
        ref = controller_ref(job)
        if ref is not None and ref.get("kind") == "CronJob":
            self.queue.add(f'{job["metadata"].get("namespace")}/{ref.get("name")}')

    async def reconcile(self, key: str) -> None:
        cronjob = self.cronjobs.store.get(key)
        if cronjob is None:
            return
        try:
            await self._sync(key, cronjob)
        except APIError as e:
            if is_conflict(e):
                logger.debug("cronjob %s: cache behind the apiserver (%s); waiting for the watch", key, e)
                return
            raise

    async def _sync(self, key: str, cronjob: Obj) -> None:
        spec = cronjob.get("spec") or {}
        status = copy.deepcopy(cronjob.get("status") or {})
        now = self.clock()
        ns = cronjob["metadata"]["namespace"]
        jobs = [j for j in self.jobs.store.by_index("cronjob:namespace", ns) if is_controlled_by(j, cronjob)]

        await self._reconcile_active(cronjob, status, jobs)
        if cronjob["metadata"].get("deletionTimestamp"):
            await self._write_status(cronjob, status)
            return
        try:
            schedule = Schedule(spec.get("schedule") or "", spec.get("timeZone"))
        except ScheduleError as e:
            self.recorder.event(cronjob, "Warning", e.reason, str(e))
            await self._write_status(cronjob, status)
            return
        if spec.get("suspend"):
            await self._write_status(cronjob, status)
            await self._clean_history(cronjob, jobs)
            return

        earliest = parse_time(status.get("lastScheduleTime")) or parse_time(cronjob["metadata"].get("creationTimestamp")) or now
        deadline = spec.get("startingDeadlineSeconds")
        if deadline is not None:
            earliest = max(earliest, now - int(deadline))
        scheduled, missed = schedule.most_recent(earliest, now)
        if missed > MAX_MISSED:
            self.recorder.event(cronjob, "Warning", "TooManyMissedTimes",
                                f"too many missed start times: > {MAX_MISSED}. Set or decrease "
                                f".spec.startingDeadlineSeconds or check clock skew")
        if scheduled is not None:
            await self._start(cronjob, status, jobs, scheduled, schedule, now)
        cronjob = await self._write_status(cronjob, status)
        await self._clean_history(cronjob, [j for j in self.jobs.store.by_index("cronjob:namespace", ns)
                                            if is_controlled_by(j, cronjob)])
        self.queue.add_after(key, schedule.next_after(now) - now + NEXT_SCHEDULE_DELTA)

    async def _reconcile_active(self, cronjob: Obj, status: Obj, jobs: list[Obj]) -> None:
        active = list(status.get("active") or [])
        by_uid = {j["metadata"]["uid"]: j for j in jobs}
        for job in jobs:
            uid = job["metadata"]["uid"]
            listed = any(r.get("uid") == uid for r in active)
            if is_finished(job):
                if listed:
                    active = [r for r in active if r.get("uid") != uid]
                    outcome = "Complete" if (get_condition(job, "Complete") or {}).get("status") == "True" else "Failed"
                    self.recorder.event(cronjob, "Normal", "SawCompletedJob",
                                        f"Saw completed job: {job['metadata']['name']}, status: {outcome}")
                completed = get_condition(job, "Complete")
                if completed and completed.get("status") == "True":
                    done = (job.get("status") or {}).get("completionTime") or rfc3339(finish_time(job) or 0)
                    last = parse_time(status.get("lastSuccessfulTime"))
                    if last is None or (parse_time(done) or 0) > last:
                        status["lastSuccessfulTime"] = done
            elif not listed and not job["metadata"].get("deletionTimestamp"):
                active.append(job_reference(job))
        for ref in list(active):
            if ref.get("uid") in by_uid:
                continue
            # Not in our cache: it may only be newer than the cache, so ask the apiserver.
            found = await self.client.get_or_none("jobs", ref.get("name", ""), cronjob["metadata"]["namespace"])
            if found is None or found["metadata"]["uid"] != ref.get("uid"):
                active.remove(ref)
                self.recorder.event(cronjob, "Normal", "MissingJob", f"Active job went missing: {ref.get('name')}")
        if active:
            status["active"] = active
        else:
            status.pop("active", None)

    async def _start(self, cronjob: Obj, status: Obj, jobs: list[Obj], scheduled: float, schedule: Schedule,
                     now: float) -> None:
        spec = cronjob["spec"]
        deadline = spec.get("startingDeadlineSeconds")
        name = job_name(cronjob, scheduled)
        if deadline is not None and scheduled + int(deadline) < now:
            self.recorder.event(cronjob, "Warning", "MissSchedule",
                                f"Missed scheduled time to start a job: {schedule.format(scheduled)}")
            return
        active = status.get("active") or []
        if any(r.get("name") == name for r in active) or \
                parse_time(status.get("lastScheduleTime")) == float(math.floor(scheduled)):
            return
        policy = spec.get("concurrencyPolicy") or "Allow"
        if policy == "Forbid" and active:
            self.recorder.event(cronjob, "Normal", "JobAlreadyActive",
                                "Not starting job because prior execution is running and concurrency policy is Forbid")
            return
        if policy == "Replace":
            for ref in list(active):
                try:
                    await self.client.delete("jobs", ref["name"], cronjob["metadata"]["namespace"],
                                             propagation_policy="Background", preconditions={"uid": ref["uid"]})
                except APIError as e:
                    if not (is_not_found(e) or is_conflict(e)):
                        raise
                self.recorder.event(cronjob, "Normal", "SuccessfulDelete", f"Deleted job {ref['name']}")
                active.remove(ref)
        try:
            job = await self.client.create("jobs", job_from_template(cronjob, scheduled, schedule),
                                           cronjob["metadata"]["namespace"])
        except APIError as e:
            if not is_already_exists(e):
                self.recorder.event(cronjob, "Warning", "FailedCreate", f"Error creating job: {e}")
                raise
            existing = await self.client.get_or_none("jobs", name, cronjob["metadata"]["namespace"])
            if existing is None or not is_controlled_by(existing, cronjob):
                raise
            logger.debug("cronjob %s/%s: job %s already exists", cronjob["metadata"]["namespace"],
                         cronjob["metadata"]["name"], name)
            job = existing
        else:
            logger.info("cronjob %s/%s: created job %s", cronjob["metadata"]["namespace"],
                        cronjob["metadata"]["name"], name)
            self.recorder.event(cronjob, "Normal", "SuccessfulCreate", f"Created job {name}")
        if not is_finished(job) and not any(r.get("uid") == job["metadata"]["uid"] for r in active):
            active.append(job_reference(job))
        if active:
            status["active"] = active
        else:
            status.pop("active", None)
        status["lastScheduleTime"] = rfc3339(scheduled)

    async def _clean_history(self, cronjob: Obj, jobs: list[Obj]) -> None:
        spec = cronjob.get("spec") or {}
        finished = [j for j in jobs if is_finished(j) and not j["metadata"].get("deletionTimestamp")]
        for outcome, limit in (("Complete", spec.get("successfulJobsHistoryLimit")),
                               ("Failed", spec.get("failedJobsHistoryLimit"))):
            if limit is None:
                continue
            of_kind = sorted((j for j in finished if (get_condition(j, outcome) or {}).get("status") == "True"),
                             key=_start_order)
            for job in of_kind[:max(0, len(of_kind) - int(limit))]:
                meta = job["metadata"]
                try:
                    await self.client.delete("jobs", meta["name"], meta["namespace"], propagation_policy="Background",
                                             preconditions={"uid": meta["uid"]})
                except APIError as e:
                    if is_not_found(e) or is_conflict(e):
                        continue
                    raise
                self.recorder.event(cronjob, "Normal", "SuccessfulDelete", f"Deleted job {meta['name']}")

    async def _write_status(self, cronjob: Obj, status: Obj) -> Obj:
        diff = merge_diff(cronjob.get("status") or {}, status)
        if not diff:
            return cronjob
        meta = cronjob["metadata"]
        body = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": diff}
        return await self.client.patch("cronjobs", meta["name"], body, meta["namespace"], subresource="status")
