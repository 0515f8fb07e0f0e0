"""Errors any :class:`~ttag_tui.backend.Backend` may raise from ``submit``, so front ends answer them one way."""

from __future__ import annotations


class BackendBusy(Exception):
    """The backend turned the job away because it is full (a cluster's queues); retry after ``retry_after`` seconds.

    The server answers it like its own full queue: 503 with Retry-After.
    """

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after
