"""One way for tests to wait: on the condition itself, never a fixed sleep.

The check runs at once and then at growing intervals (10 ms up to ``longest``): a fast machine returns within
milliseconds, a loaded one still gets the whole ``timeout``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Generator
from typing import TypeVar

T = TypeVar("T")


def _pauses(condition: Callable[[], T], timeout: float, what: str, longest: float) -> Generator[float, None, T]:
    """Check at once, then again after each pause this yields; the condition's first truthy value is the return value
    (AssertionError naming ``what`` once ``timeout`` s have passed). The one loop behind both waits below."""
    deadline = time.monotonic() + timeout
    pause = 0.01
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what or condition}")
        yield pause
        pause = min(pause * 1.5, longest)
    return value


def wait_until(condition: Callable[[], T], timeout: float = 60, what: str = "", longest: float = 0.2) -> T:
    """The condition's first truthy value; AssertionError naming ``what`` if it stays falsy for ``timeout`` s."""
    pauses = _pauses(condition, timeout, what, longest)
    while True:
        try:
            time.sleep(next(pauses))
        except StopIteration as done:
            return done.value


async def until(condition: Callable[[], T], timeout: float = 60, what: str = "", longest: float = 0.2) -> T:
    """:func:`wait_until` inside a running event loop: waits with ``asyncio.sleep`` so the loop's own work (callbacks,
    tasks) goes on meanwhile."""
    pauses = _pauses(condition, timeout, what, longest)
    while True:
        try:
            await asyncio.sleep(next(pauses))
        except StopIteration as done:
            return done.value
