"""`minik8s apiserver`: the API server alone, as systemd units and compose files run it."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "run the API server"


def _host_port(url: str) -> tuple[str, int]:
    url = url.strip()
    for scheme in ("http://", "https://"):
        if url.startswith(scheme):
            url = url[len(scheme):]
    host, _, port = url.rstrip("/").rpartition(":")
    return (host or "127.0.0.1"), int(port or 2379)


def _authorization_modes(value: str) -> str:
    modes = [m.strip() for m in value.split(",") if m.strip()]
    if not modes or any(m not in ("Node", "RBAC", "AlwaysAllow") for m in modes):
        raise argparse.ArgumentTypeError(f"{value!r}: a comma-separated list of Node, RBAC, AlwaysAllow")
    return ",".join(modes)


def add_arguments(a: argparse.ArgumentParser) -> None:
    a.add_argument("--etcd-servers", default="http://127.0.0.1:2379", help="comma-separated etcd client URLs")
    a.add_argument("--secure-port", type=int, default=6443)
    a.add_argument("--bind-address", default="0.0.0.0")
    a.add_argument("--advertise-address", default=None)
    a.add_argument("--tls-cert-file", required=True)
    a.add_argument("--tls-private-key-file", required=True)
    a.add_argument("--token-auth-file", required=True, help="static token file: token,user,uid,\"groups\"")
    a.add_argument("--service-cluster-ip-range", default="10.96.0.0/12")
    a.add_argument("--service-node-port-range", default="30000-32767")
    a.add_argument("--watch-cache-size", type=int, default=10000, help="events kept per resource for watch resume")
    a.add_argument("--kubelet-certificate-authority", default=None,
                   help="CA bundle to verify kubelet serving certificates (pods/log, pods/exec); "
                        "without it they are not verified")
    a.add_argument("--kubelet-timeout", type=float, default=5.0,
                   help="seconds to wait for a kubelet to answer before pods/log or pods/exec fail with 503")
    a.add_argument("--service-account-signing-key-file", default=None,
                   help="PEM private key signing ServiceAccount tokens (minik8s bootstrap: pki/sa.key); "
                        "without it a key is made at start-up and tokens die with the process")
    a.add_argument("--service-account-issuer", default="https://kubernetes.default.svc.cluster.local")
    a.add_argument("--api-audiences", default="", help="comma-separated audiences tokens must carry "
                                                       "(default: the issuer)")
    a.add_argument("--enable-admission-plugins", default="",
                   help="comma-separated optional admission plugins: ServiceAccount mounts API credentials "
                        "(token, kube-root-ca.crt, namespace) into new pods; it needs kubelets with projected "
                        "volumes and the controller-manager's --root-ca-file")
    a.add_argument("--authorization-mode", type=_authorization_modes, default="Node,RBAC",
                   help="comma-separated authorizers asked in order: Node (a kubelet reaches only the Secrets, "
                        "ConfigMaps, volumes and tokens its own pods use, and writes only its own Node, Lease "
                        "and pods), RBAC (Roles and bindings; system:masters may do anything), AlwaysAllow "
                        "(any authenticated request)")


def run(args: argparse.Namespace) -> int:
    from apiserver.app import Settings
    from apiserver.server import serve

    lo, _, hi = args.service_node_port_range.partition("-")
    bind = args.bind_address
    settings = Settings(
        etcd_servers=[_host_port(u) for u in args.etcd_servers.split(",") if u],
        token_file=Path(args.token_auth_file),
        service_cidr=args.service_cluster_ip_range,
        node_port_range=(int(lo), int(hi)),
        advertise_address=args.advertise_address or ("127.0.0.1" if bind in ("0.0.0.0", "::") else bind),
        secure_port=args.secure_port,
        watch_window=args.watch_cache_size,
        kubelet_certificate_authority=Path(args.kubelet_certificate_authority) if args.kubelet_certificate_authority else None,
        kubelet_timeout=args.kubelet_timeout,
        authorization_mode=args.authorization_mode,
        service_account_signing_key=Path(args.service_account_signing_key_file)
        if args.service_account_signing_key_file else None,
        service_account_issuer=args.service_account_issuer,
        api_audiences=[a for a in args.api_audiences.split(",") if a],
        admission_plugins=tuple(p for p in args.enable_admission_plugins.split(",") if p),
    )
    if not Path(args.token_auth_file).exists():
        print(f"minik8s apiserver: token file {args.token_auth_file} does not exist", file=sys.stderr)
        return 2
    if settings.kubelet_certificate_authority and not settings.kubelet_certificate_authority.exists():
        print(f"minik8s apiserver: kubelet CA {settings.kubelet_certificate_authority} does not exist", file=sys.stderr)
        return 2
    serve(settings, bind_address=bind, cert_file=args.tls_cert_file, key_file=args.tls_private_key_file)
    return 0
