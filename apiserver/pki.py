"""Certificates and tokens for a cluster, made once on first start and kept in the data directory.

`ensure_pki(dir, hosts)` writes a CA (`ca.crt`, `ca.key`) and an apiserver serving certificate signed by it
whose SANs cover loopback, the given hosts and the in-cluster names (`kubernetes.default.svc...`,
10.96.0.1). `ensure_tokens(path, identities)` keeps a Kubernetes static token file
(`token,user,uid,"group1,group2"`) with one random token per component identity, and one per node:
every kubelet is `system:node:<node name>` in `system:nodes`, so the node authorizer can tell them apart.
"""
from __future__ import annotations

import csv
import datetime
import ipaddress
import os
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SERVICE_NAMES = ["kubernetes", "kubernetes.default", "kubernetes.default.svc",
                 "kubernetes.default.svc.cluster.local", "localhost"]

# Identity -> groups, as Kubernetes names its components.
COMPONENTS: dict[str, list[str]] = {
    "admin": ["system:masters"],
    "system:kube-controller-manager": [],
    "system:kube-scheduler": [],
    "system:kube-proxy": ["system:node-proxier"],
    "system:minik8s-dns": [],
    # The apiserver's identity towards kubelets (pods/log, pods/exec).
    "system:kube-apiserver-kubelet-client": ["system:masters"],
}


def _write(path: Path, data: bytes, mode: int = 0o600) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def ensure_ca(directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"ca": directory / "ca.crt", "ca_key": directory / "ca.key"}
    if paths["ca"].exists():
        return paths
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "minik8s-ca")])
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, encipher_only=False,
                                       decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    _write(paths["ca_key"], _pem_key(ca_key))
    _write(paths["ca"], ca.public_bytes(serialization.Encoding.PEM), 0o644)
    return paths


def ensure_serving_cert(directory: Path, name: str, hosts: list[str]) -> dict[str, Path]:
    """`<name>.crt`/`<name>.key` signed by the CA in `directory`, re-issued when a wanted SAN is missing."""
    paths = ensure_ca(directory) | {"cert": directory / f"{name}.crt", "key": directory / f"{name}.key"}
    wanted = sorted(set(hosts))
    if paths["cert"].exists():
        have = x509.load_pem_x509_certificate(paths["cert"].read_bytes())
        issuer_ok = have.issuer == x509.load_pem_x509_certificate(paths["ca"].read_bytes()).subject
        san = have.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        present = {str(v) for v in san.get_values_for_type(x509.IPAddress)} | set(san.get_values_for_type(x509.DNSName))
        if issuer_ok and set(wanted) <= present:
            return paths
    ca = x509.load_pem_x509_certificate(paths["ca"].read_bytes())
    ca_key = serialization.load_pem_private_key(paths["ca_key"].read_bytes(), None)
    key = _key()
    alt: list[x509.GeneralName] = []
    for h in wanted:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            alt.append(x509.DNSName(h))
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=825))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write(paths["key"], _pem_key(key))
    _write(paths["cert"], cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return paths


def ensure_pki(directory: Path, hosts: list[str] | None = None) -> dict[str, Path]:
    """The CA and the apiserver's serving certificate (loopback, in-cluster names, 10.96.0.1, `hosts`)."""
    return ensure_serving_cert(directory, "apiserver", ["127.0.0.1", "10.96.0.1", *SERVICE_NAMES, *(hosts or [])])


def ensure_service_account_key(directory: Path) -> dict[str, Path]:
    """`sa.key` (private, signs ServiceAccount tokens) and `sa.pub` (verifies them), made once."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"key": directory / "sa.key", "pub": directory / "sa.pub"}
    if not paths["key"].exists():
        key = _key()
        _write(paths["key"], _pem_key(key))
        _write(paths["pub"], key.public_key().public_bytes(serialization.Encoding.PEM,
                                                           serialization.PublicFormat.SubjectPublicKeyInfo), 0o644)
    return paths


NODES_GROUP = "system:nodes"


def node_identity(node_name: str) -> str:
    """The user a node's kubelet authenticates as."""
    return f"system:node:{node_name}"


def node_identities(node_names) -> dict[str, list[str]]:
    return {node_identity(n): [NODES_GROUP] for n in node_names}


def ensure_tokens(path: Path, identities: dict[str, list[str]] = COMPONENTS) -> dict[str, str]:
    """identity -> token; existing tokens (and their groups) are kept, missing identities get new ones.
    The file is replaced atomically (`_write`), so an apiserver re-reading it never sees half of it."""
    rows = read_token_file(path) if path.exists() else []
    tokens = {user: tok for tok, user, _uid, _groups in rows}
    groups = {user: g for _tok, user, _uid, g in rows}
    missing = [user for user in identities if user not in tokens]
    if missing:
        for user in missing:
            tokens[user] = secrets.token_urlsafe(32)
            groups[user] = identities[user]
        lines = [f'{tok},{user},{user},"{",".join(groups.get(user, []))}"' for user, tok in tokens.items()]
        _write(path, ("\n".join(lines) + "\n").encode())
    return tokens


def read_token_file(path: Path) -> list[tuple[str, str, str, list[str]]]:
    """Kubernetes' --token-auth-file format: token,user,uid[,"group1,group2"]."""
    out = []
    with open(path, newline="") as f:
        for row in csv.reader(f):
            if not row or row[0].startswith("#") or len(row) < 3:
                continue
            groups = [g for g in (row[3].split(",") if len(row) > 3 else []) if g]
            out.append((row[0].strip(), row[1].strip(), row[2].strip(), groups))
    return out
