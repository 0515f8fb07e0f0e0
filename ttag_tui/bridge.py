"""The model bridge: runs generation jobs in runner worker processes, never in this process.

One :class:`WorkerHandle` per runner entry point owns a child process (``python -m runners.worker``), started on first
use with the runner's configured interpreter, and feeds it one job at a time from its queue. Its model stays loaded
between jobs. A worker that crashes, is killed or does not stop within ``cancel_grace_s`` of a cancel turns into a
failed job; the next job gets a fresh worker.

Each request becomes a :class:`~ttag_tui.backend.events.Job` whose events the worker's messages produce; the
:class:`Bridge` is the local :class:`~ttag_tui.backend.Backend`.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runners.contract import Clip, RunnerSettings
from runners.protocol import PROTOCOL_VERSION, ProtocolError, read_message, write_message
from runners.registry import Availability, ModelSpec, Registry, probe_availability
from runners.request import GenerationRequest
from ttag_tui.backend import Backend
from ttag_tui.backend.events import Job
from ttag_tui.config import Config
from ttag_tui.runner_envs import managed_interpreters, worker_path_dir

HELLO_TIMEOUT_S = 180.0


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "the worker stopped answering"
    if code < 0:
        try:
            return f"the worker was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"the worker was killed by signal {-code}"
    return f"the worker exited with code {code}"


class WorkerHandle:
    """One runner's worker process and the queue of jobs waiting for it."""

    def __init__(
        self,
        runner: str,
        interpreter: str,
        settings: dict[str, Any],
        cancel_grace_s: float,
        environment: dict[str, str] | None = None,
    ) -> None:
        self.runner = runner
        self.environment = environment or {}
        self.interpreter = interpreter
        self.settings = settings
        self.cancel_grace_s = cancel_grace_s
        self.process: subprocess.Popen[bytes] | None = None
        self.current: Job | None = None
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=40)
        self.loaded_models: set[str] = set()
        self._queue: collections.deque[Job] = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._write_lock = threading.Lock()
        self._hello = threading.Event()
        self._reader: threading.Thread | None = None
        self._fatal: tuple[str, str] | None = None
        self._closed = False
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name=f"ttag-dispatch-{runner}", daemon=True)
        self._dispatcher.start()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process and self.process.poll() is None else None

    @property
    def queued(self) -> int:
        with self._lock:
            return len(self._queue)

    def submit(self, job: Job) -> None:
        job.attach(self.cancel)
        with self._wake:
            self._queue.append(job)
            self._wake.notify()

    def cancel(self, job: Job) -> None:
        with self._wake:
            if job in self._queue:
                self._queue.remove(job)
                job.fail("cancelled", "cancelled before it started")
                return
            running = job is self.current
        if running:
            self._send({"type": "cancel", "job": job.id})
            timer = threading.Timer(self.cancel_grace_s, self._kill_if_still_running, args=(job,))
            timer.daemon = True
            timer.start()

    def send_unload(self, model: str | None) -> None:
        if self.pid is not None:
            self._send({"type": "unload", "model": model})

    def close(self) -> None:
        with self._wake:
            self._closed = True
            pending = list(self._queue)
            self._queue.clear()
            self._wake.notify()
        for job in pending:
            job.fail("cancelled", "ttag is shutting down")
        process = self.process
        if process is None or process.poll() is not None:
            return
        running = self.current
        if running is not None and not running.finished:
            running.cancel_requested = True  # so a kill below reads as a cancel, not a crash
            self._send({"type": "cancel", "job": running.id})
        self._send({"type": "shutdown"})
        try:
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    # -- internals ---------------------------------------------------------------------------------------------
    def _send(self, header: dict[str, Any]) -> None:
        process = self.process
        if process is None or process.stdin is None:
            return
        try:
            with self._write_lock:
                write_message(process.stdin, header)
        except (BrokenPipeError, OSError, ValueError):
            pass  # the reader thread reports the dead worker

    def _kill_if_still_running(self, job: Job) -> None:
        process = self.process
        if job.finished or job is not self.current or process is None:
            return
        process.kill()
        process.wait()
        job.fail("cancelled", f"cancelled; the worker did not stop within {self.cancel_grace_s:g} s and was killed")

    def _start(self) -> None:
        env = {**os.environ, **self.environment}
        if os.path.abspath(self.interpreter) != os.path.abspath(sys.executable):
            # Another interpreter (a runner's own venv) reaches ttag's runner code, and nothing else of this
            # environment, through a folder that holds only the `runners` package; and not the cwd, which `-m` would
            # put first (a `runners` or `torch` folder there would win). This interpreter finds `runners` anyway.
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(worker_path_dir()), env.get("PYTHONPATH")) if p)
            env["PYTHONSAFEPATH"] = "1"
        env.setdefault("PYTHONUNBUFFERED", "1")
        self._hello.clear()
        self._fatal = None
        self.loaded_models.clear()
        command = [
            self.interpreter,
            "-m",
            "runners.worker",
            "--runner",
            self.runner,
            "--settings",
            json.dumps(self.settings),
        ]
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,  # a Ctrl-C in the terminal reaches the app, which cancels; not the worker
        )
        self._reader = threading.Thread(target=self._read_loop, args=(self.process,), daemon=True)
        self._reader.start()
        threading.Thread(target=self._drain_stderr, args=(self.process,), daemon=True).start()

    def _ensure_started(self) -> tuple[str, str] | None:
        """Start the worker if it is not running; a (kind, message) when it cannot serve."""
        if self.process is None or self.process.poll() is not None:
            try:
                self._start()
            except OSError as exc:
                return "missing_dependency", f"cannot start the runner's Python {self.interpreter}: {exc}"
        deadline = time.monotonic() + HELLO_TIMEOUT_S
        while not self._hello.wait(0.05):
            if self._fatal:
                return self._fatal
            if self.process.poll() is not None:
                if self._reader is not None:
                    self._reader.join(timeout=2)  # it may still hold the worker's last words (a fatal message)
                return self._fatal or (
                    "crashed",
                    f"{_describe_exit(self.process.returncode)} while starting" + self._stderr_hint(),
                )
            if time.monotonic() > deadline:
                self.process.kill()
                return "crashed", f"the worker did not start within {HELLO_TIMEOUT_S:g} s"
        return None

    def _stderr_hint(self) -> str:
        lines = [line for line in self.stderr_tail if line.strip()]
        return f" ({lines[-1].strip()})" if lines else ""

    def _dispatch_loop(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._queue or self._closed)
                if self._closed:
                    return
                job = self._queue.popleft()
                self.current = job
            problem = self._ensure_started()
            if problem:
                job.fail(*problem)
            elif job.cancel_requested:
                job.fail("cancelled", "cancelled before it started")
            else:
                job.start()
                self._send(
                    {
                        "type": "generate",
                        "job": job.id,
                        "spec": job.spec.to_dict(),
                        "request": job.request.to_dict(),
                        "stream": job.stream,
                    }
                )
                job.wait_finished()
            with self._wake:
                self.current = None

    def _read_loop(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        reason = ""
        try:
            while (item := read_message(process.stdout)) is not None:
                if self.process is process:
                    self._route(*item)
        except ProtocolError as exc:
            reason = f" (bad message: {exc})"
            process.kill()
        process.wait()
        if self.process is not process:
            return  # an old worker, already replaced
        self.loaded_models.clear()
        job = self.current
        # A worker that died before its hello is reported by _ensure_started (with its fatal message, if any).
        if job is not None and not job.finished and self._hello.is_set():
            kind = "cancelled" if job.cancel_requested else "crashed"
            job.fail(kind, f"{_describe_exit(process.returncode)}{reason}{self._stderr_hint()}")

    def _route(self, header: dict[str, Any], audio: np.ndarray | None) -> None:
        kind = header["type"]
        if kind == "hello":
            if header.get("protocol") != PROTOCOL_VERSION:
                self._fatal = ("internal", f"worker speaks protocol {header.get('protocol')}, ttag {PROTOCOL_VERSION}")
            self._hello.set()
            return
        if kind == "fatal":
            self._fatal = (header.get("kind", "internal"), header.get("message", "the worker failed to start"))
            return
        if kind == "unloaded":
            self.loaded_models.discard(header.get("model"))
            return
        job = self.current
        if job is None or header.get("job") != job.id:
            return
        if kind == "progress":
            if header["phase"] != "loading":
                self.loaded_models.add(job.spec.id)
            job.progress(header["phase"], int(header["step"]), int(header["total"]))
        elif kind == "chunk" and audio is not None:
            job.chunk(int(header["take"]), int(header["start"]), audio, int(header["sample_rate"]))
        elif kind == "clip" and audio is not None:
            metadata = header.get("metadata", {})
            job.add_clip(Clip(audio=audio, sample_rate=int(metadata["sample_rate"]), metadata=metadata))
        elif kind == "done":
            self.loaded_models.add(job.spec.id)
            job.done(header.get("timings", {}))
        elif kind == "error":
            job.fail(header.get("kind", "internal"), header.get("message", "the runner failed"))

    def _drain_stderr(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stderr is not None
        for raw in process.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.stderr_tail.append(line)
            if os.environ.get("TTAG_WORKER_LOG") == "stderr":
                print(f"[worker {self.runner}] {line}", file=sys.stderr)


@dataclass
class BridgeSettings:
    runner: RunnerSettings = field(default_factory=RunnerSettings)
    idle_unload_s: float = 600.0
    cancel_grace_s: float = 5.0
    interpreters: dict[str, str] = field(default_factory=dict)  # runner name → python executable
    # Runner-specific settings from the config, which workers read from their environment (they never read config).
    worker_environment: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Config) -> BridgeSettings:
        runner = RunnerSettings(
            device=config.device, dtype=config.dtype, threads=config.threads, cache_dir=config.cache_dir or None
        )
        # A runner with a ttag-managed environment (`ttag runners setup NAME`) uses it unless one is configured.
        interpreters = {**managed_interpreters(), **config.interpreters}
        environment = {"TTAG_MUSICGEN_DECODER": config.musicgen_decoder}
        return cls(runner, config.idle_unload_s, config.cancel_grace_s, interpreters, environment)


class Bridge(Backend):
    """Submit validated requests; each runs in its runner's worker process."""

    def __init__(self, registry: Registry, settings: BridgeSettings | None = None) -> None:
        self._registry = registry
        self.settings = settings or BridgeSettings()
        self._handles: dict[str, WorkerHandle] = {}
        self._lock = threading.Lock()

    def registry(self) -> Registry:
        return self._registry

    def interpreter_for(self, spec: ModelSpec) -> str:
        return self.settings.interpreters.get(spec.runner_name) or sys.executable

    def availability(self, spec: ModelSpec) -> Availability:
        """Whether the model can run here: its worker's environment and its weights (nothing is imported)."""
        return probe_availability(
            spec, interpreter=self.settings.interpreters.get(spec.runner_name), cache_dir=self.settings.runner.cache_dir
        )

    def handle_for(self, spec: ModelSpec) -> WorkerHandle:
        with self._lock:
            handle = self._handles.get(spec.runner)
            if handle is None:
                settings = {**self.settings.runner.__dict__, "idle_unload_s": self.settings.idle_unload_s}
                handle = WorkerHandle(
                    spec.runner,
                    self.interpreter_for(spec),
                    settings,
                    self.settings.cancel_grace_s,
                    self.settings.worker_environment,
                )
                self._handles[spec.runner] = handle
            return handle

    def submit(self, request: GenerationRequest, *, stream: bool = False) -> Job:
        """Queue a request (validated, seed resolved); returns at once."""
        job = self.new_job(request, stream)
        self.handle_for(job.spec).submit(job)
        return job

    def generate(self, request: GenerationRequest, timeout: float | None = None) -> list[Clip]:
        return self.submit(request).result(timeout)

    def loaded_models(self) -> list[str]:
        with self._lock:
            return sorted(m for h in self._handles.values() for m in h.loaded_models)

    def unload(self, model: str | None = None) -> None:
        with self._lock:
            handles = list(self._handles.values())
        for handle in handles:
            handle.send_unload(model)

    def close(self) -> None:
        with self._lock:
            handles = list(self._handles.values())
            self._handles.clear()
        for handle in handles:
            handle.close()
