"""Restart and image-pull backoff, as the kubelet's flowcontrol.Backoff does it.

One entry per key (pod uid + container name). The first restart after a crash is immediate and arms the
backoff at `base`; a container that exits again within the current delay of its finish time waits out the
rest of that delay (CrashLoopBackOff), and every restart doubles the delay up to `cap` (10 s → 5 min in
Kubernetes). A container that ran at least `reset_after` (10 min) before it died starts over at `base`,
and an entry untouched for twice the cap is forgotten.

The class is plain state with the clock passed in: `remaining(...)` answers "how long must this key still
wait", `restarted(...)` records that a restart happened. Nothing here sleeps.
"""
from __future__ import annotations

from dataclasses import dataclass

BASE = 10.0
CAP = 300.0
RESET_AFTER = 600.0


@dataclass
class Entry:
    delay: float
    updated: float   # epoch seconds of the last restart


class Backoff:
    def __init__(self, base: float = BASE, cap: float = CAP, reset_after: float = RESET_AFTER) -> None:
        self.base, self.cap, self.reset_after = base, cap, reset_after
        self.entries: dict[str, Entry] = {}

    def _live(self, key: str, now: float) -> Entry | None:
        entry = self.entries.get(key)
        if entry is not None and now - entry.updated > 2 * self.cap:
            del self.entries[key]
            return None
        return entry

    def remaining(self, key: str, since: float, now: float) -> float:
        """Seconds `key` must still wait when its last failure happened at `since` (0 = go ahead)."""
        entry = self._live(key, now)
        if entry is None:
            return 0.0
        return max(0.0, since + entry.delay - now)

    def restarted(self, key: str, now: float, ran_for: float | None = None) -> None:
        """Record a restart; `ran_for` is how long the previous incarnation ran (long runs reset the delay)."""
        entry = self._live(key, now)
        if entry is None or (ran_for is not None and ran_for >= self.reset_after):
            self.entries[key] = Entry(self.base, now)
        else:
            self.entries[key] = Entry(min(entry.delay * 2, self.cap), now)

    def current(self, key: str) -> float:
        entry = self.entries.get(key)
        return entry.delay if entry else 0.0

    def forget(self, prefix: str) -> None:
        """Drop every entry whose key starts with `prefix` (a pod uid when the pod goes away)."""
        for key in [k for k in self.entries if k.startswith(prefix)]:
            del self.entries[key]
