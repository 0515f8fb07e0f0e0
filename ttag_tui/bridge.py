"""The model bridge: runs generation jobs in runner worker processes, never in this process.

One :class:`WorkerHandle` per runner entry point owns a child process (``python -m runners.worker``), started on first
use with the runner's configured interpreter, and feeds it one job at a time from its queue. Its model stays loaded
between jobs. A worker that crashes, is killed or does not stop within ``cancel_grace_s`` of a cancel turns into a
failed job; the next job gets a fresh worker.

Each request becomes a :class:`~ttag_tui.backend.events.Job` whose events the worker's messages produce; the
:class:`Bridge` is the local :class:`~ttag_tui.backend.Backend`.

Memory: the bridge's :class:`MemoryBook` knows every warm model across its workers, what each takes and which was used
least recently. Before a worker loads a model, the model's footprint (measured by an earlier load, else estimated from
its weights) must fit the device's budget: the least recently used idle models elsewhere are unloaded until it does,
and a model bigger than the whole budget is refused in one line before anything loads. A job that runs out of memory
is run once more after every other idle model on its device was unloaded.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runners.contract import Clip, RunnerSettings
from runners.memory import ram_available, ram_total
from runners.protocol import PROTOCOL_VERSION, ProtocolError, read_message, write_message
from runners.registry import Availability, ModelSpec, Registry, estimated_footprint, human_size, probe_availability
from runners.request import GenerationRequest
from ttag_tui.backend import Backend
from ttag_tui.backend.events import Job
from ttag_tui.config import Config
from ttag_tui.runner_envs import managed_interpreters, worker_path_dir, worker_variables

if TYPE_CHECKING:  # the worker starts before this process imports numpy (`ttag generate` loads it meanwhile)
    import numpy as np

HELLO_TIMEOUT_S = 180.0  # also how long a worker may take to answer a memory probe (which may import torch)
DEFAULT_RAM_SHARE = 0.75  # the budget on CPU and MPS when memory_budget_gb is not set: this share of the machine's RAM
UNLOAD_WAIT_S = 30.0  # how long making room waits for an idle worker to confirm an unload
PROGRESS_BAR = re.compile(r"\d+%\|")  # tqdm's "Loading weights:  42%|████      | 74/177 [00:00<00:00, 3623.19it/s]"


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
        memory: MemoryBook | None = None,
    ) -> None:
        self.runner = runner
        self.memory = memory or MemoryBook()
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
        self._start_lock = threading.Lock()  # one thread at a time checks whether a worker runs and starts one
        self._hello = threading.Event()
        self._reader: threading.Thread | None = None
        self._fatal: tuple[str, str] | None = None
        self._closed = False
        self._probed = threading.Event()
        self._probe_answer: dict[str, Any] = {}
        # The running attempt of the current job: set when it ended, or when it ran out of memory and may be retried.
        self._attempt_over = threading.Event()
        self._retry_on_oom = False
        self._delivered = False  # audio of the current attempt reached the job: a retry would send it twice
        self._admitted: Job | None = None  # the job whose model the memory book counts as in use, until released
        self._admitted_lock = threading.Lock()
        # Started by the first submit, after it spawned the worker: starting a thread waits until the thread runs,
        # which on a busy machine can take a scheduler slice or more that the worker's start need not wait for.
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name=f"ttag-dispatch-{runner}", daemon=True)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process and self.process.poll() is None else None

    @property
    def queued(self) -> int:
        with self._lock:
            return len(self._queue)

    def submit(self, job: Job) -> None:
        job.attach(self.cancel)
        self._start_serving()
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

    def probe(self, spec: ModelSpec) -> dict[str, Any] | tuple[str, str]:
        """Ask the running worker which device ``spec`` would load on and what is free there; a (kind, message) when
        it dies or does not answer."""
        self._probed.clear()
        self._send({"type": "probe", "spec": spec.to_dict()})
        deadline = time.monotonic() + HELLO_TIMEOUT_S
        while not self._probed.wait(0.05):
            process = self.process
            if process is None or process.poll() is not None:
                code = process.returncode if process is not None else None
                return "crashed", f"{_describe_exit(code)} while reading its memory{self._stderr_hint()}"
            if time.monotonic() > deadline:
                return "crashed", f"the worker did not say what memory it has within {HELLO_TIMEOUT_S:g} s"
        return self._probe_answer

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
        if self._reader is not None:  # it settles the running job from the worker's last words or its exit
            self._reader.join(timeout=5)

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

    def _start_serving(self) -> None:
        """Start this runner's first worker in the submitting thread, not the dispatcher's, then the dispatcher: the
        worker's interpreter and imports run while the caller carries on (``ttag generate`` loads numpy and soundfile
        meanwhile), and a caller busy in an import, which holds the GIL, cannot hold the start back. A later worker
        (after a crash or an idle exit) is started by the dispatcher when its job's turn comes, as a crash is reported
        there."""
        with self._start_lock:
            if self.process is None and not self._closed:
                with contextlib.suppress(OSError):  # the dispatcher tries again and reports it on the job
                    self._start()
            if self._dispatcher.ident is None:
                self._dispatcher.start()

    def _ensure_started(self) -> tuple[str, str] | None:
        """Start the worker if it is not running; a (kind, message) when it cannot serve."""
        with self._start_lock:
            if self.process is None or self.process.poll() is not None:
                try:
                    self._start()
                except OSError as exc:
                    return "missing_dependency", f"cannot start the runner's Python {self.interpreter}: {exc}"
        process = self.process
        assert process is not None
        deadline = time.monotonic() + HELLO_TIMEOUT_S
        while not self._hello.wait(0.05):
            if self._fatal:
                return self._fatal
            if process.poll() is not None:
                if self._reader is not None:
                    self._reader.join(timeout=2)  # it may still hold the worker's last words (a fatal message)
                return self._fatal or (
                    "crashed",
                    f"{_describe_exit(process.returncode)} while starting" + self._stderr_hint(),
                )
            if time.monotonic() > deadline:
                process.kill()
                return "crashed", f"the worker did not start within {HELLO_TIMEOUT_S:g} s"
        return None

    def _stderr_hint(self) -> str:
        """The worker's last words on stderr, to say why it died: not a progress bar (a library's "Loading weights")."""
        lines = [line for line in self.stderr_tail if line.strip() and not PROGRESS_BAR.search(line)]
        return f" ({lines[-1].strip()})" if lines else ""

    def _dispatch_loop(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._queue or self._closed)
                if self._closed:
                    return
                job = self._queue.popleft()
                self.current = job
            try:
                self._run(job)
            except Exception as exc:  # never a job left waiting, never a dispatcher gone: the queue goes on
                job.fail("internal", f"running the job failed: {type(exc).__name__}: {exc}")
            with self._wake:
                self.current = None
            del job  # not held while waiting for the next one: a finished job's audio is its readers' to keep or drop

    def _run(self, job: Job) -> None:
        """Start the worker, make room for the job's model, run the job; once more if it ran out of memory."""
        problem = self._ensure_started()
        if problem:
            job.fail(*problem)
            return
        if job.cancel_requested:
            job.fail("cancelled", "cancelled before it started")
            return
        problem = self.memory.admit(self, job)
        if problem:
            job.fail(*problem)
            return
        self._admitted = job
        try:
            job.start()
            for attempt in (1, 2):
                self._attempt(job, retry_on_oom=attempt == 1)
                if job.finished:
                    return
                self.memory.make_room(self, job)  # it ran out of memory: unload the other idle models, try again
            job.fail("internal", "the job ended without an outcome")  # not reached: a second attempt always ends it
        finally:
            self._release(job)

    def _release(self, job: Job) -> None:
        """Tell the memory book ``job`` is over (once), before its outcome reaches anyone: whoever reads it next (a
        health check, the next job's plan) sees its model idle."""
        with self._admitted_lock:
            if self._admitted is not job:
                return
            self._admitted = None
        self.memory.finished(self, job)

    def _attempt(self, job: Job, *, retry_on_oom: bool) -> None:
        """Send the job to the worker and wait until it ends, or runs out of memory when ``retry_on_oom``."""
        self._attempt_over.clear()
        self._retry_on_oom, self._delivered = retry_on_oom, False
        self._send(
            {
                "type": "generate",
                "job": job.id,
                "spec": job.spec.to_dict(),
                "request": job.request.to_dict(),
                "stream": job.stream,
            }
        )
        while not (self._attempt_over.wait(0.5) or job.finished):
            pass

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
        self.memory.forget(self)
        job = self.current
        # A worker that died before its hello is reported by _ensure_started (with its fatal message, if any).
        if job is not None and not job.finished and self._hello.is_set():
            self._release(job)
            kind = "cancelled" if job.cancel_requested else "crashed"
            job.fail(kind, f"{_describe_exit(process.returncode)}{reason}{self._stderr_hint()}")
        self._attempt_over.set()

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
            model = str(header.get("model"))
            self.loaded_models.discard(model)
            self.memory.unloaded(self, model)
            return
        if kind == "memory":
            self._probe_answer = header
            self._probed.set()
            return
        job = self.current
        if job is None or header.get("job") != job.id:
            return
        if kind == "loaded":
            self.loaded_models.add(job.spec.id)
            self.memory.loaded(self, job.spec.id, int(header.get("bytes", 0)), header)
        elif kind == "progress":
            if header["phase"] != "loading":
                self.loaded_models.add(job.spec.id)
            job.progress(header["phase"], int(header["step"]), int(header["total"]))
        elif kind == "chunk" and audio is not None:
            self._delivered = True
            job.chunk(int(header["take"]), int(header["start"]), audio, int(header["sample_rate"]))
        elif kind == "clip" and audio is not None:
            self._delivered = True
            metadata = header.get("metadata", {})
            job.add_clip(Clip(audio=audio, sample_rate=int(metadata["sample_rate"]), metadata=metadata))
        elif kind == "done":
            self.loaded_models.add(job.spec.id)
            self._release(job)
            job.done(header.get("timings", {}))
            self._attempt_over.set()
        elif kind == "error":
            error_kind = header.get("kind", "internal")
            message = header.get("message", "the runner failed")
            if error_kind == "out_of_memory":
                if self._retry_on_oom and not self._delivered and not job.cancel_requested:
                    self._attempt_over.set()  # the dispatcher makes room and runs it once more
                    return
                if not self._retry_on_oom:
                    message = f"{message} (also after unloading every other idle model)"
            self._release(job)
            job.fail(error_kind, message)
            self._attempt_over.set()

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
    memory_budget_gb: float | None = None  # None: the GPU's free memory on CUDA, 75% of the RAM on CPU and MPS

    @classmethod
    def from_config(cls, config: Config) -> BridgeSettings:
        runner = RunnerSettings(
            device=config.device, dtype=config.dtype, threads=config.threads, cache_dir=config.cache_dir or None
        )
        # A runner with a ttag-managed environment (`ttag runners setup NAME`) uses it unless one is configured.
        interpreters = {**managed_interpreters(), **config.interpreters}
        environment = {"TTAG_MUSICGEN_DECODER": config.musicgen_decoder}
        return cls(
            runner,
            config.idle_unload_s,
            config.cancel_grace_s,
            interpreters,
            environment,
            memory_budget_gb=config.memory_budget_gb,
        )


@dataclass
class Holding:
    """A model warm (or being loaded) in one worker, and the bytes it takes on its device."""

    model: str
    handle: WorkerHandle
    device: str
    bytes: int
    measured: bool  # False: the estimate from its weights, until its load reports what it used
    in_use: int = 0  # jobs admitted for it and not over: it cannot be unloaded under them
    last_used: float = field(default_factory=time.monotonic)


class MemoryBook:
    """Every warm model across a bridge's workers, what each takes, and the budget they share on each device.

    Holdings are kept least recently used first. A model's footprint is what its last load measured in the worker
    (allocated device memory, or resident memory on CPU, after the load less before it), else
    :func:`~runners.registry.estimated_footprint` of its weights. The budget is ``memory_budget_gb`` when set (on CUDA,
    never more than the free memory plus what ttag's models there hold), else the GPU's free memory plus ttag's models
    there on CUDA, and ``DEFAULT_RAM_SHARE`` of the RAM on CPU and MPS.

    Locks: ``_state`` guards the holdings (short sections, also taken by the workers' reader threads); ``_planning``
    lets one load at a time make room, and is held while it waits for unloads and for busy models to be free.
    """

    def __init__(self, budget_gb: float | None = None, dtype: str = "auto") -> None:
        self.budget_gb = budget_gb
        self.dtype = dtype
        self._state = threading.Condition()
        self._planning = threading.Lock()
        self._held: collections.OrderedDict[tuple[str, str], Holding] = collections.OrderedDict()
        self._measured: dict[str, int] = {}  # model → what its latest load used
        self._readings: dict[str, dict[str, Any]] = {}  # device → its latest reading from a worker

    # -- figures ---------------------------------------------------------------------------------------------------
    def footprint(self, spec: ModelSpec, device: str) -> tuple[int, bool]:
        """The bytes ``spec`` takes on ``device``, and whether a load measured them (else they are estimated)."""
        with self._state:
            if spec.id in self._measured:
                return self._measured[spec.id], True
        return estimated_footprint(spec, device, self.dtype), False

    def _used(self, device: str) -> int:
        return sum(h.bytes for h in self._held.values() if h.device == device)

    def _budget(self, device: str, reading: dict[str, Any]) -> tuple[int, str]:
        """The bytes ttag's models may hold on ``device``, and where that figure comes from (``_state`` held)."""
        configured = None if self.budget_gb is None else round(self.budget_gb * 1e9)
        setting = f"memory_budget_gb = {self.budget_gb or 0:g}"
        free = reading.get("free_bytes")
        if device == "cuda" and free is not None:
            room = int(free) + self._used(device)
            if configured is not None and configured <= room:
                return configured, setting
            return room, "the GPU's free memory and what ttag's models there hold"
        if configured is not None:
            return configured, setting
        total = int(reading.get("total_bytes") or ram_total())
        return round(total * DEFAULT_RAM_SHARE), f"{DEFAULT_RAM_SHARE:.0%} of this machine's {human_size(total)} of RAM"

    def _refusal(self, spec: ModelSpec, need: int, measured: bool, device: str, budget: int, source: str) -> str:
        how = "as its last load measured" if measured else "estimated from its weights"
        if source.startswith("memory_budget_gb"):
            fix = "raise memory_budget_gb (ttag config set memory_budget_gb GB)"
        elif device == "cuda":
            fix = "free memory on the GPU or pick a smaller model"
        else:
            fix = "set memory_budget_gb to allow more (ttag config set memory_budget_gb GB) or pick a smaller model"
        return (
            f"{spec.id} does not fit in memory: it needs about {human_size(need)} ({how}) but the budget on {device} "
            f"is {human_size(budget)} ({source}); {fix}"
        )

    # -- a job's way through ---------------------------------------------------------------------------------------
    def admit(self, handle: WorkerHandle, job: Job) -> tuple[str, str] | None:
        """Make room for ``job``'s model in ``handle``'s worker before it loads: unload the least recently used idle
        models on its device until the footprint fits, waiting for busy ones to finish when it must. A (kind, message)
        when the job cannot run: the model is bigger than the whole budget, the job was cancelled, the worker died."""
        spec = job.spec
        key = (handle.runner, spec.id)
        with self._state:
            if key in self._held and spec.id in handle.loaded_models:  # warm there: use it, it is now the most recent
                self._held[key].in_use += 1
                self._held.move_to_end(key)
                return None
        reading = handle.probe(spec)
        if isinstance(reading, tuple):
            return reading
        device = str(reading["device"])
        need, measured = self.footprint(spec, device)
        with self._planning:
            with self._state:
                self._readings[device] = {**reading, "at": time.time()}
                budget, source = self._budget(device, reading)
                if need > budget:
                    return "out_of_memory", self._refusal(spec, need, measured, device, budget, source)
                for own in [k for k in self._held if k[0] == handle.runner]:
                    del self._held[own]  # the worker drops its model before it loads another
            while True:
                with self._state:
                    if job.cancel_requested:
                        return "cancelled", "cancelled before it started"
                    if self._used(device) + need <= budget:
                        self._held[key] = Holding(spec.id, handle, device, need, measured, in_use=1)
                        return None
                    idle = [h for h in self._held.values() if h.device == device and not h.in_use]
                    if not idle:
                        self._state.wait(0.25)  # every model there is busy: wait for a job to end
                        continue
                    victim = self._held.pop((idle[0].handle.runner, idle[0].model))
                self._unload(victim)

    def make_room(self, handle: WorkerHandle, job: Job) -> None:
        """After ``job`` ran out of memory: unload every other idle model on its device (busy ones cannot be)."""
        with self._state:
            holding = self._held.get((handle.runner, job.spec.id))
            device = holding.device if holding else None
            keys = [
                k
                for k, h in self._held.items()
                if h.handle is not handle and not h.in_use and device in (None, h.device)
            ]
            victims = [self._held.pop(k) for k in keys]
        for victim in victims:
            self._unload(victim)

    def finished(self, handle: WorkerHandle, job: Job) -> None:
        """``job`` is over: its model is idle (and the most recently used), or forgotten when it did not load."""
        key = (handle.runner, job.spec.id)
        with self._state:
            holding = self._held.get(key)
            if holding is not None:
                holding.in_use = max(holding.in_use - 1, 0)
                if job.spec.id in handle.loaded_models:
                    holding.last_used = time.monotonic()
                    self._held.move_to_end(key)
                elif not holding.in_use:
                    del self._held[key]
            self._state.notify_all()

    def _unload(self, victim: Holding) -> None:
        """Unload ``victim`` and wait (bounded) until its worker says it is gone, or is gone itself."""
        victim.handle.send_unload(victim.model)
        with self._state:
            self._state.wait_for(
                lambda: victim.model not in victim.handle.loaded_models or victim.handle.pid is None, UNLOAD_WAIT_S
            )

    # -- what workers report ---------------------------------------------------------------------------------------
    def loaded(self, handle: WorkerHandle, model: str, used: int, reading: dict[str, Any]) -> None:
        """A worker loaded ``model`` and measured what it took: that replaces the estimate, now and for next time."""
        device = str(reading.get("device", "cpu"))
        with self._state:
            self._measured[model] = used
            self._readings[device] = {
                "device": device,
                "free_bytes": reading.get("free_bytes"),
                "total_bytes": reading.get("total_bytes"),
                "at": time.time(),
            }
            holding = self._held.get((handle.runner, model))
            if holding is None:
                self._held[(handle.runner, model)] = Holding(model, handle, device, used, True)
            else:
                holding.device, holding.bytes, holding.measured = device, used, True
            self._state.notify_all()

    def unloaded(self, handle: WorkerHandle, model: str) -> None:
        with self._state:
            self._held.pop((handle.runner, model), None)
            self._state.notify_all()

    def forget(self, handle: WorkerHandle) -> None:
        """``handle``'s worker is gone, and its models with it."""
        with self._state:
            for key in [k for k, h in self._held.items() if h.handle is handle]:
                del self._held[key]
            self._state.notify_all()

    def status(self) -> dict[str, Any]:
        """Per device: the budget, what ttag's models use, what is free; the warm models, least recently used first."""
        now = time.monotonic()
        with self._state:
            readings = dict(self._readings)
            # The CPU is read here, now (the same machine); a GPU as a worker last saw it.
            readings["cpu"] = {"device": "cpu", "free_bytes": ram_available(), "total_bytes": ram_total()}
            devices = []
            for device, reading in sorted(readings.items()):
                budget, source = self._budget(device, reading)
                entry = {
                    "device": device,
                    "budget_bytes": budget,
                    "budget_source": source,
                    "used_bytes": self._used(device),
                    "free_bytes": reading.get("free_bytes"),
                    "total_bytes": reading.get("total_bytes"),
                }
                if "at" in reading:
                    entry["read_s_ago"] = round(time.time() - reading["at"], 1)
                devices.append(entry)
            models = [
                {
                    "model": h.model,
                    "runner": h.handle.runner,
                    "device": h.device,
                    "bytes": h.bytes,
                    "measured": h.measured,
                    "busy": h.in_use > 0,
                    "idle_s": 0.0 if h.in_use else round(now - h.last_used, 1),
                }
                for h in self._held.values()
            ]
        return {"budget_gb": self.budget_gb, "devices": devices, "models": models}


class Bridge(Backend):
    """Submit validated requests; each runs in its runner's worker process."""

    def __init__(self, registry: Registry, settings: BridgeSettings | None = None) -> None:
        self._registry = registry
        self.settings = settings or BridgeSettings()
        self._handles: dict[str, WorkerHandle] = {}
        self._lock = threading.Lock()
        self.memory = MemoryBook(self.settings.memory_budget_gb, self.settings.runner.dtype)

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
                    {**worker_variables(spec.runner_name), **self.settings.worker_environment},
                    self.memory,
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

    def memory_status(self) -> dict[str, Any]:
        """Per device: the budget, what ttag's models use and what is free; and each warm model with its bytes (for
        ``/api/health?detail=true`` and ``ttag cluster status``)."""
        return self.memory.status()

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
