"""One command's connection to the cluster: which kubeconfig, which namespace, and the HTTP client.

The kubeconfig is found as kubectl finds it, plus the file `minik8s up` writes: `--kubeconfig`, then
`$KUBECONFIG`, then the admin kubeconfig of a local `minik8s up` (`/var/lib/minik8s/admin.kubeconfig` as
root, `~/.local/share/minik8s/admin.kubeconfig` otherwise), then `~/.kube/config`. The namespace is
`-n`, else the context's namespace, else "default".

The client is the library's blocking `Client`: `get` asks it for Tables (`accept=TABLE_ACCEPT`, the
server-side printing), `get -w` uses its `watch` and `logs` its `stream_subresource`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from client.kubeconfig import Config
from client.rest import Client
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


@dataclass
class Session:
    config: Config
    namespace_flag: str | None = None
    _client: Client | None = field(default=None, repr=False)

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
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.config, user_agent=USER_AGENT)
        return self._client

    @cached_property
    def discovery(self) -> Discovery:
        """What the server serves, read once per command (kubectl caches it on disk; we ask each time)."""
        return Discovery.fetch(self.client)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
