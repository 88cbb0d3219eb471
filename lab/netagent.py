"""`python -m lab.netagent`: the pod network backend as a per-node daemon, beside the kubelet.

The kubelet will run `kubelet.routes` itself (a `--network-backend` flag); until it does, the lab starts
this agent in every node's namespace, the way flanneld runs beside a kubelet. It only reads Nodes (and,
for vxlan, publishes its own vtep MAC annotation) and programs routes in the namespace it runs in. On
SIGTERM it leaves the routes in place, so a restart causes no blip; the lab's teardown deletes the
namespace with them.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from client.kubeconfig import Config
from client.rest import AsyncClient
from kubelet.routes import BACKENDS, make_backend

logger = logging.getLogger(__name__)


async def run(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
    backend = make_backend(args.backend, node_name=args.node_name, cluster_cidr=args.cluster_cidr)
    logger.info("node %s: %s backend for %s", args.node_name, backend.name, args.cluster_cidr)
    async with AsyncClient(Config.from_kubeconfig(args.kubeconfig)) as client:
        await backend.run(client, stop, resync_seconds=args.resync)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab.netagent", description=__doc__.splitlines()[0])
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--node-name", required=True)
    p.add_argument("--backend", choices=sorted(BACKENDS), default="host-gw")
    p.add_argument("--cluster-cidr", default="10.244.0.0/16")
    p.add_argument("--resync", type=float, default=30.0, help="seconds between full re-applies")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
