"""Syncing one pod: carry out the plan with Docker, stop pods, and report the pod's status.

`PodSyncer.sync(uid)` is what a pod worker runs (podworkers.py), never twice at once for one pod:

1. read the pod's containers from Docker;
2. pod gone from the API → stop and remove whatever it left; pod being deleted → `terminate` (preStop,
   SIGTERM with the remaining grace, SIGKILL after it, remove containers and sandbox, free the IP, delete
   the volumes) and then DELETE it with grace 0 and a uid precondition;
3. otherwise compute the plan (`plan.compute_pod_actions`) and execute it: kill what must die, stop the
   pod when it is done, create the sandbox and wire its network, set up volumes, pull images per policy,
   build each container (env, command, mounts, resources) and start it, run postStart;
4. compute the status (`status.compute_pod_status`) and PATCH `pods/<name>/status` if it changed.

What Kubernetes keeps in memory, we keep here too: why a container waits (ErrImagePull,
CreateContainerConfigError, ...), the crash-loop and image-pull backoffs, the last status written.
Everything else is read back from Docker each time, so a restarted kubelet simply carries on.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import docker.errors

from api import resolvconf
from api.errors import APIError
from client.events import EventRecorder
from client.rest import AsyncClient, is_conflict, is_not_found
from kubelet import containers as C
from kubelet import downwardapi, termination, volumes
from kubelet.backoff import Backoff
from kubelet.envvars import ConfigError, command_line, container_env
from kubelet.observed import APP, INIT, ContainerInfo, PodObserved
from kubelet.plan import Start, backoff_key, compute_pod_actions, container_hash
from kubelet.podworkers import DONE
from kubelet.probes import Handlers, ProbeManager
from kubelet.runtime import ImageError, Runtime
from kubelet.status import compute_pod_status
from kubelet.tokens import TokenError, TokenManager, key_for, token_sources

logger = logging.getLogger(__name__)

Obj = dict[str, Any]

MIN_GRACE = 2            # seconds a container always gets after its preStop hook (kubelet's minimum)
ORPHAN_GRACE = 2         # stopping containers of pods the API no longer has
CONFIG_RETRY = 5.0       # re-check CreateContainerConfigError / FailedMount even without a watch event
OWNED_STATUS = ("phase", "conditions", "hostIP", "hostIPs", "podIP", "podIPs", "startTime",
                "containerStatuses", "initContainerStatuses")


class PodNetworkLike(Protocol):
    """What podsync needs of kubelet/network.PodNetwork (blocking calls)."""

    def attach(self, pod_uid: str, sandbox_pid: int) -> str: ...
    def detach(self, pod_uid: str) -> None: ...
    def ip_of(self, pod_uid: str) -> str | None: ...


def _ref(pod: Obj) -> Obj:
    """The pod as an event's involvedObject (informer items may lack kind/apiVersion)."""
    return {"kind": "Pod", "apiVersion": "v1", "metadata": pod.get("metadata") or {}}


def _name(pod: Obj) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


def _spec_of(pod: Obj, name: str) -> Obj | None:
    spec = pod.get("spec") or {}
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        if c.get("name") == name:
            return c
    return None


class PodSyncer:
    def __init__(self, *, client: AsyncClient, runtime: Runtime, network: PodNetworkLike, recorder: EventRecorder,
                 probes: ProbeManager, handlers: Handlers, node: str, node_ip: str, root_dir: Path,
                 pods: dict[str, Obj], lookup: Callable[[Obj], Awaitable[dict[tuple[str, str], Obj | None]]],
                 cluster_dns: str, cluster_domain: str, backoff_base: float = 10.0,
                 sandbox_image: str = C.SANDBOX_IMAGE, start_parallelism: int = 16,
                 services: Callable[[], list[Obj]] = list, tokens: TokenManager | None = None) -> None:
        self.client = client
        self.tokens = tokens or TokenManager(client)
        self.runtime = runtime
        self.network = network
        self.recorder = recorder
        self.probes = probes
        self.handlers = handlers
        self.node = node
        self.node_ip = node_ip
        self.root_dir = root_dir
        self.pods = pods
        self.lookup = lookup
        self.services = services
        self.cluster_dns = cluster_dns
        self.cluster_domain = cluster_domain
        self.sandbox_image = sandbox_image
        self._starting = asyncio.Semaphore(start_parallelism)
        self.backoff = Backoff(base=backoff_base, cap=backoff_base * 30)
        self.pull_backoff = Backoff(base=backoff_base, cap=backoff_base * 30)
        self.waiting: dict[str, dict[str, tuple[str, str]]] = {}
        self.last_status: dict[str, Obj] = {}
        self.last_pod: dict[str, Obj] = {}
        self.mount_errors: dict[str, str] = {}
        self.messages: dict[str, dict[str, str]] = {}     # pod uid -> container id -> termination message
        try:
            self.host_resolv = Path("/etc/resolv.conf").read_text()
        except OSError:
            self.host_resolv = ""

    # -- the sync --------------------------------------------------------------------------------

    async def sync(self, uid: str) -> float | None:
        pod = self.pods.get(uid)
        observed = PodObserved.from_list(await self.runtime.pod_containers(uid))
        if pod is None:
            await self._cleanup(uid, observed, self.last_pod.pop(uid, None), grace=ORPHAN_GRACE, orphan=True)
            return DONE
        self.last_pod[uid] = pod
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            meta = pod["metadata"]
            grace = meta.get("deletionGracePeriodSeconds")
            if grace is None:
                grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
            await self._cleanup(uid, observed, pod, grace=float(grace))
            await self._delete_from_api(pod)
            return DONE
        return await self._sync_live(pod, observed)

    async def _sync_live(self, pod: Obj, observed: PodObserved) -> float | None:
        uid = pod["metadata"]["uid"]
        now = time.time()
        waiting = self.waiting.setdefault(uid, {})
        pod_ip = self.network.ip_of(uid)
        unhealthy = {cid: msg for cid, msg in self.probes.unhealthy.items()
                     if any(c.id == cid for c in observed.containers)}
        actions = compute_pod_actions(pod, observed, now=now, backoff=self.backoff, unhealthy=unhealthy,
                                      network_ready=pod_ip is not None)
        relist = False                        # something changed that only a fresh look at Docker tells
        created: list[ContainerInfo] = []     # containers started in this sync, as inspected right after
        wake: list[float] = []
        grace = float((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))

        if actions.kill:
            by_id = {c.id: c for c in observed.containers}
            await asyncio.gather(*(self._kill_container(pod, by_id[k.id], grace, k.message, pod_ip)
                                   for k in actions.kill))
            relist = True
        if actions.kill_pod:
            await self._stop_all(pod, observed, grace, pod_ip)
            relist = True
        if actions.done and pod_ip is not None:
            # The pod has finished: its IP goes back to the pool (the status keeps showing it).
            await asyncio.to_thread(self.network.detach, uid)
        for cid in actions.remove:
            await self.runtime.remove(cid)
        relist = relist or bool(actions.remove)

        sandbox = observed.sandbox()
        sandbox_id = sandbox.id if sandbox is not None and sandbox.running else None
        volume_paths: dict[str, Path] | None = None
        if not actions.done:
            volume_paths = await self._volumes(pod, pod_ip)
            if volume_paths is None:
                wake.append(CONFIG_RETRY)
            refresh = self.tokens.next_refresh([key_for(pod, s) for s in token_sources(pod)])
            if refresh is not None:
                wake.append(refresh)
        if (actions.create_sandbox or actions.start) and volume_paths is not None:
            # At most `start_parallelism` pods start containers at once: with a burst of pods, the first
            # ones get going instead of every pod's first step queueing before anyone's second step.
            async with self._starting:
                if actions.create_sandbox:
                    if sandbox is not None:
                        self.recorder.event(_ref(pod), "Normal", "SandboxChanged",
                                            "Pod sandbox changed, it will be killed and re-created.")
                    new_sandbox, pod_ip = await self._create_sandbox(pod, actions.sandbox_attempt)
                    created.append(new_sandbox)
                    sandbox_id = new_sandbox.id
                    if downwardapi.uses_pod_ip(pod):
                        volume_paths = await self._volumes(pod, pod_ip) or volume_paths
                for start in actions.start if sandbox_id else []:
                    result = await self._start_container(pod, start, observed, sandbox_id, pod_ip, volume_paths)
                    if isinstance(result, ContainerInfo):
                        created.append(result)
                    elif result is None:
                        relist = True
                    else:
                        wake.append(result)
        for name, remaining in actions.backoff.items():
            delay = self.backoff.current(backoff_key(uid, name))
            meta = pod["metadata"]
            message = (f"back-off {delay:g}s restarting failed container={name} "
                       f"pod={meta.get('name')}_{meta.get('namespace')}({uid})")
            waiting[name] = ("CrashLoopBackOff", message)
            self.recorder.event(_ref(pod), "Warning", "BackOff", f"Back-off restarting failed container {name} "
                                                                 f"in pod {meta.get('name')}_{meta.get('namespace')}")
            wake.append(remaining)
        for name in [n for n, (reason, _) in waiting.items() if reason == "CrashLoopBackOff"
                     and n not in actions.backoff]:
            del waiting[name]

        if relist:
            observed = PodObserved.from_list(await self.runtime.pod_containers(uid))
        elif created:
            observed = PodObserved.from_list(observed.all() + created)
        self.probes.sync(pod, observed, pod_ip)
        sandbox = observed.sandbox()
        status = compute_pod_status(
            pod, observed, now=time.time(), waiting=self._waiting_with_mount_error(pod, waiting),
            ready=self.probes.ready, started=self.probes.started, pod_ip=pod_ip, host_ip=self.node_ip,
            sandbox_ready=bool(sandbox and sandbox.running and pod_ip), done=actions.done,
            messages=await self._termination_messages(pod, observed))
        await self._write_status(pod, status)
        return min(wake) if wake else None

    # -- sandbox ---------------------------------------------------------------------------------

    async def _create_sandbox(self, pod: Obj, attempt: int) -> tuple[ContainerInfo, str]:
        uid = pod["metadata"]["uid"]
        image, name, config, host = C.sandbox_args(pod, self.node, attempt, self.sandbox_image)
        try:
            if not await self.runtime.image_present(image):
                await self.runtime.pull(image)
            sandbox = await self.runtime.create_and_start(image, name, config, host)
        except (docker.errors.APIError, ImageError) as e:
            self.recorder.event(_ref(pod), "Warning", "FailedCreatePodSandBox",
                                f"Failed to create pod sandbox: {e}")
            raise
        try:
            pod_ip = await asyncio.to_thread(self.network.attach, uid, sandbox.pid)
        except Exception as e:
            self.recorder.event(_ref(pod), "Warning", "FailedCreatePodSandBox",
                                f"Failed to create pod sandbox: network setup failed: {e}")
            await self.runtime.stop(sandbox.id, 0)
            raise
        logger.info("pod %s: sandbox %s started with IP %s", _name(pod), sandbox.id[:12], pod_ip)
        return sandbox, pod_ip

    def service_env(self, pod: Obj) -> dict[str, str]:
        """Kubernetes' service variables (FOO_SERVICE_HOST, ...) for the Services the pod can see."""
        enabled = (pod.get("spec") or {}).get("enableServiceLinks", True) is not False
        return resolvconf.service_env_vars(self.services(), pod["metadata"].get("namespace", "default"),
                                           enable_service_links=enabled)

    def _write_pod_files(self, pod: Obj, pod_ip: str | None) -> list[str]:
        """/etc/hosts and /etc/resolv.conf for the pod's containers; returns their binds."""
        base = volumes.pod_dir(self.root_dir, pod["metadata"]["uid"])
        base.mkdir(parents=True, exist_ok=True)
        hosts, resolv = base / "etc-hosts", base / "resolv.conf"
        hosts.write_text(C.etc_hosts(pod, pod_ip))
        resolv.write_text(resolvconf.resolv_conf(pod, cluster_dns=[self.cluster_dns], cluster_domain=self.cluster_domain,
                                                 host_resolv_conf=self.host_resolv))
        return [f"{hosts}:/etc/hosts", f"{resolv}:/etc/resolv.conf"]

    async def _volumes(self, pod: Obj, pod_ip: str | None) -> dict[str, Path] | None:
        """Set up the pod's volumes; None (with a FailedMount event) when one cannot be, for now."""
        uid = pod["metadata"]["uid"]
        if not (pod.get("spec") or {}).get("volumes"):
            return {}
        objs = await self.lookup(pod)
        try:
            tokens = {}
            for source in token_sources(pod):
                key = key_for(pod, source)
                tokens[key] = await self.tokens.get(key, pod["metadata"].get("name", ""))
            paths = await asyncio.to_thread(
                volumes.setup, self.root_dir, pod, lambda kind, ns, name: objs.get((kind, name)),
                pod_ip=pod_ip or (pod.get("status") or {}).get("podIP"), host_ip=self.node_ip, tokens=tokens)
        except (volumes.VolumeError, TokenError, OSError) as e:
            message = f"MountVolume.SetUp failed: {e}"
            if self.mount_errors.get(uid) != message:
                logger.warning("pod %s: %s", _name(pod), message)
            self.mount_errors[uid] = message
            self.recorder.event(_ref(pod), "Warning", "FailedMount", message)
            return None
        self.mount_errors.pop(uid, None)
        return paths

    def _waiting_with_mount_error(self, pod: Obj, waiting: dict[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
        """Containers held back by a volume that cannot be set up say why (Kubernetes only has the event)."""
        message = self.mount_errors.get(pod["metadata"]["uid"])
        if message is None:
            return waiting
        spec = pod.get("spec") or {}
        inits = spec.get("initContainers") or []
        held = {c["name"]: ("ContainerCreating", message) for c in inits}
        held.update({c["name"]: ("PodInitializing" if inits else "ContainerCreating", message)
                     for c in spec.get("containers") or []})
        return {**held, **waiting}

    async def _termination_messages(self, pod: Obj, observed: PodObserved) -> dict[str, str]:
        """Container id -> termination message of the pod's exited containers (read once per container)."""
        uid = pod["metadata"]["uid"]
        known = self.messages.setdefault(uid, {})
        base = volumes.pod_dir(self.root_dir, uid)
        for c in observed.containers:
            if c.running or c.finished_at is None or c.id in known:
                continue
            spec = _spec_of(pod, c.name) or {}
            message = termination.read_tail(termination.message_file(base, c.name, c.attempt))
            if termination.wants_logs(spec, message, c.exit_code):
                message = termination.from_logs(await self.runtime.tail_logs(c.id, termination.MAX_LOG_LINES))
            known[c.id] = termination.decode(message)
        ids = {c.id for c in observed.containers}
        for cid in [cid for cid in known if cid not in ids]:
            del known[cid]
        return known

    # -- containers ------------------------------------------------------------------------------

    async def _pull_image(self, pod: Obj, spec: Obj, key: str) -> str | None:
        """Make the container's image present per its pull policy; a waiting reason on failure."""
        image = spec.get("image", "")
        policy = spec.get("imagePullPolicy") or "IfNotPresent"
        waiting = self.waiting[pod["metadata"]["uid"]]
        name = spec["name"]
        entry = self.pull_backoff.entries.get(key)
        if entry is not None and self.pull_backoff.remaining(key, entry.updated, time.time()) > 0:
            waiting[name] = ("ImagePullBackOff", f"Back-off pulling image \"{image}\"")
            self.recorder.event(_ref(pod), "Normal", "BackOff", f"Back-off pulling image \"{image}\"")
            return "ImagePullBackOff"
        present = await self.runtime.image_present(image)
        if policy == "Never" and not present:
            message = f"Container image \"{image}\" is not present with pull policy of Never"
            waiting[name] = ("ErrImageNeverPull", message)
            self.recorder.event(_ref(pod), "Warning", "ErrImageNeverPull", message)
            return "ErrImageNeverPull"
        if present and policy != "Always":
            self.recorder.event(_ref(pod), "Normal", "Pulled", f"Container image \"{image}\" already present on "
                                                                f"machine")
            return None
        self.recorder.event(_ref(pod), "Normal", "Pulling", f"Pulling image \"{image}\"")
        started = time.monotonic()
        try:
            await self.runtime.pull(image)
        except ImageError as e:
            self.pull_backoff.restarted(key, time.time())
            waiting[name] = (e.reason, e.message)
            self.recorder.event(_ref(pod), "Warning", "Failed", f"Failed to pull image \"{image}\": {e.message}")
            self.recorder.event(_ref(pod), "Warning", "Failed", f"Error: {e.reason}")
            return e.reason
        self.pull_backoff.entries.pop(key, None)
        self.recorder.event(_ref(pod), "Normal", "Pulled", f"Successfully pulled image \"{image}\" in "
                                                            f"{time.monotonic() - started:.3f}s")
        return None

    async def _start_container(self, pod: Obj, start: Start, observed: PodObserved, sandbox_id: str,
                               pod_ip: str | None, volume_paths: dict[str, Path]) -> ContainerInfo | float | None:
        """Start one container: its state once started; seconds until worth trying again when it could not
        be created; None when Docker's view changed otherwise (start failed, postStart killed it)."""
        uid = pod["metadata"]["uid"]
        spec = _spec_of(pod, start.name)
        if spec is None:
            return None
        waiting = self.waiting[uid]
        key = backoff_key(uid, start.name)
        failure = await self._pull_image(pod, spec, key)
        if failure == "ErrImageNeverPull":
            return CONFIG_RETRY
        if failure is not None:
            entry = self.pull_backoff.entries[key]
            remaining = self.pull_backoff.remaining(key, entry.updated, time.time())
            # Look again halfway, so ErrImagePull turns into ImagePullBackOff as in Kubernetes.
            return max(0.05, remaining / 2) if failure == "ErrImagePull" else max(0.05, remaining)
        objs = await self.lookup(pod)
        try:
            env = container_env(pod, spec, lookup=lambda kind, ns, name: objs.get((kind, name)), pod_ip=pod_ip,
                                host_ip=self.node_ip, service_env=self.service_env(pod))
            # Two small local files: written inline rather than queued behind Docker calls in the thread pool.
            binds = volumes.binds(spec, volume_paths) + self._write_pod_files(pod, pod_ip)
            message_bind = termination.prepare(volumes.pod_dir(self.root_dir, uid), spec, start.attempt)
            if message_bind is not None:
                binds.append(message_bind)
        except (ConfigError, volumes.VolumeError, OSError) as e:
            waiting[start.name] = ("CreateContainerConfigError", str(e))
            self.recorder.event(_ref(pod), "Warning", "Failed", f"Error: {e}")
            return CONFIG_RETRY
        entrypoint, cmd = command_line(spec, env)
        image, name, config, host = C.container_args(
            pod, spec, node=self.node, kind="init" if start.kind == INIT else "app", attempt=start.attempt,
            spec_hash=container_hash(spec), sandbox_id=sandbox_id, env=env, entrypoint=entrypoint, cmd=cmd,
            binds=binds)
        previous = observed.latest(start.name)
        if start.attempt > 0 and previous is not None:
            ran = (previous.finished_at - previous.started_at) if previous.finished_at and previous.started_at \
                else None
            self.backoff.restarted(key, time.time(), ran)
        waiting.pop(start.name, None)
        try:
            info = await self.runtime.create_and_start(image, name, config, host)
        except docker.errors.APIError as e:
            message = e.explanation or str(e)
            self.recorder.event(_ref(pod), "Warning", "Failed", f"Error: {message}")
            if start.attempt == 0 or previous is None:
                self.backoff.restarted(key, time.time())
            return None
        self.recorder.event(_ref(pod), "Normal", "Created", f"Created container {start.name}")
        self.recorder.event(_ref(pod), "Normal", "Started", f"Started container {start.name}")
        logger.info("pod %s: started container %s (attempt %d, %s): %s", _name(pod), start.name, start.attempt,
                    start.reason, info.id[:12])
        hook = ((spec.get("lifecycle") or {}).get("postStart"))
        if hook and start.kind == APP:
            grace = float((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
            ok, message = await self.handlers.run(hook, spec, info.id, pod_ip, timeout=max(grace, MIN_GRACE))
            if not ok:
                self.recorder.event(_ref(pod), "Warning", "FailedPostStartHook", message)
                self.recorder.event(_ref(pod), "Normal", "Killing",
                                    f"FailedPostStartHook: stopping container {start.name}")
                await self.runtime.stop(info.id, grace)
                return None
        return info

    async def _kill_container(self, pod: Obj | None, c: ContainerInfo, grace: float, message: str,
                              pod_ip: str | None, *, run_pre_stop: bool = True) -> None:
        """preStop (bounded by the grace period), then SIGTERM and SIGKILL after what is left of it."""
        if not c.running:
            return
        spec = _spec_of(pod, c.name) if pod is not None else None
        if pod is not None:
            self.recorder.event(_ref(pod), "Normal", "Killing", message)
        hook = ((spec or {}).get("lifecycle") or {}).get("preStop")
        if hook and run_pre_stop and c.kind == APP:
            started = time.monotonic()
            ok, output = await self.handlers.run(hook, spec or {}, c.id, pod_ip, timeout=max(grace, 1))
            if not ok and pod is not None:
                self.recorder.event(_ref(pod), "Warning", "FailedPreStopHook", output)
            grace = max(MIN_GRACE, grace - (time.monotonic() - started))
        await self.runtime.stop(c.id, grace)

    async def _stop_all(self, pod: Obj | None, observed: PodObserved, grace: float, pod_ip: str | None,
                        *, run_pre_stop: bool = True) -> None:
        """Stop every container (concurrently, with preStop hooks), then the sandbox."""
        await asyncio.gather(*(self._kill_container(pod, c, grace, f"Stopping container {c.name}", pod_ip,
                                                    run_pre_stop=run_pre_stop)
                               for c in observed.containers if c.running))
        for s in observed.sandboxes:
            if s.running:
                await self.runtime.stop(s.id, MIN_GRACE)

    async def _cleanup(self, uid: str, observed: PodObserved, pod: Obj | None, *, grace: float,
                       orphan: bool = False) -> None:
        """Stop and remove every container of the pod, free its IP and volumes, forget its state."""
        self.probes.remove_pod(uid)
        if observed.all():
            pod_ip = self.network.ip_of(uid)
            await self._stop_all(pod, observed, grace, pod_ip, run_pre_stop=not orphan)
            await asyncio.gather(*(self.runtime.remove(c.id) for c in observed.all()))
            logger.info("pod %s: removed %d containers", _name(pod) if pod else uid, len(observed.all()))
        await asyncio.to_thread(self.network.detach, uid)
        await asyncio.to_thread(volumes.teardown, self.root_dir, uid)
        self.backoff.forget(uid)
        self.pull_backoff.forget(uid)
        self.waiting.pop(uid, None)
        self.last_status.pop(uid, None)
        self.mount_errors.pop(uid, None)
        self.messages.pop(uid, None)
        self.tokens.forget_pod(uid)

    async def _delete_from_api(self, pod: Obj) -> None:
        meta = pod["metadata"]
        try:
            await self.client.delete("pods", meta["name"], meta["namespace"], grace_period_seconds=0,
                                     preconditions={"uid": meta["uid"]})
            logger.info("pod %s: terminated and deleted", _name(pod))
        except APIError as e:
            if not (is_not_found(e) or is_conflict(e) or e.code == 409):
                raise

    # -- status ----------------------------------------------------------------------------------

    async def _write_status(self, pod: Obj, status: Obj) -> None:
        uid = pod["metadata"]["uid"]
        old = self.last_status.get(uid)
        if old is None:
            current = pod.get("status") or {}
            old = {k: current[k] for k in OWNED_STATUS if k in current}
        if status == old:
            return
        body = {**status, **{k: None for k in OWNED_STATUS if k in old and k not in status}}
        meta = pod["metadata"]
        try:
            await self.client.patch("pods", meta["name"], {"status": body}, meta["namespace"], subresource="status")
        except APIError as e:
            if is_not_found(e):
                return
            raise
        self.last_status[uid] = status
