"""The server's link to a Ray cluster, kept in a child process so that losing the cluster never ends the server.

A Ray driver cannot outlive its cluster's head: after ~60 s without it Ray ends the driver's process, and a driver that
meets a restarted head aborts (``WrongClusterID``). ``ttag server --cluster`` therefore holds its
:class:`~ttag_tui.backend.cluster.ClusterBackend` in a child process and talks to it over a pipe, in the job stream's
own items (:func:`~ttag_tui.backend.cluster.to_wire` / :class:`~ttag_tui.backend.cluster.WireReader`).

- When the child dies, or the head stops answering for ``down_after_s``, the jobs in flight fail in one line, the
  child is ended, ``/api/health`` says the cluster is down, and new jobs get 503 with Retry-After.
- Meanwhile a fresh child tries to join every ``retry_s``; once the head is back (and has nodes to run on) it deploys
  ttag's application again and jobs run as before, with no restart of the server.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from runners.registry import Registry
from runners.request import GenerationRequest
from ttag_tui.backend.cluster import (
    NODES_FRESH_S,
    ClusterBase,
    ClusterSettings,
    ClusterUnavailable,
    WireReader,
    to_wire,
)
from ttag_tui.backend.errors import BackendBusy
from ttag_tui.backend.events import Job

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from ttag_tui.config import Config

ANSWER_S = 10.0  # how long a question to the child (admission, nodes) may take before the child counts as stuck
START_S = 180.0  # joining the cluster and deploying ttag's application there (Ray and Serve start-up on a busy box)


@dataclass(frozen=True)
class LinkSettings:
    down_after_s: float = 10.0  # the head silent this long: the link is cut and rebuilt
    retry_s: float = 3.0  # between attempts to join again
    watch_s: float = 2.0  # how often the link asks after the head


class ClusterLink(ClusterBase):
    """A :class:`Backend` that runs jobs on a Ray cluster through a child process it restarts when the cluster is
    lost (see the module's docstring). Opening it waits for the first join: an unreachable head is one line."""

    def __init__(
        self,
        registry: Registry,
        config: Config,
        settings: ClusterSettings | None = None,
        link: LinkSettings | None = None,
    ) -> None:
        self._registry = registry
        self.config = config
        self.settings = settings or ClusterSettings(address=config.cluster or "auto")
        self.link = link or LinkSettings()
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._jobs: dict[str, WireReader] = {}
        self._answers: dict[int, tuple[threading.Event, list[Any]]] = {}
        self._questions = itertools.count()
        self._child: tuple[BaseProcess, Connection] | None = None
        self._down_reason = "not joined yet"
        self._down_since: float | None = None
        self._nodes: tuple[float, dict[str, Any]] | None = None
        self._closed = threading.Event()
        self.joins = 0  # how many times a child joined the cluster (1 until the first loss)
        self._start_child()  # the first join is the caller's: ClusterUnavailable propagates
        self._watcher = threading.Thread(target=self._watch, name="ttag-cluster-link", daemon=True)
        self._watcher.start()

    # -- Backend ------------------------------------------------------------------------------------------------------
    def submit(self, request: GenerationRequest, *, stream: bool = False) -> Job:
        """Hand the job to the cluster; raises :class:`BackendBusy` when the cluster is full or down."""
        job = self.new_job(request, stream)
        with self._lock:
            last_seen = self._nodes[1] if self._nodes is not None else {}
            if self._child is None or last_seen.get("state") == "down":  # cut, or its head went silent
                raise BackendBusy(self._down_message(last_seen.get("reason")), retry_after=int(self.link.retry_s) + 2)
            self._jobs[job.id] = WireReader(job)
        job.attach(self._cancel)
        try:
            refusal = self._ask(("submit", job.id, request.to_dict(), stream))
        except ClusterUnavailable as exc:  # lost while handing it over
            refusal = (str(exc), int(self.link.retry_s) + 2)
        if refusal is not None:
            message, retry_after = refusal
            with self._lock:
                self._jobs.pop(job.id, None)
            job.fail("busy", message)
            raise BackendBusy(message, retry_after=retry_after)
        return job

    def nodes(self, fresh: bool = False) -> dict[str, Any]:
        """The cluster's nodes as the child sees them (``/api/health?detail=true``), or that it is down and why.
        The last answer serves for a second (and tells ``submit`` whether the head is silent) unless ``fresh``."""
        with self._lock:
            if not fresh and self._nodes is not None and time.monotonic() - self._nodes[0] <= NODES_FRESH_S:
                return self._nodes[1]
        base = {"address": self.settings.address, "joins": self.joins}
        try:
            state = {**base, **self._ask(("nodes",))}
        except ClusterUnavailable as exc:
            state = {**base, "state": "down", "reason": str(exc), "nodes": []}
        with self._lock:
            self._nodes = (time.monotonic(), state)
        return state

    def close(self) -> None:
        self._closed.set()
        self._cut("the server is shutting down", ask_to_close=True)
        if self._watcher.is_alive():
            self._watcher.join(10)

    # -- the child ----------------------------------------------------------------------------------------------------
    def _start_child(self) -> None:
        """Start a child and wait for it to join; ClusterUnavailable (one line) when it cannot."""
        context = multiprocessing.get_context("spawn")  # never fork a process that has threads (uvicorn, ours)
        ours, theirs = context.Pipe()
        process = context.Process(
            target=_child_main,
            args=(theirs, self._registry, self.config, self.settings),
            name="ttag-cluster-driver",
            daemon=True,
        )
        process.start()
        theirs.close()
        try:
            joined = ours.poll(START_S)
            kind, detail = ours.recv() if joined else ("error", f"joining took over {START_S:g} s")
        except (EOFError, OSError):
            kind, detail = "error", "the process joining it ended"
        if kind != "ready":
            process.kill()
            process.join(10)
            ours.close()
            raise ClusterUnavailable(
                detail if joined else f"cannot join the Ray cluster at {self.settings.address}: {detail}"
            )
        with self._lock:
            self._child = (process, ours)
            self._down_since = None
            self._nodes = None
            self.joins += 1
        threading.Thread(target=self._read, args=(ours,), name="ttag-cluster-reader", daemon=True).start()

    def _read(self, connection: Connection) -> None:
        """Route the child's messages: job items to their jobs, answers to the waiting question."""
        while True:
            try:
                message = connection.recv()
            except (EOFError, OSError):
                break
            kind = message[0]
            if kind == "item":
                _, job_id, item = message
                with self._lock:
                    reader = self._jobs.get(job_id)
                if reader is not None and reader.feed(item):
                    with self._lock:
                        self._jobs.pop(job_id, None)
            elif kind == "answer":
                _, question, value = message
                with self._lock:
                    waiting = self._answers.pop(question, None)
                if waiting is not None:
                    waiting[1].append(value)
                    waiting[0].set()
        self._cut(f"lost the process that links to the Ray cluster at {self.settings.address}", only=connection)

    def _ask(self, question: tuple[Any, ...]) -> Any:
        """Send a question and wait for its answer; ClusterUnavailable when the child is gone or stuck."""
        number = next(self._questions)
        answered, value = threading.Event(), list[Any]()
        with self._lock:
            child = self._child
            if child is None:
                raise ClusterUnavailable(self._down_message())
            self._answers[number] = (answered, value)
        try:
            with self._send_lock:
                child[1].send((question[0], number, *question[1:]))
        except (OSError, ValueError):
            pass  # the reader sees the pipe close and cuts the link; the wait below ends then
        if not answered.wait(ANSWER_S) or not value:
            with self._lock:
                self._answers.pop(number, None)
            raise ClusterUnavailable(self._down_message())
        result = value[0]
        if isinstance(result, ClusterUnavailable):
            raise result
        return result

    def _cancel(self, job: Job) -> None:
        with self._lock:
            child = self._child
        if child is not None:
            with contextlib.suppress(OSError, ValueError), self._send_lock:
                child[1].send(("cancel", job.id))

    def _cut(self, reason: str, ask_to_close: bool = False, only: Connection | None = None) -> None:
        """End the child (if any; ``only``: if it is still the one on that pipe), fail its jobs and answer its
        questions with the reason."""
        with self._lock:
            child = self._child
            if child is None or (only is not None and child[1] is not only):
                return
            self._child = None
            jobs, self._jobs = self._jobs, {}
            answers, self._answers = self._answers, {}
            self._down_reason = reason
            self._down_since = time.monotonic()
            self._nodes = None
        process, connection = child
        if ask_to_close:
            with contextlib.suppress(OSError, ValueError), self._send_lock:
                connection.send(("close", -1))
            process.join(30)
        if process.is_alive():
            process.kill()
            process.join(10)
        connection.close()
        for reader in jobs.values():
            reader.job.fail("cluster", f"{reason}; the job was lost with it, try again")
        for answered, value in answers.values():
            value.append(ClusterUnavailable(self._down_message()))
            answered.set()

    def _down_message(self, reason: str | None = None) -> str:
        return (
            f"the Ray cluster at {self.settings.address} is down ({reason or self._down_reason}); "
            "ttag reconnects when its head is back"
        )

    def _watch(self) -> None:
        """Ask after the head while linked; cut a link whose head has been silent too long; rejoin when cut."""
        silent_since: float | None = None
        while not self._closed.wait(self.link.watch_s):
            with self._lock:
                linked = self._child is not None
            if linked:
                state = self.nodes(fresh=True)
                if state["state"] == "up":
                    silent_since = None
                    continue
                silent_since = silent_since or time.monotonic()
                if time.monotonic() - silent_since >= self.link.down_after_s:
                    self._cut(f"its head has not answered for {self.link.down_after_s:g} s: {state.get('reason', '')}")
                    silent_since = None
                continue
            if self._closed.wait(self.link.retry_s):
                return
            try:
                self._start_child()
            except ClusterUnavailable as exc:
                with self._lock:
                    self._down_reason = str(exc)


def _child_main(connection: Connection, registry: Registry, config: Config, settings: ClusterSettings) -> None:
    """The child: join the cluster, say so, then serve the parent's questions until told to close or orphaned."""
    from ttag_tui.backend.cluster import ClusterBackend

    try:
        backend = ClusterBackend(registry, config, settings)
    except Exception as exc:  # one line for the parent, whatever Ray said
        connection.send(("error", str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__))
        return
    connection.send(("ready", None))
    send_lock = threading.Lock()
    jobs: dict[str, Job] = {}

    def send(message: tuple[Any, ...]) -> None:
        with contextlib.suppress(OSError, ValueError), send_lock:
            connection.send(message)

    def run(number: int, job_id: str, request: dict[str, Any], stream: bool) -> None:
        try:
            job = backend.submit(GenerationRequest.from_dict(request), stream=stream)
        except BackendBusy as exc:
            send(("answer", number, (str(exc), exc.retry_after)))
            return
        jobs[job_id] = job
        send(("answer", number, None))
        try:
            for event in job.events():
                for item in to_wire(event):
                    send(("item", job_id, item))
        finally:
            jobs.pop(job_id, None)

    try:
        while True:
            try:
                message = connection.recv()
            except (EOFError, OSError):
                return  # the server is gone: nothing to link to
            kind, number, *rest = message
            if kind == "submit":
                threading.Thread(target=run, args=(number, *rest), daemon=True).start()
            elif kind == "cancel":
                job = jobs.get(number)  # a cancel carries the job's id where questions carry a number
                if job is not None:
                    job.cancel()
            elif kind == "nodes":
                threading.Thread(target=lambda n=number: send(("answer", n, backend.nodes())), daemon=True).start()
            elif kind == "close":
                return
    finally:
        with contextlib.suppress(Exception):
            backend.close()
