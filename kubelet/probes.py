"""Container probes (liveness, readiness, startup) and the handlers lifecycle hooks share with them.

One asyncio task per (running container, probe kind), as the kubelet's prober workers: it waits
`initialDelaySeconds` after the container started, then probes every `periodSeconds` with
`timeoutSeconds`, and flips its result only after `successThreshold` successes or `failureThreshold`
failures in a row. Results, keyed by container id (a restarted container is a new id with fresh results):

- startup: `started[id]` becomes True on success; until then liveness and readiness do not run. Without
  a startup probe a running container counts as started at once.
- readiness: `ready[id]`, False until the first success (True at once without a probe).
- liveness (and startup when it fails for good): `unhealthy[id] = message`; the plan then kills the
  container and restartPolicy decides about a restart.

Any change calls `on_change(pod_uid)` so the pod worker syncs at once. Failures are reported as
`Unhealthy` warning events, as Kubernetes does.

Handlers: exec (docker exec; exit code 0 = success), httpGet (200-399 = success) and tcpSocket (the
connection opens). Network safety: probes and hooks only ever connect to the pod's own IP inside the
node's pod CIDR — an `httpGet.host` naming anything else is refused rather than followed.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx

from client.events import EventRecorder
from kubelet.observed import ContainerInfo, PodObserved
from kubelet.runtime import Runtime

logger = logging.getLogger(__name__)

Obj = dict[str, Any]

KINDS = ("startupProbe", "livenessProbe", "readinessProbe")
LABELS = {"startupProbe": "Startup", "livenessProbe": "Liveness", "readinessProbe": "Readiness"}
MAX_OUTPUT = 1024


def _port(value: Any, container: Obj) -> int:
    if isinstance(value, int):
        return value
    for p in container.get("ports") or []:
        if p.get("name") == value:
            return int(p["containerPort"])
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise ValueError(f"port {value!r} is not a number nor a named port of container {container.get('name')}")


class Handlers:
    """Runs exec / httpGet / tcpSocket actions against one container of a pod on this node."""

    def __init__(self, runtime: Runtime, pod_network: Callable[[], ipaddress.IPv4Network | None]) -> None:
        self.runtime = runtime
        self.pod_network = pod_network
        # trust_env=False: never send probes through a proxy from the environment.
        self.http = httpx.AsyncClient(trust_env=False, verify=False, follow_redirects=False)

    async def aclose(self) -> None:
        await self.http.aclose()

    def _target(self, pod_ip: str | None, host: str | None) -> str:
        network = self.pod_network()
        if not pod_ip or network is None or ipaddress.ip_address(pod_ip) not in network:
            raise ValueError(f"pod IP {pod_ip} is not on this node's pod network")
        if host and host != pod_ip:
            raise ValueError(f"host {host!r} refused: probes and hooks only reach the pod's own IP")
        return pod_ip

    async def run(self, action: Obj, container: Obj, cid: str, pod_ip: str | None, timeout: float) -> tuple[bool, str]:
        """(success, message) of one probe or hook action."""
        try:
            if "exec" in action:
                command = list((action["exec"] or {}).get("command") or [])
                code, output = await self.runtime.exec(cid, command, timeout)
                text = output.decode("utf-8", "replace")[:MAX_OUTPUT].strip()
                return code == 0, text if code == 0 else f"command {command} exited with {code}: {text}"
            if "httpGet" in action:
                get = action["httpGet"]
                ip = self._target(pod_ip, get.get("host"))
                port = _port(get.get("port"), container)
                scheme = (get.get("scheme") or "HTTP").lower()
                path = get.get("path") or "/"
                url = f"{scheme}://{ip}:{port}{path if path.startswith('/') else '/' + path}"
                headers = {h.get("name", ""): h.get("value", "") for h in get.get("httpHeaders") or []}
                headers.setdefault("User-Agent", "kube-probe/1.31")
                resp = await self.http.get(url, headers=headers, timeout=timeout)
                ok = 200 <= resp.status_code < 400
                return ok, f"HTTP probe failed with statuscode: {resp.status_code}" if not ok else ""
            if "tcpSocket" in action:
                sock = action["tcpSocket"]
                ip = self._target(pod_ip, sock.get("host"))
                port = _port(sock.get("port"), container)
                _, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), timeout)
                writer.close()
                return True, ""
            return False, "no handler (exec, httpGet or tcpSocket) given"
        except asyncio.TimeoutError:
            return False, f"timeout after {timeout:g}s"
        except httpx.TimeoutException:
            return False, f"Get: context deadline exceeded (Client.Timeout exceeded after {timeout:g}s)"
        except (OSError, httpx.HTTPError, ValueError) as e:
            return False, f"{type(e).__name__}: {e}"
        except Exception as e:  # a Docker error from exec: the probe failed, the kubelet must not
            return False, f"{type(e).__name__}: {e}"


class ProbeManager:
    def __init__(self, handlers: Handlers, recorder: EventRecorder, on_change: Callable[[str], None]) -> None:
        self.handlers = handlers
        self.recorder = recorder
        self.on_change = on_change
        self.ready: dict[str, bool] = {}
        self.started: dict[str, bool] = {}
        self.unhealthy: dict[str, str] = {}
        self._started_events: dict[str, asyncio.Event] = {}
        self._workers: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._by_pod: dict[str, set[str]] = {}

    def sync(self, pod: Obj, observed: PodObserved, pod_ip: str | None) -> None:
        """Run probe workers for the pod's running app containers; stop those of containers gone."""
        uid = pod["metadata"]["uid"]
        specs = {c["name"]: c for c in (pod.get("spec") or {}).get("containers") or []}
        running = {c.id: c for c in observed.containers if c.running and c.name in specs and c.kind == "app"}
        for cid in self._by_pod.get(uid, set()) - set(running):
            self._forget(cid)
        self._by_pod[uid] = set(running)
        for cid, c in running.items():
            spec = specs[c.name]
            if cid not in self.started:
                self.started[cid] = "startupProbe" not in spec
                self.ready[cid] = "readinessProbe" not in spec
                self._started_events[cid] = asyncio.Event()
                if self.started[cid]:
                    self._started_events[cid].set()
            for kind in KINDS:
                if spec.get(kind) and (cid, kind) not in self._workers:
                    self._workers[(cid, kind)] = asyncio.create_task(
                        self._worker(pod, spec, c, kind, spec[kind], pod_ip), name=f"probe-{kind}-{cid[:12]}")

    def remove_pod(self, uid: str) -> None:
        for cid in self._by_pod.pop(uid, set()):
            self._forget(cid)

    def _forget(self, cid: str) -> None:
        for kind in KINDS:
            task = self._workers.pop((cid, kind), None)
            if task is not None:
                task.cancel()
        for d in (self.ready, self.started, self.unhealthy, self._started_events):
            d.pop(cid, None)

    async def stop(self) -> None:
        tasks = list(self._workers.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.handlers.aclose()

    def _set(self, table: dict[str, Any], cid: str, value: Any, uid: str) -> None:
        if table.get(cid) != value:
            table[cid] = value
            self.on_change(uid)

    async def _worker(self, pod: Obj, spec: Obj, c: ContainerInfo, kind: str, probe: Obj, pod_ip: str | None) -> None:
        uid, cid = pod["metadata"]["uid"], c.id
        period = max(1, int(probe.get("periodSeconds") or 10))
        timeout = max(1, int(probe.get("timeoutSeconds") or 1))
        success_threshold = max(1, int(probe.get("successThreshold") or 1))
        failure_threshold = max(1, int(probe.get("failureThreshold") or 3))
        if kind != "startupProbe":
            await self._started_events[cid].wait()
        delay = (c.started_at or time.time()) + int(probe.get("initialDelaySeconds") or 0) - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        successes = failures = 0
        label = LABELS[kind]
        while True:
            ok, message = await self.handlers.run(probe, spec, cid, pod_ip, timeout)
            if ok:
                successes, failures = successes + 1, 0
            else:
                successes, failures = 0, failures + 1
                logger.info("pod %s/%s container %s: %s probe failed: %s", pod["metadata"].get("namespace"),
                            pod["metadata"].get("name"), c.name, label, message)
                self.recorder.event(pod, "Warning", "Unhealthy", f"{label} probe failed: {message}")
            if kind == "readinessProbe":
                if ok and successes >= success_threshold:
                    self._set(self.ready, cid, True, uid)
                elif not ok and failures >= failure_threshold:
                    self._set(self.ready, cid, False, uid)
            elif kind == "startupProbe":
                if ok:
                    self._started_events[cid].set()
                    self._set(self.started, cid, True, uid)
                    return
                if failures >= failure_threshold:
                    self._set(self.unhealthy, cid, f"Container {c.name} failed startup probe, will be restarted",
                              uid)
                    return
            elif not ok and failures >= failure_threshold:
                self._set(self.unhealthy, cid, f"Container {c.name} failed liveness probe, will be restarted", uid)
                return
            await asyncio.sleep(period)
