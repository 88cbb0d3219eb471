"""Job controller: reconcile against a fake apiserver with a fake clock (no sleeps)."""
import pytest

from controllers.job import (COMPLETION_INDEX, TRACKING_FINALIZER, JobController, format_indexes,
                             parse_indexes)
from tests.controllers.test_job_harness import Harness

UID_LABEL = "batch.kubernetes.io/controller-uid"


def job(name="j", *, uid_label="u-1", **spec):
    labels = {UID_LABEL: uid_label, "batch.kubernetes.io/job-name": name, "controller-uid": uid_label,
              "job-name": name}
    base = {"parallelism": 1, "completions": 1, "backoffLimit": 6, "completionMode": "NonIndexed",
            "suspend": False, "selector": {"matchLabels": {UID_LABEL: uid_label}},
            "template": {"metadata": {"labels": labels},
                         "spec": {"restartPolicy": "Never",
                                  "containers": [{"name": "c", "image": "minik8s/busybox:1.36"}]}}}
    base.update(spec)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": "ns"}, "spec": base}


@pytest.fixture
async def h():
    harness = await Harness(JobController, job_backoff_base=10.0, job_backoff_max=600.0).start()
    yield harness
    await harness.stop()


def pods(h):
    return [p for p in h.list("pods")]


def status(h, name="j"):
    return h.fake.objects[("jobs.batch", f"ns/{name}")].get("status") or {}


def condition(h, ctype, name="j"):
    return next((c for c in status(h, name).get("conditions") or [] if c["type"] == ctype), None)


async def test_creates_pods_with_tracking_finalizer_and_converges(h):
    await h.seed(job(parallelism=3, completions=5))
    await h.reconcile("ns/j")
    created = pods(h)
    assert len(created) == 3
    for p in created:
        assert TRACKING_FINALIZER in p["metadata"]["finalizers"]
        assert p["metadata"]["labels"][UID_LABEL] == "u-1"
        assert p["metadata"]["ownerReferences"][0]["kind"] == "Job"
        assert p["metadata"]["name"].startswith("j-")
    st = status(h)
    assert st["active"] == 3 and st["ready"] == 0 and st["succeeded"] == 0 and st["startTime"]
    mark = h.mark()
    await h.reconcile("ns/j")
    assert h.writes(mark) == []
    assert (await h.events()).count("SuccessfulCreate") == 3


async def test_leaves_pods_of_other_owners_alone(h):
    await h.seed(job())
    foreign = job()["spec"]["template"]
    await h.seed({"apiVersion": "v1", "kind": "Pod",
                  "metadata": {"name": "other", "namespace": "ns", "labels": foreign["metadata"]["labels"],
                               "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs",
                                                    "uid": "someone-else", "controller": True}]},
                  "spec": foreign["spec"], "status": {"phase": "Failed"}})
    await h.reconcile("ns/j")
    other = h.fake.objects[("pods", "ns/other")]
    assert other["metadata"]["ownerReferences"][0]["uid"] == "someone-else"
    assert not [a for a in h.writes() if a[1].endswith("/pods/other")]
    assert status(h)["active"] == 1 and status(h)["failed"] == 0


async def test_success_is_counted_once_and_completes_the_job(h):
    await h.seed(job(parallelism=2, completions=2))
    await h.reconcile("ns/j")
    for p in pods(h):
        await h.set_pod_status(p, phase="Succeeded")
    await h.reconcile("ns/j")
    st = status(h)
    assert st["succeeded"] == 2 and st["active"] == 0 and st["completionTime"]
    assert condition(h, "Complete")["status"] == "True"
    assert all(TRACKING_FINALIZER not in (p["metadata"].get("finalizers") or []) for p in pods(h))
    # The uncounted step went through status first (crash safety), then the counters.
    status_writes = [a[3]["status"] for a in h.writes() if a[1].endswith("/jobs/j/status")]
    assert any((w.get("uncountedTerminatedPods") or {}).get("succeeded") for w in status_writes)
    mark = h.mark()
    await h.reconcile("ns/j")
    assert h.writes(mark) == [] and status(h)["succeeded"] == 2
    assert "Completed" in await h.events()


async def test_failed_pods_back_off_then_exceed_the_backoff_limit(h):
    await h.seed(job(backoffLimit=1))
    await h.reconcile("ns/j")
    [first] = pods(h)
    await h.set_pod_status(first, phase="Failed")
    await h.reconcile("ns/j")
    assert status(h)["failed"] == 1 and status(h)["active"] == 0
    assert len(pods(h)) == 1, "the replacement waits for the failure backoff (10 s)"
    h.clock.advance(9)
    await h.reconcile("ns/j")
    assert len(pods(h)) == 1
    h.clock.advance(1)
    await h.reconcile("ns/j")
    [second] = [p for p in pods(h) if p["metadata"]["uid"] != first["metadata"]["uid"]]
    await h.set_pod_status(second, phase="Failed")
    await h.reconcile("ns/j")
    failed = condition(h, "Failed")
    assert failed["status"] == "True" and failed["reason"] == "BackoffLimitExceeded"
    assert failed["lastProbeTime"] and failed["lastTransitionTime"]
    assert status(h)["failed"] == 2
    assert "BackoffLimitExceeded" in await h.events()


async def test_container_restarts_count_towards_the_backoff_limit_with_on_failure(h):
    spec = job(backoffLimit=2)["spec"]
    spec["template"]["spec"]["restartPolicy"] = "OnFailure"
    await h.seed(job(**spec))
    await h.reconcile("ns/j")
    [pod] = pods(h)
    await h.set_pod_status(pod, phase="Running", containerStatuses=[{"name": "c", "restartCount": 1}])
    await h.reconcile("ns/j")
    assert condition(h, "Failed") is None
    await h.set_pod_status(pod, phase="Running", containerStatuses=[{"name": "c", "restartCount": 2}])
    await h.reconcile("ns/j")
    assert condition(h, "Failed")["reason"] == "BackoffLimitExceeded"
    assert h.fake.objects.get(("pods", f"ns/{pod['metadata']['name']}")) is None, "active pods are deleted"
    assert status(h)["failed"] == 0, "pods the Job deletes itself are not failures"


async def test_active_deadline_fails_the_job_and_deletes_its_pods(h):
    await h.seed(job(parallelism=2, completions=2, activeDeadlineSeconds=30))
    await h.reconcile("ns/j")
    for p in pods(h):
        await h.run_pod(p)
    await h.reconcile("ns/j")
    assert status(h)["ready"] == 2
    h.clock.advance(30)
    await h.reconcile("ns/j")
    assert condition(h, "Failed")["reason"] == "DeadlineExceeded"
    assert pods(h) == [] and status(h)["active"] == 0


async def test_indexed_job_runs_one_pod_per_index_and_tracks_completed_indexes(h):
    await h.seed(job(completionMode="Indexed", parallelism=3, completions=3))
    await h.reconcile("ns/j")
    by_index = {int(p["metadata"]["annotations"][COMPLETION_INDEX]): p for p in pods(h)}
    assert sorted(by_index) == [0, 1, 2]
    for ix, p in by_index.items():
        assert p["metadata"]["labels"][COMPLETION_INDEX] == str(ix)
        assert p["spec"]["hostname"] == f"j-{ix}"
        assert p["metadata"]["name"].startswith(f"j-{ix}-")
        env = p["spec"]["containers"][0]["env"]
        assert env == [{"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
            "fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}}}]
    await h.set_pod_status(by_index[1], phase="Succeeded")
    await h.set_pod_status(by_index[2], phase="Failed")
    await h.reconcile("ns/j")
    assert status(h)["completedIndexes"] == "1" and status(h)["succeeded"] == 1 and status(h)["failed"] == 1
    h.clock.advance(10)
    await h.reconcile("ns/j")
    active = [p for p in pods(h) if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
    assert sorted(p["metadata"]["annotations"][COMPLETION_INDEX] for p in active) == ["0", "2"]
    for p in active:
        await h.set_pod_status(p, phase="Succeeded")
    await h.reconcile("ns/j")
    assert status(h)["completedIndexes"] == "0-2" and status(h)["succeeded"] == 3
    assert condition(h, "Complete")["status"] == "True"


async def test_suspend_deletes_active_pods_and_resume_restarts_them(h):
    await h.seed(job(parallelism=2, completions=2))
    await h.reconcile("ns/j")
    assert len(pods(h)) == 2
    await h.client.patch("jobs", "j", {"spec": {"suspend": True}}, "ns")
    await h.settle()
    await h.reconcile("ns/j")
    assert pods(h) == []
    st = status(h)
    assert st["active"] == 0 and st["failed"] == 0
    assert condition(h, "Suspended")["status"] == "True" and condition(h, "Suspended")["reason"] == "JobSuspended"
    h.clock.advance(100)
    await h.client.patch("jobs", "j", {"spec": {"suspend": False}}, "ns")
    await h.settle()
    await h.reconcile("ns/j")
    assert len(pods(h)) == 2
    assert condition(h, "Suspended")["status"] == "False" and condition(h, "Suspended")["reason"] == "JobResumed"
    assert status(h)["startTime"] == "2023-11-14T22:15:00Z"  # the clock after the advance
    assert {"Suspended", "Resumed"} <= set(await h.events())


async def test_finished_job_is_deleted_after_its_ttl(h):
    await h.seed(job(ttlSecondsAfterFinished=60))
    await h.reconcile("ns/j")
    [pod] = pods(h)
    await h.set_pod_status(pod, phase="Succeeded")
    await h.reconcile("ns/j")
    assert condition(h, "Complete")
    h.clock.advance(59)
    await h.reconcile("ns/j")
    assert ("jobs.batch", "ns/j") in h.fake.objects
    h.clock.advance(1)
    await h.reconcile("ns/j")
    deletes = [a for a in h.writes() if a[0] == "DELETE" and a[1].endswith("/jobs/j")]
    assert len(deletes) == 1 and deletes[0][3]["propagationPolicy"] == "Background"
    assert ("jobs.batch", "ns/j") not in h.fake.objects


async def test_pods_of_a_deleted_job_lose_the_tracking_finalizer(h):
    await h.seed(job())
    await h.reconcile("ns/j")
    await h.client.delete("jobs", "j", "ns")
    await h.settle()
    await h.reconcile("ns/j")
    assert all(TRACKING_FINALIZER not in (p["metadata"].get("finalizers") or []) for p in pods(h))


def test_completed_indexes_format():
    assert format_indexes({0, 1, 2, 4, 6, 7}) == "0-2,4,6-7"
    assert parse_indexes("0-2,4,6-7") == {0, 1, 2, 4, 6, 7}
    assert format_indexes(set()) == "" and parse_indexes("") == set()
