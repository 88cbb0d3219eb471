"""What the scheduler knows about pods and nodes, parsed once into plain records.

A pod or node dict is parsed into a `PodInfo` / `NodeInfo` exactly once (when the informer or the
scheduler first sees that version), so the hot loop — thousands of (pod, node) checks per second — only
compares integers and small tuples, never quantities or nested dicts.

- `PodInfo`: effective resource requests (Kubernetes' init-container rule: per resource the larger of the
  sum over app containers and the largest init container, plus `spec.overhead`), the non-zero requests
  used for scoring (100m CPU / 200Mi memory for a container that requests nothing), host ports,
  tolerations, node selector and affinity, inter-pod (anti-)affinity terms, topology spread constraints
  and the controller owner.
- `NodeInfo`: one node and the pods on it (bound, or assumed by this scheduler), with running totals
  of requested resources, used host ports and per-owner pod counts, updated incrementally as pods come
  and go — never recomputed from scratch.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from api.quantity import cpu_millis, memory_bytes
from api.selectors import LabelSelector, selector_from_dict
from client.resources import object_key

logger = logging.getLogger(__name__)

Obj = dict[str, Any]

# Kubernetes' DefaultMilliCPURequest / DefaultMemoryRequest: what a container without requests is
# assumed to use when scoring, so that many request-less pods still spread out.
DEFAULT_MILLI_CPU_REQUEST = 100
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024

ALL_IPS = "0.0.0.0"
HOSTNAME_LABEL = "kubernetes.io/hostname"
ZONE_LABEL = "topology.kubernetes.io/zone"
SCHEDULE_EFFECTS = ("NoSchedule", "NoExecute")


# --- pods -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AffinityTerm:
    """A required (or weighted preferred) pod (anti-)affinity term."""

    selector: LabelSelector
    namespaces: frozenset[str] | None  # None: every namespace (`namespaceSelector: {}`)
    topology_key: str
    weight: int = 0

    def matches(self, pod: "PodInfo") -> bool:
        if self.namespaces is not None and pod.namespace not in self.namespaces:
            return False
        return self.selector.matches(pod.labels)


@dataclass(frozen=True, slots=True)
class SpreadConstraint:
    max_skew: int
    topology_key: str
    hard: bool  # whenUnsatisfiable: DoNotSchedule
    selector: LabelSelector
    min_domains: int = 1


@dataclass(slots=True)
class PodInfo:
    pod: Obj
    key: str
    namespace: str
    name: str
    labels: dict[str, str]
    node_name: str
    cpu: int
    memory: int
    scalars: dict[str, int]
    nonzero_cpu: int
    nonzero_memory: int
    host_ports: tuple[tuple[str, str, int], ...]
    tolerations: tuple[Obj, ...]
    node_selector: dict[str, str]
    required_node_terms: tuple[Obj, ...] | None
    preferred_node_terms: tuple[Obj, ...]
    affinity: tuple[AffinityTerm, ...]
    anti_affinity: tuple[AffinityTerm, ...]
    spread: tuple[SpreadConstraint, ...]
    owner_uid: str | None
    priority: int
    terminating: bool

    @property
    def has_node_affinity(self) -> bool:
        return bool(self.node_selector) or self.required_node_terms is not None


def _quantity(parse, value: Any) -> int:
    try:
        return parse(value)
    except (ValueError, TypeError):
        return 0


def _container_requests(container: Obj) -> dict[str, int]:
    """A container's requests; a resource with only a limit requests its limit (as Kubernetes defaults)."""
    resources = container.get("resources") or {}
    wanted = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
    out: dict[str, int] = {}
    for name, value in wanted.items():
        out[name] = _quantity(cpu_millis if name == "cpu" else memory_bytes, value)
    return out


def _nonzero(requests: dict[str, int]) -> tuple[int, int]:
    cpu = requests["cpu"] if "cpu" in requests else DEFAULT_MILLI_CPU_REQUEST
    mem = requests["memory"] if "memory" in requests else DEFAULT_MEMORY_REQUEST
    return cpu, mem


def pod_requests(spec: Obj) -> tuple[dict[str, int], tuple[int, int]]:
    """Effective requests (all resources) and non-zero (cpu, memory) for scoring, init-container rule."""
    total: Counter[str] = Counter()
    nz_cpu = nz_mem = 0
    for c in spec.get("containers") or []:
        req = _container_requests(c)
        total.update(req)
        cpu, mem = _nonzero(req)
        nz_cpu, nz_mem = nz_cpu + cpu, nz_mem + mem
    for c in spec.get("initContainers") or []:
        req = _container_requests(c)
        for name, value in req.items():
            total[name] = max(total[name], value)
        cpu, mem = _nonzero(req)
        nz_cpu, nz_mem = max(nz_cpu, cpu), max(nz_mem, mem)
    for name, value in (spec.get("overhead") or {}).items():
        amount = _quantity(cpu_millis if name == "cpu" else memory_bytes, value)
        total[name] += amount
        if name == "cpu":
            nz_cpu += amount
        elif name == "memory":
            nz_mem += amount
    return dict(total), (nz_cpu, nz_mem)


def _host_ports(spec: Obj) -> tuple[tuple[str, str, int], ...]:
    ports = []
    for c in spec.get("containers") or []:
        for p in c.get("ports") or []:
            if isinstance(p, dict) and p.get("hostPort"):
                ports.append((p.get("hostIP") or ALL_IPS, p.get("protocol") or "TCP", int(p["hostPort"])))
    return tuple(ports)


def _term_namespaces(term: Obj, own: str) -> frozenset[str] | None:
    # namespaceSelector {} selects every namespace; a non-empty namespaceSelector would need namespace
    # labels, which the scheduler does not watch — only the explicit list (or our own namespace) counts.
    names = frozenset(term.get("namespaces") or ())
    if term.get("namespaceSelector") == {} and not names:
        return None
    return names or frozenset((own,))


def _affinity_terms(terms: Any, own: str, *, weighted: bool = False) -> tuple[AffinityTerm, ...]:
    out = []
    for item in terms or []:
        term = item.get("podAffinityTerm") or {} if weighted else item
        out.append(AffinityTerm(selector_from_dict(term.get("labelSelector")), _term_namespaces(term, own),
                                term.get("topologyKey") or "", int(item.get("weight") or 0) if weighted else 0))
    return tuple(out)


def _spread_constraints(spec: Obj) -> tuple[SpreadConstraint, ...]:
    out = []
    for c in spec.get("topologySpreadConstraints") or []:
        out.append(SpreadConstraint(int(c.get("maxSkew") or 1), c.get("topologyKey") or "",
                                    c.get("whenUnsatisfiable", "DoNotSchedule") == "DoNotSchedule",
                                    selector_from_dict(c.get("labelSelector")), int(c.get("minDomains") or 1)))
    return tuple(out)


def controller_uid(meta: Obj) -> str | None:
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller"):
            return ref.get("uid")
    return None


def pod_info(pod: Obj) -> PodInfo:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    namespace = meta.get("namespace") or "default"
    requests, (nz_cpu, nz_mem) = pod_requests(spec)
    affinity = spec.get("affinity") or {}
    node_aff = affinity.get("nodeAffinity") or {}
    required = node_aff.get("requiredDuringSchedulingIgnoredDuringExecution")
    pod_aff = affinity.get("podAffinity") or {}
    anti_aff = affinity.get("podAntiAffinity") or {}
    return PodInfo(
        pod=pod, key=object_key(pod), namespace=namespace, name=meta.get("name") or "",
        labels=meta.get("labels") or {}, node_name=spec.get("nodeName") or "",
        cpu=requests.pop("cpu", 0), memory=requests.pop("memory", 0),
        scalars={k: v for k, v in requests.items() if v > 0},
        nonzero_cpu=nz_cpu, nonzero_memory=nz_mem, host_ports=_host_ports(spec),
        tolerations=tuple(t for t in spec.get("tolerations") or [] if isinstance(t, dict)),
        node_selector=spec.get("nodeSelector") or {},
        required_node_terms=tuple(required.get("nodeSelectorTerms") or ()) if required is not None else None,
        preferred_node_terms=tuple(node_aff.get("preferredDuringSchedulingIgnoredDuringExecution") or ()),
        affinity=_affinity_terms(pod_aff.get("requiredDuringSchedulingIgnoredDuringExecution"), namespace),
        anti_affinity=_affinity_terms(anti_aff.get("requiredDuringSchedulingIgnoredDuringExecution"), namespace),
        spread=_spread_constraints(spec),
        owner_uid=controller_uid(meta),
        priority=int(spec.get("priority") or 0),
        terminating=bool(meta.get("deletionTimestamp")),
    )


# --- nodes ----------------------------------------------------------------------------------------


def _ready_status(node: Obj) -> str | None:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status")
    return None


def _allocatable(node: Obj) -> tuple[int, int, int, dict[str, int]]:
    alloc = dict((node.get("status") or {}).get("allocatable") or {})
    cpu = _quantity(cpu_millis, alloc.pop("cpu", 0))
    mem = _quantity(memory_bytes, alloc.pop("memory", 0))
    pods = _quantity(memory_bytes, alloc.pop("pods", 0))
    return cpu, mem, pods, {k: _quantity(memory_bytes, v) for k, v in alloc.items()}


@dataclass(slots=True)
class NodeInfo:
    """A node plus the pods on it, with totals kept up to date by add_pod/remove_pod."""

    node: Obj
    name: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    unschedulable: bool = False
    ready: str | None = None
    taints: tuple[Obj, ...] = ()           # NoSchedule and NoExecute: filter
    prefer_taints: tuple[Obj, ...] = ()    # PreferNoSchedule: score
    clean: bool = False  # schedulable, Ready and without NoSchedule/NoExecute taints
    alloc_cpu: int = 0
    alloc_memory: int = 0
    alloc_pods: int = 0
    alloc_scalars: dict[str, int] = field(default_factory=dict)
    pods: dict[str, PodInfo] = field(default_factory=dict)
    req_cpu: int = 0
    req_memory: int = 0
    req_scalars: Counter[str] = field(default_factory=Counter)
    nonzero_cpu: int = 0
    nonzero_memory: int = 0
    used_ports: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    owner_counts: Counter[str] = field(default_factory=Counter)
    # scores.resource_scores' memo: the pod shape (non-zero cpu, memory) it was computed for and the
    # (least allocated, balanced) result; any change to totals or allocatable clears it.
    scored_for: tuple[int, int] | None = None
    scores: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        self.set_node(self.node)

    def set_node(self, node: Obj) -> None:
        self.node = node
        self.scored_for = None
        meta = node.get("metadata") or {}
        spec = node.get("spec") or {}
        self.name = meta.get("name") or ""
        self.labels = meta.get("labels") or {}
        self.unschedulable = bool(spec.get("unschedulable"))
        self.ready = _ready_status(node)
        taints = [t for t in spec.get("taints") or [] if isinstance(t, dict)]
        self.taints = tuple(t for t in taints if t.get("effect") in SCHEDULE_EFFECTS)
        self.prefer_taints = tuple(t for t in taints if t.get("effect") == "PreferNoSchedule")
        self.clean = not self.unschedulable and self.ready == "True" and not self.taints
        self.alloc_cpu, self.alloc_memory, self.alloc_pods, self.alloc_scalars = _allocatable(node)

    def add_pod(self, pi: PodInfo) -> None:
        self.pods[pi.key] = pi
        self._account(pi, 1)

    def remove_pod(self, key: str) -> PodInfo | None:
        pi = self.pods.pop(key, None)
        if pi is not None:
            self._account(pi, -1)
        return pi

    def _account(self, pi: PodInfo, sign: int) -> None:
        self.scored_for = None
        self.req_cpu += sign * pi.cpu
        self.req_memory += sign * pi.memory
        self.nonzero_cpu += sign * pi.nonzero_cpu
        self.nonzero_memory += sign * pi.nonzero_memory
        for name, value in pi.scalars.items():
            self.req_scalars[name] += sign * value
        for port in pi.host_ports:
            self.used_ports[port] += sign
            if self.used_ports[port] <= 0:
                del self.used_ports[port]
        if pi.owner_uid:
            self.owner_counts[pi.owner_uid] += sign
            if self.owner_counts[pi.owner_uid] <= 0:
                del self.owner_counts[pi.owner_uid]


def node_key(node: Obj) -> str:
    return (node.get("metadata") or {}).get("name") or ""
