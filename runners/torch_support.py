"""What every torch runner does alike, written once: :class:`TorchRunner` and the helpers it is made of.

The base owns the model-loading preamble — torch imported lazily, the dependency check, threads, one device and dtype
rule, cancellation before the slow part — and turns a load's failures into typed errors in one line each: a missing file
is :class:`MissingWeights` naming ``ttag models pull`` (weights are only read from the local cache), an allocation
failure is :class:`OutOfMemory`, pickled weights torch's safe unpickler refuses and a local folder whose files the
libraries cannot read are :class:`BadCheckpoint`. :meth:`TorchRunner.generating` does the same around a generation, and
:func:`stream_from_thread` is the one way a runner streams: generation on a thread, chunks through a queue. A subclass
keeps only what is its own: how to load its model (:meth:`TorchRunner.load`) and how to turn a request into calls.

Nothing here imports torch at module level, so the worker and the registry stay light.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import pickle
import queue
import sys
import threading
from abc import abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from runners.contract import (
    AudioChunk,
    BadCheckpoint,
    BaseRunner,
    Cancelled,
    JobContext,
    MissingDependency,
    MissingWeights,
    OutOfMemory,
    RunnerError,
    RunnerSettings,
)
from runners.registry import human_size, install_hint

if TYPE_CHECKING:
    from runners.request import GenerationRequest

# Exception class names that mean "this file is not in the local cache", whichever library raised them.
_MISSING_FILE_ERRORS = {"LocalEntryNotFoundError", "OfflineModeIsEnabled", "EntryNotFoundError", "FileNotFoundError"}
# What the libraries raise on a local folder's files they cannot make sense of: malformed data, rather than a bug in
# ttag (a TypeError or AttributeError stays "internal", with its traceback).
_BAD_DATA_ERRORS = (ValueError, RuntimeError, ArithmeticError, LookupError, EOFError, pickle.UnpicklingError)
_SAFETENSORS_ERROR = "SafetensorError"  # matched by name, as safetensors need not be importable here
# torch.load's safe (weights-only) unpickler met something other than tensors; its message then suggests
# weights_only=False, which would run whatever the pickle holds.
_PICKLE_REFUSED = "Weights only load failed"

Emit = Callable[[AudioChunk], None]


# -- rules -----------------------------------------------------------------------------------------------------------
def is_out_of_memory(exc: BaseException) -> bool:
    """A CUDA or CPU allocation failure, whatever the library wrapped it in."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate" in text or "out of memory" in text.lower())


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The error and every error it was raised from or while handling: diffusers re-raises a reader's error as an
    OSError, two levels up."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_refused_pickle(exc: BaseException) -> bool:
    """torch's safe unpickler refused a weights file: it holds more than tensors (perhaps code to run)."""
    return any(_PICKLE_REFUSED in str(e) for e in _causes(exc))


def damaged_safetensors(exc: BaseException) -> BaseException | None:
    """The safetensors reader's error behind ``exc``, if that is what failed: a file cut short or not safetensors."""
    return next((e for e in _causes(exc) if type(e).__name__ == _SAFETENSORS_ERROR), None)


def is_missing_file(exc: BaseException) -> bool:
    """A weights or config file that is not on disk: loads never download, so this means "not pulled yet"."""
    names = {type(e).__name__ for e in (exc, exc.__cause__, exc.__context__) if e is not None}
    if names & _MISSING_FILE_ERRORS or isinstance(exc, OSError):
        return True
    return isinstance(exc, ValueError) and "valid local path" in str(exc)  # diffusers, for a missing component


def choose_device(setting: str, *, cuda: bool, mps: bool) -> str:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; an explicit device is kept if this machine has it."""
    if setting == "auto":
        return "cuda" if cuda else ("mps" if mps else "cpu")
    backend = setting.split(":", 1)[0]
    if (backend == "cuda" and not cuda) or (backend == "mps" and not mps):
        raise RunnerError(f"the device is set to {setting!r}, which this machine does not have: use auto or cpu")
    return setting


def choose_dtype(device: str, setting: str) -> str:
    """``auto`` is float16 on CUDA (what the models ship and the GPUs are fast at), float32 elsewhere."""
    if setting != "auto":
        return setting
    return "float16" if device.split(":", 1)[0] == "cuda" else "float32"


def device_and_dtype(settings: RunnerSettings, torch: Any) -> tuple[str, Any]:
    """The settings' device and dtype here: :func:`choose_device` and :func:`choose_dtype` with what torch sees."""
    mps = getattr(torch.backends, "mps", None)
    device = choose_device(settings.device, cuda=torch.cuda.is_available(), mps=bool(mps and mps.is_available()))
    name = choose_dtype(device, settings.dtype)
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise RunnerError(f"the dtype is set to {name!r}, which is not a floating-point type: use auto or float32")
    return device, dtype


def free_memory() -> None:
    """Collect dropped models now and hand cached GPU memory back (a no-op when torch was never imported)."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def first_line(exc: BaseException) -> str:
    """An error's first line, short enough for a one-line message."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


# -- streaming -------------------------------------------------------------------------------------------------------
class _ProducerContext(JobContext):
    """The generating thread's context: progress goes to the job's, and it stops when the job is cancelled or when
    the consumer stops reading (:meth:`cancel`)."""

    def __init__(self, job: JobContext) -> None:
        super().__init__(on_progress=job.progress)
        self.job = job
        self.started = job.started

    @property
    def cancelled(self) -> bool:
        return super().cancelled or self.job.cancelled

    def check_cancelled(self) -> None:
        if self.cancelled:
            raise Cancelled()


_END = object()  # the producer finished without error


def stream_from_thread(
    produce: Callable[[JobContext, Emit], None],
    ctx: JobContext,
    *,
    threads: int = 0,
    name: str = "ttag-stream",
    queue_size: int = 64,
) -> Iterator[AudioChunk]:
    """Run ``produce(thread_ctx, emit)`` on a thread and yield the chunks it emits, in order, as they come.

    The thread reports progress through ``thread_ctx`` (which raises :class:`Cancelled` once the job is cancelled or
    this generator is closed) and its exception, if any, is raised here. A full queue holds the producer back; when
    the consumer stops early the queue is drained until the producer has stopped, so no thread is left behind.
    ``threads`` is set again in the thread: OpenMP keeps the setting per thread.
    """
    items: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
    thread_ctx = _ProducerContext(ctx)

    def emit(chunk: AudioChunk) -> None:
        thread_ctx.check_cancelled()
        items.put(chunk)

    def run() -> None:
        outcome: object = _END
        try:
            torch = sys.modules.get("torch")
            if threads > 0 and torch is not None:
                torch.set_num_threads(threads)
            produce(thread_ctx, emit)
        except BaseException as exc:  # handed to the consumer, which raises it in its own thread
            outcome = exc
        items.put(outcome)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    ended = False
    try:
        while True:
            item = items.get()
            ended = item is _END or isinstance(item, BaseException)
            if isinstance(item, BaseException):
                raise item
            if ended:
                return
            yield item
    finally:
        thread_ctx.cancel()
        while not ended:  # keep taking, so a producer blocked on a full queue reaches its next check and ends
            item = items.get()
            ended = item is _END or isinstance(item, BaseException)
        thread.join()


# -- the base class --------------------------------------------------------------------------------------------------
class TorchRunner(BaseRunner):
    """A runner around a torch model. Subclasses implement :meth:`load` and ``generate`` (and perhaps ``stream``).

    After :meth:`load_model`: ``self.torch`` is the torch module, ``self.device`` the device string and ``self.dtype``
    the torch dtype the settings ask for on this machine.
    """

    needs = "torch"  # what the MissingDependency message says this runner needs
    memory_hint = "a shorter duration, fewer takes or a smaller model"  # how to need less memory while generating

    torch: Any = None
    device: str = "cpu"
    dtype: Any = None

    @abstractmethod
    def load(self, ctx: JobContext) -> None:
        """Import the model's libraries and load it onto ``self.device`` in ``self.dtype``, from local files only
        (``local_files_only=True``: only ``ttag models pull`` downloads). :meth:`load_model` maps the errors."""

    def unload(self) -> None:
        """Subclasses drop their models, then call this."""
        free_memory()

    # -- loading -------------------------------------------------------------------------------------------------
    def load_model(self, ctx: JobContext) -> None:
        try:
            self.torch = importlib.import_module("torch")
        except ImportError as exc:
            raise self.missing_dependency(self.needs, exc) from None
        missing = [m for m in self.spec.requires if importlib.util.find_spec(m) is None]
        if missing:
            raise self.missing_dependency(", ".join(missing))
        if self.settings.threads > 0:
            self.torch.set_num_threads(self.settings.threads)
        self.device, self.dtype = device_and_dtype(self.settings, self.torch)
        ctx.check_cancelled()
        try:
            self.load(ctx)
        except BaseException as exc:
            self.unload()
            if isinstance(exc, ImportError):
                raise self.missing_dependency(self.needs, exc) from None
            if isinstance(exc, Exception) and not isinstance(exc, RunnerError):
                if is_out_of_memory(exc):
                    raise OutOfMemory(f"not enough memory to load {self.spec.id}: try a smaller model") from None
                if is_refused_pickle(exc):
                    raise self.bad_checkpoint(
                        "its weights are a pickle holding more than tensors, and ttag does not load such pickles "
                        "(unpickling can run code): convert the weights to safetensors"
                    ) from None
                local = "local_folder" in self.spec.extra  # a hub model's cache is fixed by pulling it again
                if local and (damaged := damaged_safetensors(exc)) is not None:
                    raise self.bad_checkpoint(
                        f"a .safetensors file in it is damaged or cut short ({first_line(damaged)}): copy it again"
                    ) from None
                if is_missing_file(exc):
                    raise self.missing_weights(exc) from None
                if local and isinstance(exc, _BAD_DATA_ERRORS):
                    raise self.bad_checkpoint(
                        f"its files do not make a model ttag can run ({type(exc).__name__}: {first_line(exc)})"
                    ) from None
            raise

    def bad_checkpoint(self, why: str) -> BadCheckpoint:
        """The one line for a checkpoint whose files are there but cannot be loaded."""
        return BadCheckpoint(f"{self.spec.id} cannot be loaded: {why}")

    def checkpoint(self) -> str:
        """The spec's hub repo (or local folder) the model is loaded from."""
        if self.spec.hub_repo is None:
            raise RunnerError(f"{self.spec.id} names no checkpoint to load (its spec has no hub_repo)")
        return self.spec.hub_repo

    def local_files(self) -> dict[str, Any]:
        """``from_pretrained`` keywords: the spec's revision, the configured cache, and local files only — only
        ``ttag models pull`` downloads, never a surprise multi-GB fetch in the middle of a job."""
        return {"revision": self.spec.revision, "cache_dir": self.settings.cache_dir, "local_files_only": True}

    def missing_dependency(self, what: str, exc: ImportError | None = None) -> MissingDependency:
        """What is missing, for which Python (a runner may have an environment of its own), and how to install it."""
        setup = self.spec.extra.get("setup")
        fix = f"run `{setup}`" if setup else install_hint(self.spec.runner_name)
        why = f" ({exc})" if exc is not None else ""
        return MissingDependency(
            f"{self.spec.id} needs {what}, which this worker's Python ({sys.executable}) cannot import{why}: {fix}"
        )

    def missing_weights(self, exc: BaseException | None = None, detail: str = "") -> MissingWeights:
        """The one line for weights that are not on disk: a local folder says what is wrong with it; a hub model
        names the command that downloads it (the library's own paragraph about the hub would only confuse)."""
        if "local_folder" in self.spec.extra and exc is not None:
            return MissingWeights(f"{self.spec.id} cannot be loaded: {first_line(exc)}")
        what = f" ({detail})" if detail else ""
        return MissingWeights(
            f"{self.spec.id} is not downloaded{what}: run `ttag models pull {self.spec.id}` "
            f"(a {human_size(self.spec.size_bytes)} download)"
        )

    # -- generating ----------------------------------------------------------------------------------------------
    def seconds(self, request: GenerationRequest) -> float:
        """The request's duration (validation always fills it in; the spec's default stands in otherwise)."""
        return float(request.duration if request.duration is not None else self.spec.default_duration)

    @contextmanager
    def generating(self, request: GenerationRequest) -> Iterator[None]:
        """Around a generation call: out-of-memory frees what it can and becomes one line; the runner stays usable."""
        try:
            yield
        except Exception as exc:
            if isinstance(exc, RunnerError) or not is_out_of_memory(exc):
                raise
            free_memory()
            raise OutOfMemory(
                f"out of memory generating {self.seconds(request):g} s with {self.spec.id}: try {self.memory_hint}"
            ) from None

    def stream_from_thread(self, produce: Callable[[JobContext, Emit], None], ctx: JobContext) -> Iterator[AudioChunk]:
        """:func:`stream_from_thread` with this runner's thread setting."""
        return stream_from_thread(produce, ctx, threads=self.settings.threads, name=f"ttag-{self.name}-stream")
