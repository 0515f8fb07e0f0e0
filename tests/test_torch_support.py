"""The torch runners' shared base (``runners.torch_support``): the device and dtype rule, typed load and generation
failures in one line, and the one stream-from-a-thread helper. The real runners built on it are tested against their
reference libraries in test_musicgen, test_diffusion and test_audiocraft; here the base's own rules, at their edges."""

from __future__ import annotations

import threading
import traceback
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from runners.contract import (
    AudioChunk,
    Cancelled,
    Clip,
    JobContext,
    MissingDependency,
    MissingWeights,
    OutOfMemory,
    RunnerError,
    RunnerSettings,
)
from runners.registry import ModelSpec
from runners.request import GenerationRequest
from runners.torch_support import (
    TorchRunner,
    choose_device,
    choose_dtype,
    device_and_dtype,
    is_missing_file,
    is_out_of_memory,
    stream_from_thread,
)

WAIT = 60  # seconds a test waits on a condition before it fails (a loaded box is slow, never this slow)

SPEC = ModelSpec(
    id="tiny-torch",
    runner="tests.test_torch_support:FakeRunner",
    kind="music",
    description="a torch runner that loads nothing",
    sample_rate=8000,
    channels=1,
    min_duration=0.1,
    max_duration=10.0,
    default_duration=2.0,
    hub_repo="someone/tiny-torch",
    size_bytes=2_400_000_000,
    requires=("torch",),
)


class OutOfMemoryError(RuntimeError):
    """Named like torch.cuda.OutOfMemoryError (whose text need not say "out of memory")."""


class LocalEntryNotFoundError(Exception):
    """Named like huggingface_hub's error for a file that is not in the cache."""


class FakeRunner(TorchRunner):
    name = "fake-torch"
    needs = "torch and a fake library"

    def __init__(self, spec: ModelSpec = SPEC, settings: RunnerSettings | None = None, fail: Any = None) -> None:
        super().__init__(spec, settings or RunnerSettings(threads=1))
        self.fail = fail
        self.unloads = 0
        self.loaded = False

    def load(self, ctx: JobContext) -> None:
        self.loaded = True
        if self.fail is not None:
            raise self.fail

    def unload(self) -> None:
        self.unloads += 1
        self.loaded = False
        super().unload()

    def generate(self, request: GenerationRequest, ctx: JobContext) -> list[Clip]:
        return []


def request(duration: float | None = 5.0) -> GenerationRequest:
    return GenerationRequest("a prompt", model=SPEC.id, duration=duration, seed=1)


def one_line(message: str) -> bool:
    return "\n" not in message and "Traceback" not in message


def stream_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("ttag-test-stream")]


# -- device and dtype ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("setting", "cuda", "mps", "device"),
    [
        ("auto", True, True, "cuda"),  # CUDA first
        ("auto", False, True, "mps"),  # then Apple's GPU
        ("auto", False, False, "cpu"),
        ("cpu", True, True, "cpu"),  # an explicit choice wins
        ("cuda", True, False, "cuda"),
        ("cuda:1", True, False, "cuda:1"),
        ("mps", False, True, "mps"),
    ],
)
def test_device_rule(setting, cuda, mps, device):
    assert choose_device(setting, cuda=cuda, mps=mps) == device


@pytest.mark.parametrize(
    ("setting", "cuda", "mps"), [("cuda", False, True), ("cuda:0", False, False), ("mps", True, False)]
)
def test_a_device_this_machine_lacks_is_one_line(setting, cuda, mps):
    with pytest.raises(RunnerError, match=rf"set to '{setting}', which this machine does not have") as failure:
        choose_device(setting, cuda=cuda, mps=mps)
    assert one_line(str(failure.value))


@pytest.mark.parametrize(
    ("device", "setting", "dtype"),
    [
        ("cuda", "auto", "float16"),  # what the checkpoints ship and GPUs are fast at
        ("cuda:1", "auto", "float16"),
        ("mps", "auto", "float32"),
        ("cpu", "auto", "float32"),
        ("cuda", "float32", "float32"),  # an explicit choice wins, on every device
        ("mps", "bfloat16", "bfloat16"),
        ("cpu", "float16", "float16"),
    ],
)
def test_dtype_rule(device, setting, dtype):
    assert choose_dtype(device, setting) == dtype


def test_device_and_dtype_with_this_machines_torch():
    import torch

    device, dtype = device_and_dtype(RunnerSettings(device="cpu"), torch)
    assert (device, dtype) == ("cpu", torch.float32)
    assert device_and_dtype(RunnerSettings(device="cpu", dtype="bfloat16"), torch) == ("cpu", torch.bfloat16)
    for bad in ("int8", "complex", "Tensor", ""):
        with pytest.raises(RunnerError, match="not a floating-point type") as failure:
            device_and_dtype(RunnerSettings(device="cpu", dtype=bad), torch)
        assert one_line(str(failure.value))
    if not torch.cuda.is_available():
        with pytest.raises(RunnerError, match="does not have"):
            device_and_dtype(RunnerSettings(device="cuda"), torch)


def test_load_model_sets_threads_device_and_dtype():
    import torch

    runner = FakeRunner(settings=RunnerSettings(device="cpu", dtype="bfloat16", threads=1))
    runner.load_model(JobContext())
    assert runner.loaded and runner.torch is torch and (runner.device, runner.dtype) == ("cpu", torch.bfloat16)
    assert torch.get_num_threads() == 1


# -- out of memory ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "error",
    [
        OutOfMemoryError("CUDA error: an illegal state"),  # the class name is enough
        RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 8.00 GiB total capacity)"),
        RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"),
        RuntimeError("MPS backend OUT OF MEMORY"),
        MemoryError(),
    ],
)
def test_out_of_memory_is_recognised(error):
    assert is_out_of_memory(error)


@pytest.mark.parametrize("error", [ValueError("out of memory"), RuntimeError("shape mismatch"), OSError("disk")])
def test_other_errors_are_not_out_of_memory(error):
    assert not is_out_of_memory(error)


@pytest.mark.parametrize(
    "error",
    [OutOfMemoryError("CUDA error\nwith a second line"), RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB")],
)
def test_out_of_memory_while_loading_is_one_line_and_unloads(error):
    runner = FakeRunner(fail=error)
    with pytest.raises(OutOfMemory) as failure:
        runner.load_model(JobContext())
    assert str(failure.value) == "not enough memory to load tiny-torch: try a smaller model"
    assert failure.value.kind == "out_of_memory" and failure.value.__suppress_context__
    assert runner.unloads == 1 and not runner.loaded


@pytest.mark.parametrize(
    "error",
    [OutOfMemoryError("CUDA error\nwith a second line"), RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB")],
)
def test_out_of_memory_while_generating_is_one_line(error):
    runner = FakeRunner()
    with pytest.raises(OutOfMemory) as failure, runner.generating(request(7.5)):
        raise error
    message = str(failure.value)
    assert (
        message
        == "out of memory generating 7.5 s with tiny-torch: try a shorter duration, fewer takes or a smaller model"
    )
    assert one_line(message)
    # nothing else is touched: other errors and the runner's own typed errors pass through as they are
    for other in (ValueError("bad"), Cancelled(), OutOfMemory("already typed")):
        with pytest.raises(type(other)) as passed, runner.generating(request()):
            raise other
        assert passed.value is other
    with runner.generating(request(None)):  # and a call that succeeds is untouched
        pass


def test_generating_names_the_specs_default_duration_when_the_request_has_none():
    with pytest.raises(OutOfMemory, match="generating 2 s with"), FakeRunner().generating(request(None)):
        raise MemoryError()


# -- missing weights and dependencies --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "error",
    [
        OSError("We couldn't connect to 'https://huggingface.co' to load this file.\nCheck your connection."),
        FileNotFoundError("config.json"),
        LocalEntryNotFoundError("Cannot find the requested files in the disk cache"),
        ValueError("The provided pretrained_model_name_or_path is neither a valid local path nor a valid repo id"),
    ],
)
def test_a_file_not_on_disk_names_the_download_command(error):
    assert is_missing_file(error)
    runner = FakeRunner(fail=error)
    with pytest.raises(MissingWeights) as failure:
        runner.load_model(JobContext())
    assert str(failure.value) == (
        "tiny-torch is not downloaded: run `ttag models pull tiny-torch` (a 2.4 GB download)"
    )  # not the library's paragraph about the hub
    assert runner.unloads == 1


def test_a_wrapped_missing_file_is_recognised_by_its_cause():
    try:
        try:
            raise LocalEntryNotFoundError("not cached")
        except LocalEntryNotFoundError as exc:
            raise RuntimeError("loading failed") from exc
    except RuntimeError as wrapped:
        assert is_missing_file(wrapped)
    assert not is_missing_file(RuntimeError("loading failed")) and not is_missing_file(ValueError("bad value"))


def test_a_broken_local_folder_says_what_is_wrong_with_it():
    folder = replace(SPEC, id="/models/mine", extra={"local_folder": "/models/mine"})
    runner = FakeRunner(folder, fail=OSError("Error no file named model.safetensors found in /models/mine\nmore"))
    with pytest.raises(MissingWeights) as failure:
        runner.load_model(JobContext())
    assert (
        str(failure.value)
        == "/models/mine cannot be loaded: Error no file named model.safetensors found in /models/mine"
    )


def test_missing_weights_detail_goes_in_brackets():
    message = str(FakeRunner().missing_weights(detail="t5-base missing"))
    assert (
        message
        == "tiny-torch is not downloaded (t5-base missing): run `ttag models pull tiny-torch` (a 2.4 GB download)"
    )


def test_missing_packages_name_what_to_install():
    spec = replace(SPEC, requires=("torch", "ttag_no_such_package"))
    with pytest.raises(MissingDependency) as failure:
        FakeRunner(spec).load_model(JobContext())
    message = str(failure.value)
    assert message.startswith("tiny-torch needs ttag_no_such_package, which this worker's Python (")
    assert "pip install" in message and one_line(message)
    own_env = replace(SPEC, extra={"setup": "ttag runners setup fake"}, requires=("ttag_no_such_package",))
    with pytest.raises(MissingDependency, match=r"run `ttag runners setup fake`$"):
        FakeRunner(own_env).load_model(JobContext())
    runner = FakeRunner(fail=ImportError("No module named 'fakelib'"))
    with pytest.raises(MissingDependency, match=r"needs torch and a fake library, .*\(No module named 'fakelib'\)"):
        runner.load_model(JobContext())
    assert runner.unloads == 1


def test_typed_errors_and_cancellation_pass_through_the_load():
    for error in (RunnerError("a checkpoint this runner cannot run"), Cancelled()):
        runner = FakeRunner(fail=error)
        with pytest.raises(type(error)) as failure:
            runner.load_model(JobContext())
        assert failure.value is error and runner.unloads == 1
    ctx = JobContext()
    ctx.cancel()
    runner = FakeRunner()
    with pytest.raises(Cancelled):
        runner.load_model(ctx)
    assert not runner.loaded  # cancelled before the slow part


def test_an_unexpected_load_error_is_not_disguised():
    runner = FakeRunner(fail=KeyError("weight_norm"))
    with pytest.raises(KeyError):
        runner.load_model(JobContext())
    assert runner.unloads == 1


# -- streaming -------------------------------------------------------------------------------------------------------
def chunk(take: int, index: int) -> AudioChunk:
    return AudioChunk(take, index * 4, np.full((1, 4), index, np.float32), 8000)


def stream(produce: Any, ctx: JobContext | None = None, **kwargs: Any) -> Any:
    return stream_from_thread(produce, ctx or JobContext(), name="ttag-test-stream", **kwargs)


def test_chunks_arrive_in_order_through_a_small_queue():
    def produce(ctx: JobContext, emit: Any) -> None:
        for take in range(3):
            for index in range(50):
                emit(chunk(take, index))

    got = [(c.take, c.start, float(c.audio[0, 0])) for c in stream(produce, queue_size=2)]
    assert got == [(take, index * 4, float(index)) for take in range(3) for index in range(50)]
    assert not stream_threads()


def test_an_empty_stream_ends():
    assert list(stream(lambda ctx, emit: None)) == []
    assert not stream_threads()


def test_the_threads_error_reaches_the_caller_after_its_chunks():
    class Boom(Exception):
        pass

    def produce(ctx: JobContext, emit: Any) -> None:
        emit(chunk(0, 0))
        emit(chunk(0, 1))
        raise Boom("in the generating thread")

    got = []
    with pytest.raises(Boom, match="in the generating thread") as failure:
        for item in stream(produce):
            got.append(item.start)
    assert got == [0, 4]
    assert any(frame.name == "produce" for frame in traceback.extract_tb(failure.value.__traceback__))
    assert not stream_threads()


def test_progress_reaches_the_job_and_the_threads_setting_is_applied_in_the_thread():
    import torch

    seen = []
    threads_in_thread = []

    def produce(ctx: JobContext, emit: Any) -> None:
        threads_in_thread.append(torch.get_num_threads())
        for step in range(3):
            ctx.progress("generating", step + 1, 3)
            emit(chunk(0, step))

    job = JobContext(on_progress=lambda phase, step, total: seen.append((phase, step, total)))
    assert len(list(stream(produce, job, threads=1))) == 3
    assert seen == [("generating", 1, 3), ("generating", 2, 3), ("generating", 3, 3)]
    assert threads_in_thread == [1]


def test_cancelling_the_job_stops_the_thread_and_raises_cancelled():
    job = JobContext()
    steps = []

    def produce(ctx: JobContext, emit: Any) -> None:
        step = 0
        while step < 10_000:  # a generation that only ends when it is cancelled
            step += 1
            steps.append(step)
            ctx.progress("generating", step, 10**9)
            emit(chunk(0, step))
        raise AssertionError("the thread was never told to stop")

    got = 0
    with pytest.raises(Cancelled):
        for _ in stream(produce, job):
            got += 1
            if got == 5:
                job.cancel()
    assert not stream_threads()
    # after the cancel the thread made at most a queue's worth of chunks (64) plus the one it was putting, and one step
    assert steps[-1] <= 5 + 64 + 2


@pytest.mark.parametrize("checks_progress", [True, False])
def test_a_consumer_that_stops_reading_stops_the_thread(checks_progress):
    """Closing the stream (the worker stops reading) ends the thread: at its next progress step, or at its next
    chunk when it is blocked on a full queue and reports no progress at all."""
    stopped = threading.Event()
    job = JobContext()

    last = [0]

    def produce(ctx: JobContext, emit: Any) -> None:
        try:
            index = 0
            while index < 10_000:
                index += 1
                last[0] = index
                if checks_progress:
                    ctx.progress("generating", index, 10**9)
                emit(chunk(0, index))
        finally:
            stopped.set()

    chunks = stream(produce, job, queue_size=1)
    assert next(chunks).start == 4
    assert not stopped.is_set()
    closer = threading.Thread(target=chunks.close)  # close() returns once the thread is gone
    closer.start()
    closer.join(WAIT)
    assert not closer.is_alive() and stopped.is_set() and not stream_threads()
    assert last[0] <= 4  # 1 read, 2 queued, 3 being put at the close: emitting 4 raises
    assert not job.cancelled  # the job itself was not cancelled: only this stream ended


def test_a_runners_stream_uses_its_thread_setting_and_name():
    runner = FakeRunner(settings=RunnerSettings(threads=1))
    names = []

    def produce(ctx: JobContext, emit: Any) -> None:
        names.append(threading.current_thread().name)
        emit(chunk(0, 0))

    assert len(list(runner.stream_from_thread(produce, JobContext()))) == 1
    assert names == ["ttag-fake-torch-stream"]
