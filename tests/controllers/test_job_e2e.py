"""Jobs end to end on the real cluster: the backoff limit and Indexed completion through real pods."""
from tests.cluster import wait_for

BUSYBOX = "minik8s/busybox:1.36"


def job_body(name, command, **spec):
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {**spec, "template": {"spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                                                   "containers": [{"name": "c", "image": BUSYBOX,
                                                                   "command": ["sh", "-c", command]}]}}}}


def condition(job, ctype):
    return next((c for c in (job.get("status") or {}).get("conditions") or [] if c["type"] == ctype), None)


def cleanup(http, ns):
    for job in http.get(f"/apis/batch/v1/namespaces/{ns}/jobs").json()["items"]:
        http.request("DELETE", f"/apis/batch/v1/namespaces/{ns}/jobs/{job['metadata']['name']}",
                     json={"propagationPolicy": "Background"})
    # The Job controller drops its tracking finalizers from the pods of deleted Jobs.
    wait_for(lambda: not any(p["metadata"].get("finalizers")
                             for p in http.get(f"/api/v1/namespaces/{ns}/pods").json()["items"]), 30,
             what="tracking finalizers removed")
    http.delete(f"/api/v1/namespaces/{ns}/pods")
    http.delete(f"/api/v1/namespaces/{ns}")


def test_job_that_always_fails_stops_at_the_backoff_limit(cluster):
    with cluster.http() as http:
        ns = cluster.new_namespace(http, "job")
        try:
            r = http.post(f"/apis/batch/v1/namespaces/{ns}/jobs", json=job_body("fails", "exit 1", backoffLimit=2))
            assert r.status_code == 201, r.text

            def failed():
                job = http.get(f"/apis/batch/v1/namespaces/{ns}/jobs/fails").json()
                return job if condition(job, "Failed") else None
            # Two pod-failure backoffs (10 s + 20 s by default, less with a smaller --job-backoff-base).
            job = wait_for(failed, 120, 0.5, "Job Failed")
            assert condition(job, "Failed")["reason"] == "BackoffLimitExceeded"
            assert job["status"]["failed"] == 3 and job["status"].get("active", 0) == 0
            pods = http.get(f"/api/v1/namespaces/{ns}/pods").json()["items"]
            assert len(pods) == 3 and all(p["status"]["phase"] == "Failed" for p in pods)
            assert all(not p["metadata"].get("finalizers") for p in pods), "counted pods lose the finalizer"
            reasons = {e["reason"] for e in http.get(f"/api/v1/namespaces/{ns}/events").json()["items"]}
            assert {"SuccessfulCreate", "BackoffLimitExceeded"} <= reasons
        finally:
            cleanup(http, ns)


def test_indexed_job_gives_each_pod_its_completion_index(cluster):
    with cluster.http() as http:
        ns = cluster.new_namespace(http, "job")
        try:
            body = job_body("idx", "echo index=$JOB_COMPLETION_INDEX host=$(hostname)", completions=3,
                            parallelism=3, completionMode="Indexed")
            assert http.post(f"/apis/batch/v1/namespaces/{ns}/jobs", json=body).status_code == 201

            def complete():
                job = http.get(f"/apis/batch/v1/namespaces/{ns}/jobs/idx").json()
                return job if condition(job, "Complete") else None
            job = wait_for(complete, 90, 0.5, "indexed Job Complete")
            assert job["status"]["succeeded"] == 3 and job["status"]["completedIndexes"] == "0-2"
            logs = {}
            for pod in http.get(f"/api/v1/namespaces/{ns}/pods").json()["items"]:
                ix = pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
                logs[ix] = http.get(f"/api/v1/namespaces/{ns}/pods/{pod['metadata']['name']}/log").text.strip()
            assert logs == {str(i): f"index={i} host=idx-{i}" for i in range(3)}
        finally:
            cleanup(http, ns)
