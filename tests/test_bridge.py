"""The bridge and its worker processes: protocol, warm models, cancel, crashes, hangs, asyncio."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import os
import signal
import subprocess
import sys
import time
import weakref
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from runners.protocol import ProtocolError, read_message, write_message
from runners.registry import default_registry
from runners.request import validate_request
from tests.fake_runners import SAMPLE_RATE, fake_registry
from tests.waiting import wait_until
from ttag_tui.backend.events import Chunk, ClipReady, Done, Failed, JobFailed, Progress, Started
from ttag_tui.bridge import Bridge, BridgeSettings

REGISTRY = fake_registry()


def request(model: str = "tone", **fields):
    return validate_request({"prompt": "a test tone", "model": model, "seed": 7, **fields}, REGISTRY)


@pytest.fixture
def bridge():
    with Bridge(REGISTRY, BridgeSettings(cancel_grace_s=1.0, idle_unload_s=0)) as b:
        yield b


# -- protocol ------------------------------------------------------------------------------------------------------
def test_frames_round_trip_with_audio():
    buffer = io.BytesIO()
    audio = np.random.default_rng(0).standard_normal((2, 1000)).astype(np.float32)
    write_message(buffer, {"type": "chunk", "job": "j"}, audio)
    write_message(buffer, {"type": "done", "job": "j"})
    buffer.seek(0)
    header, received = read_message(buffer)
    assert header["type"] == "chunk" and header["shape"] == [2, 1000]
    np.testing.assert_array_equal(received, audio)
    assert read_message(buffer)[0] == {"type": "done", "job": "j"}
    assert read_message(buffer) is None


def test_truncated_and_garbage_frames_are_protocol_errors():
    buffer = io.BytesIO()
    write_message(buffer, {"type": "x"}, np.zeros((1, 10), np.float32))
    with pytest.raises(ProtocolError):
        read_message(io.BytesIO(buffer.getvalue()[:-5]))
    with pytest.raises(ProtocolError):
        read_message(io.BytesIO(b"\x00\x00\x00\x03abc"))


# -- jobs ----------------------------------------------------------------------------------------------------------
def test_generate_returns_takes_with_metadata_and_events(bridge):
    job = bridge.submit(request(takes=2, duration=0.5))
    events = list(job.events(timeout=60))
    assert isinstance(events[0], Started)
    phases = [(e.phase, e.step) for e in events if isinstance(e, Progress)]
    assert ("loading", 0) in phases and ("generating", 4) in phases
    assert sum(isinstance(e, ClipReady) for e in events) == 2
    done = events[-1]
    assert isinstance(done, Done)
    assert [c.metadata["seed"] for c in done.clips] == [7, 8]
    assert all(c.audio.shape == (1, SAMPLE_RATE // 2) and c.audio.dtype == np.float32 for c in done.clips)
    meta = done.clips[0].metadata
    assert meta["model"] == "tone" and meta["runner"] == "tone" and meta["ttag_version"]
    assert meta["parameters"]["prompt"] == "a test tone" and "load_s" in meta["timings"]


def test_model_stays_loaded_between_requests(bridge):
    first = bridge.submit(request()).result(60)
    pid = bridge.handle_for(REGISTRY.get("tone")).pid
    second = bridge.submit(request()).result(60)
    assert bridge.handle_for(REGISTRY.get("tone")).pid == pid
    assert first[0].metadata["timings"]["load_s"] > 0 and second[0].metadata["timings"]["load_s"] == 0
    assert bridge.loaded_models() == ["tone"]
    np.testing.assert_array_equal(first[0].audio, second[0].audio)


def test_explicit_and_idle_unload():
    with Bridge(REGISTRY, BridgeSettings(idle_unload_s=0.5)) as bridge:
        bridge.submit(request()).result(60)
        assert bridge.loaded_models() == ["tone"]
        wait_until(lambda: not bridge.loaded_models(), 10, "the idle model unloaded")
        again = bridge.submit(request()).result(60)
        assert again[0].metadata["timings"]["load_s"] > 0, "reloaded after the idle unload"
        bridge.unload("tone")
        wait_until(lambda: not bridge.loaded_models(), 10, "the model unloaded")
        assert bridge.loaded_models() == []


def test_streamed_chunks_match_clip(bridge):
    job = bridge.submit(request(duration=0.25), stream=True)
    events = list(job.events(timeout=60))
    chunks = [e for e in events if isinstance(e, Chunk)]
    assert chunks and chunks[0].start == 0
    np.testing.assert_array_equal(np.concatenate([c.audio for c in chunks], axis=1), events[-1].clips[0].audio)


def test_cooperative_cancel_then_worker_serves_next(bridge):
    job = bridge.submit(request("slow-tone", steps=100))
    for event in job.events(timeout=60):
        if isinstance(event, Progress) and event.phase == "generating" and event.step >= 2:
            pid = bridge.handle_for(REGISTRY.get("slow-tone")).pid
            started = time.monotonic()
            job.cancel()
    assert isinstance(job.outcome, Failed) and job.outcome.kind == "cancelled"
    # At the next 0.2 s step, not after the ~20 s of steps left; the margin is for a busy machine, not the design.
    assert time.monotonic() - started < 5, "cooperative cancel stops at the next step"
    assert bridge.submit(request("slow-tone", steps=1)).result(60)
    assert bridge.handle_for(REGISTRY.get("slow-tone")).pid == pid, "the worker survived the cancel"


def test_cancel_queued_job_never_runs(bridge):
    running = bridge.submit(request("slow-tone", steps=10))
    queued = bridge.submit(request("slow-tone", steps=10))
    queued.cancel()
    assert isinstance(queued.outcome, Failed) and queued.outcome.message == "cancelled before it started"
    assert running.result(60)


def test_hanging_worker_is_killed_after_grace(bridge):
    job = bridge.submit(request("hang"))
    for event in job.events(timeout=60):
        if isinstance(event, Progress) and event.phase == "generating":
            started = time.monotonic()
            job.cancel()
    assert job.outcome.kind == "cancelled" and "killed" in job.outcome.message
    assert 0.9 < time.monotonic() - started < 5
    assert bridge.submit(request("tone")).result(60), "other runners unaffected"
    with pytest.raises(JobFailed):  # the hang runner's next job gets a fresh worker (which hangs again)
        job2 = bridge.submit(request("hang"))
        next(e for e in job2.events(60) if isinstance(e, Progress) and e.phase == "generating")
        job2.cancel()
        job2.result(30)


def test_worker_killed_mid_job_is_an_error_and_next_job_gets_fresh_worker(bridge):
    job = bridge.submit(request("slow-tone", steps=100))
    for event in job.events(timeout=60):
        if isinstance(event, Progress) and event.phase == "generating":
            pid = bridge.handle_for(REGISTRY.get("slow-tone")).pid
            os.kill(pid, signal.SIGKILL)
    assert job.outcome.kind == "crashed" and "SIGKILL" in job.outcome.message
    clips = bridge.submit(request("slow-tone", steps=1)).result(60)
    assert clips and bridge.handle_for(REGISTRY.get("slow-tone")).pid != pid


def test_runner_that_crashes_itself(bridge):
    with pytest.raises(JobFailed) as info:
        bridge.submit(request("crash")).result(60)
    assert info.value.kind == "crashed"


def test_typed_errors_reach_the_caller_and_worker_lives(bridge):
    with pytest.raises(JobFailed) as info:
        bridge.submit(request("fake-missing")).result(60)
    assert info.value.kind == "missing_weights" and "ttag models pull fake-missing" in str(info.value)


def test_runner_module_missing_is_a_clear_error(bridge):
    with pytest.raises(JobFailed) as info:
        bridge.submit(request("no-such-runner")).result(60)
    assert info.value.kind == "missing_dependency" and "tests.no_such_module" in str(info.value)


def test_missing_interpreter_is_a_clear_error():
    settings = BridgeSettings(interpreters={"fake_runners": "/nonexistent/venv/bin/python"})
    with Bridge(REGISTRY, settings) as bridge, pytest.raises(JobFailed) as info:
        bridge.submit(request()).result(60)
    assert info.value.kind == "missing_dependency" and "/nonexistent/venv/bin/python" in str(info.value)


def test_worker_stdout_chatter_does_not_break_protocol(bridge):
    assert bridge.submit(request("noisy")).result(60)


def test_several_jobs_queue_in_order(bridge):
    jobs = [bridge.submit(request(seed=s)) for s in range(4)]
    seeds = [job.result(60)[0].metadata["seed"] for job in jobs]
    assert seeds == [0, 1, 2, 3]


def test_eta_is_estimated(bridge):
    job = bridge.submit(request("slow-tone", steps=5))
    etas = [e.eta_s for e in job.events(60) if isinstance(e, Progress) and e.phase == "generating"]
    assert etas[0] is None and all(eta is not None for eta in etas[1:])
    assert 0.4 < etas[1] < 2.0  # 3 steps of ~0.2 s left


async def test_asyncio_use_does_not_block_the_loop(bridge):
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    job = bridge.submit(request("slow-tone", steps=5))
    kinds = [type(e).__name__ async for e in job.aevents()]
    task.cancel()
    assert kinds[0] == "Started" and kinds[-1] == "Done"
    assert ticks > 30, "the event loop kept running while the job ran"
    clips = await bridge.submit(request()).aresult()
    assert clips[0].metadata["seed"] == 7


def test_close_cancels_running_and_queued_jobs_and_stops_workers():
    bridge = Bridge(REGISTRY, BridgeSettings(cancel_grace_s=1.0))
    running = bridge.submit(request("slow-tone", steps=100))
    queued = bridge.submit(request("slow-tone", steps=100))
    next(e for e in running.events(60) if isinstance(e, Progress) and e.phase == "generating")
    process = bridge.handle_for(REGISTRY.get("slow-tone")).process
    bridge.close()
    assert running.outcome.kind == "cancelled" and queued.outcome.kind == "cancelled"
    assert process.poll() is not None, "the worker process is gone"


def test_a_worker_whose_bridge_is_gone_stops_its_job_and_exits():
    """The app was killed: the worker's stdin closes. Its job (200 steps of 0.2 s) stops at the next step, even
    though its output is still read (so no broken pipe ends it), and the process exits."""
    import subprocess
    import sys

    worker = subprocess.Popen(
        [sys.executable, "-m", "runners.worker", "--runner", "tests.fake_runners:SlowToneRunner"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),  # tests.fake_runners importable
    )
    try:
        assert read_message(worker.stdout)[0]["type"] == "hello"
        job = request("slow-tone", steps=200, duration=0.1)
        spec = REGISTRY.get("slow-tone")
        write_message(
            worker.stdin,
            {"type": "generate", "job": "j1", "spec": spec.to_dict(), "request": job.to_dict(), "stream": False},
        )
        worker.stdin.flush()
        while (message := read_message(worker.stdout)) is not None and message[0]["type"] != "progress":
            pass
        started = time.monotonic()
        worker.stdin.close()  # the bridge is gone
        while read_message(worker.stdout) is not None:  # keep reading, as a live reader would
            pass
        assert worker.wait(timeout=10) == 0
        assert time.monotonic() - started < 10  # not the 40 s the job would have taken (margin: a busy machine)
    finally:
        worker.kill()
        worker.wait()


def test_a_shut_down_worker_exits_cleanly_at_once(bridge):
    """After ``shutdown`` the worker leaves with code 0 straight away. (Finalising the interpreter used to wait ~1 s
    on the stdin reader thread's lock and then abort: 'Fatal Python error ... could not acquire lock'.)"""
    bridge.generate(request(), timeout=60)
    handle = bridge.handle_for(REGISTRY.get("tone"))
    process = handle.process
    started = time.monotonic()
    handle.close()
    assert process.returncode == 0, list(handle.stderr_tail)
    assert time.monotonic() - started < 0.9
    assert not any("Fatal Python error" in line for line in handle.stderr_tail)


# -- takes finished before a job ends badly ------------------------------------------------------------------------
SYNTH = default_registry()


def synth_request(**fields):
    """Three 30 s synth takes: about a second each, so a take is in the making when take 0's clip arrives."""
    data = {"prompt": "lofi hip hop with rain", "model": "synth", "seed": 11, "duration": 30, "takes": 3, **fields}
    return validate_request(data, SYNTH)


@pytest.fixture
def synth_bridge():
    with Bridge(SYNTH, BridgeSettings(cancel_grace_s=5.0, idle_unload_s=0)) as b:
        yield b


def events_acting_after_take_0(job, act):
    """All the job's events; ``act()`` runs once take 0's clip has arrived."""
    events = []
    for event in job.events(timeout=120):
        events.append(event)
        if isinstance(event, ClipReady) and event.clip.metadata["take"] == 0:
            act()
    return events


def assert_take_0_kept(bridge, job, events, stream):
    """Take 0 (only) was delivered before the end (events stop there), is what a run of that take alone makes, and
    ``result()`` hands it over with the failure."""
    kept = [e.clip for e in events if isinstance(e, ClipReady)]
    assert [c.metadata["take"] for c in kept] == [0]
    with pytest.raises(JobFailed) as info:
        job.result(1)
    assert info.value.clips == kept
    alone = bridge.submit(synth_request(takes=1)).result(120)[0]
    np.testing.assert_array_equal(kept[0].audio, alone.audio)
    if stream:
        chunks = [e.audio for e in events if isinstance(e, Chunk) and e.take == 0]
        np.testing.assert_array_equal(np.concatenate(chunks, axis=1), kept[0].audio)


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "not-streamed"])
def test_a_cancelled_job_keeps_the_takes_it_finished(synth_bridge, stream):
    job = synth_bridge.submit(synth_request(), stream=stream)
    events = events_acting_after_take_0(job, job.cancel)
    assert isinstance(events[-1], Failed) and events[-1].kind == "cancelled", events[-1]
    assert_take_0_kept(synth_bridge, job, events, stream)


def test_a_killed_worker_keeps_the_takes_it_finished(synth_bridge):
    job = synth_bridge.submit(synth_request(), stream=True)
    handle = synth_bridge.handle_for(SYNTH.get("synth"))
    events = events_acting_after_take_0(job, lambda: os.kill(handle.pid, signal.SIGKILL))
    assert isinstance(events[-1], Failed) and events[-1].kind == "crashed" and "SIGKILL" in events[-1].message
    assert_take_0_kept(synth_bridge, job, events, stream=True)


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "not-streamed"])
def test_a_finished_job_is_not_held_by_the_bridge(bridge, stream):
    """Its audio is its readers' to keep: the dispatcher waiting for the next job holds no reference to it."""
    job = bridge.submit(request(takes=2), stream=stream)
    assert job.result(60)
    finished = weakref.ref(job)
    del job

    def released() -> bool:
        gc.collect()
        return finished() is None

    wait_until(released, 10, "the finished job released")


def interrupted_generate(args: list[str], ready: Callable[[], object], what: str) -> tuple[int, str, str]:
    """``ttag generate ARGS`` as a process, sent SIGINT (Ctrl-C) once ``ready``: its exit code, stdout and stderr."""
    cli = subprocess.Popen(
        [sys.executable, "-m", "ttag_tui", "generate", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        wait_until(ready, 120, what)
        cli.send_signal(signal.SIGINT)
        out, err = cli.communicate(timeout=120)
    finally:
        cli.kill()
    return cli.returncode, out, err


def test_ctrl_c_in_the_cli_writes_the_takes_finished_before_it(tmp_path):
    """Take 0 is on disk as soon as it is made; Ctrl-C then cancels the rest, lists what was written, exits 130."""
    args = ["lofi hip hop with rain", "-d", "30", "-n", "3", "--seed", "11", "-o", str(tmp_path)]
    code, out, err = interrupted_generate(args, lambda: list(tmp_path.glob("*.json")), "take 0 written")
    assert code == 130, err
    written = [Path(line) for line in out.splitlines()]
    assert len(written) == 1 and written[0].is_file() and "_s11_" in written[0].name
    assert "cancelled" in err and "1 of 3" in err and "Traceback" not in err


def test_a_device_this_machine_lacks_is_one_line_and_the_worker_lives():
    """``device = "cuda"`` without CUDA: the job fails saying so, and the worker answers the next job (it used to die
    of SIGABRT on the bridge's memory probe, which raised outside any job)."""
    from runners.contract import RunnerSettings
    from runners.registry import Registry
    from tests.fake_runners import spec

    on_torch = Registry([spec("tone-on-torch", "ToneRunner", requires=("torch",))])
    settings = BridgeSettings(runner=RunnerSettings(device="cuda"), idle_unload_s=0)
    with Bridge(on_torch, settings) as bridge:
        for _ in range(2):
            job = bridge.submit(validate_request({"prompt": "x", "model": "tone-on-torch"}, on_torch))
            with pytest.raises(JobFailed) as info:
                job.result(120)
            assert "the device is set to 'cuda', which this machine does not have" in str(info.value)
            assert info.value.kind != "crashed", str(info.value)


def test_a_dead_workers_reason_is_its_last_words_not_a_progress_bar():
    from ttag_tui.bridge import WorkerHandle

    handle = WorkerHandle("fake_runners", sys.executable, {}, cancel_grace_s=1.0)
    handle.stderr_tail.extend(
        [
            "RuntimeError: weights do not fit",
            "Loading weights:   0%|          | 0/177 [00:00<?, ?it/s]\rLoading weights: 100%|██████████| 177/177 "
            "[00:00<00:00, 3623.19it/s]",
            "",
        ]
    )
    assert handle._stderr_hint() == " (RuntimeError: weights do not fit)"


def test_ctrl_c_while_a_take_is_encoded_still_writes_it(tmp_path):
    """Ctrl-C during a take's MP3 encode (seconds for two minutes of audio) used to lose that take, though it was
    made: the CLI cancels the rest and then writes the takes made before the cancel took effect."""
    from ttag_tui.output import TEMP_PREFIX

    args = ["techno 128 bpm", "-d", "120", "-n", "3", "--seed", "5", "-o", str(tmp_path / "t.mp3")]
    code, out, err = interrupted_generate(args, lambda: list(tmp_path.glob(f"{TEMP_PREFIX}*")), "take 0 encoding")
    assert code == 130 and "Traceback" not in err, err
    written = [Path(line) for line in out.splitlines()]
    assert written and all(path.is_file() and path.with_suffix(".json").is_file() for path in written)
    assert json.loads(written[0].with_suffix(".json").read_text())["seed"] == 5 and f"{len(written)} of 3" in err
    assert not list(tmp_path.glob(f"{TEMP_PREFIX}*")), "no temp file left"
