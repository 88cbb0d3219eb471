"""Endpoints: for every Service with a selector, an Endpoints object of the same name listing its pods.

`desired_subsets(service, pods)` is a pure function (Kubernetes' endpoints controller, in our words):

- a pod counts when it has an IP, is not terminal (Succeeded/Failed) and is not being deleted — unless
  the service sets `publishNotReadyAddresses`, which also publishes terminating pods;
- its address carries `ip`, `nodeName`, `targetRef` (Pod, namespace, name, uid) and `hostname` when the
  pod's `spec.hostname` is set and its `spec.subdomain` names this service;
- it goes to `addresses` when the pod is Ready (or the service publishes not-ready addresses), else to
  `notReadyAddresses`;
- each service port resolves its `targetPort` per pod: a number is used as is, a name is looked up in
  the pod's container ports (same protocol); a pod without that name is left out of that port only;
- a headless service without ports publishes the addresses with no ports;
- subsets are then repacked: addresses with the same set of ports share one subset; everything sorted,
  so equal inputs give equal output.

`reconcile` writes the Endpoints only when subsets or labels differ from what is stored (labels are the
service's, plus `service.kubernetes.io/headless` for headless services), stamping the annotation
`endpoints.kubernetes.io/last-change-trigger-time` with the time of the earliest change not yet written.
A Service without a selector is left alone (its Endpoints are the user's); when a Service goes, its
Endpoints go too. EndpointSlices are not produced.
"""
from __future__ import annotations

import copy
import datetime
import logging
import time
from typing import Any

from api.errors import APIError
from client.resources import object_key
from controllers.base import Controller
from controllers.common import is_pod_ready

logger = logging.getLogger(__name__)

Obj = dict[str, Any]

TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"
HEADLESS_LABEL = "service.kubernetes.io/headless"
BY_NAMESPACE = "endpoints-byNamespace"
CONFLICT_RETRY = 0.2


def namespace_of(obj: Obj) -> list[str]:
    return [obj["metadata"].get("namespace", "")]


def _rfc3339_nano(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def service_selects(service: Obj, pod: Obj) -> bool:
    selector = (service.get("spec") or {}).get("selector")
    if not selector or pod["metadata"].get("namespace") != service["metadata"].get("namespace"):
        return False
    labels = pod["metadata"].get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


def find_port(pod: Obj, service_port: Obj) -> int | None:
    """The pod's port number for a service port (Kubernetes' podutil.FindPort); None when it has none."""
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    protocol = service_port.get("protocol", "TCP")
    for container in (pod.get("spec") or {}).get("containers") or []:
        for p in container.get("ports") or []:
            if p.get("name") == target and p.get("protocol", "TCP") == protocol:
                return p.get("containerPort")
    return None


def should_publish(pod: Obj, tolerate_unready: bool) -> bool:
    if not (pod.get("status") or {}).get("podIP"):
        return False
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return False
    return tolerate_unready or not pod["metadata"].get("deletionTimestamp")


def pod_address(service: Obj, pod: Obj) -> Obj:
    meta, spec = pod["metadata"], pod.get("spec") or {}
    addr: Obj = {"ip": pod["status"]["podIP"]}
    if spec.get("hostname") and spec.get("subdomain") == service["metadata"]["name"]:
        addr["hostname"] = spec["hostname"]
    if spec.get("nodeName"):
        addr["nodeName"] = spec["nodeName"]
    addr["targetRef"] = {"kind": "Pod", "namespace": meta.get("namespace"), "name": meta["name"],
                         "uid": meta.get("uid")}
    return addr


def _port_key(p: Obj) -> tuple:
    return (p.get("name") or "", p["port"], p.get("protocol", "TCP"), p.get("appProtocol") or "")


def desired_subsets(service: Obj, pods: list[Obj]) -> list[Obj]:
    spec = service.get("spec") or {}
    tolerate_unready = bool(spec.get("publishNotReadyAddresses"))
    headless = spec.get("clusterIP") == "None"
    service_ports = spec.get("ports") or []
    # address identity -> (address, ready, frozenset of ports)
    found: dict[tuple, tuple[Obj, bool, set]] = {}
    for pod in pods:
        if not should_publish(pod, tolerate_unready):
            continue
        addr = pod_address(service, pod)
        ready = tolerate_unready or is_pod_ready(pod)
        ident = (addr["ip"], addr["targetRef"]["uid"])
        if not service_ports:
            if headless:
                found.setdefault(ident, (addr, ready, set()))
            continue
        for sp in service_ports:
            number = find_port(pod, sp)
            if number is None:
                continue
            port: Obj = {"name": sp["name"]} if sp.get("name") else {}
            port.update(port=number, protocol=sp.get("protocol", "TCP"))
            if sp.get("appProtocol"):
                port["appProtocol"] = sp["appProtocol"]
            found.setdefault(ident, (addr, ready, set()))[2].add(tuple(sorted(port.items())))
    return repack(found.values())


def repack(entries) -> list[Obj]:
    """Group addresses by their exact port set; deterministic order throughout."""
    groups: dict[frozenset, tuple[list[Obj], list[Obj]]] = {}
    for addr, ready, ports in entries:
        ready_list, not_ready = groups.setdefault(frozenset(ports), ([], []))
        (ready_list if ready else not_ready).append(addr)
    subsets = []
    for ports, (ready_list, not_ready) in groups.items():
        subset: Obj = {}
        if ready_list:
            subset["addresses"] = sorted(ready_list, key=lambda a: (a["ip"], a["targetRef"]["uid"] or ""))
        if not_ready:
            subset["notReadyAddresses"] = sorted(not_ready, key=lambda a: (a["ip"], a["targetRef"]["uid"] or ""))
        if ports:
            subset["ports"] = sorted((dict(p) for p in ports), key=_port_key)
        subsets.append(subset)

    def order(s: Obj) -> tuple:
        first = (s.get("addresses") or s.get("notReadyAddresses"))[0]
        return (tuple(_port_key(p) for p in s.get("ports") or []), first["ip"])
    return sorted(subsets, key=order)


def desired_labels(service: Obj) -> dict[str, str]:
    labels = dict(service["metadata"].get("labels") or {})
    if (service.get("spec") or {}).get("clusterIP") == "None":
        labels[HEADLESS_LABEL] = ""
    else:
        labels.pop(HEADLESS_LABEL, None)
    return labels


class EndpointsController(Controller):
    name = "endpoints"
    workers = 4

    def setup(self) -> None:
        self.clock = self.options.get("clock") or time.time
        self.services = self.factory.informer("services")
        self.services.add_index(BY_NAMESPACE, namespace_of)
        self.services.add_handler(on_add=self._changed, on_update=lambda old, new: self._changed(new),
                                  on_delete=self._changed)
        self.pods = self.factory.informer("pods")
        self.pods.add_index(BY_NAMESPACE, namespace_of)
        self.pods.add_handler(on_add=self._pod_changed, on_update=self._pod_updated, on_delete=self._pod_changed)
        self.endpoints = self.factory.informer("endpoints")
        # Endpoints changed by someone else (or left over from a deleted service) are checked again.
        self.endpoints.add_handler(on_update=lambda old, new: self.enqueue(new), on_delete=self.enqueue)
        self._first_change: dict[str, float] = {}

    def _changed(self, service: Obj) -> None:
        key = object_key(service)
        self._first_change.setdefault(key, self.clock())
        self.queue.add(key)

    def _services_for(self, pod: Obj) -> list[Obj]:
        return [s for s in self.services.store.by_index(BY_NAMESPACE, pod["metadata"].get("namespace", ""))
                if service_selects(s, pod)]

    def _pod_changed(self, pod: Obj) -> None:
        for service in self._services_for(pod):
            self._changed(service)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if old is not new and _pod_view(old) == _pod_view(new):
            return
        for key, service in {object_key(s): s for s in self._services_for(old) + self._services_for(new)}.items():
            self._changed(service)

    async def reconcile(self, key: str) -> None:
        namespace, _, name = key.partition("/")
        service = self.services.store.get(key)
        current = self.endpoints.store.get(key)
        if service is None:
            if current is not None:
                await self._delete(namespace, name)
            self._first_change.pop(key, None)
            return
        spec = service.get("spec") or {}
        if not spec.get("selector") or spec.get("type") == "ExternalName":
            self._first_change.pop(key, None)
            return
        pods = [p for p in self.pods.store.by_index(BY_NAMESPACE, namespace) if service_selects(service, p)]
        subsets = desired_subsets(service, pods)
        labels = desired_labels(service)
        if current is not None and (current.get("subsets") or []) == subsets and \
                (current["metadata"].get("labels") or {}) == labels:
            self._first_change.pop(key, None)
            return
        trigger = _rfc3339_nano(self._first_change.get(key, self.clock()))
        try:
            await self._write(namespace, name, current, subsets, labels, trigger)
        except APIError as e:
            if e.code != 409:
                raise
            # Someone wrote the Endpoints meanwhile (Conflict or AlreadyExists): retry against the cache.
            logger.debug("endpoints %s changed while we wrote it; retrying", key)
            self.queue.add_after(key, CONFLICT_RETRY)
            return
        self._first_change.pop(key, None)
        ready = sum(len(s.get("addresses") or []) for s in subsets)
        not_ready = sum(len(s.get("notReadyAddresses") or []) for s in subsets)
        logger.info("endpoints %s: %d ready, %d not ready addresses", key, ready, not_ready)

    async def _write(self, namespace: str, name: str, current: Obj | None, subsets: list[Obj],
                     labels: dict[str, str], trigger: str) -> None:
        if current is None:
            body = {"apiVersion": "v1", "kind": "Endpoints",
                    "metadata": {"name": name, "namespace": namespace, "labels": labels,
                                 "annotations": {TRIGGER_TIME: trigger}},
                    "subsets": subsets}
            await self.client.create("endpoints", body, namespace)
        else:
            body = copy.deepcopy(current)
            body["metadata"]["labels"] = labels
            body["metadata"].setdefault("annotations", {})[TRIGGER_TIME] = trigger
            body["subsets"] = subsets
            await self.client.update("endpoints", body)

    async def _delete(self, namespace: str, name: str) -> None:
        try:
            await self.client.delete("endpoints", name, namespace)
        except APIError as e:
            if e.code != 404:
                raise
        logger.info("endpoints %s/%s deleted with its service", namespace, name)


def _pod_view(pod: Obj) -> tuple:
    """What of a pod the Endpoints depend on; other changes (most status writes) do not queue services."""
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    return (tuple(sorted((meta.get("labels") or {}).items())), bool(meta.get("deletionTimestamp")),
            status.get("podIP"), status.get("phase") in ("Succeeded", "Failed"), is_pod_ready(pod),
            spec.get("nodeName"), spec.get("hostname"), spec.get("subdomain"))
