"""Connection settings: where the apiserver is, how to trust it, who we are.

`Config` is what the REST client needs: the server URL, the CA to verify the serving certificate
(file or PEM bytes, or `insecure` to skip verification), and credentials (a bearer token, a token
file, or a client certificate and key). It is built directly (`Config(server=..., token=..., ca_file=...)`)
or read from a standard kubeconfig file (`Config.from_kubeconfig(path, context=None)`), the same file
kubectl and the official Python client read: current-context -> cluster + user. Relative paths inside a
kubeconfig are relative to the file, as in client-go.

`write_kubeconfig` writes such a file (CA inlined as base64 `certificate-authority-data`, mode 0600);
`minik8s up` calls it to publish `<data-dir>/admin.kubeconfig`.
"""
from __future__ import annotations

import base64
import logging
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


class KubeconfigError(ValueError):
    """The kubeconfig is missing, malformed, or names a context/cluster/user it does not define."""


@dataclass
class Config:
    server: str
    token: str | None = None
    token_file: str | None = None
    ca_file: str | None = None
    ca_data: bytes | None = None
    insecure: bool = False
    client_cert_file: str | None = None
    client_key_file: str | None = None
    client_cert_data: bytes | None = None
    client_key_data: bytes | None = None
    namespace: str = "default"
    # Per-request timeout for ordinary calls; watches use their own (see rest.py).
    timeout: float = 30.0

    def __post_init__(self) -> None:
        self.server = self.server.rstrip("/")

    def bearer_token(self) -> str | None:
        if self.token:
            return self.token
        if self.token_file:
            return Path(self.token_file).read_text().strip() or None
        return None

    def headers(self) -> dict[str, str]:
        token = self.bearer_token()
        return {"Authorization": f"Bearer {token}"} if token else {}

    def ssl_context(self) -> ssl.SSLContext | bool:
        """What httpx takes as `verify`: False for plain HTTP or insecure, else a context with our CA and cert."""
        if not self.server.startswith("https://"):
            return False
        if self.insecure:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif self.ca_file or self.ca_data:
            ctx = ssl.create_default_context(
                cafile=self.ca_file, cadata=self.ca_data.decode() if self.ca_data else None
            )
        else:
            ctx = ssl.create_default_context()
        self._load_client_cert(ctx)
        return ctx

    def _load_client_cert(self, ctx: ssl.SSLContext) -> None:
        if self.client_cert_file:
            ctx.load_cert_chain(self.client_cert_file, self.client_key_file)
        elif self.client_cert_data:
            # ssl only loads key material from files: stage it in a private temp dir for the call.
            with tempfile.TemporaryDirectory() as tmp:
                cert = Path(tmp, "client.crt")
                cert.write_bytes(self.client_cert_data)
                key = None
                if self.client_key_data:
                    key = Path(tmp, "client.key")
                    key.write_bytes(self.client_key_data)
                ctx.load_cert_chain(cert, key)

    @classmethod
    def from_kubeconfig(cls, source: PathLike | dict[str, Any] | None = None, context: str | None = None) -> "Config":
        """Load `source` (a path, a parsed dict, or None for $KUBECONFIG / ~/.kube/config)."""
        if isinstance(source, dict):
            doc, base = source, Path.cwd()
        else:
            path = Path(source) if source is not None else default_kubeconfig_path()
            try:
                doc = yaml.safe_load(path.read_text()) or {}
            except OSError as e:
                raise KubeconfigError(f"cannot read kubeconfig {path}: {e}") from e
            base = path.resolve().parent
        return _config_from_doc(doc, context, base)


def default_kubeconfig_path() -> Path:
    env = os.environ.get("KUBECONFIG")
    if env:
        return Path(env.split(os.pathsep)[0])
    return Path.home() / ".kube" / "config"


def _named(doc: dict[str, Any], section: str, name: str, inner: str) -> dict[str, Any]:
    for entry in doc.get(section) or []:
        if entry.get("name") == name:
            return entry.get(inner) or {}
    raise KubeconfigError(f"kubeconfig has no {inner} named {name!r}")


def _config_from_doc(doc: dict[str, Any], context: str | None, base: Path) -> Config:
    context = context or doc.get("current-context")
    if not context:
        raise KubeconfigError("kubeconfig has no current-context and none was given")
    ctx = _named(doc, "contexts", context, "context")
    cluster = _named(doc, "clusters", ctx.get("cluster", ""), "cluster")
    user = _named(doc, "users", ctx["user"], "user") if ctx.get("user") else {}
    if not cluster.get("server"):
        raise KubeconfigError(f"cluster {ctx.get('cluster')!r} has no server")

    def path(key: str, where: dict[str, Any]) -> str | None:
        value = where.get(key)
        return str(base / value) if value else None

    def data(key: str, where: dict[str, Any]) -> bytes | None:
        value = where.get(key)
        return base64.b64decode(value) if value else None

    return Config(
        server=cluster["server"],
        token=user.get("token"),
        token_file=path("tokenFile", user),
        ca_file=path("certificate-authority", cluster),
        ca_data=data("certificate-authority-data", cluster),
        insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
        client_cert_file=path("client-certificate", user),
        client_key_file=path("client-key", user),
        client_cert_data=data("client-certificate-data", user),
        client_key_data=data("client-key-data", user),
        namespace=ctx.get("namespace") or "default",
    )


def kubeconfig_dict(*, server: str, ca_pem: bytes, token: str, user: str = "admin",
                    cluster: str = "minik8s") -> dict[str, Any]:
    context = f"{user}@{cluster}"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": cluster, "cluster": {
            "server": server,
            "certificate-authority-data": base64.b64encode(ca_pem).decode(),
        }}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": cluster, "user": user}}],
        "current-context": context,
    }


def write_kubeconfig(path: PathLike, *, server: str, ca_pem: bytes, token: str, user: str = "admin",
                     cluster: str = "minik8s") -> Path:
    """Write a standard kubeconfig holding a bearer token, readable by its owner only (0600)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(kubeconfig_dict(server=server, ca_pem=ca_pem, token=token, user=user, cluster=cluster),
                          sort_keys=False)
    tmp = target.with_name(f".{target.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, target)
    logger.info("wrote kubeconfig %s for server %s", target, server)
    return target
