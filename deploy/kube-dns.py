#!/usr/bin/env python3
"""Write `kube-system/kube-dns` (10.96.0.10) with the given node addresses as its endpoints.

Cluster DNS runs as a host process on every node (`minik8s dns`, clusterdns/manifest.py); whoever
starts those processes writes this selector-less Service and its Endpoints. `minik8s up` and the lab do
it themselves; a systemd or compose deployment runs this once the apiserver answers, and again when
nodes come or go (it is idempotent):

    /opt/minik8s/bin/python deploy/kube-dns.py --kubeconfig /etc/minik8s/admin.kubeconfig 10.0.0.11 10.0.0.12
"""
from __future__ import annotations

import argparse
import sys
import time

import httpx

from api.errors import APIError
from client.kubeconfig import Config
from client.rest import Client
from clusterdns.manifest import ensure_kube_dns_service


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kubeconfig", required=True, help="a kubeconfig allowed to write Services (admin)")
    p.add_argument("--port", type=int, default=53, help="the port the node DNS servers listen on")
    p.add_argument("--wait", type=float, default=60, help="seconds to wait for the apiserver")
    p.add_argument("node_ips", nargs="+", metavar="NODE_IP")
    args = p.parse_args()
    deadline = time.monotonic() + args.wait
    while True:
        try:
            with Client(Config.from_kubeconfig(args.kubeconfig)) as client:
                ensure_kube_dns_service(client, args.node_ips, port=args.port)
            print(f"kube-system/kube-dns -> {', '.join(args.node_ips)} port {args.port}")
            return 0
        except (OSError, httpx.TransportError, APIError) as e:  # the apiserver is not up (or ready) yet
            if time.monotonic() > deadline:
                print(f"kube-dns: apiserver unreachable: {e}", file=sys.stderr)
                return 1
            time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
