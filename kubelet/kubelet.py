"""The kubelet process: wires the node agent, the pod informer, pod workers, the PLEG and the servers.

Start-up order matters:

1. Docker must answer (its version goes into nodeInfo), then the Node is registered and the Lease and
   status loops start — the node shows up NotReady until its pod network exists.
2. Wait for `spec.podCIDR` (the controller-manager's node IPAM sets it) and configure the pod network.
3. Informers: pods bound here (`spec.nodeName=<node>`), ConfigMaps and Secrets (env and volumes).
   Nothing acts before they have synced: an empty cache would look like "no pods" and remove every
   container on the node.
4. Adopt: every pod in the cache gets a worker, which reads its containers back from Docker (labels say
   which pod and attempt) and carries on — no restarts. Containers of pods the API no longer has get a
   worker too, which removes them; the network's IPs of unknown pods are released.
5. The PLEG (Docker events + relist) wakes workers as containers change; the logs/exec server starts.

On SIGTERM the kubelet stops its own loops and leaves the containers running, as Kubernetes does, so a
restarted kubelet adopts them.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker

from api.errors import APIError
from client.events import EventRecorder
from client.factory import InformerFactory
from client.kubeconfig import Config
from client.rest import AsyncClient
from api.podrefs import referenced_objects
from kubelet.objects import ObjectWatches, wanted_objects
from kubelet.node import NodeAgent
from kubelet.pleg import PLEG
from kubelet.podsync import PodSyncer
from kubelet.podworkers import PodWorkers
from kubelet.probes import Handlers, ProbeManager
from kubelet.runtime import LOCAL_REGISTRIES, Runtime
from kubelet.stats import ResourceStats
from kubelet import volumes

logger = logging.getLogger(__name__)

Obj = dict[str, Any]

# Docker calls run in threads; this bounds how many run at once (and sizes Docker's connection pool).
DOCKER_PARALLELISM = 16


@dataclass
class KubeletConfig:
    kubeconfig: str
    node_name: str
    node_ip: str
    docker_host: str = "unix:///var/run/docker.sock"
    root_dir: Path = Path("/var/lib/minik8s/kubelet")
    port: int = 10250
    address: str = "0.0.0.0"
    tls_cert_file: str | None = None
    tls_private_key_file: str | None = None
    authentication_token_file: str | None = None
    authentication_token_webhook: bool = False
    authorization_webhook: bool = True
    bridge: str = "mk0"
    cluster_cidr: str = "10.244.0.0/16"
    service_cidr: str = "10.96.0.0/12"
    cluster_dns: str = "10.96.0.10"
    cluster_domain: str = "cluster.local"
    pod_egress: bool = False
    network_backend: str = "none"
    node_lease_duration: int = 40
    node_status_update_frequency: float = 10.0
    node_labels: dict[str, str] = field(default_factory=dict)
    crash_loop_backoff_base: float = 10.0
    relist_period: float = 5.0
    allowed_registries: tuple[str, ...] = LOCAL_REGISTRIES
    sandbox_image: str = "minik8s/pause:3.9"
    service_sink: str = "kube-svc0"


class Kubelet:
    def __init__(self, config: KubeletConfig) -> None:
        self.config = config
        self.pods: dict[str, Obj] = {}
        self.pod_cidr: ipaddress.IPv4Network | None = None
        self._stop = asyncio.Event()

    # -- wiring ----------------------------------------------------------------------------------

    async def run(self) -> int:
        cfg = self.config
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(DOCKER_PARALLELISM, thread_name_prefix="kubelet"))
        # Plain signal handlers, not loop.add_signal_handler: pyroute2 forks helper children to enter pod
        # network namespaces and stops them with SIGTERM; with asyncio's wakeup fd (inherited by the fork)
        # a child's SIGTERM would be read by our loop as our own and stop the kubelet.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(self._stop.set))
        cfg.root_dir.mkdir(parents=True, exist_ok=True)

        from kubelet.network import PodNetwork
        self.network = PodNetwork(bridge=cfg.bridge, state_dir=cfg.root_dir / "network", cluster_cidr=cfg.cluster_cidr,
                                  service_cidr=cfg.service_cidr, pod_egress=cfg.pod_egress,
                                  service_sink=cfg.service_sink)
        self.docker = docker.DockerClient(base_url=cfg.docker_host, max_pool_size=DOCKER_PARALLELISM * 2,
                                          timeout=120)
        self.runtime = Runtime(self.docker, cfg.node_name, allowed_registries=cfg.allowed_registries)
        docker_version = await self.runtime.version()

        async with AsyncClient(Config.from_kubeconfig(cfg.kubeconfig)) as client:
            self.client = client
            recorder = EventRecorder(client, "kubelet", host=cfg.node_name)
            self.agent = NodeAgent(client, node=cfg.node_name, node_ip=cfg.node_ip, port=cfg.port,
                                   root_dir=cfg.root_dir, labels=cfg.node_labels,
                                   update_frequency=cfg.node_status_update_frequency,
                                   docker_version=docker_version, ready_check=self._ready_problem,
                                   lease_duration=cfg.node_lease_duration)
            await self.agent.register()
            background = [asyncio.create_task(self.agent.lease_loop(), name="lease"),
                          asyncio.create_task(self.agent.status_loop(), name="node-status")]
            server = None
            try:
                if not await self._wait_for_pod_cidr():
                    return 0
                if cfg.network_backend != "none":
                    from kubelet.routes import make_backend
                    backend = make_backend(cfg.network_backend, node_name=cfg.node_name,
                                           cluster_cidr=cfg.cluster_cidr)
                    routes_task = asyncio.create_task(backend.run(client, self._stop), name="pod-routes")
                    routes_task.add_done_callback(_log_task_end)
                self.agent.poke()

                self.factory = InformerFactory(client)
                pods = self.factory.informer("pods", field_selector=f"spec.nodeName={cfg.node_name}")
                self.objects = ObjectWatches(client, self._object_changed)
                services = self.factory.informer("services")
                self.factory.start()
                await self.factory.wait_for_sync()

                handlers = Handlers(self.runtime, lambda: self.pod_cidr)
                self.probes = ProbeManager(handlers, recorder, on_change=self._wake)
                self.syncer = PodSyncer(client=client, runtime=self.runtime, network=self.network,
                                        recorder=recorder, probes=self.probes, handlers=handlers,
                                        node=cfg.node_name, node_ip=cfg.node_ip, root_dir=cfg.root_dir,
                                        pods=self.pods, lookup=self._lookup, cluster_dns=cfg.cluster_dns,
                                        cluster_domain=cfg.cluster_domain, backoff_base=cfg.crash_loop_backoff_base,
                                        sandbox_image=cfg.sandbox_image, start_parallelism=DOCKER_PARALLELISM,
                                        services=services.store.list)
                self.workers = PodWorkers(self.syncer.sync)
                self.pleg = PLEG(self.runtime, self._wake, relist_period=cfg.relist_period)

                pods.add_handler(on_add=self._pod_seen, on_update=lambda old, new: self._pod_seen(new),
                                 on_delete=self._pod_gone)
                await self._adopt()
                self.pleg.start()
                background.append(asyncio.create_task(self.pleg.relist_loop(), name="relist"))
                server = await self._start_server()
                logger.info("kubelet on node %s ready: %d pods", cfg.node_name, len(self.pods))
                await self._stop.wait()
            finally:
                logger.info("kubelet stopping (containers keep running)")
                for t in background:
                    t.cancel()
                await asyncio.gather(*background, return_exceptions=True)
                if hasattr(self, "pleg"):
                    self.pleg.stop()
                if hasattr(self, "workers"):
                    await self.workers.stop()
                if hasattr(self, "probes"):
                    await self.probes.stop()
                if server is not None:
                    await server.stop()
                if hasattr(self, "factory"):
                    await self.factory.stop()
                if hasattr(self, "objects"):
                    await self.objects.stop()
                await recorder.flush()
        self.docker.close()
        return 0

    async def _ready_problem(self) -> str | None:
        if not await self.runtime.ping():
            return "container runtime is down"
        if self.pod_cidr is None:
            return "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady " \
                   "message:waiting for the node's podCIDR"
        return None

    async def _wait_for_pod_cidr(self) -> bool:
        """Wait for spec.podCIDR, then configure the pod network; False if told to stop meanwhile."""
        name = self.config.node_name
        while not self._stop.is_set():
            node = await self.client.get("nodes", name)
            cidr = (node.get("spec") or {}).get("podCIDR")
            if cidr:
                await asyncio.to_thread(self.network.configure, cidr)
                self.pod_cidr = ipaddress.ip_network(cidr)
                logger.info("node %s: pod network configured for %s on bridge %s", name, cidr, self.config.bridge)
                return True
            logger.info("node %s: waiting for spec.podCIDR", name)
            try:
                stream = self.client.watch("nodes", field_selector=f"metadata.name={name}",
                                           resource_version=node["metadata"]["resourceVersion"], timeout_seconds=30)
                async for _, obj in stream:
                    if (obj.get("spec") or {}).get("podCIDR") or self._stop.is_set():
                        break
            except APIError as e:
                logger.warning("watching node %s: %s", name, e)
                await asyncio.sleep(1)
        return False

    async def _start_server(self):
        cfg = self.config
        try:
            from kubelet.server import KubeletServer
        except ImportError:
            logger.warning("kubelet/server.py is not available: no logs/exec endpoint on port %d", cfg.port)
            return None
        from kubelet.certs import ensure_serving_cert
        cert, key = cfg.tls_cert_file, cfg.tls_private_key_file
        if not cert or not key:
            cert, key = ensure_serving_cert(cfg.root_dir / "pki", cfg.node_name, [cfg.node_ip, "127.0.0.1"])
        try:
            stats = ResourceStats(self.docker, cfg.node_name)
        except (OSError, RuntimeError) as e:
            logger.warning("no resource metrics on this node: %s", e)
            stats = None
        server = KubeletServer(docker=self.docker, node_name=cfg.node_name, bind_address=cfg.address, port=cfg.port,
                               cert_file=str(cert), key_file=str(key), token_file=cfg.authentication_token_file,
                               stats=stats, api=self.client if cfg.authentication_token_webhook else None,
                               webhook_authz=cfg.authorization_webhook)
        await server.start()
        return server

    # -- events ----------------------------------------------------------------------------------

    def _wake(self, uid: str) -> None:
        self.workers.wake(uid)

    def _pod_seen(self, pod: Obj) -> None:
        uid = (pod.get("metadata") or {}).get("uid")
        if uid:
            self.pods[uid] = pod
            self.objects.track(pod)
            self.workers.wake(uid)

    def _pod_gone(self, pod: Obj) -> None:
        uid = (pod.get("metadata") or {}).get("uid")
        if uid:
            self.pods.pop(uid, None)
            self.objects.forget(uid)
            self.workers.wake(uid)

    def _object_changed(self, kind: str, obj: Obj) -> None:
        """A ConfigMap or Secret changed: sync the pods that read it (env retries, volume contents)."""
        meta = obj.get("metadata") or {}
        ref = (kind, meta.get("name"))
        for uid, pod in list(self.pods.items()):
            if (pod.get("metadata") or {}).get("namespace") == meta.get("namespace") and \
                    ref in referenced_objects(pod):
                self.workers.wake(uid)

    async def _lookup(self, pod: Obj) -> dict[tuple[str, str], Obj | None]:
        """The ConfigMaps and Secrets a pod reads, from their watches (kubelet/objects.py)."""
        self.objects.track(pod)
        return {(kind, name): await self.objects.get(kind, namespace, name)
                for kind, namespace, name in wanted_objects(pod)}

    async def _adopt(self) -> None:
        """Give every known pod a worker; containers, IPs and volume dirs of unknown pods are removed."""
        live = set(self.pods)
        on_node = await self.pleg.relist()
        for uid in on_node - live:
            logger.info("pod %s no longer exists: removing its containers", uid)
            self.workers.wake(uid)
        await asyncio.to_thread(self.network.gc, live | on_node)
        pods_dir = self.config.root_dir / "pods"
        if pods_dir.is_dir():
            for d in pods_dir.iterdir():
                if d.name not in live and d.name not in on_node:
                    await asyncio.to_thread(volumes.teardown, self.config.root_dir, d.name)


def _log_task_end(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("%s failed: %r", task.get_name(), task.exception())
