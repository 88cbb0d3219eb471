"""One command's connection to the cluster: which kubeconfig, which namespace, and the HTTP client.

The kubeconfig is found as kubectl finds it, plus the file `minik8s up` writes: `--kubeconfig`, then
`$KUBECONFIG`, then the admin kubeconfig of a local `minik8s up` (`/var/lib/minik8s/admin.kubeconfig` as
root, `~/.local/share/minik8s/admin.kubeconfig` otherwise), then `~/.kube/config`. The namespace is
`-n`, else the context's namespace, else "default".

`CtlClient` is the library's blocking `Client` with the two things only a CLI needs: asking for a
different representation (`Accept: ...;as=Table`, the server-side printing `get` uses) and streaming a
response line by line (`logs -f`, `get -w`).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import httpx

from client.kubeconfig import Config
from client.rest import Client, decode, error_from_response
from ctl.discovery import Discovery

TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
ROOT_DATA_DIR = Path("/var/lib/minik8s")
USER_AGENT = "minik8s-ctl/0.1"


def admin_kubeconfig() -> Path:
    """Where `minik8s up` publishes its admin kubeconfig for the current user."""
    if os.geteuid() == 0:
        return ROOT_DATA_DIR / "admin.kubeconfig"
    return Path.home() / ".local" / "share" / "minik8s" / "admin.kubeconfig"


def kubeconfig_path(flag: str | None) -> Path:
    if flag:
        return Path(flag)
    env = os.environ.get("KUBECONFIG")
    if env:
        return Path(env.split(os.pathsep)[0])
    local = admin_kubeconfig()
    if local.exists():
        return local
    return Path.home() / ".kube" / "config"


class CtlClient(Client):
    def request_as(self, method: str, path: str, *, accept: str, params: dict[str, str] | None = None) -> Any:
        resp = self._http.request(method, path, params=params or {}, headers={"Accept": accept})
        return decode(resp)

    def _stream(self, path: str, params: dict[str, str] | None, accept: str) -> Any:
        """An open streamed GET (no read timeout: streams stay quiet for long); Status errors raised."""
        timeout = httpx.Timeout(self.config.timeout, read=None)
        return self._http.stream("GET", path, params=params or {}, headers={"Accept": accept}, timeout=timeout)

    def stream_lines(self, path: str, *, params: dict[str, str] | None = None,
                     accept: str = "application/json") -> Iterator[str]:
        """GET `path` and yield its body line by line as it arrives (`get -w`)."""
        with self._stream(path, params, accept) as resp:
            _raise_for_status(resp)
            yield from resp.iter_lines()

    def stream_bytes(self, path: str, *, params: dict[str, str] | None = None) -> Iterator[bytes]:
        """GET `path` and yield its body in chunks as they arrive (`logs -f`)."""
        with self._stream(path, params, "*/*") as resp:
            _raise_for_status(resp)
            yield from resp.iter_bytes()


def _raise_for_status(resp: httpx.Response) -> None:
    if resp.status_code >= 300:
        resp.read()
        raise error_from_response(resp)


@dataclass
class Session:
    config: Config
    namespace_flag: str | None = None
    _client: CtlClient | None = field(default=None, repr=False)

    @classmethod
    def from_args(cls, args: Any) -> "Session":
        config = Config.from_kubeconfig(kubeconfig_path(getattr(args, "kubeconfig", None)),
                                        context=getattr(args, "context", None))
        if getattr(args, "request_timeout", None):
            config.timeout = float(args.request_timeout)
        return cls(config, getattr(args, "namespace", None))

    @property
    def namespace(self) -> str:
        return self.namespace_flag or self.config.namespace or "default"

    @property
    def client(self) -> CtlClient:
        if self._client is None:
            self._client = CtlClient(self.config, user_agent=USER_AGENT)
        return self._client

    @cached_property
    def discovery(self) -> Discovery:
        """What the server serves, read once per command (kubectl caches it on disk; we ask each time)."""
        return Discovery.fetch(self.client)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
