"""`minik8s ctl`: the kubectl-style client, wired as one sub-subcommand per verb.

Each verb lives in the module named for its concept (get.py, apply.py, logs.py, ...) as a `Command`: its
flags and a `run(args, session) -> int`. This module only builds the parsers and turns failures into
kubectl's messages and exit codes:

- a Status from the server: `Error from server (NotFound): pods "x" not found` (Invalid: the server's
  message as is, as kubectl prints it), exit 1;
- a usage error, from argparse or from a command: `error: ...`, exit 1 (kubectl never exits 2);
- the apiserver unreachable: `The connection to the server HOST was refused - did you specify the right
  host or port?`, exit 1.

Global flags (`--kubeconfig`, `--context`, `-n/--namespace`, `--request-timeout`) are accepted before or
after the verb, as kubectl accepts them anywhere.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Any, NoReturn
from urllib.parse import urlsplit

import httpx

from api.errors import APIError
from client.kubeconfig import KubeconfigError
from ctl.command import Command
from ctl.discovery import UsageError
from ctl.errors import error_from_server
from ctl.session import Session
from ctl.waiting import WaitTimeout

HELP = "the kubectl-style client: get, describe, apply, delete, logs, exec, scale, rollout, drain, top, ..."

MODULES = ("ctl.get", "ctl.apply", "ctl.create", "ctl.delete", "ctl.logs", "ctl.exec", "ctl.scale", "ctl.describe", "ctl.rollout", "ctl.nodes", "ctl.metadata", "ctl.info", "ctl.top")


class KubectlParser(argparse.ArgumentParser):
    """A verb's parser: flags may come anywhere among the arguments (`label po x -n ns a=b`), as in kubectl,
    and anything unrecognised is this verb's usage error rather than the top-level parser's."""

    _intermixing = False

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        if self._intermixing or any(a.nargs in (argparse.REMAINDER, argparse.PARSER) for a in self._actions):
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            parsed, extras = super().parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False
        if extras:
            self.error(f"unknown flag: {extras[0]}" if extras[0].startswith("-") else
                       f"unexpected arguments: {' '.join(extras)}")
        return parsed, extras

    def error(self, message: str) -> NoReturn:
        usage_exit(self, message)


def usage_exit(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    sys.stderr.write(f"error: {message}\nSee '{parser.prog} -h' for help and examples\n")
    sys.exit(1)


def add_global_flags(p: argparse.ArgumentParser, *, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else None
    p.add_argument("--kubeconfig", default=default,
                   help="kubeconfig file (default: $KUBECONFIG, the `minik8s up` admin kubeconfig, ~/.kube/config)")
    p.add_argument("--context", default=default, help="kubeconfig context to use")
    p.add_argument("-n", "--namespace", default=default, help="namespace (default: the context's, else default)")
    p.add_argument("--request-timeout", default=default, help="seconds to wait for one request")


def commands() -> list[Command]:
    return [c for name in MODULES for c in importlib.import_module(name).COMMANDS]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.error = lambda message: usage_exit(parser, message)  # type: ignore[method-assign]
    add_global_flags(parser, suppress=False)
    sub = parser.add_subparsers(dest="ctl_verb", metavar="COMMAND", required=True, parser_class=KubectlParser)
    for command in commands():
        p = sub.add_parser(command.name, help=command.help, description=command.help)
        add_global_flags(p, suppress=True)
        command.add_arguments(p)
        p.set_defaults(ctl_run=command.run, ctl_parser=p)


def run(args: Any) -> int:
    if not getattr(args, "verbose", False):
        for noisy in ("httpx", "httpcore"):   # request lines are for -v, not for a user's terminal
            logging.getLogger(noisy).setLevel(logging.WARNING)
    session = None
    try:
        session = Session.from_args(args)
        return args.ctl_run(args, session)
    except APIError as e:
        print(error_from_server(e), file=sys.stderr)
    except (UsageError, KubeconfigError, WaitTimeout) as e:
        print(f"error: {e}", file=sys.stderr)
    except httpx.ConnectError:
        host = urlsplit(session.config.server).netloc if session else "?"
        print(f"The connection to the server {host} was refused - did you specify the right host or port?",
              file=sys.stderr)
    except httpx.TransportError as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()  # the reader left (`| head`): not an error worth a traceback
        return 0
    finally:
        if session is not None:
            session.close()
    return 1
