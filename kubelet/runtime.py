"""The container runtime: the kubelet's only door to Docker.

Every call is the Docker SDK's low-level API run in a worker thread (`asyncio.to_thread`), so a slow
dockerd never stalls the event loop. What the rest of the kubelet sees are `observed.ContainerInfo`
values built from `docker inspect` and the labels of `labels.py` — the labels are the whole memory of
what belongs to which pod, so a restarted kubelet reads the same state back.

Inspecting is the costly call, so its results are cached per (container id, state): a container's
inspect output only changes when its state does (we never restart a container in place — a restart is a
new container with the next attempt number).

Images: there is no registry in this lab and, by the network-safety rule, dockerd must not be asked to
reach one outside the machine. `pull` therefore only contacts registries named in `allowed_registries`
(loopback by default, e.g. a local `docker-registry` on localhost:5000); any other image that is not
present fails the pull at once, like a registry that answers "not found".
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from calendar import timegm
from typing import Any

import docker
import docker.errors

from kubelet import labels as L
from kubelet.observed import APP, CREATED, EXITED, INIT, RUNNING, SANDBOX, ContainerInfo

logger = logging.getLogger(__name__)

Obj = dict[str, Any]

LOCAL_REGISTRIES = ("localhost", "127.0.0.1", "[::1]")
# A burst of pods would otherwise inspect the same image once per container; images are rarely removed,
# and a container create on a vanished image fails loudly anyway.
IMAGE_PRESENT_TTL = 30.0
_TS = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?Z$")


class ImageError(Exception):
    """An image could not be made available; `reason` is the Kubernetes waiting reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


def parse_docker_time(value: str | None) -> float | None:
    """Docker's RFC 3339 nanosecond timestamps as epoch seconds; its zero time ("0001-...") as None."""
    m = _TS.match(value or "")
    if not m or m.group(1) == "0001":
        return None
    whole = timegm(tuple(int(m.group(i)) for i in range(1, 7)) + (0, 0, 0))
    return whole + (float("0." + m.group(7)) if m.group(7) else 0.0)


def registry_of(image: str) -> str:
    """The registry host an image reference names ("docker.io" when it names none)."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def _kind(label: str | None) -> str:
    return {"sandbox": SANDBOX, "init": INIT}.get(label or "", APP)


class Runtime:
    def __init__(self, docker_client: docker.DockerClient, node: str, *,
                 allowed_registries: tuple[str, ...] = LOCAL_REGISTRIES) -> None:
        self.docker = docker_client
        self.api: docker.APIClient = docker_client.api
        self.node = node
        self.allowed_registries = allowed_registries
        self._inspected: dict[tuple[str, str], ContainerInfo] = {}
        self._image_refs: dict[str, str] = {}
        self._present: dict[str, float] = {}

    # -- reading ---------------------------------------------------------------------------------

    def _summaries(self, **labels: str) -> list[Obj]:
        return self.api.containers(all=True, filters=L.selector(self.node, **labels))

    async def summaries(self) -> list[Obj]:
        """`docker ps -a` of this node's managed containers: Id, State, Labels (cheap; no inspect)."""
        return await asyncio.to_thread(self._summaries)

    def _info(self, summary: Obj) -> ContainerInfo | None:
        key = (summary["Id"], summary.get("State", ""))
        cached = self._inspected.get(key)
        if cached is not None:
            return cached
        try:
            data = self.api.inspect_container(summary["Id"])
        except docker.errors.NotFound:
            return None
        info = self._from_inspect(data)
        self._inspected[(info.id, data["State"]["Status"])] = info
        return info

    def _from_inspect(self, data: Obj) -> ContainerInfo:
        state, config = data.get("State") or {}, data.get("Config") or {}
        lab = config.get("Labels") or {}
        status = state.get("Status")
        if status in ("running", "paused", "restarting"):
            norm = RUNNING
        elif status == "created":
            norm = CREATED
        else:
            norm = EXITED
        started = parse_docker_time(state.get("StartedAt"))
        finished = parse_docker_time(state.get("FinishedAt"))
        if norm == RUNNING:
            finished = None
        return ContainerInfo(
            id=data["Id"], name=lab.get(L.CONTAINER_NAME, ""), kind=_kind(lab.get(L.CONTAINER_TYPE)),
            attempt=int(lab.get(L.ATTEMPT) or 0), state=norm,
            exit_code=None if norm == RUNNING else state.get("ExitCode"),
            started_at=started, finished_at=finished, oom_killed=bool(state.get("OOMKilled")),
            error=state.get("Error") or "", image=config.get("Image", ""),
            image_id=self._image_ref(data.get("Image", "")), spec_hash=lab.get(L.SPEC_HASH, ""),
            pid=state.get("Pid") or 0, pod_uid=lab.get(L.POD_UID, ""),
            created_at=parse_docker_time(data.get("Created")))

    def _image_ref(self, image_id: str) -> str:
        """Kubernetes' imageID: `docker-pullable://repo@digest` for pulled images, else `docker://sha256:...`."""
        ref = self._image_refs.get(image_id)
        if ref is None:
            digests: list[str] = []
            try:
                digests = self.api.inspect_image(image_id).get("RepoDigests") or []
            except docker.errors.APIError:
                pass
            ref = self._image_refs[image_id] = (f"docker-pullable://{digests[0]}" if digests
                                                else f"docker://{image_id}")
        return ref

    def _pod_infos(self, uid: str) -> list[ContainerInfo]:
        out = []
        for summary in self._summaries(**{L.POD_UID: uid}):
            info = self._info(summary)
            if info is not None:
                out.append(info)
        return out

    async def pod_containers(self, uid: str) -> list[ContainerInfo]:
        return await asyncio.to_thread(self._pod_infos, uid)

    def forget(self, container_ids: set[str]) -> None:
        """Drop cached inspections of containers that are gone."""
        for key in [k for k in self._inspected if k[0] in container_ids]:
            del self._inspected[key]

    # -- images ----------------------------------------------------------------------------------

    def _image_present(self, image: str) -> bool:
        if self._present.get(image, 0.0) > time.monotonic():
            return True
        try:
            self.api.inspect_image(image)
        except docker.errors.ImageNotFound:
            self._present.pop(image, None)
            return False
        self._present[image] = time.monotonic() + IMAGE_PRESENT_TTL
        return True

    def _pull(self, image: str) -> None:
        registry = registry_of(image)
        if not any(registry == r or registry.startswith(r + ":") for r in self.allowed_registries):
            raise ImageError("ErrImagePull", f"failed to pull image \"{image}\": registry {registry} is not "
                                             f"reachable from this node (allowed registries: "
                                             f"{', '.join(self.allowed_registries)})")
        repo, tag = _split_tag(image)
        try:
            self.api.pull(repo, tag=tag)
        except docker.errors.APIError as e:
            raise ImageError("ErrImagePull", f"failed to pull image \"{image}\": {e.explanation or e}") from e

    async def image_present(self, image: str) -> bool:
        return await asyncio.to_thread(self._image_present, image)

    async def pull(self, image: str) -> None:
        """Pull `image`; raises ImageError("ErrImagePull", ...) when it cannot be had."""
        await asyncio.to_thread(self._pull, image)

    # -- lifecycle -------------------------------------------------------------------------------

    def _create_and_start(self, image: str, name: str, config: Obj, host_config: Obj) -> ContainerInfo:
        try:
            created = self.api.create_container(image, name=name, host_config=self.api.create_host_config(
                **host_config), use_config_proxy=False, **config)
        except docker.errors.APIError as e:
            if e.status_code != 409:
                raise
            # A leftover of a crashed sync with the same name (same attempt): replace it.
            self.api.remove_container(name, force=True)
            created = self.api.create_container(image, name=name, host_config=self.api.create_host_config(
                **host_config), use_config_proxy=False, **config)
        cid = created["Id"]
        self.api.start(cid)
        # Inspect once now: the caller needs the pid (sandbox) or the start time (status), and the cached
        # result spares the next sync an inspect.
        data = self.api.inspect_container(cid)
        info = self._from_inspect(data)
        self._inspected[(cid, data["State"]["Status"])] = info
        return info

    async def create_and_start(self, image: str, name: str, config: Obj, host_config: Obj) -> ContainerInfo:
        """Create and start a container; its inspected state right after the start."""
        return await asyncio.to_thread(self._create_and_start, image, name, config, host_config)

    def _stop(self, cid: str, timeout: float) -> None:
        try:
            self.api.stop(cid, timeout=max(0, int(round(timeout))))
        except docker.errors.NotFound:
            pass

    async def stop(self, cid: str, timeout: float) -> None:
        await asyncio.to_thread(self._stop, cid, timeout)

    def _remove(self, cid: str) -> None:
        try:
            self.api.remove_container(cid, force=True)
        except docker.errors.NotFound:
            pass
        self.forget({cid})

    async def remove(self, cid: str) -> None:
        await asyncio.to_thread(self._remove, cid)

    def _exec(self, cid: str, command: list[str]) -> tuple[int, bytes]:
        exec_id = self.api.exec_create(cid, command, stdout=True, stderr=True)["Id"]
        output = self.api.exec_start(exec_id)
        code = self.api.exec_inspect(exec_id).get("ExitCode")
        return (code if code is not None else -1), output

    async def exec(self, cid: str, command: list[str], timeout: float) -> tuple[int, bytes]:
        """Run `command` in the container; raises asyncio.TimeoutError after `timeout` seconds."""
        return await asyncio.wait_for(asyncio.to_thread(self._exec, cid, command), timeout)

    def _tail_logs(self, cid: str, lines: int) -> bytes:
        try:
            return self.api.logs(cid, stdout=True, stderr=True, tail=lines)
        except docker.errors.NotFound:
            return b""

    async def tail_logs(self, cid: str, lines: int) -> bytes:
        """The last `lines` lines of the container's output (stdout and stderr interleaved)."""
        return await asyncio.to_thread(self._tail_logs, cid, lines)

    async def ping(self) -> bool:
        try:
            return bool(await asyncio.to_thread(self.api.ping))
        except Exception:
            return False

    async def version(self) -> str:
        return (await asyncio.to_thread(self.api.version)).get("Version", "unknown")


def _split_tag(image: str) -> tuple[str, str | None]:
    if "@" in image:
        return image, None
    head, sep, tag = image.rpartition(":")
    if sep and "/" not in tag:
        return head, tag
    return image, "latest"

