"""End to end: the kubelet registers its Node with facts the clients need and keeps its Lease fresh."""
from __future__ import annotations

import platform

from tests.kubelet.conftest import wait_for

NODE_INFO = ("machineID", "systemUUID", "bootID", "kernelVersion", "osImage", "containerRuntimeVersion",
             "kubeletVersion", "kubeProxyVersion", "operatingSystem", "architecture")


def test_node_registration_status_and_labels(kubelet, http, apiserver):
    node = http.get(f"/api/v1/nodes/{kubelet.node}").json()
    labels = node["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == kubelet.node
    assert labels["kubernetes.io/os"] == labels["beta.kubernetes.io/os"] == "linux"
    assert labels["kubernetes.io/arch"] == labels["beta.kubernetes.io/arch"]
    status = node["status"]
    assert int(status["capacity"]["cpu"]) >= 1 and status["capacity"]["pods"] == "110"
    assert status["capacity"]["memory"].endswith("Ki") and "ephemeral-storage" in status["allocatable"]
    assert {"type": "InternalIP", "address": "127.0.0.1"} in status["addresses"]
    assert any(a["type"] == "Hostname" for a in status["addresses"])
    info = status["nodeInfo"]
    assert all(info.get(k) for k in NODE_INFO)
    assert info["containerRuntimeVersion"].startswith("docker://")
    assert info["kubeletVersion"] == "v1.31.0-minik8s" and info["kernelVersion"] == platform.release()
    port = int(kubelet.cmd[kubelet.cmd.index("--port") + 1])
    assert status["daemonEndpoints"]["kubeletEndpoint"]["Port"] == port
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["Ready"]["status"] == "True" and conds["Ready"]["reason"] == "KubeletReady"
    for t in ("MemoryPressure", "DiskPressure", "PIDPressure"):
        assert conds[t]["status"] == "False" and conds[t]["lastHeartbeatTime"] and conds[t]["lastTransitionTime"]
    assert node["spec"]["podCIDR"] == kubelet.pod_cidr

    import kubernetes.client
    cfg = kubernetes.client.Configuration()
    cfg.host, cfg.ssl_ca_cert = apiserver.url, str(apiserver.ca)
    cfg.api_key = {"authorization": f"Bearer {apiserver.admin_token}"}
    with kubernetes.client.ApiClient(cfg) as api:
        read = kubernetes.client.CoreV1Api(api).read_node(kubelet.node)
    assert read.status.node_info.kubelet_version == "v1.31.0-minik8s"


def test_lease_is_renewed(kubelet, http):
    path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{kubelet.node}"
    lease = wait_for(lambda: http.get(path).json() if http.get(path).status_code == 200 else None)
    spec = lease["spec"]
    assert spec["holderIdentity"] == kubelet.node and spec["leaseDurationSeconds"] == 40
    assert lease["metadata"]["ownerReferences"][0]["kind"] == "Node"
    first = spec["renewTime"]
    wait_for(lambda: http.get(path).json()["spec"]["renewTime"] != first, 15, interval=0.5)


def test_node_labels_flag(apiserver, tmp_path, http):
    from tests.kubelet.conftest import cleanup_kubelet, make_kubelet

    k = make_kubelet(apiserver, tmp_path, http, "--node-labels", "zone=a,tier=edge")
    try:
        labels = http.get(f"/api/v1/nodes/{k.node}").json()["metadata"]["labels"]
        assert labels["zone"] == "a" and labels["tier"] == "edge"
    finally:
        cleanup_kubelet(k, http)
