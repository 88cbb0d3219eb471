"""The `minik8s` command: one binary, a subcommand per component; the logic lives in each package.

Each subcommand is a module with `HELP`, `add_arguments(parser)` and `run(args) -> int`, kept beside the
component it starts (`apiserver/cmd.py`, `scheduler/cmd.py`, ...). Components not built yet are simply
absent from the list.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys

SUBCOMMANDS = {
    "apiserver": "apiserver.cmd",
    "controller-manager": "controllers.cmd",
    "scheduler": "scheduler.cmd",
    "kubelet": "kubelet.cmd",
    "proxy": "kubeproxy.cmd",
    "dns": "clusterdns.cmd",
    "lab": "lab.cmd",
    "up": "cli.up",
    "bootstrap": "cli.bootstrap",
    "ctl": "ctl.cmd",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `only`, just that subcommand's module is imported (each component starts without
    importing every other one, and a broken module cannot take the others down)."""
    p = argparse.ArgumentParser(prog="minik8s", description="A small Kubernetes-style orchestrator.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)
    for name, module_name in SUBCOMMANDS.items():
        if only is not None and name != only:
            continue
        if importlib.util.find_spec(module_name) is None:
            continue
        module = importlib.import_module(module_name)
        parser = sub.add_parser(name, help=module.HELP)
        module.add_arguments(parser)
        parser.set_defaults(fn=module.run)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(chosen if chosen in SUBCOMMANDS else None).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.fn(args) or 0


if __name__ == "__main__":
    sys.exit(main())
