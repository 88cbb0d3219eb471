"""exec's pure parts: the URL it dials, the remote exit code, and flags written before `--`."""
import argparse
import urllib.parse

import pytest

from ctl.discovery import UsageError
from ctl.exec import exec_url, exit_code, split_command
from ctl.logs import parse_duration


def test_url_carries_command_and_streams():
    url = exec_url("https://127.0.0.1:6443", "/api/v1/namespaces/d/pods/p/exec", ["sh", "-c", "echo hi"],
                   container="app", stdin=True, tty=False)
    base, _, query = url.partition("?")
    assert base == "wss://127.0.0.1:6443/api/v1/namespaces/d/pods/p/exec"
    assert urllib.parse.parse_qsl(query) == [("command", "sh"), ("command", "-c"), ("command", "echo hi"),
                                             ("container", "app"), ("stdout", "true"), ("stdin", "true"),
                                             ("stderr", "true")]
    tty = exec_url("http://h", "/p", ["sh"], container="c", stdin=True, tty=True)
    assert tty.startswith("ws://h/p?") and "stderr" not in tty and "tty=true" in tty


@pytest.mark.parametrize("status, code, message", [
    ({"metadata": {}, "status": "Success"}, 0, None),
    (None, 0, None),
    ({"status": "Failure", "reason": "NonZeroExitCode",
      "details": {"causes": [{"reason": "ExitCode", "message": "42"}]}}, 42, "command terminated with exit code 42"),
    ({"status": "Failure", "reason": "InternalError", "message": "no such file"}, 1, "error: no such file"),
])
def test_exit_code_from_the_error_channel(status, code, message):
    assert exit_code(status) == (code, message)


def test_flags_between_pod_and_double_dash_are_ours():
    args = argparse.Namespace(exec_command=["-c", "side", "-i", "-n", "prod", "--", "ls", "-l"], container=None,
                              stdin=False, tty=False, quiet=False, namespace=None)
    assert split_command(args) == ["ls", "-l"]
    assert (args.container, args.stdin, args.namespace) == ("side", True, "prod")
    with pytest.raises(UsageError, match="at least one command"):
        split_command(argparse.Namespace(exec_command=["--"]))


@pytest.mark.parametrize("text, seconds", [("10s", 10), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25)])
def test_since_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "5x", "1h 2m"])
def test_bad_durations(text):
    with pytest.raises(UsageError, match="invalid duration"):
        parse_duration(text)
