import base64
import copy

import pytest

from api import registry
from api.validation import (
    VALIDATORS,
    cron_schedule_error,
    is_dns1123_label,
    is_dns1123_subdomain,
    validate_object_meta,
)

DEFS = {r.kind: r for r in registry.RESOURCES}


def check(obj, old=None):
    """Default then validate, as the apiserver does; returns the causes."""
    rd = DEFS[obj["kind"]]
    obj = copy.deepcopy(obj)
    rd.default(obj)
    if old is not None:
        old = copy.deepcopy(old)
        rd.default(old)
    return rd.validate(obj, old)


def fields(causes):
    return [c.field for c in causes]


def reasons(causes):
    return {c.field: c.reason for c in causes}


def meta(name="x", **extra):
    return {"name": name, "namespace": "default", "uid": "u1", **extra}


def pod(**spec):
    base = {"containers": [{"name": "app", "image": "busybox:1.36"}]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta("p"), "spec": base | spec}


def container(**fields_):
    return {"name": "app", "image": "busybox:1.36"} | fields_


def template(labels=None, **spec):
    return {"metadata": {"labels": labels or {"app": "web"}},
            "spec": {"containers": [container()]} | spec}


def workload(kind, **spec):
    api_version = "apps/v1"
    base = {"selector": {"matchLabels": {"app": "web"}}, "template": template()}
    return {"apiVersion": api_version, "kind": kind, "metadata": meta("w"), "spec": base | spec}


def service(**spec):
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta("svc"),
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]} | spec}


def job(**spec):
    base = {"selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}},
            "template": template({"batch.kubernetes.io/controller-uid": "u1"}, restartPolicy="Never")}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta("j"), "spec": base | spec}


def cronjob(**spec):
    base = {"schedule": "*/5 * * * *",
            "jobTemplate": {"spec": {"template": template(restartPolicy="OnFailure")}}}
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta("cj"), "spec": base | spec}


# --- names and object meta -----------------------------------------------------------------------

def test_dns_names():
    assert is_dns1123_label("my-name") and not is_dns1123_label("my.name") and not is_dns1123_label("A")
    assert is_dns1123_subdomain("my.name") and not is_dns1123_subdomain("-x")
    assert not is_dns1123_label("a" * 64)


def test_meta_name_required():
    causes = validate_object_meta({"metadata": {"namespace": "d"}}, namespaced=True)
    assert causes[0].field == "metadata.name" and causes[0].reason == "FieldValueRequired"


def test_meta_name_must_be_subdomain():
    causes = validate_object_meta({"metadata": {"name": "Bad_Name", "namespace": "d"}}, namespaced=True)
    assert fields(causes) == ["metadata.name"]
    assert causes[0].message.startswith('Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain')


def test_meta_namespace_required_for_namespaced_and_forbidden_otherwise():
    assert fields(validate_object_meta({"metadata": {"name": "a"}}, namespaced=True)) == ["metadata.namespace"]
    causes = validate_object_meta({"metadata": {"name": "a", "namespace": "d"}}, namespaced=False)
    assert reasons(causes) == {"metadata.namespace": "FieldValueForbidden"}


def test_meta_labels_validated():
    obj = {"metadata": {"name": "a", "namespace": "d", "labels": {"bad key": "v", "ok": "-bad", "n": 1}}}
    assert len(validate_object_meta(obj, namespaced=True)) == 3


def test_meta_annotation_size_limit():
    obj = {"metadata": {"name": "a", "namespace": "d", "annotations": {"big": "x" * (256 * 1024)}}}
    assert reasons(validate_object_meta(obj, namespaced=True)) == {"metadata.annotations": "FieldValueTooLong"}


def test_meta_annotations_allow_any_value():
    obj = {"metadata": {"name": "a", "namespace": "d", "annotations": {"example.com/Note": "any thing!"}}}
    assert validate_object_meta(obj, namespaced=True) == []


def test_meta_owner_references_required_fields():
    obj = {"metadata": {"name": "a", "namespace": "d", "ownerReferences": [{"kind": "ReplicaSet"}]}}
    assert set(fields(validate_object_meta(obj, namespaced=True))) == {
        "metadata.ownerReferences[0].apiVersion", "metadata.ownerReferences[0].name",
        "metadata.ownerReferences[0].uid"}


def test_meta_only_one_controller_reference():
    ref = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "controller": True}
    refs = [ref | {"name": "a", "uid": "1"}, ref | {"name": "b", "uid": "2"}]
    causes = validate_object_meta({"metadata": {"name": "a", "namespace": "d", "ownerReferences": refs}},
                                  namespaced=True)
    assert "Only one reference can have Controller set to true" in causes[0].message


def test_meta_finalizers_must_be_qualified_names():
    obj = {"metadata": {"name": "a", "namespace": "d", "finalizers": ["example.com/ok", "not ok"]}}
    assert fields(validate_object_meta(obj, namespaced=True)) == ["metadata.finalizers[1]"]


def test_meta_immutable_fields_on_update():
    old = {"metadata": {"name": "a", "namespace": "d", "uid": "1", "creationTimestamp": "2024-01-01T00:00:00Z"}}
    new = {"metadata": {"name": "a", "namespace": "d", "uid": "2", "creationTimestamp": "2025-01-01T00:00:00Z"}}
    causes = validate_object_meta(new, namespaced=True, old=old)
    assert fields(causes) == ["metadata.uid", "metadata.creationTimestamp"]
    assert all(c.message.endswith("field is immutable") for c in causes)


def test_meta_update_may_omit_uid():
    old = {"metadata": {"name": "a", "namespace": "d", "uid": "1"}}
    assert validate_object_meta({"metadata": {"name": "a", "namespace": "d"}}, namespaced=True, old=old) == []


def test_meta_wrong_types_are_causes():
    assert validate_object_meta({"metadata": "x"}, namespaced=True)
    assert validate_object_meta({}, namespaced=True)
    assert validate_object_meta({"metadata": {"name": 5, "namespace": "d"}}, namespaced=True)


# --- Pod -----------------------------------------------------------------------------------------

def test_valid_pod():
    p = pod(volumes=[{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c"}}],
            containers=[container(ports=[{"containerPort": 80, "name": "http"}],
                                  env=[{"name": "A", "value": "1"},
                                       {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                                  volumeMounts=[{"name": "data", "mountPath": "/data"}],
                                  resources={"requests": {"cpu": "100m", "memory": "64Mi"},
                                             "limits": {"cpu": "1", "memory": "128Mi"}},
                                  livenessProbe={"httpGet": {"port": "http"}},
                                  readinessProbe={"tcpSocket": {"port": 80}, "periodSeconds": 5})],
            tolerations=[{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                          "tolerationSeconds": 300}])
    assert check(p) == []


def test_pod_requires_containers():
    causes = check(pod(containers=[]))
    assert reasons(causes) == {"spec.containers": "FieldValueRequired"}


def test_pod_containers_wrong_type_is_a_cause():
    assert fields(check(pod(containers="nginx"))) == ["spec.containers"]


def test_pod_container_names_unique_labels():
    causes = check(pod(containers=[container(), container(), container(name="Bad_Name")]))
    assert reasons(causes) == {"spec.containers[1].name": "FieldValueDuplicate",
                               "spec.containers[2].name": "FieldValueInvalid"}


def test_pod_init_and_app_container_names_share_a_namespace():
    causes = check(pod(initContainers=[container()]))
    assert reasons(causes) == {"spec.containers[0].name": "FieldValueDuplicate"}


def test_pod_image_required():
    assert reasons(check(pod(containers=[{"name": "app"}]))) == {"spec.containers[0].image": "FieldValueRequired"}


def test_pod_port_range_and_protocol():
    ports = [{"containerPort": 0}, {"containerPort": 70000}, {"containerPort": 80, "protocol": "HTTP"}]
    causes = check(pod(containers=[container(ports=ports)]))
    assert fields(causes) == ["spec.containers[0].ports[0].containerPort",
                              "spec.containers[0].ports[1].containerPort",
                              "spec.containers[0].ports[2].protocol"]
    assert causes[2].message == 'Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"'


def test_pod_restart_and_dns_policy():
    causes = check(pod(restartPolicy="Sometimes", dnsPolicy="Google"))
    assert reasons(causes) == {"spec.restartPolicy": "FieldValueNotSupported",
                               "spec.dnsPolicy": "FieldValueNotSupported"}


def test_pod_dns_policy_none_needs_nameservers():
    assert fields(check(pod(dnsPolicy="None"))) == ["spec.dnsConfig.nameservers"]
    assert check(pod(dnsPolicy="None", dnsConfig={"nameservers": ["10.96.0.10"]})) == []


def test_pod_volume_names_unique():
    causes = check(pod(volumes=[{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}]))
    assert reasons(causes) == {"spec.volumes[1].name": "FieldValueDuplicate"}


def test_pod_volume_needs_exactly_one_source():
    causes = check(pod(volumes=[{"name": "v", "emptyDir": {}, "hostPath": {"path": "/x"}}]))
    assert reasons(causes) == {"spec.volumes[0].hostPath": "FieldValueForbidden"}


def test_pod_unsupported_volume_type():
    causes = check(pod(volumes=[{"name": "v", "nfs": {"server": "s", "path": "/"}}]))
    assert reasons(causes) == {"spec.volumes[0].nfs": "FieldValueNotSupported"}


def test_pod_volume_source_required_fields():
    causes = check(pod(volumes=[{"name": "a", "secret": {}}, {"name": "b", "persistentVolumeClaim": {}},
                                {"name": "c", "hostPath": {"path": "/x", "type": "Weird"}}]))
    assert fields(causes) == ["spec.volumes[0].secret.secretName", "spec.volumes[1].persistentVolumeClaim.claimName",
                              "spec.volumes[2].hostPath.type"]


def test_pod_volume_mount_must_name_a_volume():
    causes = check(pod(containers=[container(volumeMounts=[{"name": "missing", "mountPath": "/m"}])]))
    assert reasons(causes) == {"spec.containers[0].volumeMounts[0].name": "FieldValueNotFound"}


def test_pod_resources_must_parse():
    causes = check(pod(containers=[container(resources={"limits": {"cpu": "lots"}})]))
    assert fields(causes) == ["spec.containers[0].resources.limits[cpu]"]


def test_pod_requests_must_not_exceed_limits():
    causes = check(pod(containers=[container(resources={"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}})]))
    assert fields(causes) == ["spec.containers[0].resources.requests[memory]"]
    assert "must be less than or equal to memory limit of 1Gi" in causes[0].message


def test_pod_negative_resource_rejected():
    assert check(pod(containers=[container(resources={"requests": {"cpu": "-1"}})]))


def test_pod_probe_fields():
    probe = {"exec": {"command": ["true"]}, "periodSeconds": -1, "successThreshold": 2}
    causes = check(pod(containers=[container(livenessProbe=probe)]))
    assert set(fields(causes)) == {"spec.containers[0].livenessProbe.periodSeconds",
                                   "spec.containers[0].livenessProbe.successThreshold"}


def test_pod_probe_needs_one_handler():
    assert fields(check(pod(containers=[container(readinessProbe={"periodSeconds": 3})]))) == [
        "spec.containers[0].readinessProbe"]
    both = {"exec": {"command": ["x"]}, "tcpSocket": {"port": 1}}
    assert reasons(check(pod(containers=[container(readinessProbe=both)]))) == {
        "spec.containers[0].readinessProbe.tcpSocket": "FieldValueForbidden"}


def test_pod_env_names():
    causes = check(pod(containers=[container(env=[{"name": "1BAD"}, {"value": "x"}])]))
    assert fields(causes) == ["spec.containers[0].env[0].name", "spec.containers[0].env[1].name"]


def test_pod_env_value_and_value_from_exclusive():
    env = [{"name": "A", "value": "x", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]
    assert fields(check(pod(containers=[container(env=env)]))) == ["spec.containers[0].env[0].valueFrom"]


def test_pod_termination_grace_period_non_negative():
    assert fields(check(pod(terminationGracePeriodSeconds=-1))) == ["spec.terminationGracePeriodSeconds"]


def test_pod_toleration_rules():
    tols = [{"key": "k", "operator": "Exists", "value": "v"}, {"operator": "Equal", "value": "v"},
            {"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}]
    assert fields(check(pod(tolerations=tols))) == ["spec.tolerations[0].operator", "spec.tolerations[1].operator",
                                                    "spec.tolerations[2].effect"]


def test_pod_update_may_change_image():
    old = pod()
    new = pod(containers=[container(image="busybox:1.37")])
    assert check(new, old) == []


def test_pod_update_may_add_tolerations_and_grace_period():
    old = pod(tolerations=[{"key": "a", "operator": "Exists"}])
    new = pod(tolerations=[{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}],
              terminationGracePeriodSeconds=5, activeDeadlineSeconds=100)
    assert check(new, old) == []


def test_pod_update_may_not_remove_tolerations():
    old = pod(tolerations=[{"key": "a", "operator": "Exists"}])
    causes = check(pod(), old)
    assert fields(causes) == ["spec"]
    assert "pod updates may not change fields other than" in causes[0].message


def test_pod_update_may_not_change_other_fields():
    causes = check(pod(containers=[container(command=["sh"])]), pod())
    assert reasons(causes) == {"spec": "FieldValueForbidden"}


def test_pod_update_may_not_raise_active_deadline():
    causes = check(pod(activeDeadlineSeconds=200), pod(activeDeadlineSeconds=100))
    assert fields(causes) == ["spec.activeDeadlineSeconds"]


def test_pod_wrong_types_everywhere_do_not_raise():
    bad = pod(containers=[{"name": 1, "image": [], "ports": "80", "env": {"A": 1}, "resources": "big",
                           "volumeMounts": [3], "livenessProbe": "yes"}],
              volumes="none", restartPolicy=3, tolerations={"a": 1}, terminationGracePeriodSeconds="30",
              nodeSelector=["x"], dnsConfig=5)
    assert len(check(bad)) >= 8


# --- Service -------------------------------------------------------------------------------------

def test_valid_service():
    assert check(service()) == []


def test_valid_headless_and_external_name_services():
    assert check(service(clusterIP="None", ports=[])) == []
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": meta("ext"),
           "spec": {"type": "ExternalName", "externalName": "db.example.com"}}
    assert check(svc) == []


def test_service_name_must_be_label():
    svc = service()
    svc["metadata"]["name"] = "my.svc"
    assert fields(check(svc)) == ["metadata.name"]


def test_service_ports_required():
    assert reasons(check(service(ports=[]))) == {"spec.ports": "FieldValueRequired"}


def test_service_type_supported():
    assert reasons(check(service(type="Magic"))) == {"spec.type": "FieldValueNotSupported"}


def test_service_port_names_required_and_unique_with_several_ports():
    causes = check(service(ports=[{"port": 80}, {"port": 81, "name": "a"}, {"port": 82, "name": "a"}]))
    assert reasons(causes) == {"spec.ports[0].name": "FieldValueRequired",
                               "spec.ports[2].name": "FieldValueDuplicate"}


def test_service_port_range_and_target_port():
    causes = check(service(ports=[{"port": 0, "name": "a", "targetPort": 80}, {"port": 1, "name": "b", "targetPort": "Not_A_Name"},
                                  {"port": 2, "name": "c", "targetPort": 70000}]))
    assert fields(causes) == ["spec.ports[0].port", "spec.ports[1].targetPort", "spec.ports[2].targetPort"]


def test_service_named_target_port_ok():
    assert check(service(ports=[{"port": 80, "targetPort": "http"}])) == []


def test_service_node_port_forbidden_on_cluster_ip():
    causes = check(service(ports=[{"port": 80, "nodePort": 30080}]))
    assert reasons(causes) == {"spec.ports[0].nodePort": "FieldValueForbidden"}
    assert check(service(type="NodePort", ports=[{"port": 80, "nodePort": 30080}])) == []


def test_service_external_name_required():
    svc = service(type="ExternalName", ports=[])
    assert fields(check(svc)) == ["spec.externalName"]


def test_service_external_traffic_policy_only_for_node_ports():
    assert fields(check(service(externalTrafficPolicy="Local"))) == ["spec.externalTrafficPolicy"]
    assert check(service(type="LoadBalancer", externalTrafficPolicy="Local")) == []


def test_service_session_affinity_timeout_range():
    svc = service(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 86401}})
    assert fields(check(svc)) == ["spec.sessionAffinityConfig.clientIP.timeoutSeconds"]
    assert reasons(check(service(sessionAffinity="Sticky"))) == {"spec.sessionAffinity": "FieldValueNotSupported"}


def test_service_cluster_ip_must_be_an_ip():
    assert fields(check(service(clusterIP="10.96.0.300"))) == ["spec.clusterIP"]


def test_service_cluster_ip_immutable():
    causes = check(service(clusterIP="10.96.0.2"), service(clusterIP="10.96.0.1"))
    assert fields(causes) == ["spec.clusterIP"] and causes[0].message.endswith("field is immutable")


def test_service_cluster_ip_may_change_when_leaving_external_name():
    old = {"apiVersion": "v1", "kind": "Service", "metadata": meta("svc"),
           "spec": {"type": "ExternalName", "externalName": "a.example.com"}}
    assert check(service(clusterIP="10.96.0.9"), old) == []


# --- Endpoints / Node / Namespace ----------------------------------------------------------------

def endpoints(*subsets):
    return {"apiVersion": "v1", "kind": "Endpoints", "metadata": meta("svc"), "subsets": list(subsets)}


def test_valid_endpoints():
    subset = {"addresses": [{"ip": "10.244.0.5", "nodeName": "n1"}], "notReadyAddresses": [{"ip": "fd00::5"}],
              "ports": [{"port": 8080}]}
    assert check(endpoints(subset)) == []


def test_endpoints_reject_bad_and_loopback_ips():
    subset = {"addresses": [{"ip": "nope"}, {"ip": "127.0.0.1"}, {}], "ports": [{"port": 0}]}
    assert fields(check(endpoints(subset))) == ["subsets[0].addresses[0].ip", "subsets[0].addresses[1].ip",
                                                "subsets[0].addresses[2].ip", "subsets[0].ports[0].port"]


def test_valid_node_and_taints():
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
            "spec": {"podCIDR": "10.244.1.0/24", "taints": [{"key": "k", "effect": "NoSchedule"}]}}
    assert check(node) == []


def test_node_rejects_bad_taints_and_cidr():
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
            "spec": {"podCIDR": "10.244.1.0/33", "taints": [{"key": "k"}, {"key": "k", "effect": "Never"}]}}
    assert fields(check(node)) == ["spec.podCIDR", "spec.taints[0].effect", "spec.taints[1].effect"]


def test_node_pod_cidr_set_once():
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}, "spec": {}}
    assigned = copy.deepcopy(node)
    assigned["spec"]["podCIDR"] = "10.244.1.0/24"
    assert check(assigned, node) == []
    changed = copy.deepcopy(node)
    changed["spec"]["podCIDR"] = "10.244.2.0/24"
    assert reasons(check(changed, assigned)) == {"spec.podCIDR": "FieldValueForbidden"}


def test_namespace_name_must_be_label():
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a.b"}}
    assert fields(check(ns)) == ["metadata.name"]
    assert check({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}) == []


def test_namespace_spec_finalizers():
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}, "spec": {"finalizers": ["custom"]}}
    assert fields(check(ns)) == ["spec.finalizers[0]"]


# --- ConfigMap / Secret / ServiceAccount / Event / Lease -----------------------------------------

def configmap(**fields_):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("cm")} | fields_


def secret(**fields_):
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta("s")} | fields_


def b64(text):
    return base64.b64encode(text.encode()).decode()


def test_valid_configmap():
    assert check(configmap(data={"app.conf": "x=1", "KEY_2": "y"}, binaryData={"blob": b64("z")})) == []


def test_configmap_keys_validated():
    causes = check(configmap(data={"bad/key": "x", "..dots": "y"}))
    assert fields(causes) == ["data[bad/key]", "data[..dots]"]


def test_configmap_key_in_data_and_binary_data():
    causes = check(configmap(data={"k": "x"}, binaryData={"k": b64("y")}))
    assert fields(causes) == ["data[k]"]


def test_configmap_size_limit():
    causes = check(configmap(data={"a": "x" * (1024 * 1024), "b": "y"}))
    assert [c.reason for c in causes] == ["FieldValueTooLong"]


def test_configmap_immutable_forbids_data_change():
    old = configmap(data={"a": "1"}, immutable=True)
    causes = check(configmap(data={"a": "2"}, immutable=True), old)
    assert reasons(causes) == {"data": "FieldValueForbidden"}
    assert check(configmap(data={"a": "2"}), old)


def test_valid_secret():
    assert check(secret(data={"password": b64("hunter2")})) == []


def test_secret_values_must_be_base64():
    assert fields(check(secret(data={"password": "not base64!"}))) == ["data[password]"]


def test_secret_string_data_is_folded_in():
    assert check(secret(stringData={"password": "hunter2"})) == []


def test_secret_type_immutable():
    causes = check(secret(type="kubernetes.io/basic-auth"), secret())
    assert fields(causes) == ["type"]


def test_tls_secret_needs_keys():
    assert fields(check(secret(type="kubernetes.io/tls", data={"tls.crt": b64("c")}))) == ["data[tls.key]"]


def test_service_account_secret_refs_need_names():
    sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("sa"), "imagePullSecrets": [{}]}
    assert fields(check(sa)) == ["imagePullSecrets[0].name"]


def event(**fields_):
    return {"apiVersion": "v1", "kind": "Event", "metadata": meta("e")} | fields_


def test_valid_event():
    assert check(event(involvedObject={"kind": "Pod", "name": "p", "namespace": "default"}, reason="Started")) == []


def test_event_requires_involved_object():
    assert reasons(check(event())) == {"involvedObject": "FieldValueRequired"}


def test_event_namespace_must_match_involved_object():
    causes = check(event(involvedObject={"kind": "Pod", "name": "p", "namespace": "other"}))
    assert fields(causes) == ["involvedObject.namespace"]


def test_lease_fields():
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta("l"),
             "spec": {"holderIdentity": "me", "leaseDurationSeconds": 0, "leaseTransitions": -1}}
    assert fields(check(lease)) == ["spec.leaseDurationSeconds", "spec.leaseTransitions"]
    lease["spec"].update(leaseDurationSeconds=15, leaseTransitions=0)
    assert check(lease) == []


# --- apps/v1 -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"])
def test_valid_workloads(kind):
    assert check(workload(kind)) == []


@pytest.mark.parametrize("kind", ["Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"])
def test_workload_selector_required(kind):
    w = workload(kind)
    del w["spec"]["selector"]
    assert reasons(check(w)) == {"spec.selector": "FieldValueRequired"}


@pytest.mark.parametrize("kind", ["Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"])
def test_workload_selector_must_not_be_empty(kind):
    assert "empty selector is invalid" in check(workload(kind, selector={}))[0].message


@pytest.mark.parametrize("kind", ["Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"])
def test_workload_selector_must_match_template(kind):
    causes = check(workload(kind, selector={"matchLabels": {"app": "db"}}))
    assert fields(causes) == ["spec.template.metadata.labels"]
    assert causes[0].message.endswith("`selector` does not match template `labels`")


@pytest.mark.parametrize("kind", ["Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"])
def test_workload_selector_immutable(kind):
    old = workload(kind)
    new = workload(kind, selector={"matchLabels": {"app": "web", "tier": "fe"}},
                   template=template({"app": "web", "tier": "fe"}))
    causes = check(new, old)
    assert fields(causes) == ["spec.selector"] and causes[0].message.endswith("field is immutable")


@pytest.mark.parametrize("kind", ["Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"])
def test_workload_template_restart_policy_always(kind):
    causes = check(workload(kind, template=template(restartPolicy="Never")))
    assert reasons(causes) == {"spec.template.spec.restartPolicy": "FieldValueNotSupported"}


@pytest.mark.parametrize("kind", ["Deployment", "ReplicaSet", "StatefulSet"])
def test_workload_replicas(kind):
    assert fields(check(workload(kind, replicas=-1))) == ["spec.replicas"]
    assert fields(check(workload(kind, replicas="3"))) == ["spec.replicas"]


def test_workload_template_pod_spec_is_validated_with_prefix():
    causes = check(workload("Deployment", template=template(containers=[{"name": "app"}])))
    assert fields(causes) == ["spec.template.spec.containers[0].image"]


def test_deployment_strategy_type():
    causes = check(workload("Deployment", strategy={"type": "BlueGreen"}))
    assert reasons(causes) == {"spec.strategy.type": "FieldValueNotSupported"}


def test_deployment_recreate_forbids_rolling_update():
    causes = check(workload("Deployment", strategy={"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}))
    assert reasons(causes) == {"spec.strategy.rollingUpdate": "FieldValueForbidden"}


def test_deployment_max_surge_and_unavailable():
    bad = check(workload("Deployment", strategy={"rollingUpdate": {"maxSurge": "x%", "maxUnavailable": "150%"}}))
    assert fields(bad) == ["spec.strategy.rollingUpdate.maxSurge", "spec.strategy.rollingUpdate.maxUnavailable"]
    zero = check(workload("Deployment", strategy={"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}))
    assert fields(zero) == ["spec.strategy.rollingUpdate.maxUnavailable"]


def test_deployment_progress_deadline_exceeds_min_ready():
    causes = check(workload("Deployment", minReadySeconds=30, progressDeadlineSeconds=30))
    assert fields(causes) == ["spec.progressDeadlineSeconds"]


def test_deployment_history_and_min_ready_non_negative():
    causes = check(workload("Deployment", revisionHistoryLimit=-1, minReadySeconds=-1))
    assert set(fields(causes)) == {"spec.revisionHistoryLimit", "spec.minReadySeconds"}


def test_statefulset_policies():
    causes = check(workload("StatefulSet", podManagementPolicy="Chaos", updateStrategy={"type": "Always"}))
    assert reasons(causes) == {"spec.podManagementPolicy": "FieldValueNotSupported",
                               "spec.updateStrategy.type": "FieldValueNotSupported"}


def test_statefulset_partition_non_negative():
    causes = check(workload("StatefulSet", updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": -1}}))
    assert fields(causes) == ["spec.updateStrategy.rollingUpdate.partition"]


def test_statefulset_update_only_allowed_fields():
    old = workload("StatefulSet", serviceName="web")
    assert check(workload("StatefulSet", serviceName="web", replicas=5), old) == []
    causes = check(workload("StatefulSet", serviceName="other"), old)
    assert reasons(causes) == {"spec": "FieldValueForbidden"}


def test_daemonset_update_strategy():
    causes = check(workload("DaemonSet", updateStrategy={"type": "Sometimes"}))
    assert reasons(causes) == {"spec.updateStrategy.type": "FieldValueNotSupported"}
    zero = workload("DaemonSet", updateStrategy={"type": "RollingUpdate",
                                                 "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}})
    assert fields(check(zero)) == ["spec.updateStrategy.rollingUpdate.maxUnavailable"]


def test_controller_revision():
    rev = {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": meta("r"), "data": {}, "revision": 1}
    assert check(rev) == []
    assert fields(check(rev | {"revision": -1})) == ["revision"]
    assert set(fields(check(rev | {"data": {"a": 1}, "revision": 2}, rev))) == {"data"}
    assert check(rev | {"revision": 5}, rev) == []  # renumbered on rollback


# --- batch/v1 ------------------------------------------------------------------------------------

def test_valid_job():
    assert check(job()) == []


def test_job_restart_policy_not_always():
    causes = check(job(template=template({"batch.kubernetes.io/controller-uid": "u1"})))
    assert reasons(causes) == {"spec.template.spec.restartPolicy": "FieldValueNotSupported"}
    assert causes[0].message == 'Unsupported value: "Always": supported values: "OnFailure", "Never"'


def test_job_counts_non_negative():
    causes = check(job(completions=-1, parallelism=-1, backoffLimit=-1, activeDeadlineSeconds=0,
                       ttlSecondsAfterFinished=-1))
    assert set(fields(causes)) == {"spec.completions", "spec.parallelism", "spec.backoffLimit",
                                   "spec.activeDeadlineSeconds", "spec.ttlSecondsAfterFinished"}


def test_job_indexed_needs_completions():
    causes = check(job(completionMode="Indexed", completions=None, parallelism=2))
    assert reasons(causes) == {"spec.completions": "FieldValueRequired"}
    assert reasons(check(job(completionMode="Sorted"))) == {"spec.completionMode": "FieldValueNotSupported"}


def test_job_selector_required():
    j = job()
    del j["spec"]["selector"]
    assert reasons(check(j)) == {"spec.selector": "FieldValueRequired"}


def test_job_selector_and_template_immutable():
    new = job(selector={"matchLabels": {"batch.kubernetes.io/controller-uid": "u1", "x": "y"}},
              template=template({"batch.kubernetes.io/controller-uid": "u1", "x": "y"}, restartPolicy="Never"))
    assert set(fields(check(new, job()))) == {"spec.selector", "spec.template"}


def test_job_update_may_change_parallelism_and_suspend():
    assert check(job(parallelism=3, completions=1, suspend=True), job(completions=1)) == []


def test_job_name_length():
    j = job()
    j["metadata"]["name"] = "j" * 64
    assert fields(check(j)) == ["metadata.name"]


def test_valid_cronjob():
    assert check(cronjob(timeZone="Europe/Paris", concurrencyPolicy="Forbid")) == []


@pytest.mark.parametrize("schedule", ["*/5 * * * *", "0 0 1 jan,jul ?", "15 2-4/2 * * MON-FRI", "@hourly",
                                      "@every 1h30m", "0 0 * * 0"])
def test_cron_schedules_accepted(schedule):
    assert cron_schedule_error(schedule) is None


@pytest.mark.parametrize("schedule", ["* * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *",
                                      "* * * * 7", "5-1 * * * *", "*/0 * * * *", "@often", "a b c d e"])
def test_cron_schedules_rejected(schedule):
    assert cron_schedule_error(schedule)


def test_cronjob_schedule_required_and_parsed():
    assert reasons(check(cronjob(schedule=""))) == {"spec.schedule": "FieldValueRequired"}
    assert fields(check(cronjob(schedule="61 * * * *"))) == ["spec.schedule"]


def test_cronjob_rejects_tz_in_schedule():
    causes = check(cronjob(schedule="TZ=UTC 0 * * * *"))
    assert "use timeZone field instead" in causes[0].message


def test_cronjob_time_zone_must_exist():
    assert fields(check(cronjob(timeZone="Mars/Olympus"))) == ["spec.timeZone"]


def test_cronjob_fields():
    causes = check(cronjob(concurrencyPolicy="Sometimes", startingDeadlineSeconds=-1,
                           successfulJobsHistoryLimit=-1))
    assert reasons(causes) == {"spec.concurrencyPolicy": "FieldValueNotSupported",
                               "spec.startingDeadlineSeconds": "FieldValueInvalid",
                               "spec.successfulJobsHistoryLimit": "FieldValueInvalid"}


def test_cronjob_job_template_validated_like_a_job():
    causes = check(cronjob(jobTemplate={"spec": {"backoffLimit": -1, "template": template()}}))
    assert set(fields(causes)) == {"spec.jobTemplate.spec.backoffLimit",
                                   "spec.jobTemplate.spec.template.spec.restartPolicy"}


def test_cronjob_name_length():
    cj = cronjob()
    cj["metadata"]["name"] = "c" * 53
    assert fields(check(cj)) == ["metadata.name"]


# --- robustness ----------------------------------------------------------------------------------

JUNK = ["abc", 5, True, [1], {"a": 1}, [None], [{"x": [1]}]]


@pytest.mark.parametrize("kind", sorted(VALIDATORS))
def test_validators_never_raise_on_wrong_types(kind):
    for junk in JUNK:
        spec = {f: junk for f in ("containers", "replicas", "selector", "template", "ports", "type", "strategy",
                                  "updateStrategy", "jobTemplate", "schedule", "taints", "volumes", "podCIDR")}
        objs = [{"metadata": {"name": "x", "namespace": "d"}, "spec": junk, "data": junk, "subsets": junk,
                 "involvedObject": junk},
                {"metadata": {"name": "x", "labels": junk}, "spec": spec},
                {"metadata": {"name": "x"}, "spec": {"template": {"metadata": junk, "spec": spec},
                                                     "jobTemplate": {"spec": junk}}}]
        for obj in objs:
            assert isinstance(VALIDATORS[kind](obj, None), list)  # causes, never an exception
            VALIDATORS[kind](obj, objs[0])
            validate_object_meta(obj, namespaced=True, old=obj)


def test_workload_template_required():
    w = workload("Deployment")
    del w["spec"]["template"]
    assert reasons(check(w)) == {"spec.template": "FieldValueRequired"}
