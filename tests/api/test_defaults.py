from api.defaults import DEFAULTERS, default_pull_policy, job_generate_selector


def defaulted(kind, obj):
    DEFAULTERS[kind](obj)
    return obj


def pod_spec():
    return {"containers": [{"name": "c", "image": "busybox"}]}


def test_pod_spec_defaults():
    spec = defaulted("Pod", {"spec": pod_spec()})["spec"]
    assert spec["restartPolicy"] == "Always"
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["dnsPolicy"] == "ClusterFirst"
    assert spec["schedulerName"] == "default-scheduler"
    assert spec["securityContext"] == {}
    assert spec["enableServiceLinks"] is True
    assert spec["serviceAccountName"] == spec["serviceAccount"] == "default"


def test_pod_defaults_keep_explicit_values():
    spec = pod_spec() | {"restartPolicy": "Never", "serviceAccount": "robot"}
    spec = defaulted("Pod", {"spec": spec})["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["serviceAccountName"] == "robot"


def test_container_defaults():
    spec = {"containers": [{"name": "c", "image": "nginx:1.25", "ports": [{"containerPort": 80}]}]}
    c = defaulted("Pod", {"spec": spec})["spec"]["containers"][0]
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["terminationMessagePath"] == "/dev/termination-log"
    assert c["terminationMessagePolicy"] == "File"
    assert c["ports"][0]["protocol"] == "TCP"
    assert c["resources"] == {}


def test_pull_policy_by_tag():
    assert default_pull_policy("busybox") == "Always"
    assert default_pull_policy("busybox:latest") == "Always"
    assert default_pull_policy("registry:5000/busybox") == "Always"
    assert default_pull_policy("registry:5000/busybox:1.36") == "IfNotPresent"
    assert default_pull_policy("busybox@sha256:abcd") == "IfNotPresent"


def test_probe_defaults():
    spec = {"containers": [{"name": "c", "image": "x", "livenessProbe": {"httpGet": {"port": 80}}}]}
    probe = defaulted("Pod", {"spec": spec})["spec"]["containers"][0]["livenessProbe"]
    assert (probe["timeoutSeconds"], probe["periodSeconds"], probe["successThreshold"],
            probe["failureThreshold"]) == (1, 10, 1, 3)
    assert probe["httpGet"] == {"port": 80, "path": "/", "scheme": "HTTP"}


def test_volume_defaults():
    spec = pod_spec() | {"volumes": [{"name": "a", "configMap": {"name": "cm"}}, {"name": "b", "secret": {"secretName": "s"}},
                                     {"name": "c"}]}
    volumes = defaulted("Pod", {"spec": spec})["spec"]["volumes"]
    assert volumes[0]["configMap"]["defaultMode"] == 420
    assert volumes[1]["secret"]["defaultMode"] == 420
    assert volumes[2]["emptyDir"] == {}


def test_init_containers_are_defaulted():
    spec = pod_spec() | {"initContainers": [{"name": "i", "image": "x:1"}]}
    init = defaulted("Pod", {"spec": spec})["spec"]["initContainers"][0]
    assert init["imagePullPolicy"] == "IfNotPresent"


def test_service_defaults():
    spec = defaulted("Service", {"spec": {"ports": [{"port": 80}]}})["spec"]
    assert spec["type"] == "ClusterIP"
    assert spec["sessionAffinity"] == "None"
    assert spec["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    assert spec["ipFamilyPolicy"] == "SingleStack" and spec["ipFamilies"] == ["IPv4"]
    assert spec["internalTrafficPolicy"] == "Cluster"
    assert "externalTrafficPolicy" not in spec
    assert "clusterIP" not in spec


def test_nodeport_service_gets_external_traffic_policy():
    spec = defaulted("Service", {"spec": {"type": "NodePort", "ports": [{"port": 80}]}})["spec"]
    assert spec["externalTrafficPolicy"] == "Cluster"


def test_external_name_service_gets_no_ip_families():
    spec = defaulted("Service", {"spec": {"type": "ExternalName", "externalName": "example.com"}})["spec"]
    assert "ipFamilies" not in spec and "internalTrafficPolicy" not in spec


def test_client_ip_affinity_timeout_default():
    spec = defaulted("Service", {"spec": {"sessionAffinity": "ClientIP"}})["spec"]
    assert spec["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}


def test_deployment_defaults():
    spec = defaulted("Deployment", {"spec": {"template": {"spec": pod_spec()}}})["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    assert "minReadySeconds" not in spec
    assert spec["template"]["spec"]["restartPolicy"] == "Always"


def test_recreate_deployment_gets_no_rolling_update():
    spec = defaulted("Deployment", {"spec": {"strategy": {"type": "Recreate"}}})["spec"]
    assert spec["strategy"] == {"type": "Recreate"}


def test_replicaset_defaults():
    assert defaulted("ReplicaSet", {"spec": {}})["spec"]["replicas"] == 1


def test_statefulset_defaults():
    spec = defaulted("StatefulSet", {"spec": {}})["spec"]
    assert spec["replicas"] == 1
    assert spec["podManagementPolicy"] == "OrderedReady"
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert spec["revisionHistoryLimit"] == 10
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}


def test_daemonset_defaults():
    spec = defaulted("DaemonSet", {"spec": {}})["spec"]
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert spec["revisionHistoryLimit"] == 10


def test_job_defaults():
    spec = defaulted("Job", {"spec": {"template": {"spec": pod_spec()}}})["spec"]
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"]) == (1, 1, 6)
    assert spec["completionMode"] == "NonIndexed"
    assert spec["suspend"] is False
    assert "manualSelector" not in spec


def test_job_with_parallelism_only_is_a_work_queue():
    spec = defaulted("Job", {"spec": {"parallelism": 3}})["spec"]
    assert "completions" not in spec


def test_cronjob_defaults():
    obj = {"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": pod_spec()}}}}}
    spec = defaulted("CronJob", obj)["spec"]
    assert spec["concurrencyPolicy"] == "Allow"
    assert spec["suspend"] is False
    assert (spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"]) == (3, 1)
    assert spec["jobTemplate"]["spec"]["template"]["spec"]["dnsPolicy"] == "ClusterFirst"


def test_namespace_defaults():
    assert defaulted("Namespace", {})["spec"] == {"finalizers": ["kubernetes"]}


def test_namespace_name_label_is_set_and_cannot_be_changed():
    ns = defaulted("Namespace", {"metadata": {"name": "prod", "labels": {"team": "a"}}})
    assert ns["metadata"]["labels"] == {"team": "a", "kubernetes.io/metadata.name": "prod"}
    changed = {"metadata": {"name": "prod", "labels": {"kubernetes.io/metadata.name": "other"}}}
    assert defaulted("Namespace", changed)["metadata"]["labels"] == {"kubernetes.io/metadata.name": "prod"}
    assert "labels" not in defaulted("Namespace", {"metadata": {"generateName": "x-"}})["metadata"]
    assert defaulted("Namespace", {"metadata": {"name": "p", "labels": "bad"}})["metadata"]["labels"] == "bad"


def test_secret_defaults_and_string_data():
    obj = defaulted("Secret", {"stringData": {"user": "admin"}, "data": {"x": "eQ=="}})
    assert obj["type"] == "Opaque"
    assert obj["data"] == {"x": "eQ==", "user": "YWRtaW4="}
    assert "stringData" not in obj


def test_endpoints_port_protocol():
    obj = defaulted("Endpoints", {"subsets": [{"ports": [{"port": 80}]}]})
    assert obj["subsets"][0]["ports"][0]["protocol"] == "TCP"


def test_defaulters_tolerate_wrong_types():
    for kind, fn in DEFAULTERS.items():
        for spec in ("x", 5, ["a"], {"containers": "x", "template": 3, "ports": "x", "strategy": [1],
                                     "updateStrategy": "x", "jobTemplate": 1, "volumes": [1, "x"]}):
            assert fn({"spec": spec, "subsets": spec, "stringData": spec}) is None  # no exception


def test_job_generate_selector():
    job = {"metadata": {"name": "pi"}, "spec": {"template": {"spec": pod_spec()}}}
    job_generate_selector(job, "u-1")
    assert job["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}}
    assert job["spec"]["template"]["metadata"]["labels"] == {
        "batch.kubernetes.io/controller-uid": "u-1", "controller-uid": "u-1",
        "batch.kubernetes.io/job-name": "pi", "job-name": "pi"}


def test_job_generate_selector_respects_manual_selector():
    job = {"metadata": {"name": "pi"}, "spec": {"manualSelector": True, "selector": {"matchLabels": {"a": "b"}}}}
    job_generate_selector(job, "u-1")
    assert job["spec"]["selector"] == {"matchLabels": {"a": "b"}}
