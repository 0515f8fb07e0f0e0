"""What the server keeps on disk is bounded three ways — age, count and bytes — with the oldest going first: finished
jobs' takes (:mod:`ttag_tui.server.jobs`) and uploads (:mod:`ttag_tui.server.uploads`) alike."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

Item = TypeVar("Item")


def to_drop(
    oldest_first: Sequence[Item],
    *,
    age_s: Callable[[Item], float],
    size_bytes: Callable[[Item], int],
    keep: int,
    keep_bytes: int,
    keep_s: float,
) -> list[Item]:
    """The items to let go: those older than ``keep_s``, then the oldest of the rest until at most ``keep`` items and
    ``keep_bytes`` remain."""
    kept = [item for item in oldest_first if age_s(item) <= keep_s]
    dropped = [item for item in oldest_first if age_s(item) > keep_s]
    stored = sum(size_bytes(item) for item in kept)
    while kept and (len(kept) > keep or stored > keep_bytes):
        oldest = kept.pop(0)
        stored -= size_bytes(oldest)
        dropped.append(oldest)
    return dropped
