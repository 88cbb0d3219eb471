"""Small asyncio helpers every component's loops use."""
from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


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


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` on uvloop when it is installed (it comes with uvicorn[standard]): its event loop
    and TLS transport cost a component a fraction of the default loop's CPU per request."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
