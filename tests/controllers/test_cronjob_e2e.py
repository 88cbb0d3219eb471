"""A CronJob end to end: an every-minute schedule starts a Job (slow by nature: up to a minute)."""
from tests.cluster import wait_for
from tests.controllers.test_job_e2e import cleanup


def test_every_minute_cronjob_creates_a_job(cluster):
    with cluster.http() as http:
        ns = cluster.new_namespace(http, "cron")
        try:
            body = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick"},
                    "spec": {"schedule": "*/1 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
                        "restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                        "containers": [{"name": "c", "image": "minik8s/busybox:1.36",
                                        "command": ["sh", "-c", "echo tick"]}]}}}}}}
            assert http.post(f"/apis/batch/v1/namespaces/{ns}/cronjobs", json=body).status_code == 201
            jobs = wait_for(lambda: http.get(f"/apis/batch/v1/namespaces/{ns}/jobs").json()["items"], 70, 0.5,
                            "a Job from the CronJob")
            job = jobs[0]
            assert job["metadata"]["name"].startswith("tick-")
            assert job["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
            stamp = job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
            assert stamp.endswith(":00Z")
            cj = wait_for(lambda: (c := http.get(f"/apis/batch/v1/namespaces/{ns}/cronjobs/tick").json())
                          .get("status", {}).get("lastScheduleTime") and c, 10, 0.2, "lastScheduleTime")
            assert cj["status"]["lastScheduleTime"] == stamp
        finally:
            http.delete(f"/apis/batch/v1/namespaces/{ns}/cronjobs/tick")
            cleanup(http, ns)
