"""`describe`: one readable page per object, after kubectl's describers, ending with its Events.

Pods, Deployments, Services and Nodes have their own describers (the fields kubectl shows, in its order);
every other kind gets the generic page: metadata, then its spec/status/data as indented fields. Events
are asked of the server by field selector on `involvedObject.{kind,name,namespace,uid}`, as kubectl asks.

Like kubectl, `describe TYPE NAME` falls back to every object whose name starts with NAME, and
`describe TYPE` describes them all. Text is laid out as kubectl's describe tabwriter lays it out: every
`Key:` of a run of lines at one level padded to the same width.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from api.errors import APIError
from ctl import resources
from ctl.command import Command
from ctl.discovery import UsageError
from ctl.pods import selector_string
from ctl.printers import TabWriter, age

Obj = dict[str, Any]
PADDING = 2


class Page:
    """Lines of cells; the first cell of a line is indented by its level. Rendered like Go's tabwriter."""

    def __init__(self) -> None:
        self.lines: list[list[str]] = []

    def add(self, level: int, *cells: Any) -> None:
        texts = [str(c) for c in cells]
        texts[0] = "  " * level + texts[0]
        self.lines.append(texts)

    def field(self, level: int, key: str, value: Any) -> None:
        self.add(level, f"{key}:", "<none>" if value in (None, "", [], {}) else value)

    def mapping(self, level: int, key: str, values: dict[str, str] | None, sep: str = "=") -> None:
        self.values(level, key, [f"{k}{sep}{v}" for k, v in sorted((values or {}).items())])

    def values(self, level: int, key: str, values: list[str]) -> None:
        """`Key:  first` then the other values aligned under it (kubectl's multi-line fields)."""
        if not values:
            self.field(level, key, None)
        for i, value in enumerate(values):
            self.add(level, f"{key}:" if i == 0 else "", value)

    def table(self, level: int, rows: list[list[str]]) -> None:
        for line in TabWriter(padding=PADDING, min_width=0).format(rows).splitlines():
            self.add(level, line.rstrip())

    def render(self) -> str:
        widths: dict[tuple[int, int], int] = {}   # (column, first line of its block) -> width
        for col in range(max((len(line) for line in self.lines), default=0)):
            start = None
            for i, line in enumerate(self.lines + [[]]):
                if len(line) > col + 1:
                    start = i if start is None else start
                    widths[(col, start)] = max(widths.get((col, start), 0), len(line[col]) + PADDING)
                else:
                    start = None
        out = []
        block_start: dict[int, int] = {}
        for i, line in enumerate(self.lines):
            cells = []
            for col, text in enumerate(line):
                if col + 1 < len(line):
                    if i == 0 or len(self.lines[i - 1]) <= col + 1:
                        block_start[col] = i
                    cells.append(text.ljust(widths[(col, block_start[col])]))
                else:
                    cells.append(text)
            out.append("".join(cells).rstrip())
        return "\n".join(out) + "\n"


def meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def common_header(page: Page, obj: Obj, *, namespaced: bool = True) -> None:
    m = meta(obj)
    page.field(0, "Name", m.get("name"))
    if namespaced:
        page.field(0, "Namespace", m.get("namespace"))


def labels_and_annotations(page: Page, obj: Obj) -> None:
    page.mapping(0, "Labels", meta(obj).get("labels"))
    annotations = {k: v for k, v in (meta(obj).get("annotations") or {}).items()
                   if k != "kubectl.kubernetes.io/last-applied-configuration"}
    page.mapping(0, "Annotations", annotations, sep=": ")


def controlled_by(obj: Obj) -> str | None:
    for ref in meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return f"{ref.get('kind')}/{ref.get('name')}"
    return None


def _state(page: Page, level: int, title: str, state: Obj | None) -> None:
    if not state:
        page.field(level, title, "Waiting" if title == "State" else None)
        return
    name, detail = next(iter(state.items()))
    page.field(level, title, name.capitalize())
    detail = detail or {}
    for key, label in (("reason", "Reason"), ("message", "Message"), ("exitCode", "Exit Code"),
                       ("startedAt", "Started"), ("finishedAt", "Finished")):
        if detail.get(key) is not None:
            page.field(level + 1, label, detail[key])


def _resources(page: Page, level: int, c: Obj) -> None:
    for kind in ("limits", "requests"):
        values = (c.get("resources") or {}).get(kind)
        if values:
            page.add(level, f"{kind.capitalize()}:")
            for k, v in sorted(values.items()):
                page.field(level + 1, k, v)


def containers_section(page: Page, title: str, spec_containers: list[Obj], statuses: list[Obj]) -> None:
    if not spec_containers:
        return
    page.add(0, f"{title}:")
    by_name = {s.get("name"): s for s in statuses}
    for c in spec_containers:
        status = by_name.get(c["name"], {})
        page.add(1, f"{c['name']}:")
        if status.get("containerID"):
            page.field(2, "Container ID", status["containerID"])
        page.field(2, "Image", c.get("image"))
        if status.get("imageID"):
            page.field(2, "Image ID", status["imageID"])
        ports = [f"{p.get('containerPort')}/{p.get('protocol', 'TCP')}" for p in c.get("ports") or []]
        page.field(2, "Port", ", ".join(ports) or None)
        for key, label in (("command", "Command"), ("args", "Args")):
            if c.get(key):
                page.add(2, f"{label}:")
                for word in c[key]:
                    page.add(3, word)
        if statuses:
            _state(page, 2, "State", status.get("state"))
            if status.get("lastState"):
                _state(page, 2, "Last State", status.get("lastState"))
            page.field(2, "Ready", "True" if status.get("ready") else "False")
            page.field(2, "Restart Count", status.get("restartCount", 0))
        _resources(page, 2, c)
        env = c.get("env") or []
        if env:
            page.add(2, "Environment:")
            for e in env:
                page.field(3, e["name"], e.get("value") if "value" in e else "<set from a reference>")
        else:
            page.field(2, "Environment", None)
        mounts = [f"{m.get('mountPath')} from {m.get('name')} ({'ro' if m.get('readOnly') else 'rw'})"
                  for m in c.get("volumeMounts") or []]
        page.values(2, "Mounts", mounts)


def conditions_table(page: Page, conditions: list[Obj], columns: list[str]) -> None:
    page.add(0, "Conditions:")
    rows = [columns, ["-" * len(c) for c in columns]]
    for cond in conditions:
        rows.append([str(cond.get(_condition_key(col), "")) for col in columns])
    page.table(1, rows)


def _condition_key(column: str) -> str:
    return {"Type": "type", "Status": "status", "Reason": "reason", "Message": "message",
            "LastHeartbeatTime": "lastHeartbeatTime", "LastTransitionTime": "lastTransitionTime"}[column]


def describe_pod(session: Any, pod: Obj, page: Page) -> None:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    common_header(page, pod)
    page.field(0, "Priority", spec.get("priority", 0))
    page.field(0, "Service Account", spec.get("serviceAccountName"))
    node = spec.get("nodeName")
    page.field(0, "Node", f"{node}/{status.get('hostIP', '')}" if node and status.get("hostIP") else node)
    page.field(0, "Start Time", status.get("startTime"))
    labels_and_annotations(page, pod)
    phase = "Terminating" if meta(pod).get("deletionTimestamp") else status.get("phase")
    page.field(0, "Status", phase)
    if status.get("reason"):
        page.field(0, "Reason", status["reason"])
    page.field(0, "IP", status.get("podIP"))
    ips = [i.get("ip") for i in status.get("podIPs") or []]
    if ips:
        page.add(0, "IPs:")
        for ip in ips:
            page.field(1, "IP", ip)
    else:
        page.field(0, "IPs", None)
    if controlled_by(pod):
        page.field(0, "Controlled By", controlled_by(pod))
    containers_section(page, "Init Containers", spec.get("initContainers") or [],
                       status.get("initContainerStatuses") or [])
    containers_section(page, "Containers", spec.get("containers") or [], status.get("containerStatuses") or [])
    if status.get("conditions"):
        conditions_table(page, status["conditions"], ["Type", "Status"])
    volumes = spec.get("volumes") or []
    if volumes:
        page.add(0, "Volumes:")
        for v in volumes:
            page.add(1, f"{v['name']}:")
            kind = next((k for k in v if k != "name"), None)
            if kind:
                page.field(2, "Type", kind)
    else:
        page.field(0, "Volumes", None)
    page.field(0, "QoS Class", status.get("qosClass"))
    page.mapping(0, "Node-Selectors", spec.get("nodeSelector"))
    tolerations = [f"{t.get('key', '')}:{t.get('effect', '')} op={t.get('operator', 'Equal')}"
                   + (f" for {t['tolerationSeconds']}s" if t.get("tolerationSeconds") is not None else "")
                   for t in spec.get("tolerations") or []]
    page.values(0, "Tolerations", tolerations)


def describe_deployment(session: Any, d: Obj, page: Page) -> None:
    spec, status = d.get("spec") or {}, d.get("status") or {}
    common_header(page, d)
    page.field(0, "CreationTimestamp", meta(d).get("creationTimestamp"))
    labels_and_annotations(page, d)
    page.field(0, "Selector", selector_string(spec.get("selector") or {}))
    page.field(0, "Replicas", f"{spec.get('replicas', 0)} desired | {status.get('updatedReplicas', 0)} updated | "
                              f"{status.get('replicas', 0)} total | {status.get('availableReplicas', 0)} available | "
                              f"{status.get('unavailableReplicas', 0)} unavailable")
    strategy = spec.get("strategy") or {}
    page.field(0, "StrategyType", strategy.get("type"))
    page.field(0, "MinReadySeconds", spec.get("minReadySeconds", 0))
    rolling = strategy.get("rollingUpdate")
    if rolling:
        page.field(0, "RollingUpdateStrategy",
                   f"{rolling.get('maxUnavailable')} max unavailable, {rolling.get('maxSurge')} max surge")
    template = spec.get("template") or {}
    page.add(0, "Pod Template:")
    page.mapping(1, "Labels", meta(template).get("labels"))
    sub = Page()
    containers_section(sub, "Containers", (template.get("spec") or {}).get("containers") or [], [])
    for line in sub.lines:
        line[0] = "  " + line[0]
        page.lines.append(line)
    if status.get("conditions"):
        conditions_table(page, status["conditions"], ["Type", "Status", "Reason"])
    rs_rd = session.discovery.resolve("replicasets.apps")
    owned = [rs for rs in session.client.list(rs_rd, meta(d).get("namespace"),
                                              label_selector=selector_string(spec.get("selector") or {})).get("items") or []
             if any(r.get("uid") == meta(d).get("uid") for r in meta(rs).get("ownerReferences") or [])]
    template_labels = meta(template).get("labels") or {}
    new = [rs for rs in owned if _same_template(rs, template_labels, template)]
    old = [rs for rs in owned if rs not in new and (rs.get("spec") or {}).get("replicas")]
    page.field(0, "OldReplicaSets", ", ".join(_rs_summary(rs) for rs in old) or "<none>")
    page.field(0, "NewReplicaSet", ", ".join(_rs_summary(rs) for rs in new) or "<none>")


def _same_template(rs: Obj, labels: dict[str, str], template: Obj) -> bool:
    rs_template = (rs.get("spec") or {}).get("template") or {}
    rs_labels = {k: v for k, v in (meta(rs_template).get("labels") or {}).items() if k != "pod-template-hash"}
    return rs_labels == labels and rs_template.get("spec") == template.get("spec")


def _rs_summary(rs: Obj) -> str:
    return f"{meta(rs)['name']} ({(rs.get('status') or {}).get('replicas', 0)}/{(rs.get('spec') or {}).get('replicas', 0)} replicas created)"


def describe_service(session: Any, svc: Obj, page: Page) -> None:
    spec = svc.get("spec") or {}
    common_header(page, svc)
    labels_and_annotations(page, svc)
    page.field(0, "Selector", ",".join(f"{k}={v}" for k, v in sorted((spec.get("selector") or {}).items())))
    page.field(0, "Type", spec.get("type", "ClusterIP"))
    page.field(0, "IP Family Policy", spec.get("ipFamilyPolicy"))
    page.field(0, "IP", spec.get("clusterIP"))
    page.field(0, "IPs", ",".join(spec.get("clusterIPs") or []) or spec.get("clusterIP"))
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    if ingress:
        page.field(0, "LoadBalancer Ingress", ", ".join(i.get("ip") or i.get("hostname", "") for i in ingress))
    try:
        endpoints = session.client.get(session.discovery.resolve("endpoints"), meta(svc)["name"],
                                       meta(svc).get("namespace"))
    except APIError as e:
        if e.code != 404:
            raise
        endpoints = {}
    for port in spec.get("ports") or []:
        name = port.get("name") or "<unset>"
        page.field(0, "Port", f"{name}  {port.get('port')}/{port.get('protocol', 'TCP')}")
        page.field(0, "TargetPort", f"{port.get('targetPort', port.get('port'))}/{port.get('protocol', 'TCP')}")
        if port.get("nodePort"):
            page.field(0, "NodePort", f"{name}  {port['nodePort']}/{port.get('protocol', 'TCP')}")
        page.field(0, "Endpoints", _endpoints_for(endpoints, port.get("name")))
    page.field(0, "Session Affinity", spec.get("sessionAffinity", "None"))


def _endpoints_for(endpoints: Obj, port_name: str | None) -> str:
    out = []
    for subset in endpoints.get("subsets") or []:
        for port in subset.get("ports") or []:
            if port.get("name") == port_name or (not port_name and len(subset.get("ports") or []) == 1):
                out += [f"{a.get('ip')}:{port.get('port')}" for a in subset.get("addresses") or []]
    return ",".join(out)


def describe_node(session: Any, node: Obj, page: Page) -> None:
    spec, status = node.get("spec") or {}, node.get("status") or {}
    common_header(page, node, namespaced=False)
    roles = sorted(k.split("/", 1)[1] for k in meta(node).get("labels") or {}
                   if k.startswith("node-role.kubernetes.io/"))
    page.field(0, "Roles", ",".join(roles) or "<none>")
    labels_and_annotations(page, node)
    page.field(0, "CreationTimestamp", meta(node).get("creationTimestamp"))
    taints = [f"{t['key']}" + (f"={t['value']}" if t.get("value") else "") + f":{t.get('effect')}"
              for t in spec.get("taints") or []]
    page.values(0, "Taints", taints)
    page.field(0, "Unschedulable", "true" if spec.get("unschedulable") else "false")
    if status.get("conditions"):
        conditions_table(page, status["conditions"],
                         ["Type", "Status", "LastHeartbeatTime", "LastTransitionTime", "Reason", "Message"])
    page.add(0, "Addresses:")
    for a in status.get("addresses") or []:
        page.field(1, a.get("type"), a.get("address"))
    for key in ("capacity", "allocatable"):
        if status.get(key):
            page.add(0, f"{key.capitalize()}:")
            for k, v in sorted(status[key].items()):
                page.field(1, k, v)
    info = status.get("nodeInfo") or {}
    if info:
        page.add(0, "System Info:")
        for k, v in info.items():
            page.field(1, k[:1].upper() + "".join(f" {ch}" if ch.isupper() else ch for ch in k[1:]), v)
    page.field(0, "PodCIDR", spec.get("podCIDR"))
    pods = session.client.list_all(session.discovery.resolve("pods"),
                                   field_selector=f"spec.nodeName={meta(node)['name']}").get("items") or []
    pods = [p for p in pods if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
    page.add(0, "Non-terminated Pods:", f"({len(pods)} in total)")
    rows = [["Namespace", "Name", "Age"], ["---------", "----", "---"]]
    rows += [[meta(p).get("namespace", ""), meta(p)["name"], age(meta(p).get("creationTimestamp"))] for p in pods]
    page.table(1, rows)


def describe_generic(session: Any, obj: Obj, page: Page) -> None:
    rd = session.discovery.for_object(obj)
    common_header(page, obj, namespaced=rd.namespaced)
    labels_and_annotations(page, obj)
    page.field(0, "API Version", obj.get("apiVersion"))
    page.field(0, "Kind", obj.get("kind"))
    for key, value in obj.items():
        if key not in ("apiVersion", "kind", "metadata"):
            _nested(page, 0, key[:1].upper() + key[1:], value)


def _nested(page: Page, level: int, key: str, value: Any) -> None:
    if isinstance(value, dict) and value:
        page.add(level, f"{key}:")
        for k, v in value.items():
            _nested(page, level + 1, k[:1].upper() + k[1:] if level == 0 else k, v)
    elif isinstance(value, list) and value:
        page.add(level, f"{key}:")
        for item in value:
            if isinstance(item, dict):
                first = True
                for k, v in item.items():
                    _nested(page, level + 1, ("- " if first else "  ") + k, v)
                    first = False
            else:
                page.add(level + 1, str(item))
    else:
        page.field(level, key, value if value not in ({}, []) else None)


DESCRIBERS: dict[str, Callable[[Any, Obj, Page], None]] = {
    "Pod": describe_pod, "Deployment": describe_deployment, "Service": describe_service, "Node": describe_node,
}


def events_section(session: Any, obj: Obj, page: Page) -> None:
    m = meta(obj)
    selector = [f"involvedObject.name={m.get('name')}", f"involvedObject.kind={obj.get('kind')}",
                f"involvedObject.uid={m.get('uid')}"]
    if m.get("namespace"):
        selector.append(f"involvedObject.namespace={m['namespace']}")
    events = session.client.list(session.discovery.resolve("events"), m.get("namespace") or "default",
                                 field_selector=",".join(selector)).get("items") or []
    if not events:
        page.field(0, "Events", None)
        return
    events.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    page.add(0, "Events:")
    rows = [["Type", "Reason", "Age", "From", "Message"], ["----", "------", "----", "----", "-------"]]
    for e in events:
        rows.append([e.get("type", ""), e.get("reason", ""), event_age(e), event_source(e),
                     (e.get("message") or "").strip()])
    page.table(1, rows)


def event_age(e: Obj) -> str:
    last = e.get("lastTimestamp") or e.get("eventTime") or meta(e).get("creationTimestamp")
    count = e.get("count") or 1
    if count > 1 and e.get("firstTimestamp"):
        return f"{age(last)} (x{count} over {age(e['firstTimestamp'])})"
    return age(last)


def event_source(e: Obj) -> str:
    source = e.get("source") or {}
    who = source.get("component") or e.get("reportingComponent") or e.get("reportingController") or ""
    return f"{who}, {source['host']}" if source.get("host") and who else who


def describe(session: Any, obj: Obj) -> str:
    page = Page()
    DESCRIBERS.get(obj.get("kind", ""), describe_generic)(session, obj, page)
    events_section(session, obj, page)
    return page.render()


def add_arguments(p: Any) -> None:
    p.add_argument("resources", nargs="+", metavar="TYPE [NAME_PREFIX] | TYPE/NAME")
    p.add_argument("-l", "--selector", help="describe the objects matching this label selector")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="across all namespaces")


def matching(session: Any, sel: resources.Selection, selector: str | None) -> list[Obj]:
    """The objects `sel` names; a missing name falls back to the objects whose names start with it."""
    if not sel.names:
        return list(resources.fetch(session, sel, label_selector=selector))
    found: list[Obj] = []
    for item, name in zip(resources.fetch(session, sel), sel.names):
        if not isinstance(item, APIError):
            found.append(item)
            continue
        prefixed = [o for o in resources.fetch(session, resources.Selection(sel.rd, sel.namespace))
                    if meta(o)["name"].startswith(name)]
        if not prefixed:
            raise item
        found += prefixed
    return found


def run(args: Any, session: Any) -> int:
    sels = resources.select(session, args.resources, all_namespaces=args.all_namespaces)
    if not sels:
        raise UsageError("You must specify the type of resource to describe.")
    pages = [describe(session, resources.with_type(sel.rd, obj)) for sel in sels
             for obj in matching(session, sel, args.selector)]
    if not pages:
        print(f"No resources found in {session.namespace} namespace.", file=sys.stderr)
    sys.stdout.write("\n\n".join(pages))
    return 0


COMMANDS = [Command("describe", "Show details of a specific resource or group of resources", add_arguments, run)]
