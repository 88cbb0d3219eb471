"""The resource metrics API, `metrics.k8s.io/v1beta1` NodeMetrics and PodMetrics, for `kubectl top` and the HPA.

In Kubernetes metrics-server serves this API behind API aggregation: it scrapes every kubelet's
`/metrics/resource` on a timer and keeps the last two points per container. Here the apiserver does the
same on demand, through the kubelet client it already uses for logs and exec (`KubeletProxy.fetch`):

- A scrape of a node is reused while it is younger than `fresh` (2 s), so one `kubectl top pods -A` or
  many HPAs syncing at once cost one scrape per node, and concurrent requests for a node share one
  scrape (a lock per node).
- CPU counters are cumulative; usage is the rate between the node's two most recent scrapes, whose
  distance is the `window` reported (metrics-server's is its scrape interval, 15 s by default; an HPA
  syncing every 15 s gets the same here). With no earlier scrape, or one older than `max_age`, the
  server scrapes twice `min_window` (1 s) apart, so the first request after a pause takes a second.
- Memory is the working set of the latest scrape.
- A container is reported only with two samples of the same container (same start time, counter not
  reset); a pod only when all of its running containers are; a node the kubelet cannot be reached on
  is left out of lists (and logged), as metrics-server leaves out what it could not scrape.

Which pods and nodes exist, and their labels, come from the watch cache; only the nodes hosting the
requested pods are scraped. Authorization is the usual RBAC check on resource `pods`/`nodes` in group
`metrics.k8s.io` (the `view`, `edit` and `admin` roles grant get and list).
"""
from __future__ import annotations

import asyncio
import datetime
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from api import errors, registry
from api.errors import APIError
from api.selectors import parse_field_selector, parse_label_selector
from apiserver.proxy import KubeletProxy
from apiserver.rest import json_response
from apiserver.watchcache import WatchCache

logger = logging.getLogger(__name__)

Obj = dict[str, Any]
GROUP_VERSION = "metrics.k8s.io/v1beta1"
PODS = registry.lookup("", "v1", "pods")
NODES = registry.lookup("", "v1", "nodes")
RESOURCE_PATH = "/metrics/resource"

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+(-?\d+))?\s*$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


# -- kubelet samples ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Point:
    cpu_seconds: float
    memory_bytes: int
    timestamp: float            # epoch seconds of the sample
    start_time: float = 0.0     # containers: when the container started


@dataclass
class Scrape:
    at: float                                       # monotonic time of the scrape
    node: Point | None = None
    containers: dict[tuple[str, str, str], Point] = field(default_factory=dict)   # (namespace, pod, container)


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def parse_resource_metrics(text: str, at: float) -> Scrape:
    """A kubelet's `/metrics/resource` document as one Scrape (unknown series are ignored)."""
    node: dict[str, float] = {}
    node_ts = 0.0
    parts: dict[tuple[str, str, str], dict[str, float]] = {}
    stamps: dict[tuple[str, str, str], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m is None:
            continue
        name, raw_labels, raw_value, raw_ts = m.groups()
        try:
            value = float(raw_value)
        except ValueError:
            continue
        ts = int(raw_ts) / 1000 if raw_ts else time.time()
        if name in ("node_cpu_usage_seconds_total", "node_memory_working_set_bytes"):
            node[name] = value
            node_ts = max(node_ts, ts)
        elif name in ("container_cpu_usage_seconds_total", "container_memory_working_set_bytes",
                      "container_start_time_seconds"):
            labels = {k: _unescape(v) for k, v in _LABEL.findall(raw_labels or "")}
            key = (labels.get("namespace", ""), labels.get("pod", ""), labels.get("container", ""))
            parts.setdefault(key, {})[name] = value
            stamps[key] = max(stamps.get(key, 0.0), ts)
    scrape = Scrape(at)
    if "node_cpu_usage_seconds_total" in node:
        scrape.node = Point(node["node_cpu_usage_seconds_total"], int(node.get("node_memory_working_set_bytes", 0)),
                            node_ts)
    for key, values in parts.items():
        if "container_cpu_usage_seconds_total" in values and "container_memory_working_set_bytes" in values:
            scrape.containers[key] = Point(values["container_cpu_usage_seconds_total"],
                                           int(values["container_memory_working_set_bytes"]), stamps[key],
                                           values.get("container_start_time_seconds", 0.0))
    return scrape


@dataclass(frozen=True)
class Usage:
    nanocores: int
    memory_bytes: int
    timestamp: float
    window: float


def rate(old: Point | None, new: Point | None) -> Usage | None:
    """Usage between two samples of one counter; None when they cannot be compared."""
    if old is None or new is None or new.timestamp <= old.timestamp or new.cpu_seconds < old.cpu_seconds:
        return None
    if old.start_time != new.start_time:       # a new container with the same name: its counter restarted
        return None
    window = new.timestamp - old.timestamp
    return Usage(round((new.cpu_seconds - old.cpu_seconds) / window * 1e9), new.memory_bytes, new.timestamp, window)


# -- wire formats ------------------------------------------------------------------------------------------

def format_cpu(nanocores: int) -> str:
    """A CPU quantity in canonical form: `0`, `250m`, `1500u`, `12345n`, `2`."""
    if nanocores == 0:
        return "0"
    for divisor, suffix in ((10**9, ""), (10**6, "m"), (10**3, "u")):
        if nanocores % divisor == 0:
            return f"{nanocores // divisor}{suffix}"
    return f"{nanocores}n"


def format_memory(n: int) -> str:
    """A byte quantity in canonical binary form: `0`, `1234Ki`, `64Mi`, or plain bytes."""
    if n == 0:
        return "0"
    for power, suffix in ((4, "Ti"), (3, "Gi"), (2, "Mi"), (1, "Ki")):
        if n % 1024**power == 0:
            return f"{n // 1024**power}{suffix}"
    return str(n)


def go_duration(seconds: float) -> str:
    """A metav1.Duration as Go prints it: `15s`, `1.502s`, `1m0.5s`."""
    ms = round(seconds * 1000)
    minutes, ms = divmod(ms, 60000)
    secs = f"{ms / 1000:.3f}".rstrip("0").rstrip(".")
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def rfc3339(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _meta(obj: Obj, now: str) -> Obj:
    m = obj["metadata"]
    out = {"name": m["name"], "creationTimestamp": now}
    if m.get("namespace"):
        out["namespace"] = m["namespace"]
    if m.get("labels"):
        out["labels"] = m["labels"]
    return out


def node_metrics(node: Obj, usage: Usage, now: str) -> Obj:
    return {"kind": "NodeMetrics", "apiVersion": GROUP_VERSION, "metadata": _meta(node, now),
            "timestamp": rfc3339(usage.timestamp), "window": go_duration(usage.window),
            "usage": {"cpu": format_cpu(usage.nanocores), "memory": format_memory(usage.memory_bytes)}}


def pod_metrics(pod: Obj, containers: list[tuple[str, Usage]], now: str) -> Obj:
    latest = max((u for _, u in containers), key=lambda u: u.timestamp)
    return {"kind": "PodMetrics", "apiVersion": GROUP_VERSION, "metadata": _meta(pod, now),
            "timestamp": rfc3339(latest.timestamp), "window": go_duration(latest.window),
            "containers": [{"name": name, "usage": {"cpu": format_cpu(u.nanocores),
                                                    "memory": format_memory(u.memory_bytes)}}
                           for name, u in containers]}


def pod_usage(pod: Obj, previous: Scrape, latest: Scrape) -> list[tuple[str, Usage]] | None:
    """Per-container usage of a pod from its node's two scrapes; None unless every running container has one."""
    m = pod["metadata"]
    out = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        key = (m.get("namespace", ""), m["name"], c.get("name", ""))
        if key not in latest.containers:
            continue        # not running (yet, or any more)
        usage = rate(previous.containers.get(key), latest.containers[key])
        if usage is None:
            return None
        out.append((key[2], usage))
    return out or None


# -- the scraper and the handlers --------------------------------------------------------------------------

@dataclass
class _History:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    previous: Scrape | None = None
    latest: Scrape | None = None


class MetricsAPI:
    def __init__(self, cache: WatchCache, kubelets: KubeletProxy, *, fresh: float = 2.0, min_window: float = 1.0,
                 max_age: float = 60.0):
        self.pods = cache.cache_for(PODS)
        self.nodes = cache.cache_for(NODES)
        self.kubelets = kubelets
        self.fresh, self.min_window, self.max_age = fresh, min_window, max_age
        self._history: dict[str, _History] = {}

    async def _scrape(self, node: Obj) -> Scrape:
        started = time.monotonic()
        text = await self.kubelets.fetch(node, RESOURCE_PATH)
        scrape = parse_resource_metrics(text.decode("utf-8", "replace"), started)
        logger.debug("scraped node %s: %d containers in %.1f ms", node["metadata"]["name"], len(scrape.containers),
                     (time.monotonic() - started) * 1000)
        return scrape

    async def samples(self, node: Obj) -> tuple[Scrape, Scrape]:
        """The node's two latest scrapes, scraping as needed (see the module docstring)."""
        h = self._history.setdefault(node["metadata"]["name"], _History())
        async with h.lock:
            now = time.monotonic()
            if h.previous is not None and h.latest is not None and now - h.latest.at < self.fresh:
                return h.previous, h.latest
            if h.latest is None or now - h.latest.at > self.max_age:
                h.latest = await self._scrape(node)
                now = h.latest.at
            if time.monotonic() - now < self.min_window:
                await asyncio.sleep(self.min_window - (time.monotonic() - now))
            h.previous, h.latest = h.latest, await self._scrape(node)
            return h.previous, h.latest

    async def _samples_of(self, node_names: set[str]) -> dict[str, tuple[Scrape, Scrape]]:
        """Scrapes of the named nodes, in parallel; unreachable nodes are logged and left out."""
        for gone in set(self._history) - {k.rpartition("/")[2] for k in self.nodes.objects}:
            del self._history[gone]
        nodes = {n: obj for n in node_names if (obj := self.nodes.objects.get(f"{NODES.storage_prefix()}{n}"))}
        results = await asyncio.gather(*(self.samples(obj) for obj in nodes.values()), return_exceptions=True)
        out = {}
        for name, result in zip(nodes, results):
            if isinstance(result, APIError):
                logger.warning("no resource metrics from node %s: %s", name, result.message)
            elif isinstance(result, BaseException):
                raise result
            else:
                out[name] = result
        return out

    # -- queries -----------------------------------------------------------------------------------------

    async def node_list(self, label_selector: str = "", field_selector: str = "", name: str | None = None) -> list[Obj]:
        labels, fields = parse_label_selector(label_selector), parse_field_selector(field_selector)
        nodes = [obj for _, obj in self.nodes.items(None)
                 if (name is None or obj["metadata"]["name"] == name) and labels.matches(obj["metadata"].get("labels"))
                 and fields.matches(lambda p, o=obj: NODES.field_value(o, p))]
        samples = await self._samples_of({n["metadata"]["name"] for n in nodes})
        now = rfc3339(time.time())
        out = []
        for node in nodes:
            pair = samples.get(node["metadata"]["name"])
            usage = rate(pair[0].node, pair[1].node) if pair else None
            if usage is not None:
                out.append(node_metrics(node, usage, now))
        return out

    async def pod_list(self, namespace: str | None, label_selector: str = "", field_selector: str = "",
                       name: str | None = None) -> list[Obj]:
        labels, fields = parse_label_selector(label_selector), parse_field_selector(field_selector)
        pods = [obj for _, obj in self.pods.items(namespace)
                if (name is None or obj["metadata"]["name"] == name) and (obj.get("spec") or {}).get("nodeName")
                and (obj.get("status") or {}).get("phase") == "Running"
                and labels.matches(obj["metadata"].get("labels"))
                and fields.matches(lambda p, o=obj: PODS.field_value(o, p))]
        samples = await self._samples_of({p["spec"]["nodeName"] for p in pods})
        now = rfc3339(time.time())
        out = []
        for pod in pods:
            pair = samples.get(pod["spec"]["nodeName"])
            containers = pod_usage(pod, *pair) if pair else None
            if containers:
                out.append(pod_metrics(pod, containers, now))
        return out

    # -- HTTP --------------------------------------------------------------------------------------------

    @staticmethod
    def _list_response(kind: str, items: list[Obj]) -> Response:
        return json_response({"kind": f"{kind}List", "apiVersion": GROUP_VERSION, "metadata": {}, "items": items})

    @staticmethod
    def _refuse_watch(request: Request) -> None:
        if request.query_params.get("watch") in ("1", "true", "True"):
            raise errors.method_not_allowed("watch is not supported on metrics.k8s.io resources")

    async def list_nodes(self, request: Request) -> Response:
        self._refuse_watch(request)
        q = request.query_params
        return self._list_response("NodeMetrics", await self.node_list(q.get("labelSelector", ""),
                                                                       q.get("fieldSelector", "")))

    async def get_node(self, request: Request) -> Response:
        name = request.path_params["name"]
        found = await self.node_list(name=name)
        if not found:
            raise errors.not_found("nodemetrics", name, "metrics.k8s.io")
        return json_response(found[0])

    async def list_pods(self, request: Request) -> Response:
        self._refuse_watch(request)
        q = request.query_params
        items = await self.pod_list(request.path_params.get("namespace"), q.get("labelSelector", ""),
                                    q.get("fieldSelector", ""))
        return self._list_response("PodMetrics", items)

    async def get_pod(self, request: Request) -> Response:
        p = request.path_params
        found = await self.pod_list(p["namespace"], name=p["name"])
        if not found:
            raise errors.not_found("podmetrics", p["name"], "metrics.k8s.io")
        return json_response(found[0])

    def routes(self) -> list[tuple[str, Any]]:
        base = f"/apis/{GROUP_VERSION}"
        return [(f"{base}/nodes", self.list_nodes), (f"{base}/nodes/{{name}}", self.get_node),
                (f"{base}/pods", self.list_pods), (f"{base}/namespaces/{{namespace}}/pods", self.list_pods),
                (f"{base}/namespaces/{{namespace}}/pods/{{name}}", self.get_pod)]
