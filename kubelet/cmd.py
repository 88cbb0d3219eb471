"""`minik8s kubelet`: the node agent — registers the Node and runs the pods bound to it with Docker."""
from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

HELP = "run the node agent (pods via Docker)"


def _labels(text: str) -> dict[str, str]:
    out = {}
    for item in [s.strip() for s in text.split(",") if s.strip()]:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--node-labels wants key=value[,key=value...], got {item!r}")
        out[key] = value
    return out


def add_arguments(c: argparse.ArgumentParser) -> None:
    c.add_argument("--kubeconfig", required=True)
    c.add_argument("--node-name", required=True)
    c.add_argument("--node-ip", required=True, help="InternalIP; the apiserver reaches the kubelet port here")
    c.add_argument("--docker-host", default="unix:///var/run/docker.sock")
    c.add_argument("--root-dir", type=Path, default=Path("/var/lib/minik8s/kubelet"))
    c.add_argument("--address", default="0.0.0.0", help="bind address of the logs/exec server")
    c.add_argument("--port", type=int, default=10250)
    c.add_argument("--tls-cert-file", default=None)
    c.add_argument("--tls-private-key-file", default=None)
    c.add_argument("--authentication-token-file", default=None,
                   help="tokens the logs/exec server accepts (Kubernetes static token file format); only the "
                        "apiserver's kubelet-client identity and system:masters may use them")
    c.add_argument("--authentication-token-webhook", action="store_true",
                   help="ask the apiserver who other tokens belong to (TokenReview), so the node needs no "
                        "token file")
    c.add_argument("--authorization-mode", choices=("Webhook", "AlwaysAllow"), default="Webhook",
                   help="Webhook: callers the webhook authenticated need the verb on nodes/proxy (logs, exec), "
                        "nodes/metrics or nodes/stats of this node (SubjectAccessReview); AlwaysAllow: any of them "
                        "may do anything")
    c.add_argument("--bridge", default="mk0")
    c.add_argument("--service-sink", default="kube-svc0", help=argparse.SUPPRESS)
    c.add_argument("--cluster-cidr", default="10.244.0.0/16")
    c.add_argument("--service-cluster-ip-range", default="10.96.0.0/12")
    c.add_argument("--cluster-dns", default="10.96.0.10")
    c.add_argument("--cluster-domain", default="cluster.local")
    c.add_argument("--network-backend", choices=("none", "host-gw", "vxlan"), default="none",
                   help="how pods reach pods on other nodes: routes via node IPs, a VXLAN overlay, or not at all")
    c.add_argument("--pod-egress", action=argparse.BooleanOptionalAction, default=False,
                   help="let pods reach addresses outside the cluster (masqueraded); off by default")
    c.add_argument("--node-status-update-frequency", type=float, default=10.0)
    c.add_argument("--node-labels", type=_labels, default={})
    c.add_argument("--node-lease-duration-seconds", type=int, default=40,
                   help="duration of the node's heartbeat Lease; it is renewed every quarter of it")
    c.add_argument("--allowed-registries", default="localhost,127.0.0.1,[::1]",
                   help="registries image pulls may contact (network safety: loopback only by default)")
    c.add_argument("--pod-infra-container-image", default="minik8s/pause:3.9")
    # For tests: the crash-loop/image-pull backoff starts here instead of 10 s (cap stays 30x the base).
    c.add_argument("--crash-loop-backoff-base", type=float, default=10.0, help=argparse.SUPPRESS)
    c.add_argument("--relist-period", type=float, default=5.0, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    import logging

    from kubelet.kubelet import Kubelet, KubeletConfig

    # httpx logs every request at INFO: for a kubelet that is several lines per pod start, and CPU.
    logging.getLogger("httpx").setLevel(logging.WARNING)

    config = KubeletConfig(
        kubeconfig=args.kubeconfig, node_name=args.node_name, node_ip=args.node_ip, docker_host=args.docker_host,
        root_dir=args.root_dir, port=args.port, address=args.address, tls_cert_file=args.tls_cert_file,
        tls_private_key_file=args.tls_private_key_file, authentication_token_file=args.authentication_token_file,
        authentication_token_webhook=args.authentication_token_webhook,
        authorization_webhook=args.authorization_mode == "Webhook",
        bridge=args.bridge, service_sink=args.service_sink, cluster_cidr=args.cluster_cidr,
        service_cidr=args.service_cluster_ip_range, cluster_dns=args.cluster_dns,
        cluster_domain=args.cluster_domain, pod_egress=args.pod_egress, network_backend=args.network_backend,
        node_lease_duration=args.node_lease_duration_seconds,
        node_status_update_frequency=args.node_status_update_frequency, node_labels=args.node_labels,
        crash_loop_backoff_base=args.crash_loop_backoff_base, relist_period=args.relist_period,
        allowed_registries=tuple(r.strip() for r in args.allowed_registries.split(",") if r.strip()),
        sandbox_image=args.pod_infra_container_image)
    return asyncio.run(Kubelet(config).run())
