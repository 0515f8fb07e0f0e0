"""A runner worker process: ``python -m runners.worker --runner package.module:Class``.

It keeps its model loaded between jobs, serves one job at a time, listens for ``cancel`` while a job runs, and drops
its model after ``idle_unload_s`` without work. It measures memory where it is used: which device a model would load
on and how much is free there (``probe``), and what each load took (``loaded``), for the bridge's memory budget. See
``runners.protocol`` for the messages.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, BinaryIO

from runners import memory
from runners.contract import BaseRunner, Cancelled, Clip, JobContext, RunnerError, RunnerSettings
from runners.protocol import PROTOCOL_VERSION, read_message, write_message
from runners.registry import ModelSpec
from runners.request import GenerationRequest
from runners.torch_support import device_and_dtype, free_memory, is_out_of_memory


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, RunnerError):
        return exc.kind
    if is_out_of_memory(exc):
        return "out_of_memory"
    return "internal"


def _error_message(exc: BaseException) -> str:
    if isinstance(exc, RunnerError):
        return str(exc)
    if _error_kind(exc) == "out_of_memory":
        return "out of memory: try a smaller model, a shorter duration or fewer takes"
    return f"{type(exc).__name__}: {exc}"


class Worker:
    def __init__(
        self,
        runner_class: type[BaseRunner],
        settings: RunnerSettings,
        idle_unload_s: float,
        out: BinaryIO,
        inp: BinaryIO,
    ) -> None:
        self.runner_class = runner_class
        self.settings = settings
        self.idle_unload_s = idle_unload_s
        self.out = out
        self.inp = inp
        self.write_lock = threading.Lock()
        self.inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.loaded: dict[str, BaseRunner] = {}
        self.current_job: str | None = None
        self.current_ctx: JobContext | None = None
        self.cancelled_early: set[str] = set()
        self.state_lock = threading.Lock()
        self.devices: dict[str, str] = {}  # model id → the device it loads on

    def send(self, header: dict[str, Any], audio: Any = None) -> None:
        with self.write_lock:
            write_message(self.out, header, audio)

    def read_loop(self) -> None:
        """Reader thread: handles ``cancel`` at once, queues everything else for the main loop."""
        try:
            while (item := read_message(self.inp)) is not None:
                header, _ = item
                if header["type"] == "cancel":
                    with self.state_lock:
                        if header.get("job") == self.current_job and self.current_ctx is not None:
                            self.current_ctx.cancel()
                        else:
                            self.cancelled_early.add(str(header.get("job")))
                else:
                    self.inbox.put(header)
        except Exception as exc:  # a broken pipe from the bridge: nothing to answer to
            print(f"ttag worker: reading from the bridge failed: {exc}", file=sys.stderr)
        # The bridge is gone (its process was killed, its terminal closed): nobody will take this job's audio, so
        # stop it at the next step rather than keep a GPU busy for minutes, then exit.
        with self.state_lock:
            if self.current_ctx is not None:
                self.current_ctx.cancel()
        self.inbox.put(None)

    def run(self) -> None:
        threading.Thread(target=self.read_loop, name="ttag-worker-reader", daemon=True).start()
        while True:
            try:
                message = self.inbox.get(timeout=self.idle_unload_s if self.loaded and self.idle_unload_s > 0 else None)
            except queue.Empty:
                self.unload(None, reason="idle")
                continue
            if message is None or message["type"] == "shutdown":
                return
            if message["type"] == "unload":
                self.unload(message.get("model"), reason="asked")
            elif message["type"] == "probe":
                try:
                    device = self.device_for(ModelSpec.from_dict(message["spec"]))
                except RunnerError:  # a device this machine lacks: the job's load says so, in words
                    device = "cpu"
                self.send({"type": "memory", **memory.reading(device)})
            elif message["type"] == "generate":
                self.serve(message)

    def unload(self, model: str | None, *, reason: str) -> None:
        dropped = [m for m in self.loaded if model in (None, m)]
        for model_id in dropped:
            self.loaded.pop(model_id).unload()
            self.send({"type": "unloaded", "model": model_id, "reason": reason})
        if dropped:  # a full collection costs ~5 ms with numpy loaded: not before a first load, when nothing went
            free_memory()

    def serve(self, message: dict[str, Any]) -> None:
        job = message["job"]
        ctx = JobContext(
            lambda phase, step, total: self.send(
                {"type": "progress", "job": job, "phase": phase, "step": step, "total": total}
            )
        )
        with self.state_lock:
            if job in self.cancelled_early:
                self.cancelled_early.discard(job)
                ctx.cancel()
            self.current_job, self.current_ctx = job, ctx
        timings: dict[str, float] = {}
        try:
            spec = ModelSpec.from_dict(message["spec"])
            request = GenerationRequest.from_dict(message["request"])
            runner = self.runner_for(spec, ctx, timings, job)
            started = time.monotonic()
            takes = self.stream(runner, request, ctx, job) if message.get("stream") else runner.takes(request, ctx)
            for clip in takes:  # each take as soon as it is made: kept if the job is cancelled or dies later
                # a take's generate_s: from the start of generation until it was ready (the job's, for the last)
                metadata = {**clip.metadata, "timings": {**timings, "generate_s": time.monotonic() - started}}
                self.send(
                    {"type": "clip", "job": job, "take": metadata.get("take", 0), "metadata": metadata}, clip.audio
                )
            timings["generate_s"] = time.monotonic() - started
            ctx.check_cancelled()
            self.send({"type": "done", "job": job, "timings": timings})
        except BaseException as exc:  # every failure becomes a typed error on this job; the worker lives on
            if not isinstance(exc, Cancelled) and _error_kind(exc) == "internal":
                import traceback  # here: a worker that never fails never loads it

                traceback.print_exc(file=sys.stderr)
            if _error_kind(exc) == "out_of_memory":
                free_memory()  # what the failed step held, before the bridge makes room and asks again
            self.send({"type": "error", "job": job, "kind": _error_kind(exc), "message": _error_message(exc)})
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
        finally:
            with self.state_lock:
                self.current_job, self.current_ctx = None, None

    def device_for(self, spec: ModelSpec) -> str:
        """The device ``spec`` loads on: the torch runners' choice (config ``device``) once its modules are imported
        and one of them brought torch, else the CPU. An import that fails is left for the load to report."""
        if spec.id not in self.devices:
            for module in spec.requires:
                with contextlib.suppress(Exception):  # the load raises it again, as a typed error with a fix
                    importlib.import_module(module)
            torch = sys.modules.get("torch")
            self.devices[spec.id] = device_and_dtype(self.settings, torch)[0] if torch is not None else "cpu"
        return self.devices[spec.id]

    def runner_for(self, spec: ModelSpec, ctx: JobContext, timings: dict[str, float], job: str) -> BaseRunner:
        """The loaded runner for ``spec``; loads it (dropping any other model first) when needed, and tells the
        bridge what the load used: the device's allocated bytes (resident memory on CPU) after it, less before it.
        The spec's modules are imported before the first reading, so a library's own import is not counted."""
        if spec.id in self.loaded:
            timings["load_s"] = 0.0
            return self.loaded[spec.id]
        self.unload(None, reason="another model was asked for")
        started = time.monotonic()
        ctx.progress("loading", 0, 1)
        device = self.device_for(spec)
        before = memory.allocated(device)
        runner = self.runner_class(spec, self.settings)
        runner.load_model(ctx)
        used = max(memory.allocated(device) - before, 0)
        ctx.progress("loading", 1, 1)
        timings["load_s"] = time.monotonic() - started
        self.loaded[spec.id] = runner
        self.send({"type": "loaded", "job": job, "model": spec.id, "bytes": used, **memory.reading(device)})
        return runner

    def stream(self, runner: BaseRunner, request: GenerationRequest, ctx: JobContext, job: str) -> Iterator[Clip]:
        """Forward chunks as they come, and each take's clip, assembled from them, once its last chunk is sent (or
        when the stream ends, for a take whose end was not marked)."""
        import numpy as np

        pieces: dict[int, list[Any]] = {}
        sample_rates: dict[int, int] = {}
        for chunk in runner.stream(request, ctx):
            sample_rates[chunk.take] = chunk.sample_rate
            pieces.setdefault(chunk.take, []).append(chunk.audio)
            self.send(
                {
                    "type": "chunk",
                    "job": job,
                    "take": chunk.take,
                    "start": chunk.start,
                    "sample_rate": chunk.sample_rate,
                },
                chunk.audio,
            )
            if chunk.last:
                audio = np.concatenate(pieces.pop(chunk.take), axis=1)
                yield runner.make_clip(request, chunk.take, audio, chunk.sample_rate)
        for take in sorted(pieces):
            yield runner.make_clip(request, take, np.concatenate(pieces[take], axis=1), sample_rates[take])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runners.worker")
    parser.add_argument("--runner", required=True, help="package.module:Class of the runner to serve")
    parser.add_argument("--settings", default="{}", help="JSON: device, dtype, threads, cache_dir, idle_unload_s")
    args = parser.parse_args(argv)

    # stdout carries protocol frames only: keep a private handle to it and send fd 1 (prints, C libraries) to stderr.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    inp = sys.stdin.buffer

    settings_data = json.loads(args.settings)
    idle_unload_s = float(settings_data.pop("idle_unload_s", 0) or 0)
    settings = RunnerSettings(**settings_data)
    try:
        module_name, _, class_name = args.runner.partition(":")
        runner_class = getattr(importlib.import_module(module_name), class_name)
    except Exception as exc:  # a missing package in this environment: tell the bridge in words, then exit
        kind = "missing_dependency" if isinstance(exc, ImportError) else "internal"
        write_message(
            out,
            {
                "type": "fatal",
                "kind": kind,
                "message": f"cannot load runner {args.runner}: {type(exc).__name__}: {exc}",
            },
        )
        return 3
    write_message(
        out,
        {
            "type": "hello",
            "protocol": PROTOCOL_VERSION,
            "runner": args.runner,
            "pid": os.getpid(),
            "python": sys.executable,
        },
    )
    Worker(runner_class, settings, idle_unload_s, out, inp).run()
    return 0


if __name__ == "__main__":
    try:
        code = main()
    except BaseException:  # not reached by a job's failure (that is a frame): said on stderr, which the bridge shows
        import traceback

        traceback.print_exc()
        code = 1
    # Leave at once, skipping interpreter finalisation: the daemon reader thread is blocked reading stdin and holds
    # its lock, so a normal exit waits ~1 s for it and then aborts ("could not acquire lock for <stdin>"); there is
    # nothing left to clean up that the OS does not (every frame has been written and flushed).
    sys.stderr.flush()
    os._exit(code)
