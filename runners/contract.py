"""The runner contract: what every model runner implements and what it hands back.

A runner turns a validated :class:`~runners.request.GenerationRequest` into audio. It runs inside a worker process
(``runners.worker``), never in the UI process, so a runner may import torch and friends freely — but only inside its
methods, never at module import time, because the registry imports runner packages to read their model specs.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # numpy is imported where audio is made: the CLI starts its worker before it pays for it
    import numpy as np

    from runners.registry import ModelSpec
    from runners.request import GenerationRequest

Phase = Literal["loading", "generating", "decoding"]


class RunnerError(Exception):
    """A failure with a ``kind`` the caller can act on and a message a person can read."""

    kind = "internal"

    def __init__(self, message: str, *, kind: str | None = None) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind


class Cancelled(RunnerError):
    kind = "cancelled"

    def __init__(self, message: str = "cancelled") -> None:
        super().__init__(message)


class MissingDependency(RunnerError):
    kind = "missing_dependency"


class MissingWeights(RunnerError):
    kind = "missing_weights"


class OutOfMemory(RunnerError):
    kind = "out_of_memory"


class BadCheckpoint(RunnerError):
    """The checkpoint's files are there but cannot be loaded: damaged, cut short, or pickles that could run code."""

    kind = "bad_checkpoint"


@dataclass
class Clip:
    """One take: float32 audio shaped (channels, samples) at ``sample_rate``, plus what made it."""

    audio: np.ndarray
    sample_rate: int
    metadata: dict[str, Any] = field(default_factory=dict)
    # A take from a ttag server: (format, the file's bytes) as the server encoded it from the runner's samples. Written
    # as it is, the file is the one a local run writes; decoding and encoding it again would move samples by an LSB.
    encoded: tuple[str, bytes] | None = None

    @property
    def duration(self) -> float:
        return self.audio.shape[1] / self.sample_rate

    @property
    def channels(self) -> int:
        return self.audio.shape[0]


@dataclass
class AudioChunk:
    """A piece of one take's audio, streamed before the take is finished. ``start`` is its first sample's index.

    ``last``: the take ends with this chunk, so the worker sends the take's clip at once (kept if the job is then
    cancelled or its worker dies). A take never marked so is complete when the stream ends.
    """

    take: int
    start: int
    audio: np.ndarray
    sample_rate: int
    last: bool = False


@dataclass(frozen=True)
class RunnerSettings:
    """Machine settings the worker passes to a runner (from ttag's config)."""

    device: str = "auto"
    dtype: str = "auto"
    threads: int = 0  # 0: let the library decide
    cache_dir: str | None = None


class JobContext:
    """Handed to a runner for one job: report progress, and stop when the job is cancelled.

    Cancellation is cooperative: the runner calls :meth:`progress` (or :meth:`check_cancelled`) between steps and the
    context raises :class:`Cancelled` there once the caller asked to cancel.
    """

    def __init__(self, on_progress: Callable[[Phase, int, int], None] | None = None) -> None:
        self._on_progress = on_progress
        self._cancel = threading.Event()
        self.started = time.monotonic()

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check_cancelled(self) -> None:
        if self._cancel.is_set():
            raise Cancelled()

    def progress(self, phase: Phase, step: int, total: int) -> None:
        self.check_cancelled()
        if self._on_progress is not None:
            self._on_progress(phase, step, total)


class BaseRunner(ABC):
    """One loaded model. Subclasses set ``name`` and ``version`` and implement ``load_model`` and ``generate``.

    ``generate`` returns one :class:`Clip` per take; take ``k`` uses seed ``request.seed + k`` so any take can be
    re-created alone with ``takes=1``. ``takes`` hands out the same clips one by one, each as soon as it is finished;
    the default waits for ``generate``, runners that make takes one after another override it. ``stream`` yields
    :class:`AudioChunk`\\ s as audio becomes ready; the default yields each finished take whole, runners that can do
    better override it.
    """

    name: str = "base"
    version: str = "0"

    def __init__(self, spec: ModelSpec, settings: RunnerSettings | None = None) -> None:
        self.spec = spec
        self.settings = settings or RunnerSettings()

    @abstractmethod
    def load_model(self, ctx: JobContext) -> None:
        """Load weights (or whatever the model needs) so that ``generate`` can run. Called once per worker."""

    @abstractmethod
    def generate(self, request: GenerationRequest, ctx: JobContext) -> list[Clip]:
        """Render every take of ``request`` (already validated, seed resolved)."""

    def takes(self, request: GenerationRequest, ctx: JobContext) -> Iterator[Clip]:
        """What the worker sends: a take made before a cancel or a crash reaches the caller."""
        yield from self.generate(request, ctx)

    def stream(self, request: GenerationRequest, ctx: JobContext) -> Iterator[AudioChunk]:
        for take, clip in enumerate(self.takes(request, ctx)):
            yield AudioChunk(take=take, start=0, audio=clip.audio, sample_rate=clip.sample_rate, last=True)

    def unload(self) -> None:  # noqa: B027 - optional hook: runners without a model have nothing to drop
        """Drop the model so its memory can be reclaimed."""

    def make_clip(self, request: GenerationRequest, take: int, audio: np.ndarray, sample_rate: int) -> Clip:
        """Wrap finished audio with the metadata needed to re-create it exactly."""
        import numpy as np

        audio = np.ascontiguousarray(audio, dtype=np.float32)
        if audio.ndim == 1:
            audio = audio[None, :]
        metadata = {
            "model": self.spec.id,
            "revision": self.spec.revision,
            "runner": self.name,
            "runner_version": self.version,
            "take": take,
            "seed": request.take_seed(take),
            "parameters": request.to_dict(),
            "sample_rate": sample_rate,
            "channels": int(audio.shape[0]),
            "duration": audio.shape[1] / sample_rate,
        }
        if "weights_sha256" in self.spec.extra:  # a local checkpoint folder: which weights made this take
            metadata["weights_sha256"] = self.spec.extra["weights_sha256"]
        return Clip(audio=audio, sample_rate=sample_rate, metadata=metadata)
