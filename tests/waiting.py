"""One way for tests to wait: on the condition itself, never a fixed sleep.

The check runs at once and then at growing intervals (10 ms up to ``longest``): a fast machine returns within
milliseconds, a loaded one still gets the whole ``timeout``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float = 60, what: str = "", longest: float = 0.2) -> T:
    """The condition's first truthy value; AssertionError naming ``what`` if it stays falsy for ``timeout`` s."""
    deadline = time.monotonic() + timeout
    pause = 0.01
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what or condition}")
        time.sleep(pause)
        pause = min(pause * 1.5, longest)


async def until(condition: Callable[[], T], timeout: float = 60, what: str = "", longest: float = 0.2) -> T:
    """:func:`wait_until` inside a running event loop: waits with ``asyncio.sleep`` so the loop's own work (callbacks,
    tasks) goes on meanwhile."""
    deadline = time.monotonic() + timeout
    pause = 0.01
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what or condition}")
        await asyncio.sleep(pause)
        pause = min(pause * 1.5, longest)
