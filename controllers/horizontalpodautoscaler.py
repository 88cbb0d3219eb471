"""HorizontalPodAutoscaler controller: sizes a Deployment, ReplicaSet or StatefulSet by its pods' resource usage.

Every HPA is reconciled once per `--horizontal-pod-autoscaler-sync-period` (15 s), as Kubernetes does:
a fixed-interval requeue, plus a prompt first pass when an HPA appears. One pass (reconcileAutoscaler):

1. Read the target's `/scale` (autoscaling/v1 Scale): replicas and the label selector of its pods.
   Failure: AbleToScale=False/FailedGetScale and a FailedGetScale event.
2. Replicas 0 (and minReplicas > 0) disables autoscaling (ScalingActive=False/ScalingDisabled); outside
   [minReplicas, maxReplicas] the count is brought back within.
3. Otherwise each metric proposes a count (`controllers.podautoscaler`): the pods come from the shared pod
   cache by the scale's selector, their usage from `metrics.k8s.io` PodMetrics (one LIST by selector),
   their requests from their specs. The highest proposal wins (ScalingActive=True/ValidMetricFound); if
   every metric failed, or some failed and the rest would scale down, nothing changes
   (ScalingActive=False/FailedGetResourceMetric, events FailedGetResourceMetric and
   FailedComputeMetricsReplicas). Only Resource and ContainerResource metrics are served here: there
   is no custom or external metrics API, so Pods, Object and External metrics fail as they do in a
   Kubernetes cluster without one.
4. Stabilization and rate limits (`spec.behavior`, or the legacy rules without it) give the final count;
   AbleToScale and ScalingLimited say why. A change is written to `/scale` with the read's
   resourceVersion and announced as SuccessfulRescale ("New size: 4; reason: cpu resource utilization
   (percentage of request) above target").
5. Status (currentReplicas, desiredReplicas, currentMetrics, lastScaleTime, conditions) is written
   through `/status` when it changed.

Recommendations and scale events live in memory per HPA, as in Kubernetes: a new leader starts with an
empty history (so its first scale-down waits no stabilization window).
"""
from __future__ import annotations

import copy
import logging
import time
from typing import Any, Callable

from api import registry
from api.errors import APIError
from api.selectors import parse_label_selector
from client.rest import is_conflict, is_not_found
from controllers.base import Controller
from controllers.common import now_rfc3339, parse_time
from controllers.podautoscaler import (History, MetricError, Proposal, Sample, format_milli, milli_value,
                                       normalize_with_behavior, normalize_without_behavior, parse_go_duration,
                                       record_scale_event, resource_replicas)

logger = logging.getLogger(__name__)

Obj = dict[str, Any]

HPAS = registry.lookup("autoscaling", "v2", "horizontalpodautoscalers")
POD_METRICS = next(rd for rd in registry.METRICS if rd.kind == "PodMetrics")
BY_NAMESPACE = "hpa/by-namespace"
CONDITION_ORDER = ("AbleToScale", "ScalingActive", "ScalingLimited")
CUSTOM_METRIC_REASONS = {"Pods": "FailedGetPodsMetric", "Object": "FailedGetObjectMetric",
                         "External": "FailedGetExternalMetric"}


def metric_name(metric: Obj) -> str:
    """How Kubernetes names a metric in messages: `cpu resource utilization (percentage of request)`."""
    mtype = metric.get("type")
    src = metric.get("resource") if mtype == "Resource" else metric.get("containerResource") or {}
    target = (src or {}).get("target") or {}
    name = (src or {}).get("name", "")
    prefix = f"{name} container resource" if mtype == "ContainerResource" else f"{name} resource"
    if target.get("averageUtilization") is not None:
        return f"{prefix} utilization (percentage of request)"
    return prefix


def set_condition(status: Obj, ctype: str, value: str, reason: str, message: str, now: str) -> None:
    """Set one condition, keeping its lastTransitionTime unless its status changes; Kubernetes' order."""
    conditions = {c["type"]: c for c in status.get("conditions") or []}
    old = conditions.get(ctype)
    since = old["lastTransitionTime"] if old and old.get("status") == value and old.get("lastTransitionTime") else now
    conditions[ctype] = {"type": ctype, "status": value, "lastTransitionTime": since, "reason": reason,
                         "message": message}
    status["conditions"] = [conditions[t] for t in CONDITION_ORDER if t in conditions] + \
        [c for t, c in conditions.items() if t not in CONDITION_ORDER]


class HorizontalPodAutoscalerController(Controller):
    name = "horizontalpodautoscaling"
    workers = 2

    @classmethod
    def add_arguments(cls, group) -> None:
        group.add_argument("--horizontal-pod-autoscaler-sync-period", type=float, default=15,
                           help="seconds between two reconciles of one HPA")
        group.add_argument("--horizontal-pod-autoscaler-downscale-stabilization", type=float, default=300,
                           help="seconds of recommendations a scale-down looks back on (when behavior sets none)")
        group.add_argument("--horizontal-pod-autoscaler-tolerance", type=float, default=0.1,
                           help="usage ratios within this distance of 1.0 change nothing")
        group.add_argument("--horizontal-pod-autoscaler-cpu-initialization-period", type=float, default=300,
                           help="seconds after a pod's start during which its CPU samples may be skipped")
        group.add_argument("--horizontal-pod-autoscaler-initial-readiness-delay", type=float, default=30,
                           help="seconds after a pod's start during which a readiness change counts as initial")

    def setup(self) -> None:
        o = self.options
        self.clock: Callable[[], float] = o.get("clock") or time.time
        self.period = float(o.get("horizontal_pod_autoscaler_sync_period") or 15)
        self.downscale_window = float(o.get("horizontal_pod_autoscaler_downscale_stabilization", 300))
        self.tolerance = float(o.get("horizontal_pod_autoscaler_tolerance", 0.1))
        self.cpu_init_period = float(o.get("horizontal_pod_autoscaler_cpu_initialization_period", 300))
        self.readiness_delay = float(o.get("horizontal_pod_autoscaler_initial_readiness_delay", 30))
        self.history: dict[str, History] = {}
        self.hpas = self.factory.informer(HPAS)
        self.hpas.add_handler(on_add=self.enqueue, on_update=lambda old, new: self._enqueue_later(new),
                              on_delete=self.enqueue)
        self.pods = self.factory.informer("pods")
        try:
            self.pods.add_index(BY_NAMESPACE, lambda p: [p["metadata"].get("namespace", "")])
        except ValueError:
            pass

    def _enqueue_later(self, hpa: Obj) -> None:
        """Changes (our own status writes among them) wait for the next sync slot, as in Kubernetes."""
        meta = hpa["metadata"]
        self.queue.add_after(f"{meta['namespace']}/{meta['name']}", self.period)

    async def reconcile(self, key: str) -> None:
        hpa = self.hpas.store.get(key)
        if hpa is None:
            self.history.pop(key, None)
            return
        try:
            await self.reconcile_autoscaler(key, copy.deepcopy(hpa))
        finally:
            self.queue.add_after(key, self.period)

    # -- one pass --------------------------------------------------------------------------------------

    async def reconcile_autoscaler(self, key: str, hpa: Obj) -> None:
        spec = hpa.get("spec") or {}
        original = copy.deepcopy(hpa.get("status") or {})
        status = hpa.setdefault("status", {})
        now, stamp = self.clock(), now_rfc3339()
        ref = spec.get("scaleTargetRef") or {}
        reference = f"{ref.get('kind')}/{ref.get('name')}"
        ns = hpa["metadata"]["namespace"]
        target = self._target_def(ref)
        try:
            if target is None:
                raise APIError(404, "NotFound", f'no matches for kind "{ref.get("kind")}" in group '
                                                f'"{ref.get("apiVersion", "").rpartition("/")[0]}"')
            scale = await self.client.get_subresource(target, ref.get("name", ""), "scale", ns)
        except APIError as e:
            message = f"the HPA controller was unable to get the target's current scale: {e.message}"
            set_condition(status, "AbleToScale", "False", "FailedGetScale", message, stamp)
            self.recorder.event(hpa, "Warning", "FailedGetScale", e.message)
            await self._write_status(hpa, original)
            return
        set_condition(status, "AbleToScale", "True", "SucceededGetScale",
                      "the HPA controller was able to get the target's current scale", stamp)
        current = int((scale.get("spec") or {}).get("replicas") or 0)
        min_replicas, max_replicas = int(spec.get("minReplicas") or 1), int(spec.get("maxReplicas") or 1)
        metric_statuses: list[Obj] = []
        desired, reason = 0, ""
        if current == 0 and min_replicas != 0:
            set_condition(status, "ScalingActive", "False", "ScalingDisabled",
                          "scaling is disabled since the replica count of the target is zero", stamp)
        elif current > max_replicas:
            desired, reason = max_replicas, "Current number of replicas above Spec.MaxReplicas"
        elif current < min_replicas:
            desired, reason = min_replicas, "Current number of replicas below Spec.MinReplicas"
        else:
            computed = await self._replicas_for_metrics(hpa, scale, current, metric_statuses, now, stamp)
            if computed is None:
                self._set_replicas(status, current, None, metric_statuses)
                await self._write_status(hpa, original)
                return
            desired, name = computed
            if desired > current:
                reason = f"{name} above target"
            elif desired < current:
                reason = "All metrics below target"
            history = self.history.setdefault(key, History())
            args = dict(current=current, desired=desired, min_replicas=min_replicas, max_replicas=max_replicas,
                        downscale_stabilization=self.downscale_window, now=now)
            behavior = spec.get("behavior")
            if isinstance(behavior, dict):
                decision = normalize_with_behavior(history, behavior, **args)
            else:
                decision = normalize_without_behavior(history, **args)
            desired = decision.replicas
            set_condition(status, "AbleToScale", "True", decision.able_reason, decision.able_message, stamp)
            set_condition(status, "ScalingLimited", "True" if decision.limited else "False", decision.limited_reason,
                          decision.limited_message, stamp)
        if desired != current:
            try:
                await self.client.patch(target, ref["name"], {"metadata": {"resourceVersion": scale["metadata"].get(
                    "resourceVersion")}, "spec": {"replicas": desired}}, ns, subresource="scale")
            except APIError as e:
                self.recorder.event(hpa, "Warning", "FailedRescale",
                                    f"New size: {desired}; reason: {reason}; error: {e.message}")
                set_condition(status, "AbleToScale", "False", "FailedUpdateScale",
                              f"the HPA controller was unable to update the target scale: {e.message}", stamp)
                self._set_replicas(status, current, None, metric_statuses)
                await self._write_status(hpa, original)
                if is_conflict(e):
                    return
                raise
            set_condition(status, "AbleToScale", "True", "SucceededRescale",
                          f"the HPA controller was able to update the target scale to {desired}", stamp)
            self.recorder.event(hpa, "Normal", "SuccessfulRescale", f"New size: {desired}; reason: {reason}")
            record_scale_event(self.history.setdefault(key, History()), spec.get("behavior"), current, desired, now)
            logger.info("successful rescale of %s/%s (%s), old size: %d, new size: %d, reason: %s", ns,
                        hpa["metadata"]["name"], reference, current, desired, reason)
            status["lastScaleTime"] = stamp
        else:
            desired = current
        self._set_replicas(status, current, desired, metric_statuses)
        await self._write_status(hpa, original)

    @staticmethod
    def _target_def(ref: Obj) -> registry.ResourceDef | None:
        rd = registry.by_kind(ref.get("apiVersion", ""), ref.get("kind", ""))
        if rd is None:   # an apiVersion we do not serve (extensions/v1beta1, apps/v1beta2): the kind decides
            rd = next((r for r in registry.RESOURCES if r.kind == ref.get("kind")), None)
        return rd if rd is not None and "scale" in rd.subresources else None

    @staticmethod
    def _set_replicas(status: Obj, current: int, desired: int | None, metrics: list[Obj]) -> None:
        status["currentReplicas"] = current
        if desired is not None:
            status["desiredReplicas"] = desired
        else:
            status.setdefault("desiredReplicas", current)
        if metrics:
            status["currentMetrics"] = metrics
        else:
            status.pop("currentMetrics", None)

    async def _write_status(self, hpa: Obj, original: Obj) -> None:
        if hpa["status"] == original:
            return
        hpa["status"]["observedGeneration"] = hpa["metadata"].get("generation")
        try:
            await self.client.update_status(HPAS, hpa)
        except APIError as e:
            if is_conflict(e) or is_not_found(e):     # changed or gone meanwhile: the next pass sees it
                logger.info("status of HPA %s/%s not written: %s", hpa["metadata"]["namespace"],
                            hpa["metadata"]["name"], e.message)
                return
            raise

    # -- metrics ---------------------------------------------------------------------------------------

    async def _replicas_for_metrics(self, hpa: Obj, scale: Obj, current: int, statuses: list[Obj], now: float,
                                    stamp: str) -> tuple[int, str] | None:
        """The highest count the metrics ask for and that metric's name; None when it cannot be trusted."""
        status = hpa["status"]
        selector_text = (scale.get("status") or {}).get("selector") or ""
        if not selector_text:
            message = "the HPA target's scale is missing a selector"
            set_condition(status, "ScalingActive", "False", "InvalidSelector", message, stamp)
            self.recorder.event(hpa, "Warning", "SelectorRequired", message)
            return None
        try:
            selector = parse_label_selector(selector_text)
        except APIError as e:
            set_condition(status, "ScalingActive", "False", "InvalidSelector", e.message, stamp)
            self.recorder.event(hpa, "Warning", "InvalidSelector", e.message)
            return None
        ns = hpa["metadata"]["namespace"]
        pods = [p for p in self.pods.store.by_index(BY_NAMESPACE, ns) if selector.matches(p["metadata"].get("labels"))]
        samples: dict[str, dict[str, Sample]] | None = None
        best: tuple[int, str] | None = None
        failures: list[tuple[str, str]] = []
        metrics = (hpa.get("spec") or {}).get("metrics") or []
        for metric in metrics:
            mtype = metric.get("type")
            if mtype not in ("Resource", "ContainerResource"):
                reason = CUSTOM_METRIC_REASONS.get(mtype or "", "FailedGetResourceMetric")
                failures.append((reason, f"unable to get metric for {mtype} metric: no custom metrics API "
                                         f"(custom.metrics.k8s.io) or external metrics API (external.metrics.k8s.io)"
                                         f" is registered"))
                continue
            src = metric.get("resource") if mtype == "Resource" else metric.get("containerResource")
            src = src or {}
            resource, container = src.get("name", ""), src.get("container") if mtype == "ContainerResource" else None
            target = src.get("target") or {}
            try:
                if samples is None:
                    samples = await self._pod_samples(ns, selector_text)
                by_pod = self._resource_samples(samples, resource, container)
                proposal = resource_replicas(
                    current, pods, by_pod, resource, container=container, now=now, tolerance=self.tolerance,
                    target_utilization=target.get("averageUtilization"),
                    target_average=milli_value(resource, target["averageValue"]) if target.get(
                        "averageUtilization") is None and target.get("averageValue") is not None else None,
                    cpu_initialization_period=self.cpu_init_period, initial_readiness_delay=self.readiness_delay)
            except (MetricError, APIError) as e:
                text = e.message if isinstance(e, APIError) else str(e)
                kind = "utilization" if target.get("averageUtilization") is not None else "usage"
                failures.append(("FailedGetResourceMetric" if mtype == "Resource" else
                                 "FailedGetContainerResourceMetric", f"failed to get {resource} {kind}: {text}"))
                continue
            statuses.append(self._metric_status(mtype, resource, container, proposal))
            if best is None or proposal.replicas > best[0]:
                best = (proposal.replicas, metric_name(metric))
        for reason, message in failures:
            self.recorder.event(hpa, "Warning", reason, message)
        if failures and (best is None or best[0] < current):
            reason, message = failures[0]
            set_condition(status, "ScalingActive", "False", reason,
                          f"the HPA was unable to compute the replica count: {message}", stamp)
            self.recorder.event(hpa, "Warning", "FailedComputeMetricsReplicas",
                                f"invalid metrics ({len(failures)} invalid out of {len(metrics)}), first error "
                                f"is: {message}")
            return None
        if best is None:
            return None
        set_condition(status, "ScalingActive", "True", "ValidMetricFound",
                      f"the HPA was able to successfully calculate a replica count from {best[1]}", stamp)
        return best

    async def _pod_samples(self, namespace: str, selector: str) -> dict[str, dict[str, Sample]]:
        """Pod name -> container name -> Sample of every resource, from one PodMetrics LIST."""
        listed = await self.client.list(POD_METRICS, namespace, label_selector=selector)
        out: dict[str, dict[str, Sample]] = {}
        for item in listed.get("items") or []:
            ts = parse_time(item.get("timestamp")) or 0.0
            window = parse_go_duration(item.get("window", ""))
            containers = out[item["metadata"]["name"]] = {}
            for c in item.get("containers") or []:
                containers[c.get("name", "")] = {r: Sample(milli_value(r, v), ts, window)
                                                 for r, v in (c.get("usage") or {}).items()}
        return out

    @staticmethod
    def _resource_samples(samples: dict[str, Any], resource: str, container: str | None) -> dict[str, Sample]:
        """One Sample per pod for `resource`: the sum over its containers (or the one container asked for)."""
        out = {}
        for pod, containers in samples.items():
            values = [usage[resource] for name, usage in containers.items()
                      if resource in usage and (container is None or name == container)]
            if values:
                out[pod] = Sample(sum(v.value for v in values), values[0].timestamp, values[0].window)
        return out

    @staticmethod
    def _metric_status(mtype: str, resource: str, container: str | None, proposal: Proposal) -> Obj:
        current: Obj = {"averageValue": format_milli(proposal.average)}
        if proposal.utilization is not None:
            current["averageUtilization"] = proposal.utilization
        if mtype == "ContainerResource":
            return {"type": mtype, "containerResource": {"name": resource, "container": container, "current": current}}
        return {"type": mtype, "resource": {"name": resource, "current": current}}
