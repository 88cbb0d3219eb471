"""Small asyncio helpers every component's loops use."""
from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait for `event` at most `timeout` seconds; True if it is set.

    Loops use this instead of `asyncio.wait_for(event.wait(), t)`: on Python 3.11 wait_for can swallow
    a cancellation that arrives just as the event fires, and a loop that goes round again then never
    stops."""
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
        return True
    except TimeoutError:
        return False
