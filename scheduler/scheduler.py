"""The scheduling loop: pending pods in, bindings out.

Informers feed two structures and nothing else:

- unassigned pods whose `spec.schedulerName` is ours (and that are not being deleted or gated) go to
  the `SchedulingQueue`;
- nodes and assigned pods go to the `Cache`, which is also the snapshot decisions are made against.

One loop pops a pod, decides synchronously (`framework.schedule`, pure), *assumes* the pod onto the
chosen node in the cache and hands the binding to a background task — up to `bind_concurrency` in
flight — so the next decision already counts the previous ones while their bindings travel. Outcomes:

- bound (201): an Event `Scheduled`; the watch later confirms the assumption;
- 409 / 404 (someone else bound it, or it is going away): the assumption is dropped, so is the pod;
- any other error: the assumption is dropped and the pod retried after its backoff;
- no node fits: `PodScheduled=False, reason=Unschedulable` with Kubernetes' per-reason message on the
  pod's status, an Event `FailedScheduling`, and the pod parks until a relevant cluster change
  (see queue.py).
"""
from __future__ import annotations

import asyncio
import logging
import random
from datetime import datetime, timezone
from typing import Any


from api.errors import APIError
from client.events import EventRecorder
from client.factory import InformerFactory
from client.resources import object_key
from client.rest import TRANSPORT_ERRORS, AsyncClient
from scheduler import framework
from scheduler.cache import Cache
from scheduler.nodeinfo import Obj, pod_info
from scheduler.queue import NODE_ADD, NODE_UPDATE, POD_ADD, POD_DELETE, QueuedPod, SchedulingQueue

logger = logging.getLogger(__name__)

DEFAULT_SCHEDULER_NAME = "default-scheduler"
# httpcore checks every pooled connection on each request, so client CPU per binding grows with the
# number in flight; 16 still hides the apiserver's latency (bench/scheduler.py --bind-concurrency).
DEFAULT_BIND_CONCURRENCY = 16
# Terminal pods hold no resources; Kubernetes' scheduler does not watch them either.
POD_FIELD_SELECTOR = "status.phase!=Succeeded,status.phase!=Failed"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def assigned(pod: Obj) -> bool:
    return bool((pod.get("spec") or {}).get("nodeName"))


def _scheduling_relevant(pod: Obj) -> tuple[Any, ...]:
    """The parts of a pod whose change may change a scheduling verdict (not status, not resourceVersion)."""
    meta = pod.get("metadata") or {}
    return pod.get("spec"), meta.get("labels"), meta.get("deletionTimestamp")


def _node_relevant(node: Obj) -> tuple[Any, ...]:
    """Node fields filters read; a heartbeat-only status update changes none of them."""
    status = node.get("status") or {}
    ready = [c.get("status") for c in status.get("conditions") or [] if c.get("type") == "Ready"]
    return (node.get("metadata") or {}).get("labels"), node.get("spec"), status.get("allocatable"), ready


def pod_scheduled_condition(pod: Obj) -> Obj | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled":
            return cond
    return None


class Scheduler:
    def __init__(self, client: AsyncClient, factory: InformerFactory, recorder: EventRecorder, *,
                 scheduler_name: str = DEFAULT_SCHEDULER_NAME, percentage_of_nodes_to_score: int = 0,
                 bind_concurrency: int = DEFAULT_BIND_CONCURRENCY, rng: random.Random | None = None,
                 queue: SchedulingQueue | None = None) -> None:
        self.client = client
        self.recorder = recorder
        self.scheduler_name = scheduler_name
        self.percentage = percentage_of_nodes_to_score
        self.rng = rng
        self.cache = Cache()
        self.queue = queue or SchedulingQueue()
        self.bind_concurrency = bind_concurrency
        self._bind_slots = asyncio.Semaphore(bind_concurrency)
        self._background: set[asyncio.Task[None]] = set()
        self._next_start = 0
        self.scheduled = 0
        self.pods = factory.informer("pods", field_selector=POD_FIELD_SELECTOR)
        self.nodes = factory.informer("nodes")
        self.pods.add_handler(self._on_pod_add, self._on_pod_update, self._on_pod_delete)
        self.nodes.add_handler(self._on_node_add, self._on_node_update, self._on_node_delete)

    # -- informer handlers: cache and queue only -------------------------------------------------

    def responsible_for(self, pod: Obj) -> bool:
        spec = pod.get("spec") or {}
        return (spec.get("schedulerName") or DEFAULT_SCHEDULER_NAME) == self.scheduler_name \
            and not spec.get("schedulingGates") and not (pod.get("metadata") or {}).get("deletionTimestamp")

    def _on_pod_add(self, pod: Obj) -> None:
        if assigned(pod):
            self.cache.add_pod(pod)
            self.queue.delete(object_key(pod))
            self.queue.move_all(POD_ADD)
        elif self.responsible_for(pod):
            self.queue.add(pod, object_key(pod))

    def _on_pod_update(self, old: Obj, new: Obj) -> None:
        key = object_key(new)
        if assigned(new):
            self.cache.update_pod(new)
            if not assigned(old):
                self.queue.delete(key)
                self.queue.move_all(POD_ADD)
        elif not self.responsible_for(new):
            self.queue.delete(key)
        elif _scheduling_relevant(old) != _scheduling_relevant(new) or not self.queue.has(key):
            # Our own status writes (PodScheduled=False) come back here too; they are not news.
            self.queue.update(new, key)

    def _on_pod_delete(self, pod: Obj) -> None:
        key = object_key(pod)
        self.queue.delete(key)
        was_placed = assigned(pod) or self.cache.is_assumed(key)
        self.cache.remove_pod(key)
        if was_placed:
            self.queue.move_all(POD_DELETE)

    def _on_node_add(self, node: Obj) -> None:
        self.cache.add_node(node)
        self.queue.move_all(NODE_ADD)

    def _on_node_update(self, old: Obj, new: Obj) -> None:
        self.cache.update_node(new)
        if _node_relevant(old) != _node_relevant(new):
            self.queue.move_all(NODE_UPDATE)

    def _on_node_delete(self, node: Obj) -> None:
        self.cache.remove_node(node)

    # -- the loop --------------------------------------------------------------------------------

    async def run(self) -> None:
        logger.info("scheduler %r running: %d nodes, %d pods pending", self.scheduler_name,
                    len(self.cache), len(self.queue))
        try:
            while (qp := await self.queue.pop()) is not None:
                await self.schedule_one(qp)
                # Let watch events and binding responses in between decisions.
                await asyncio.sleep(0)
        finally:
            self.queue.close()
            for task in list(self._background):
                task.cancel()
            await asyncio.gather(*self._background, return_exceptions=True)

    def _current(self, qp: QueuedPod) -> Obj | None:
        """The newest version of the popped pod, or None when it no longer needs us."""
        pod = self.pods.store.get(qp.key)
        if pod is None or assigned(pod) or not self.responsible_for(pod) or self.cache.is_assumed(qp.key):
            return None
        return pod

    async def schedule_one(self, qp: QueuedPod) -> None:
        pod = self._current(qp)
        if pod is None:
            self.queue.done(qp.key)
            return
        qp.pod = pod
        pi = pod_info(pod)
        result = framework.schedule(pi, self.cache, start=self._next_start, percentage=self.percentage,
                                    rng=self.rng)
        if len(self.cache):
            self._next_start = (self._next_start + result.evaluated) % len(self.cache)
        if result.node is None:
            self._unschedulable(qp, pod, result)
            return
        self.cache.assume(pi, result.node)
        await self._bind_slots.acquire()
        self._spawn(self._bind(qp, pod, result.node))

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- outcomes --------------------------------------------------------------------------------

    async def _bind(self, qp: QueuedPod, pod: Obj, node: str) -> None:
        meta = pod["metadata"]
        namespace, name = meta.get("namespace") or "default", meta["name"]
        binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": namespace},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        try:
            await self.client.create_subresource("pods", name, "binding", binding, namespace)
        except APIError as e:
            self.cache.forget(qp.key)
            if e.code in (404, 409):
                logger.info("not binding %s to %s: %s", qp.key, node, e)
                self.queue.done(qp.key)
            else:
                self._bind_failed(qp, pod, node, e)
        except TRANSPORT_ERRORS as e:
            self.cache.forget(qp.key)
            self._bind_failed(qp, pod, node, e)
        except asyncio.CancelledError:
            self.cache.forget(qp.key)
            raise
        else:
            self.scheduled += 1
            logger.debug("bound %s to %s", qp.key, node)
            self.queue.done(qp.key)
            self.recorder.event(pod, "Normal", "Scheduled", f"Successfully assigned {namespace}/{name} to {node}")
        finally:
            self._bind_slots.release()

    def _bind_failed(self, qp: QueuedPod, pod: Obj, node: str, error: Exception) -> None:
        logger.warning("binding %s to %s failed, retrying after backoff: %s", qp.key, node, error)
        self.recorder.event(pod, "Warning", "FailedScheduling", f"Binding rejected: {error}")
        self.queue.add_backoff(qp)

    def _unschedulable(self, qp: QueuedPod, pod: Obj, result: framework.ScheduleResult) -> None:
        message = result.message
        logger.info("unable to schedule %s: %s", qp.key, message)
        self.recorder.event(pod, "Warning", "FailedScheduling", message)
        self.queue.add_unschedulable(qp, result.failed_plugins)
        cond = pod_scheduled_condition(pod)
        if cond and cond.get("status") == "False" and cond.get("reason") == "Unschedulable" \
                and cond.get("message") == message:
            return
        self._spawn(self._set_unschedulable_condition(pod, message))

    async def _set_unschedulable_condition(self, pod: Obj, message: str) -> None:
        meta = pod["metadata"]
        patch = {"status": {"conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
            "lastProbeTime": None, "lastTransitionTime": _now()}]}}
        try:
            await self.client.patch("pods", meta["name"], patch, meta.get("namespace"),
                                    patch_type="strategic", subresource="status")
        except (APIError, *TRANSPORT_ERRORS) as e:
            # The pod stays queued either way; a lost condition only costs the user an explanation.
            logger.warning("could not set PodScheduled=False on %s: %s", object_key(pod), e)
