"""`minik8s bootstrap`: a cluster's credentials in one directory, made once and kept.

Every way of running minik8s needs the same files before a process starts: a CA, the apiserver's
serving certificate, the kubelet's serving certificate, a static token file with one identity per
component, a kubeconfig per identity and `admin.kubeconfig`. `minik8s up` and the lab call
`ensure_credentials` themselves; systemd units and the compose lab run `minik8s bootstrap` once and point
each process at its file. Existing files are kept (a certificate is re-issued only when a wanted SAN is
missing), so running it again is harmless.

    DIR/pki/{ca,apiserver,kubelet}.{crt,key}
    DIR/pki/sa.{key,pub}                ServiceAccount token signing key pair (apiserver)
    DIR/tokens.csv                      token,user,uid,"groups" (--token-auth-file)
    DIR/kubeconfigs/<identity>.kubeconfig   kube-controller-manager, kube-scheduler, kube-proxy, ...
    DIR/kubeconfigs/node-<name>.kubeconfig  one per node (`--node NAME`): its kubelet's own identity
    DIR/admin.kubeconfig

Each kubelet gets its own identity, `system:node:<name>`, so the apiserver's node authorizer can hold it to
its own node's objects. A node can be added at any time by running this again with its `--node`: the
apiserver re-reads the token file when it changes.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from apiserver.pki import (COMPONENTS, ensure_pki, ensure_service_account_key, ensure_serving_cert, ensure_tokens,
                          node_identities, node_identity)
from client.kubeconfig import write_kubeconfig

HELP = "write a cluster's certificates, tokens and kubeconfigs into a directory (kept if present)"


def kubeconfig_name(identity: str) -> str:
    """`system:kube-scheduler` -> `kube-scheduler`: the file stem of an identity's kubeconfig."""
    return identity.replace("system:", "").replace(":", "-")


@dataclass(frozen=True)
class Credentials:
    """Where the files of a credentials directory are (`ensure_credentials` also fills `tokens`)."""

    dir: Path
    server: str = ""
    tokens: dict[str, str] = field(default_factory=dict)  # identity -> bearer token

    @property
    def pki(self) -> Path:
        return self.dir / "pki"

    @property
    def ca(self) -> Path:
        return self.pki / "ca.crt"

    @property
    def token_file(self) -> Path:
        return self.dir / "tokens.csv"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.dir / "admin.kubeconfig"

    def kubeconfig(self, identity: str) -> Path:
        """The kubeconfig of `identity` (`system:kube-scheduler` or its stem `kube-scheduler`)."""
        return self.dir / "kubeconfigs" / f"{kubeconfig_name(identity)}.kubeconfig"

    def node_kubeconfig(self, node_name: str) -> Path:
        """The kubeconfig of the kubelet of node `node_name` (`system:node:<name>`)."""
        return self.kubeconfig(node_identity(node_name))

    @property
    def service_account_key(self) -> Path:
        return self.pki / "sa.key"

    def cert(self, name: str) -> tuple[Path, Path]:
        """(certificate, key) of a serving certificate: `apiserver` or `kubelet`."""
        return self.pki / f"{name}.crt", self.pki / f"{name}.key"


def ensure_credentials(directory: Path, server: str, *, apiserver_hosts: list[str] = (),
                       kubelet_hosts: list[str] = (), nodes: list[str] = ()) -> Credentials:
    """Make (or keep) everything listed in the module docstring; `server` goes into every kubeconfig."""
    directory.mkdir(parents=True, exist_ok=True)
    pki = ensure_pki(directory / "pki", list(apiserver_hosts))
    ensure_serving_cert(directory / "pki", "kubelet", ["127.0.0.1", *kubelet_hosts])
    ensure_service_account_key(directory / "pki")
    identities = {**COMPONENTS, **node_identities(nodes)}
    creds = Credentials(directory, server, ensure_tokens(directory / "tokens.csv", identities))
    ca_pem = pki["ca"].read_bytes()
    for identity in identities:
        write_kubeconfig(creds.kubeconfig(identity), server=server, ca_pem=ca_pem, token=creds.tokens[identity],
                         user=identity)
    write_kubeconfig(creds.admin_kubeconfig, server=server, ca_pem=ca_pem, token=creds.tokens["admin"],
                     user="admin")
    return creds


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", required=True, help="where the files go")
    p.add_argument("--server", required=True, help="the apiserver URL written into the kubeconfigs, "
                                                    "e.g. https://10.0.0.1:6443")
    p.add_argument("--apiserver-host", action="append", default=[], metavar="HOST",
                   help="an extra IP or DNS name for the apiserver certificate (repeatable; the --server host "
                        "is always included)")
    p.add_argument("--kubelet-host", action="append", default=[], metavar="HOST",
                   help="an IP or DNS name of a node, for the kubelet serving certificate (repeatable)")
    p.add_argument("--node", action="append", default=[], metavar="NAME",
                   help="a node's name: its kubelet gets the identity system:node:NAME and "
                        "kubeconfigs/node-NAME.kubeconfig (repeatable; run again to add nodes later)")


def run(args: argparse.Namespace) -> int:
    from urllib.parse import urlsplit

    host = urlsplit(args.server).hostname
    creds = ensure_credentials(Path(args.data_dir), args.server,
                               apiserver_hosts=[*([host] if host else []), *args.apiserver_host],
                               kubelet_hosts=args.kubelet_host, nodes=args.node)
    print(f"credentials in {creds.dir}: CA {creds.ca}, tokens {creds.token_file}, "
          f"kubeconfigs {creds.dir / 'kubeconfigs'}, admin {creds.admin_kubeconfig}")
    return 0
