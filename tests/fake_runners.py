"""Test doubles for the bridge: runners that behave (a tone), stall, hang, crash, fail on purpose, hold a declared
amount of memory or run out of it.

Workers import them as ``tests.fake_runners:Name`` (``tests/conftest.py`` puts the project root on PYTHONPATH). The
real path — the ``synth`` runner through the same bridge — is tested beside them.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from runners.contract import AudioChunk, BaseRunner, Clip, JobContext, MissingWeights, OutOfMemory
from runners.registry import ModelSpec, ParamSpec, Registry
from runners.request import GenerationRequest

SAMPLE_RATE = 8000


def take_frames(request: GenerationRequest) -> int:
    """A take's length in samples (a validated request always has its duration)."""
    assert request.duration is not None
    return round(request.duration * SAMPLE_RATE)


class ToneRunner(BaseRunner):
    """A sine whose pitch comes from the seed, rendered in ``steps`` steps with a pause each (cancellable)."""

    name = "tone"
    version = "1"
    step_pause_s = 0.0

    def load_model(self, ctx: JobContext) -> None:
        self.loads = getattr(self, "loads", 0) + 1

    def generate(self, request: GenerationRequest, ctx: JobContext) -> list[Clip]:
        clips = []
        n = take_frames(request)
        steps = request.steps or 4
        for take in range(request.takes):
            for step in range(1, steps + 1):
                time.sleep(self.step_pause_s)
                ctx.progress("generating", step, steps)
            freq = 200 + request.take_seed(take) % 800
            audio = 0.5 * np.sin(2 * np.pi * freq * np.arange(n) / SAMPLE_RATE)
            clips.append(self.make_clip(request, take, audio, SAMPLE_RATE))
        return clips


class SlowToneRunner(ToneRunner):
    step_pause_s = 0.2


class HangRunner(ToneRunner):
    """Never checks for cancellation: only killing the worker stops it."""

    def generate(self, request: GenerationRequest, ctx: JobContext) -> list[Clip]:
        ctx.progress("generating", 0, 1)
        time.sleep(3600)
        return []


class CrashRunner(ToneRunner):
    """Dies like a segfault or an OOM kill, mid-job."""

    def generate(self, request: GenerationRequest, ctx: JobContext) -> list[Clip]:
        ctx.progress("generating", 0, 1)
        os.kill(os.getpid(), signal.SIGKILL)
        return []


class StreamThenCrashRunner(ToneRunner):
    """Streams the first half of its take, then dies: a stream that can never be finished."""

    def stream(self, request: GenerationRequest, ctx: JobContext) -> Iterator[AudioChunk]:
        half = take_frames(request) // 2
        yield AudioChunk(take=0, start=0, audio=np.zeros((1, half), np.float32), sample_rate=SAMPLE_RATE)
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGKILL)


class SteppedStreamRunner(ToneRunner):
    """Streams its tone in ``steps`` chunks, one per step, with a pause each: audio that arrives over time."""

    step_pause_s = 0.1

    def stream(self, request: GenerationRequest, ctx: JobContext) -> Iterator[AudioChunk]:
        for take, clip in enumerate(self.generate(request, JobContext())):
            pieces = np.array_split(clip.audio, request.steps or 4, axis=1)
            start = 0
            for step, piece in enumerate(pieces, 1):
                ctx.progress("generating", step, len(pieces))
                last = step == len(pieces)
                yield AudioChunk(take=take, start=start, audio=piece, sample_rate=SAMPLE_RATE, last=last)
                start += piece.shape[1]
                time.sleep(self.step_pause_s)


class ClockRunner(ToneRunner):
    """Streams ``steps`` chunks whose first sample is the wall clock (mod 100 s) when the worker sent them: a client
    reads its own delivery latency off the audio (bench/bench_live.py)."""

    step_pause_s = 0.05

    def stream(self, request: GenerationRequest, ctx: JobContext) -> Iterator[AudioChunk]:
        steps = request.steps or 4
        frames = take_frames(request) // steps
        for step in range(steps):
            time.sleep(self.step_pause_s)
            audio = np.zeros((1, frames), np.float32)
            audio[0, 0] = time.time() % 100
            yield AudioChunk(take=0, start=step * frames, audio=audio, sample_rate=SAMPLE_RATE)
        ctx.progress("generating", steps, steps)


class FailingRunner(ToneRunner):
    def load_model(self, ctx: JobContext) -> None:
        raise MissingWeights("weights for fake-missing are not downloaded: ttag models pull fake-missing")


class NoisyRunner(ToneRunner):
    """Prints to stdout, which must not corrupt the protocol."""

    def generate(self, request: GenerationRequest, ctx: JobContext) -> list[Clip]:
        print("chatter on stdout " * 50)
        os.write(1, b"raw bytes on fd 1\n")
        return super().generate(request, ctx)


class ReserveRunner(ToneRunner):
    """Holds real memory while loaded: a buffer of ``extra["reserve_bytes"]`` (default: the spec's ``size_bytes``),
    every page written so the process's resident memory grows by that much. ``extra["step_pause_s"]``: slower steps."""

    def load_model(self, ctx: JobContext) -> None:
        super().load_model(ctx)
        self.step_pause_s = float(self.spec.extra.get("step_pause_s", 0.0))
        self.buffer = np.ones(int(self.spec.extra.get("reserve_bytes", self.spec.size_bytes)), np.uint8)

    def unload(self) -> None:
        del self.buffer


# One worker serves one runner entry point and keeps one model warm: models that must be warm side by side (for the
# bridge's memory budget to choose between) each get their own entry point.
class ReserveRunnerA(ReserveRunner):
    pass


class ReserveRunnerB(ReserveRunner):
    pass


class ReserveRunnerC(ReserveRunner):
    pass


class ReserveRunnerD(ReserveRunner):
    pass


class OutOfMemoryRunner(ToneRunner):
    """Raises OutOfMemory on its first ``extra["ooms"]`` generates in this worker (counted per model), then renders."""

    ooms: dict[str, int] = {}

    def generate(self, request: GenerationRequest, ctx: JobContext) -> list[Clip]:
        ctx.progress("generating", 0, 1)
        failed = self.ooms.get(self.spec.id, 0)
        if failed < int(self.spec.extra.get("ooms", 1)):
            self.ooms[self.spec.id] = failed + 1
            raise OutOfMemory(f"out of memory rendering {self.spec.id} (attempt {failed + 1})")
        return super().generate(request, ctx)


def spec(model_id: str, runner_class: str, **overrides: Any) -> ModelSpec:
    fields: dict[str, Any] = dict(
        id=model_id,
        runner=f"tests.fake_runners:{runner_class}",
        kind="music",
        description=f"test double {runner_class}",
        sample_rate=SAMPLE_RATE,
        channels=1,
        min_duration=0.1,
        max_duration=30.0,
        default_duration=1.0,
        params=(ParamSpec("steps", "int", 4, 1, 1000),),
    )
    fields.update(overrides)
    return ModelSpec(**fields)


def fake_registry() -> Registry:
    return Registry(
        [
            spec("tone", "ToneRunner"),
            spec("slow-tone", "SlowToneRunner"),
            spec("hang", "HangRunner"),
            spec("crash", "CrashRunner"),
            spec("stream-then-crash", "StreamThenCrashRunner"),
            spec("stepped-stream", "SteppedStreamRunner", max_duration=600.0),
            spec("clock", "ClockRunner", max_duration=600.0),
            spec("fake-missing", "FailingRunner"),
            spec("noisy", "NoisyRunner"),
            spec("no-such-runner", "NoSuchRunner", runner="tests.no_such_module:Runner"),
            *memory_specs(),
        ]
    )


MB = 1_000_000


def memory_specs(size: int = 100 * MB) -> list[ModelSpec]:
    """Models that hold ``size`` bytes each while loaded (A to D, each in its own worker; a slow one in A's), one that
    never fits a small budget, and two that run out of memory: once (then succeed), or twice (then fail, then
    succeed)."""
    return [
        spec("reserve-a", "ReserveRunnerA", size_bytes=size),
        spec("reserve-b", "ReserveRunnerB", size_bytes=size),
        spec("reserve-c", "ReserveRunnerC", size_bytes=size),
        spec("reserve-d", "ReserveRunnerD", size_bytes=size // 10, extra={"reserve_bytes": size}),  # disk says less
        spec("reserve-huge", "ReserveRunnerD", size_bytes=1000 * size),
        spec("reserve-slow", "ReserveRunnerA", size_bytes=size, extra={"step_pause_s": 0.1}),
        spec("oom-once", "OutOfMemoryRunner", extra={"ooms": 1}),
        spec("oom-twice", "OutOfMemoryRunner", extra={"ooms": 2}),
    ]


class AudioInputRunner(ToneRunner):
    """Reads the audio files it is given (``melody``, ``audio_prompt``) as a real runner would, and reports what it
    read in each clip's metadata (``inputs``: name → duration, sample rate, channels, peak): proof that a file reached
    the runner, e.g. through an upload to the server."""

    def make_clip(self, request: GenerationRequest, take: int, audio: np.ndarray, sample_rate: int) -> Clip:
        import soundfile  # every take is made through here, streamed or not

        clip = super().make_clip(request, take, audio, sample_rate)
        inputs = {}
        for name in ("melody", "audio_prompt"):
            path = getattr(request, name)
            if path:
                data, rate = soundfile.read(path, dtype="float32", always_2d=True)
                inputs[name] = {
                    "duration": len(data) / rate,
                    "sample_rate": rate,
                    "channels": data.shape[1],
                    "peak": round(float(np.max(np.abs(data))), 4),
                }
        clip.metadata["inputs"] = inputs
        return clip


def audio_input_specs() -> list[ModelSpec]:
    """A model that follows a melody, one that continues audio, and one that takes no file (``steps`` for each)."""
    steps = ParamSpec("steps", "int", 4, 1, 1000)
    melody = ParamSpec("melody", "audio", None, help="An audio file whose melody the music follows.")
    audio_prompt = ParamSpec("audio_prompt", "audio", None, help="An audio file to continue.")
    return [
        spec("fake-melody", "AudioInputRunner", params=(steps, melody)),
        spec("fake-continue", "AudioInputRunner", params=(steps, audio_prompt)),
        spec("fake-plain", "AudioInputRunner", params=(steps,)),
    ]
