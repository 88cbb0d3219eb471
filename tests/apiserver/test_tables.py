"""Table columns in the order and with the values of Kubernetes' printers (pkg/printers/internalversion)."""
import pytest

from api import registry
from apiserver.tables import COLUMNS, table

NOW = "2099-01-01T00:00:00Z"  # creation in the future: age "0s", so cells are deterministic


def names(kind):
    return [c[0] for c in COLUMNS[kind]]


def row(plural, obj, group="", version="v1"):
    obj.setdefault("metadata", {}).setdefault("name", "x")
    obj["metadata"].setdefault("creationTimestamp", NOW)
    t = table(registry.lookup(group, version, plural), [obj], "1")
    return dict(zip([c["name"] for c in t["columnDefinitions"]], t["rows"][0]["cells"]))


def test_pod_and_node_columns_follow_kubectl():
    assert names("Pod") == ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node",
                            "Readiness Gates"]
    assert names("Node") == ["Name", "Status", "Roles", "Age", "Version", "Internal-IP", "External-IP", "OS-Image",
                             "Kernel-Version", "Container-Runtime"]


@pytest.mark.parametrize("kind", sorted(set(COLUMNS) - {"Event"}))  # Events interleave, as in Kubernetes
def test_wide_columns_follow_the_default_ones(kind):
    priorities = [c[3] for c in COLUMNS[kind]]
    assert priorities == sorted(priorities)
    assert names(kind)[0] == "Name" and "Age" in names(kind)


def test_kinds_without_columns_get_name_and_age():
    t = table(registry.lookup("", "v1", "configmaps"), [{"metadata": {"name": "c", "creationTimestamp": NOW}}], "1")
    assert [c["name"] for c in t["columnDefinitions"]] == ["Name", "Age"]
    assert t["rows"][0]["cells"] == ["c", "0s"]


def test_pod_wide_cells():
    cells = row("pods", {"spec": {"containers": [{"name": "c"}], "readinessGates": [{"conditionType": "a"},
                                                                                    {"conditionType": "b"}]},
                         "status": {"nominatedNodeName": "n2", "conditions": [{"type": "a", "status": "True"}]}})
    assert (cells["Age"], cells["Node"], cells["Nominated Node"], cells["Readiness Gates"]) == ("0s", "<none>", "n2", "1/2")
    assert row("pods", {"spec": {"containers": []}})["Readiness Gates"] == "<none>"


def test_node_cells():
    cells = row("nodes", {"metadata": {"labels": {"node-role.kubernetes.io/control-plane": "",
                                                  "node-role.kubernetes.io/": "", "kubernetes.io/role": "worker"}},
                          "status": {"addresses": [{"type": "Hostname", "address": "h"},
                                                   {"type": "InternalIP", "address": "10.0.0.2"}],
                                     "nodeInfo": {"kubeletVersion": "v1.31.0", "osImage": "Debian"}}})
    assert cells["Roles"] == "control-plane,worker"
    assert (cells["Version"], cells["Internal-IP"], cells["External-IP"]) == ("v1.31.0", "10.0.0.2", "<none>")
    assert (cells["OS-Image"], cells["Kernel-Version"]) == ("Debian", "<unknown>")
    assert row("nodes", {})["Roles"] == "<none>"


def test_workload_wide_columns():
    template = {"spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:2"}]}}
    selector = {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In",
                                                                     "values": ["fe", "be"]}]}
    cells = row("deployments", {"spec": {"replicas": 2, "selector": selector, "template": template}}, "apps")
    assert names("Deployment") == ["Name", "Ready", "Up-to-date", "Available", "Age", "Containers", "Images", "Selector"]
    assert (cells["Containers"], cells["Images"], cells["Selector"]) == ("a,b", "a:1,b:2", "app=web,tier in (be,fe)")
    cron = row("cronjobs", {"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template}}}}, "batch")
    assert names("CronJob") == ["Name", "Schedule", "Timezone", "Suspend", "Active", "Last Schedule", "Age",
                                "Containers", "Images", "Selector"]
    assert (cron["Timezone"], cron["Last Schedule"], cron["Containers"], cron["Selector"]) == ("<none>", "<none>", "a,b", "<none>")


def test_job_completions_and_duration():
    assert names("Job") == ["Name", "Status", "Completions", "Duration", "Age", "Containers", "Images", "Selector"]
    done = row("jobs", {"spec": {"completions": 3}, "status": {
        "succeeded": 3, "startTime": "2024-01-01T00:00:00Z", "completionTime": "2024-01-01T00:02:30Z",
        "conditions": [{"type": "Complete", "status": "True"}]}}, "batch")
    assert (done["Status"], done["Completions"], done["Duration"]) == ("Complete", "3/3", "2m")
    assert row("jobs", {"spec": {"parallelism": 4}}, "batch")["Completions"] == "0/1 of 4"
    assert row("jobs", {"spec": {}}, "batch")["Duration"] == ""


def test_daemonset_service_and_event_columns():
    assert names("DaemonSet") == ["Name", "Desired", "Current", "Ready", "Up-to-date", "Available", "Node Selector",
                                  "Age", "Containers", "Images", "Selector"]
    assert names("Service") == ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", "Selector"]
    assert names("Event") == ["Last Seen", "Type", "Reason", "Object", "Subobject", "Source", "Message",
                              "First Seen", "Count", "Name"]
    ds = row("daemonsets", {"spec": {"template": {"spec": {"nodeSelector": {"disk": "ssd"}}}}}, "apps")
    assert ds["Node Selector"] == "disk=ssd"
    ev = row("events", {"type": "Normal", "reason": "Pulled", "message": "ok", "count": 2, "firstTimestamp": NOW,
                        "involvedObject": {"kind": "Pod", "name": "web"}, "source": {"component": "kubelet", "host": "n1"}})
    assert ev == {"Last Seen": "0s", "Type": "Normal", "Reason": "Pulled", "Object": "pod/web", "Subobject": "",
                  "Source": "kubelet, n1", "Message": "ok", "First Seen": "0s", "Count": 2, "Name": "x"}
