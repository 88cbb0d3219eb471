"""The official `kubernetes` Python client drives minik8s: wire compatibility checked by a real client."""
import kubernetes
import pytest
from kubernetes import client as k8s
from kubernetes import watch

from client.kubeconfig import write_kubeconfig


@pytest.fixture
def api_client(apiserver, tmp_path):
    path = tmp_path / "kubeconfig"
    write_kubeconfig(path, server=apiserver.url, ca_pem=apiserver.ca.read_bytes(), token=apiserver.admin_token)
    return kubernetes.config.new_client_from_config(config_file=str(path))


def test_core_verbs_with_the_official_client(api_client, namespace):
    core = k8s.CoreV1Api(api_client)
    pod = k8s.V1Pod(metadata=k8s.V1ObjectMeta(name="official", labels={"app": "o"}),
                    spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="c", image="busybox:1.36")]))
    created = core.create_namespaced_pod(namespace, pod)
    assert created.status.phase == "Pending"
    assert created.spec.restart_policy == "Always"
    listed = core.list_namespaced_pod(namespace, label_selector="app=o")
    assert [p.metadata.name for p in listed.items] == ["official"]
    patched = core.patch_namespaced_pod("official", namespace, {"metadata": {"labels": {"extra": "1"}}})
    assert patched.metadata.labels == {"app": "o", "extra": "1"}
    with pytest.raises(k8s.ApiException) as e:
        core.read_namespaced_pod("ghost", namespace)
    assert e.value.status == 404
    core.delete_namespaced_pod("official", namespace)
    assert core.list_namespaced_pod(namespace).items == []
    assert "default" in [n.metadata.name for n in core.list_namespace().items]


def test_watch_with_the_official_client(api_client, namespace):
    core = k8s.CoreV1Api(api_client)
    rv = core.list_namespaced_config_map(namespace).metadata.resource_version
    core.create_namespaced_config_map(namespace, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="w")))
    w = watch.Watch()
    got = []
    for ev in w.stream(core.list_namespaced_config_map, namespace, resource_version=rv, timeout_seconds=3):
        got.append((ev["type"], ev["object"].metadata.name))
        w.stop()
    assert got == [("ADDED", "w")]


def test_apps_and_scale_with_the_official_client(api_client, namespace):
    apps = k8s.AppsV1Api(api_client)
    dep = k8s.V1Deployment(
        metadata=k8s.V1ObjectMeta(name="d"),
        spec=k8s.V1DeploymentSpec(
            replicas=2, selector=k8s.V1LabelSelector(match_labels={"app": "d"}),
            template=k8s.V1PodTemplateSpec(metadata=k8s.V1ObjectMeta(labels={"app": "d"}),
                                           spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="c", image="x:1")]))))
    created = apps.create_namespaced_deployment(namespace, dep)
    assert created.spec.strategy.type == "RollingUpdate"
    apps.patch_namespaced_deployment_scale("d", namespace, {"spec": {"replicas": 4}})
    assert apps.read_namespaced_deployment_scale("d", namespace).spec.replicas == 4
    version = k8s.VersionApi(api_client).get_code()
    assert version.major == "1"
