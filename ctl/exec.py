"""`exec`: run a command in a container over the apiserver's `pods/exec` WebSocket (`v5.channel.k8s.io`).

The protocol, as kubectl speaks it (client-go tools/remotecommand/websocket.go): binary frames whose first
byte is the channel — 0 stdin, 1 stdout, 2 stderr, 3 error (a Status once the command ends), 4 resize
(`{"Width": w, "Height": h}`); `[255, 0]` closes stdin. The exit code is the remote command's: the error
channel says `Success`, or `Failure/NonZeroExitCode` with an `ExitCode` cause, and kubectl prints
"command terminated with exit code N" for the latter.

`-i` pumps local stdin from a thread (EOF closes the remote stdin); `-t` with a terminal puts it in raw
mode for the session and forwards the window size, now and on every SIGWINCH.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import termios
import threading
import tty
import urllib.parse
from typing import Any, Iterator

import websockets
from websockets.sync.client import ClientConnection, connect

from client.resources import path
from client.rest import error_from_body
from ctl.command import Command
from ctl.discovery import UsageError
from ctl.pods import container_name, resolve_pod

PROTOCOL = "v5.channel.k8s.io"
STDIN, STDOUT, STDERR, ERROR, RESIZE = range(5)
CLOSE = 255


def add_arguments(p: Any) -> None:
    add_exec_flags(p)
    p.add_argument("pod", metavar="POD | TYPE/NAME")
    p.add_argument("exec_command", nargs="...", metavar="-- COMMAND [ARG...]")


def add_exec_flags(p: Any) -> None:
    p.add_argument("-c", "--container", help="container name (default: the pod's default or only container)")
    p.add_argument("-i", "--stdin", action="store_true", help="pass stdin to the container")
    p.add_argument("-t", "--tty", action="store_true", help="stdin is a TTY")
    p.add_argument("-q", "--quiet", action="store_true", help="only print output from the remote session")


def split_command(args: Any) -> list[str]:
    """The remote command after `--`; flags written between POD and `--` still count as ours (as kubectl)."""
    words = list(args.exec_command)
    if "--" in words:
        i = words.index("--")
        flags, words = words[:i], words[i + 1:]
        if flags:
            p = argparse.ArgumentParser(add_help=False)
            add_exec_flags(p)
            p.add_argument("-n", "--namespace")
            parsed, unknown = p.parse_known_args(flags)
            if unknown:
                raise UsageError(f"unknown arguments before --: {' '.join(unknown)}")
            for key, value in vars(parsed).items():
                if value not in (None, False):
                    setattr(args, key, value)
    if not words:
        raise UsageError("you must specify at least one command for the container")
    return words


def exec_url(server: str, pod_path: str, command: list[str], *, container: str, stdin: bool, tty: bool) -> str:
    query = [("command", c) for c in command] + [("container", container), ("stdout", "true")]
    if stdin:
        query.append(("stdin", "true"))
    if not tty:
        query.append(("stderr", "true"))
    if tty:
        query.append(("tty", "true"))
    base = server.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    return f"{base}{pod_path}?{urllib.parse.urlencode(query)}"


def exit_code(status: dict[str, Any] | None) -> tuple[int, str | None]:
    """The remote command's exit code and what to print on stderr, from the error channel's Status."""
    if status is None or status.get("status") == "Success":
        return 0, None
    if status.get("reason") == "NonZeroExitCode":
        for cause in (status.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode":
                code = int(cause.get("message", "1"))
                return code, f"command terminated with exit code {code}"
    return 1, f"error: {status.get('message') or 'remote command failed'}"


def window_size() -> bytes:
    size = os.get_terminal_size(sys.stdin.fileno())   # the terminal itself, not $COLUMNS/$LINES
    return bytes([RESIZE]) + json.dumps({"Width": size.columns, "Height": size.lines}).encode()


@contextlib.contextmanager
def raw_terminal(ws: ClientConnection) -> Iterator[None]:
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    # sent from a thread: a signal handler must not block on the connection the main thread is reading
    previous = signal.signal(signal.SIGWINCH, lambda *_: threading.Thread(
        target=ws.send, args=(window_size(),), daemon=True).start())
    try:
        tty.setraw(fd, termios.TCSANOW)   # keep what was typed ahead (TCSAFLUSH would drop it)
        ws.send(window_size())
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        signal.signal(signal.SIGWINCH, previous)


def pump_stdin(ws: ClientConnection, *, tty_mode: bool) -> None:
    fd = sys.stdin.fileno()
    try:
        while data := os.read(fd, 32 * 1024):
            ws.send(bytes([STDIN]) + data)
        if not tty_mode:
            ws.send(bytes([CLOSE, STDIN]))
    except (websockets.ConnectionClosed, OSError):
        pass   # the session ended first


def session_loop(ws: ClientConnection) -> dict[str, Any] | None:
    status = None
    outputs = {STDOUT: sys.stdout.buffer, STDERR: sys.stderr.buffer}
    try:
        for message in ws:
            frame = message if isinstance(message, bytes) else message.encode()
            if not frame:
                continue
            channel, data = frame[0], frame[1:]
            if channel in outputs:
                outputs[channel].write(data)
                outputs[channel].flush()
            elif channel == ERROR and data:
                status = json.loads(data)
    except websockets.ConnectionClosedError:
        pass
    return status


def run(args: Any, session: Any) -> int:
    command = split_command(args)
    if args.namespace:
        session.namespace_flag = args.namespace
    pod = resolve_pod(session, args.pod)
    container = container_name(pod, args.container, quiet=args.quiet)
    use_tty = args.tty and args.stdin and sys.stdin.isatty()
    if args.tty and not use_tty and not args.quiet:
        print("Unable to use a TTY - input is not a terminal or the right kind of file", file=sys.stderr)
    config = session.config
    pod_path = path(session.discovery.resolve("pods"), pod["metadata"]["namespace"], pod["metadata"]["name"], "exec")
    url = exec_url(config.server, pod_path, command, container=container, stdin=args.stdin, tty=use_tty)
    ssl_context = config.ssl_context() if url.startswith("wss://") else None
    try:
        ws = connect(url, subprotocols=[PROTOCOL], additional_headers=config.headers(), ssl=ssl_context,
                     max_size=None, compression=None, open_timeout=config.timeout)
    except websockets.InvalidStatus as e:
        raise error_from_body(e.response.status_code, e.response.body or b"") from None
    with ws, raw_terminal(ws) if use_tty else contextlib.nullcontext():
        # the window size goes first (raw_terminal sends it), so the shell never sees a default 80x24
        if args.stdin:
            threading.Thread(target=pump_stdin, args=(ws,), kwargs={"tty_mode": use_tty}, daemon=True).start()
        status = session_loop(ws)
    code, message = exit_code(status)
    if message:
        print(message, file=sys.stderr)
    return code


COMMANDS = [Command("exec", "Execute a command in a container", add_arguments, run)]
