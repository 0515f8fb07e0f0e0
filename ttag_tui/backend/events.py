"""Job events, job states and the :class:`Job` record: one declaration shared by every backend and every front end.

A backend (local worker processes, a ttag server, a cluster) runs a job and reports what happens through the job's
producer methods (``start``, ``progress``, ``chunk``, ``add_clip``, ``done``, ``fail``); the TUI, CLI and server read
the same events with :meth:`Job.events` / :meth:`Job.aevents` and fold them into a :class:`JobStatus` with
:func:`fold` — the one place that decides, for instance, that a failure of kind ``cancelled`` means *cancelled*.
"""

from __future__ import annotations

import functools
import itertools
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING

from runners.contract import Clip
from runners.registry import ModelSpec
from runners.request import GenerationRequest
from ttag_tui import __version__

if TYPE_CHECKING:  # audio arrives as arrays, but nothing here makes one: numpy stays off the CLI's way to its worker
    import numpy as np


@dataclass(frozen=True)
class Started:
    job_id: str


@dataclass(frozen=True)
class Progress:
    job_id: str
    phase: str
    step: int
    total: int
    eta_s: float | None  # seconds left in this phase, once two steps have been timed


@dataclass(frozen=True)
class Chunk:
    job_id: str
    take: int
    start: int
    audio: np.ndarray
    sample_rate: int


@dataclass(frozen=True)
class ClipReady:
    job_id: str
    clip: Clip


@dataclass(frozen=True)
class Done:
    job_id: str
    clips: list[Clip]
    timings: dict[str, float]


@dataclass(frozen=True)
class Failed:
    job_id: str
    kind: str  # cancelled, crashed, missing_dependency, missing_weights, bad_checkpoint, out_of_memory, internal, ...
    message: str


Event = Started | Progress | Chunk | ClipReady | Done | Failed


class JobFailed(Exception):
    """A job that failed or was cancelled; ``clips``: the takes it finished before that, which stay delivered."""

    def __init__(self, kind: str, message: str, clips: list[Clip] | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.clips = clips or []


_job_ids = itertools.count(1)


def _in_take_order(clips: list[Clip]) -> list[Clip]:
    return sorted(clips, key=lambda c: c.metadata.get("take", 0))


class Job:
    """One request in flight. Its events are kept in order; any number of readers can follow them."""

    def __init__(self, request: GenerationRequest, spec: ModelSpec, stream: bool) -> None:
        self.id = f"job-{os.getpid()}-{next(_job_ids)}"
        self.request = request
        self.spec = spec
        self.stream = stream
        self.cancel_requested = False
        self._canceller: Callable[[Job], None] | None = None
        self._history: list[Event] = []
        self._clips: list[Clip] = []
        self._cond = threading.Condition()
        self._wakers: list[Callable[[], None]] = []
        self._phase_clock: tuple[str, float, int] | None = None

    # -- state ---------------------------------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        with self._cond:
            return bool(self._history) and isinstance(self._history[-1], Done | Failed)

    @property
    def outcome(self) -> Done | Failed | None:
        with self._cond:
            last = self._history[-1] if self._history else None
        return last if isinstance(last, Done | Failed) else None

    def cancel(self) -> None:
        """Ask the job to stop. Queued: it never starts. Running: cooperative first, then the worker is killed."""
        if self.finished or self.cancel_requested:
            return
        self.cancel_requested = True
        if self._canceller is not None:
            self._canceller(self)

    # -- reading events ------------------------------------------------------------------------------------------
    def _has_event(self, index: int) -> bool:
        return len(self._history) > index

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        """Yield every event, from the first, until Done or Failed. ``timeout`` bounds each wait."""
        index = 0
        while True:
            with self._cond:
                if not self._cond.wait_for(functools.partial(self._has_event, index), timeout):
                    raise TimeoutError(f"{self.id}: no event within {timeout} s")
                event = self._history[index]
            index += 1
            yield event
            if isinstance(event, Done | Failed):
                return

    async def aevents(self) -> AsyncIterator[Event]:
        """The same events as :meth:`events`, awaited without blocking the event loop."""
        import asyncio  # here, not at the top: `ttag generate` never awaits, and asyncio is a sizeable import

        loop = asyncio.get_running_loop()
        ready = asyncio.Event()

        def wake() -> None:
            loop.call_soon_threadsafe(ready.set)

        with self._cond:
            self._wakers.append(wake)
        try:
            index = 0
            while True:
                ready.clear()
                with self._cond:
                    pending = self._history[index:]
                if not pending:
                    await ready.wait()
                    continue
                for event in pending:
                    index += 1
                    yield event
                    if isinstance(event, Done | Failed):
                        return
        finally:
            with self._cond:
                self._wakers.remove(wake)

    def result(self, timeout: float | None = None) -> list[Clip]:
        """Wait for the job; its clips, or :class:`JobFailed` with the takes finished before it failed."""
        for event in self.events(timeout):
            if isinstance(event, Failed):
                raise self._failure(event)
            if isinstance(event, Done):
                return event.clips
        raise AssertionError("unreachable")

    async def aresult(self) -> list[Clip]:
        async for event in self.aevents():
            if isinstance(event, Failed):
                raise self._failure(event)
            if isinstance(event, Done):
                return event.clips
        raise AssertionError("unreachable")

    def _failure(self, event: Failed) -> JobFailed:
        with self._cond:  # the clips whose ClipReady came before the end (none is added after it)
            clips = [e.clip for e in self._history if isinstance(e, ClipReady)]
        return JobFailed(event.kind, event.message, _in_take_order(clips))

    def wait_finished(self, timeout: float | None = None) -> bool:
        """Block until the job is over (True) or ``timeout`` passes (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: self.finished, timeout)

    # -- written by the backend that runs the job: the one way events are made ------------------------------------
    def attach(self, canceller: Callable[[Job], None]) -> None:
        """Say who stops this job: ``cancel`` calls ``canceller(job)`` (a worker handle, a remote server...)."""
        self._canceller = canceller

    def start(self) -> None:
        self._emit(Started(self.id))

    @property
    def started(self) -> bool:
        with self._cond:
            return bool(self._history)

    def chunk(self, take: int, start: int, audio: np.ndarray, sample_rate: int) -> None:
        self._emit(Chunk(self.id, take, start, audio, sample_rate))

    def _emit(self, event: Event) -> None:
        with self._cond:
            if self._history and isinstance(self._history[-1], Done | Failed):
                return  # already over (e.g. killed after a late message)
            self._history.append(event)
            self._cond.notify_all()
            wakers = list(self._wakers)
        for wake in wakers:
            wake()

    def progress(self, phase: str, step: int, total: int) -> None:
        """A step of a phase; the ETA comes from the steps timed so far in this phase."""
        now = time.monotonic()
        if self._phase_clock is None or self._phase_clock[0] != phase:
            self._phase_clock = (phase, now, step)
        _, since, first_step = self._phase_clock
        eta = None
        if step > first_step:
            eta = (now - since) / (step - first_step) * max(total - step, 0)
        self._emit(Progress(self.id, phase, step, total, eta))

    def add_clip(self, clip: Clip) -> None:
        clip.metadata["ttag_version"] = __version__
        self._clips.append(clip)
        self._emit(ClipReady(self.id, clip))

    def done(self, timings: dict[str, float]) -> None:
        self._emit(Done(self.id, _in_take_order(self._clips), timings))

    def fail(self, kind: str, message: str) -> None:
        self._emit(Failed(self.id, kind, message))


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True)
class JobStatus:
    """Where a job stands, as its events so far say."""

    state: JobState = JobState.QUEUED
    phase: str | None = None
    step: int = 0
    total: int = 0
    eta_s: float | None = None
    takes_ready: int = 0
    error_kind: str | None = None
    error_message: str | None = None

    @property
    def error(self) -> dict[str, str] | None:
        if self.error_kind is None:
            return None
        return {"kind": self.error_kind, "message": self.error_message or self.error_kind}


def fold(status: JobStatus, event: Event) -> JobStatus:
    """The status after ``event``."""
    if isinstance(event, Started):
        return replace(status, state=JobState.RUNNING)
    if isinstance(event, Progress):
        return replace(status, phase=event.phase, step=event.step, total=event.total, eta_s=event.eta_s)
    if isinstance(event, ClipReady):
        return replace(status, takes_ready=status.takes_ready + 1)
    if isinstance(event, Done):
        return replace(status, state=JobState.DONE, takes_ready=len(event.clips))
    if isinstance(event, Failed):
        state = JobState.CANCELLED if event.kind == "cancelled" else JobState.FAILED
        return replace(status, state=state, error_kind=event.kind, error_message=event.message)
    return status
