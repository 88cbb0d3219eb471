"""CronJob controller: schedules in time zones, concurrency policies, missed times and history limits,
against a fake apiserver with a fake clock."""
import datetime

import pytest

from controllers.cronjob import SCHEDULED_TIMESTAMP, CronJobController, Schedule, ScheduleError
from controllers.common import rfc3339
from tests.controllers.test_job_harness import Harness

UTC = datetime.timezone.utc
T0 = datetime.datetime(2024, 1, 15, 10, 0, 30, tzinfo=UTC).timestamp()  # 30 s past a minute


def ts(*args):
    return datetime.datetime(*args, tzinfo=UTC).timestamp()


def cronjob(name="cj", schedule="*/5 * * * *", *, last=None, **spec):
    body = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name, "namespace": "ns"},
            "spec": {"schedule": schedule, "concurrencyPolicy": "Allow", "suspend": False,
                     "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1,
                     "jobTemplate": {"metadata": {"labels": {"app": "cron"}},
                                     "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
                                         {"name": "c", "image": "minik8s/busybox:1.36"}]}}}},
                     **spec},
            "status": {}}
    if last is not None:
        body["status"]["lastScheduleTime"] = rfc3339(last)
    return body


def owned_job(cj, name, *, finished=None, start=0.0):
    job = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": name, "namespace": "ns",
                        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": cj["metadata"]["name"],
                                             "uid": cj["metadata"]["uid"], "controller": True}]},
           "spec": {}, "status": {"startTime": rfc3339(start)}}
    if finished:
        job["status"]["conditions"] = [{"type": finished, "status": "True", "lastTransitionTime": rfc3339(start + 5)}]
        if finished == "Complete":
            job["status"]["completionTime"] = rfc3339(start + 5)
    return job


@pytest.fixture
async def h():
    harness = await Harness(CronJobController).start()
    harness.clock.now = T0
    harness.requeues = []
    original = harness.ctl.queue.add_after
    harness.ctl.queue.add_after = lambda key, delay: (harness.requeues.append((key, delay)), original(key, delay))
    yield harness
    await harness.stop()


def jobs(h):
    return h.list("jobs", "batch")


def cj_status(h, name="cj"):
    return h.fake.objects[("cronjobs.batch", f"ns/{name}")].get("status") or {}


def test_schedule_in_a_time_zone_follows_daylight_saving():
    berlin = Schedule("0 9 * * *", "Europe/Berlin")
    assert berlin.next_after(ts(2024, 1, 15, 0, 0)) == ts(2024, 1, 15, 8, 0)  # CET, UTC+1
    assert berlin.next_after(ts(2024, 7, 15, 0, 0)) == ts(2024, 7, 15, 7, 0)  # CEST, UTC+2
    assert Schedule("CRON_TZ=America/New_York 30 6 * * *").next_after(ts(2024, 1, 15)) == ts(2024, 1, 15, 11, 30)
    assert Schedule("TZ=Asia/Tokyo 0 0 * * *").format(ts(2024, 1, 15, 15, 0)) == "2024-01-16T00:00:00+09:00"
    assert Schedule("@every 90s").next_after(100.5) == 190
    assert Schedule("@hourly").next_after(ts(2024, 1, 15, 10, 1)) == ts(2024, 1, 15, 11, 0)
    with pytest.raises(ScheduleError) as e:
        Schedule("0 9 * * *", "Mars/Olympus")
    assert e.value.reason == "UnknownTimeZone"
    with pytest.raises(ScheduleError):
        Schedule("61 * * * *")


def test_most_recent_counts_missed_times_and_caps_at_100():
    every_minute = Schedule("* * * * *")
    assert every_minute.most_recent(ts(2024, 1, 15, 10, 0), ts(2024, 1, 15, 10, 0, 59)) == (None, 0)
    assert every_minute.most_recent(ts(2024, 1, 15, 10, 0), ts(2024, 1, 15, 10, 3, 10)) == (ts(2024, 1, 15, 10, 3), 3)
    latest, missed = every_minute.most_recent(ts(2024, 1, 15, 0, 0), ts(2024, 1, 15, 10, 3, 10))
    assert latest == ts(2024, 1, 15, 10, 3) and missed > 100


async def test_creates_the_job_for_the_scheduled_time_and_requeues_for_the_next(h):
    await h.seed(cronjob(last=ts(2024, 1, 15, 9, 55)))
    await h.reconcile("ns/cj")
    [job] = jobs(h)
    minutes = int(ts(2024, 1, 15, 10, 0) // 60)
    assert job["metadata"]["name"] == f"cj-{minutes}"
    assert job["metadata"]["annotations"][SCHEDULED_TIMESTAMP] == "2024-01-15T10:00:00Z"
    assert job["metadata"]["labels"] == {"app": "cron"}
    assert job["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    assert job["spec"]["template"]["spec"]["containers"][0]["name"] == "c"
    st = cj_status(h)
    assert st["lastScheduleTime"] == "2024-01-15T10:00:00Z"
    assert [r["name"] for r in st["active"]] == [job["metadata"]["name"]]
    # Next run 10:05:00, now 10:00:30: requeued for exactly then (+100 ms).
    assert h.requeues[-1] == ("ns/cj", pytest.approx(270.1))
    mark = h.mark()
    await h.reconcile("ns/cj")
    assert h.writes(mark) == []
    assert "SuccessfulCreate" in await h.events()


async def test_job_already_created_for_the_time_is_not_created_twice(h):
    cj = await h.seed(cronjob(last=ts(2024, 1, 15, 9, 55)))
    # Created for 10:00 and already finished (so not in `active`): the create answers AlreadyExists.
    await h.seed(owned_job(cj, f"cj-{int(ts(2024, 1, 15, 10, 0) // 60)}", finished="Complete",
                           start=ts(2024, 1, 15, 10, 0)))
    await h.reconcile("ns/cj")
    assert len(jobs(h)) == 1
    assert cj_status(h)["lastScheduleTime"] == "2024-01-15T10:00:00Z"


async def test_time_zone_decides_when_jobs_start(h):
    h.clock.now = ts(2024, 7, 15, 7, 0, 10)
    await h.seed(cronjob(schedule="0 9 * * *", timeZone="Europe/Berlin", last=ts(2024, 7, 14, 7, 0)))
    await h.reconcile("ns/cj")
    [job] = jobs(h)
    assert job["metadata"]["annotations"][SCHEDULED_TIMESTAMP] == "2024-07-15T09:00:00+02:00"


async def test_forbid_skips_while_a_job_runs(h):
    cj = await h.seed(cronjob(concurrencyPolicy="Forbid", last=ts(2024, 1, 15, 9, 55)))
    running = await h.seed(owned_job(cj, "cj-old", start=ts(2024, 1, 15, 9, 55)))
    await h.reconcile("ns/cj")
    assert [j["metadata"]["name"] for j in jobs(h)] == ["cj-old"]
    assert [r["uid"] for r in cj_status(h)["active"]] == [running["metadata"]["uid"]]
    assert "JobAlreadyActive" in await h.events()


async def test_replace_deletes_the_running_job_and_starts_a_new_one(h):
    cj = await h.seed(cronjob(concurrencyPolicy="Replace", last=ts(2024, 1, 15, 9, 55)))
    await h.seed(owned_job(cj, "cj-old", start=ts(2024, 1, 15, 9, 55)))
    await h.reconcile("ns/cj")
    names = [j["metadata"]["name"] for j in jobs(h)]
    assert "cj-old" not in names and len(names) == 1
    deletes = [a for a in h.writes() if a[0] == "DELETE"]
    assert deletes[0][3]["propagationPolicy"] == "Background"
    assert [r["name"] for r in cj_status(h)["active"]] == names


async def test_too_many_missed_times_starts_only_the_most_recent(h):
    await h.seed(cronjob(schedule="* * * * *", last=T0 - 200 * 60))
    await h.reconcile("ns/cj")
    [job] = jobs(h)
    assert job["metadata"]["annotations"][SCHEDULED_TIMESTAMP] == "2024-01-15T10:00:00Z"
    assert "TooManyMissedTimes" in await h.events()


async def test_starting_deadline_bounds_missed_times_and_skips_late_starts(h):
    await h.seed(cronjob(schedule="* * * * *", startingDeadlineSeconds=600, last=T0 - 200 * 60))
    await h.reconcile("ns/cj")
    assert len(jobs(h)) == 1
    assert "TooManyMissedTimes" not in await h.events(), "the deadline limits how far back we look"
    # A schedule missed by more than the deadline is not started.
    await h.seed(cronjob(name="late", schedule="0 10 * * *", startingDeadlineSeconds=10,
                         last=ts(2024, 1, 14, 10, 0)))
    h.clock.now = ts(2024, 1, 15, 10, 0, 5)
    await h.reconcile("ns/late")
    h.clock.now = ts(2024, 1, 15, 10, 0, 30)
    assert [j["metadata"]["name"] for j in jobs(h) if j["metadata"]["name"].startswith("late")]
    await h.seed(cronjob(name="later", schedule="0 10 * * *", startingDeadlineSeconds=10,
                         last=ts(2024, 1, 14, 10, 0)))
    await h.reconcile("ns/later")
    assert not [j for j in jobs(h) if j["metadata"]["name"].startswith("later")]


async def test_finished_jobs_leave_active_and_old_ones_are_deleted(h):
    cj = await h.seed(cronjob(successfulJobsHistoryLimit=2, failedJobsHistoryLimit=1, suspend=True,
                              last=ts(2024, 1, 15, 9, 0)))
    for i in range(4):
        await h.seed(owned_job(cj, f"cj-ok{i}", finished="Complete", start=ts(2024, 1, 15, 9, i)))
    for i in range(2):
        await h.seed(owned_job(cj, f"cj-bad{i}", finished="Failed", start=ts(2024, 1, 15, 9, 10 + i)))
    ok3 = next(j for j in jobs(h) if j["metadata"]["name"] == "cj-ok3")
    await h.client.patch("cronjobs", "cj", {"status": {"active": [
        {"kind": "Job", "name": "cj-ok3", "namespace": "ns", "uid": ok3["metadata"]["uid"]}]}}, "ns",
        subresource="status")
    await h.settle()
    await h.reconcile("ns/cj")
    assert [j["metadata"]["name"] for j in jobs(h)] == ["cj-bad1", "cj-ok2", "cj-ok3"]
    st = cj_status(h)
    assert "active" not in st
    assert st["lastSuccessfulTime"] == rfc3339(ts(2024, 1, 15, 9, 3) + 5)
    events = await h.events()
    assert "SawCompletedJob" in events and events.count("SuccessfulDelete") == 3


async def test_suspended_cronjob_starts_nothing(h):
    await h.seed(cronjob(suspend=True, last=ts(2024, 1, 15, 9, 55)))
    await h.reconcile("ns/cj")
    assert jobs(h) == [] and h.requeues == []


async def test_unparseable_schedule_is_reported(h):
    await h.seed(cronjob(schedule="every day", last=ts(2024, 1, 15, 9, 55)))
    await h.reconcile("ns/cj")
    assert jobs(h) == [] and "UnparseableSchedule" in await h.events()
