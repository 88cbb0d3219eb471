"""`logs`: a container's log through the apiserver's `pods/log` subresource, streamed as it arrives.

The flags map one to one onto the subresource's query: `-f` follow, `--tail` tailLines, `-p` previous,
`--timestamps`, `--since` sinceSeconds (Go durations such as 10s, 5m, 1h30m), `--since-time`,
`--limit-bytes`. Bytes are passed through untouched.
"""
from __future__ import annotations

import re
import sys
from typing import Any

from ctl.command import Command
from ctl.discovery import UsageError
from ctl.pods import container_name, resolve_pod

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> float:
    """Go's time.ParseDuration for the units people use: 10s, 5m, 1h30m, 250ms."""
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise UsageError(f'invalid argument "{text}" for "--since" flag: time: invalid duration "{text}"')
    return total


def add_arguments(p: Any) -> None:
    p.add_argument("pod", metavar="POD | TYPE/NAME")
    p.add_argument("container_arg", nargs="?", metavar="CONTAINER")
    p.add_argument("-c", "--container", help="container name (default: the pod's default or only container)")
    p.add_argument("-f", "--follow", action="store_true", help="stream the log as it grows")
    p.add_argument("--tail", type=int, default=-1, help="lines from the end to show (-1: all)")
    p.add_argument("-p", "--previous", action="store_true", help="the previous instance of the container")
    p.add_argument("--timestamps", action="store_true", help="prefix each line with its RFC3339 timestamp")
    p.add_argument("--since", help="only newer than this duration (e.g. 10s, 5m, 1h)")
    p.add_argument("--since-time", help="only after this RFC3339 time")
    p.add_argument("--limit-bytes", type=int, help="at most this many bytes")


def log_params(args: Any, container: str) -> dict[str, str]:
    if args.since and args.since_time:
        raise UsageError("at most one of `sinceTime` or `sinceSeconds` may be specified")
    params = {"container": container}
    if args.follow:
        params["follow"] = "true"
    if args.tail >= 0:
        params["tailLines"] = str(args.tail)
    if args.previous:
        params["previous"] = "true"
    if args.timestamps:
        params["timestamps"] = "true"
    if args.since:
        params["sinceSeconds"] = str(max(1, int(parse_duration(args.since) + 0.999)))
    if args.since_time:
        params["sinceTime"] = args.since_time
    if args.limit_bytes:
        params["limitBytes"] = str(args.limit_bytes)
    return params


def run(args: Any, session: Any) -> int:
    pod = resolve_pod(session, args.pod)
    container = container_name(pod, args.container or args.container_arg)
    rd = session.discovery.resolve("pods")
    out = sys.stdout.buffer
    for chunk in session.client.stream_subresource(rd, pod["metadata"]["name"], "log", pod["metadata"]["namespace"],
                                                   params=log_params(args, container)):
        out.write(chunk)
        out.flush()
    return 0


COMMANDS = [Command("logs", "Print the logs for a container in a pod", add_arguments, run)]
