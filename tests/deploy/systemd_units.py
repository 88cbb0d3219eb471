"""Reading systemd unit and env files the way systemd does, to run a unit's ExecStart without systemd.

Only what deploy/systemd uses: `[Section]` / `Key=Value` with `\\` continuations, EnvironmentFile=
(`KEY=VALUE`, `#` comments, optional quotes), and ExecStart= word splitting with systemd's variable
rules: `${VAR}` is replaced inside its word, a word that is exactly `$VAR` becomes the value split on
whitespace (zero or more words).
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

WORD_VAR = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")
BRACED_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """{section: [(key, value), ...]} in file order (a key may repeat)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    pending = ""
    for raw in path.read_text().splitlines():
        line = pending + raw.strip() if pending else raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections.setdefault(current, [])
            continue
        key, _, value = line.partition("=")
        sections[current].append((key.strip(), value.strip()))
    return sections


def unit_value(unit: dict[str, list[tuple[str, str]]], section: str, key: str, default: str | None = None) -> str | None:
    values = [v for k, v in unit.get(section, []) if k == key]
    return values[-1] if values else default


def parse_env_file(path: Path) -> dict[str, str]:
    env = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path}: not KEY=VALUE: {raw!r}"
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        env[key.strip()] = value
    return env


def expand_exec(cmdline: str, env: dict[str, str]) -> list[str]:
    """ExecStart= after systemd's substitution of the EnvironmentFile's variables."""
    argv: list[str] = []
    for word in shlex.split(cmdline):
        whole = WORD_VAR.match(word)
        if whole:
            argv += env.get(whole.group(1), "").split()
        else:
            argv.append(BRACED_VAR.sub(lambda m: env.get(m.group(1), ""), word))
    return argv


def referenced_vars(cmdline: str) -> set[str]:
    return set(BRACED_VAR.findall(cmdline)) | {m.group(1) for w in shlex.split(cmdline) if (m := WORD_VAR.match(w))}
