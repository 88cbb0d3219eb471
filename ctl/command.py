"""The shape of one verb: its name, one-line help, its flags and what it does.

`run(args, session)` returns the exit code; failures it does not handle itself (a Status from the
server, a usage error) propagate to ctl/cmd.py, which prints them as kubectl does.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[Any, Any], int]
