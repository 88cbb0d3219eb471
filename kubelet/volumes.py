"""Pod volumes on the node's disk, bind-mounted into the pod's containers.

Each volume lives under `<root-dir>/pods/<uid>/volumes/<plugin>/<name>` (the kubelet's layout), so every
container of the pod mounts the same directory and sees the others' writes:

- emptyDir: a directory; `medium: Memory` mounts a tmpfs there (one tmpfs shared by the pod's containers,
  which Docker's per-container `tmpfs` option could not give), sized by `sizeLimit`.
- hostPath: the host path itself, after the `type` check (Directory, DirectoryOrCreate, File,
  FileOrCreate, Socket, CharDevice, BlockDevice).
- configMap / secret: one file per key (or per `items` entry with its `path` and `mode`, else
  `defaultMode`), written by `AtomicWriter` below: the payload goes into a fresh timestamped directory,
  a `..data` symlink is swapped to it with one rename, and the visible names are symlinks through
  `..data`. A running container therefore sees either the old or the new set of files, never a mix, and
  updates reach it without a restart (as in Kubernetes; subPath mounts do not follow updates).
- downwardAPI: the pod's own fields and its containers' resources as files (`downwardapi.py`), through
  the same AtomicWriter, so label and annotation changes reach running containers.
- projected: configMap, secret, downwardAPI and serviceAccountToken sources merged into one directory
  (one AtomicWriter), `defaultMode` for every file unless an item has its own `mode`. Tokens are fetched
  by the caller beforehand (`tokens.py` talks to the apiserver) and passed in by `tokens.TokenKey`.

`setup` is idempotent and cheap when nothing changed, so the pod worker calls it on every sync; that is
how ConfigMap/Secret updates propagate. `teardown` unmounts and removes the pod's directory.
"""
from __future__ import annotations

import base64
import logging
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from api.quantity import memory_bytes
from kubelet import downwardapi
from kubelet.envvars import ConfigError
from kubelet.tokens import TokenKey, key_for

logger = logging.getLogger(__name__)

Obj = dict[str, Any]
Lookup = Callable[[str, str, str], Obj | None]

DATA_DIR = "..data"


class VolumeError(Exception):
    """A volume cannot be set up (the pod stays ContainerCreating; event FailedMount)."""


def pod_dir(root: Path, uid: str) -> Path:
    return root / "pods" / uid


def volume_dir(root: Path, uid: str, plugin: str, name: str) -> Path:
    return pod_dir(root, uid) / "volumes" / f"kubernetes.io~{plugin}" / name


def payload(kind: str, obj: Obj | None, source: Obj, default_mode: int | None = None) -> dict[str, tuple[bytes, int]]:
    """relative path -> (content, mode) for a configMap/secret volume (or projection)."""
    if obj is None:
        return {}
    if kind == "secrets":
        data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        data.update({k: v.encode() for k, v in (obj.get("stringData") or {}).items()})
    else:
        data = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    mode = source.get("defaultMode") if default_mode is None else default_mode
    mode = 0o644 if mode is None else int(mode)
    items = source.get("items")
    if not items:
        return {k: (v, mode) for k, v in data.items()}
    out = {}
    for item in items:
        key = item.get("key", "")
        if key not in data:
            if source.get("optional"):
                continue
            raise VolumeError(f"configmap references non-existent config key: {key}" if kind == "configmaps"
                              else f"secret references non-existent secret key: {key}")
        item_mode = item.get("mode")
        out[item.get("path") or key] = (data[key], mode if item_mode is None else int(item_mode))
    return out


class AtomicWriter:
    """The kubelet's AtomicWriter: the files of `target` change all at once through a `..data` swap."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def _current(self) -> dict[str, tuple[bytes, int]] | None:
        data = self.target / DATA_DIR
        if not data.is_symlink():
            return None
        base = self.target / os.readlink(data)
        out = {}
        for dirpath, _, files in os.walk(base):
            for f in files:
                p = Path(dirpath) / f
                out[str(p.relative_to(base))] = (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
        return out

    def write(self, files: dict[str, tuple[bytes, int]]) -> bool:
        """Make the volume hold exactly `files`; returns whether anything changed."""
        for rel in files:
            if rel.startswith("..") or rel.startswith("/") or "/../" in f"/{rel}/":
                raise VolumeError(f"invalid path {rel!r} in volume items")
        if self._current() == files:
            return False
        self.target.mkdir(parents=True, exist_ok=True)
        stamp = f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.monotonic_ns()}"
        fresh = self.target / stamp
        fresh.mkdir(mode=0o755)
        for rel, (content, mode) in files.items():
            path = fresh / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            path.chmod(mode)
        data = self.target / DATA_DIR
        old = os.readlink(data) if data.is_symlink() else None
        tmp = self.target / "..data_tmp"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(stamp)
        os.rename(tmp, data)
        tops = {rel.split("/", 1)[0] for rel in files}
        for top in tops:
            link = self.target / top
            if not link.is_symlink():
                if link.exists():
                    shutil.rmtree(link) if link.is_dir() else link.unlink()
                link.symlink_to(f"{DATA_DIR}/{top}")
        for entry in self.target.iterdir():
            if not entry.name.startswith("..") and entry.name not in tops:
                entry.unlink() if entry.is_symlink() else shutil.rmtree(entry, ignore_errors=True)
        if old is not None and old != stamp:
            shutil.rmtree(self.target / old, ignore_errors=True)
        return True


def _is_mountpoint(path: Path) -> bool:
    return os.path.ismount(path)


def _mount_tmpfs(path: Path, size: str | None) -> None:
    if _is_mountpoint(path):
        return
    options = ["-o", f"size={memory_bytes(size)}"] if size else []
    subprocess.run(["mount", "-t", "tmpfs", *options, "tmpfs", str(path)], check=True, capture_output=True)


def _check_host_path(path: Path, kind: str) -> None:
    checks = {
        "Directory": (path.is_dir, "is not a directory"),
        "File": (path.is_file, "is not a file"),
        "Socket": (path.is_socket, "is not a socket file"),
        "CharDevice": (path.is_char_device, "is not a character device"),
        "BlockDevice": (path.is_block_device, "is not a block device"),
    }
    if kind == "DirectoryOrCreate":
        path.mkdir(mode=0o755, parents=True, exist_ok=True)
    elif kind == "FileOrCreate":
        if not path.exists():
            path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            path.touch(mode=0o644)
        elif not path.is_file():
            raise VolumeError(f"hostPath type check failed: {path} is not a file")
    elif kind in checks:
        ok, why = checks[kind]
        if not path.exists():
            raise VolumeError(f"hostPath type check failed: {path} does not exist")
        if not ok():
            raise VolumeError(f"hostPath type check failed: {path} {why}")


def _object(kind: str, name: str, namespace: str, optional: bool, lookup: Lookup) -> Obj | None:
    obj = lookup(kind, namespace, name)
    if obj is None and not optional:
        raise VolumeError(f"{'configmap' if kind == 'configmaps' else 'secret'} \"{name}\" not found")
    return obj


def _mode(source: Obj) -> int:
    mode = source.get("defaultMode")
    return 0o644 if mode is None else int(mode)


def _downward(pod: Obj, source: Obj, default_mode: int, pod_ip: str | None,
              host_ip: str) -> dict[str, tuple[bytes, int]]:
    try:
        return downwardapi.files(pod, source.get("items") or [], default_mode=default_mode, pod_ip=pod_ip,
                                 host_ip=host_ip)
    except ConfigError as e:
        raise VolumeError(str(e)) from e


def projected_payload(pod: Obj, source: Obj, lookup: Lookup, *, pod_ip: str | None = None, host_ip: str = "",
                      tokens: dict[TokenKey, str] | None = None) -> dict[str, tuple[bytes, int]]:
    """relative path -> (content, mode) of a projected volume: its sources merged, in order."""
    namespace = (pod.get("metadata") or {}).get("namespace", "default")
    mode = _mode(source)
    out: dict[str, tuple[bytes, int]] = {}
    for s in source.get("sources") or []:
        if s.get("configMap") is not None or s.get("secret") is not None:
            kind = "configmaps" if s.get("configMap") is not None else "secrets"
            src = s.get("configMap") if kind == "configmaps" else s.get("secret")
            obj = _object(kind, src.get("name") or "", namespace, bool(src.get("optional")), lookup)
            out.update(payload(kind, obj, src, mode))
        elif s.get("downwardAPI") is not None:
            out.update(_downward(pod, s["downwardAPI"], mode, pod_ip, host_ip))
        elif s.get("serviceAccountToken") is not None:
            sat = s["serviceAccountToken"]
            token = (tokens or {}).get(key_for(pod, sat))
            if token is None:
                raise VolumeError(f"no token for serviceAccountToken projection {sat.get('path')!r}")
            out[sat.get("path") or "token"] = (token.encode(), mode)
        elif s.get("clusterTrustBundle") is not None:
            raise VolumeError("clusterTrustBundle projections are not supported")
    return out


def setup(root: Path, pod: Obj, lookup: Lookup, *, pod_ip: str | None = None, host_ip: str = "",
          tokens: dict[TokenKey, str] | None = None) -> dict[str, Path]:
    """Prepare every volume of `pod`; returns volume name -> host path to bind.

    `pod_ip`/`host_ip` feed downward API files; `tokens` holds the serviceAccountToken projections' tokens."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    uid, namespace = meta.get("uid", ""), meta.get("namespace", "default")
    paths: dict[str, Path] = {}
    for v in spec.get("volumes") or []:
        name = v.get("name", "")
        if "hostPath" in v:
            path = Path(v["hostPath"].get("path", ""))
            _check_host_path(path, v["hostPath"].get("type") or "")
            paths[name] = path
        elif "configMap" in v or "secret" in v:
            kind = "configmaps" if "configMap" in v else "secrets"
            source = v.get("configMap") or v.get("secret") or {}
            obj_name = source.get("name") if kind == "configmaps" else source.get("secretName")
            obj = _object(kind, obj_name or "", namespace, bool(source.get("optional")), lookup)
            target = volume_dir(root, uid, "configmap" if kind == "configmaps" else "secret", name)
            if AtomicWriter(target).write(payload(kind, obj, source)):
                logger.info("pod %s/%s: volume %s written from %s %s", namespace, meta.get("name"), name,
                            kind[:-1], obj_name)
            paths[name] = target
        elif v.get("downwardAPI") is not None:
            target = volume_dir(root, uid, "downward-api", name)
            files = _downward(pod, v["downwardAPI"], _mode(v["downwardAPI"]), pod_ip, host_ip)
            if AtomicWriter(target).write(files):
                logger.info("pod %s/%s: downwardAPI volume %s written", namespace, meta.get("name"), name)
            paths[name] = target
        elif v.get("projected") is not None:
            target = volume_dir(root, uid, "projected", name)
            files = projected_payload(pod, v["projected"], lookup, pod_ip=pod_ip, host_ip=host_ip, tokens=tokens)
            if AtomicWriter(target).write(files):
                logger.info("pod %s/%s: projected volume %s written", namespace, meta.get("name"), name)
            paths[name] = target
        elif "emptyDir" in v or len(v) == 1:
            source = v.get("emptyDir") or {}
            target = volume_dir(root, uid, "empty-dir", name)
            target.mkdir(parents=True, exist_ok=True)
            target.chmod(0o777)
            if source.get("medium") == "Memory":
                _mount_tmpfs(target, source.get("sizeLimit"))
            paths[name] = target
        else:
            raise VolumeError(f"volume {name}: unsupported volume type {sorted(k for k in v if k != 'name')}")
    return paths


def binds(container: Obj, volume_paths: dict[str, Path]) -> list[str]:
    """Docker bind specs (`host:container[:ro]`) for a container's volumeMounts, subPath included."""
    out = []
    for m in container.get("volumeMounts") or []:
        host = volume_paths.get(m.get("name", ""))
        if host is None:
            raise VolumeError(f"volumeMount {m.get('name')!r} names no volume of the pod")
        sub = m.get("subPath") or ""
        if sub:
            if sub.startswith("/") or ".." in Path(sub).parts:
                raise VolumeError(f"invalid subPath {sub!r}")
            host = host / sub
            if not host.exists():
                host.mkdir(parents=True, exist_ok=True)
        out.append(f"{host}:{m.get('mountPath')}{':ro' if m.get('readOnly') else ''}")
    return out


def teardown(root: Path, uid: str) -> None:
    """Unmount the pod's tmpfs volumes and remove its directory."""
    base = pod_dir(root, uid)
    empty = base / "volumes" / "kubernetes.io~empty-dir"
    if empty.is_dir():
        for d in empty.iterdir():
            if _is_mountpoint(d):
                subprocess.run(["umount", str(d)], check=False, capture_output=True)
    shutil.rmtree(base, ignore_errors=True)
