"""Pilot tests for what is done to takes: listen while a job generates, copy a path, continue, rename, the trash.

Like ``tests/test_app.py``: real worker processes run fake runners, and every wait is for a state, never a sleep.
``StreamingToneRunner`` lives here (workers import it as ``tests.test_app_takes:StreamingToneRunner``): it streams its
tone in chunks and, when ``STREAM_GATE_ENV`` names a file, holds the second half until that file exists, so the test
decides when the job may finish instead of racing it.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile

from runners.contract import AudioChunk, JobContext
from runners.registry import ParamSpec, Registry
from runners.request import GenerationRequest
from tests.fake_runners import SAMPLE_RATE, ToneRunner, spec
from tests.tui_fakes import (
    FakeSoundDevice,
    generate,
    job_items,
    make_app,
    record_notifications,
    running,
    takes,
    tui_registry,
    type_prompt,
    wait_for,
)
from ttag_tui.playback import Player
from ttag_tui.sessions import SessionStore
from ttag_tui.widgets.jobs import JobsList

STREAM_GATE_ENV = "TTAG_TEST_STREAM_GATE"
BLOCK = 256  # frames per callback of the fake audio device


class StreamingToneRunner(ToneRunner):
    """ToneRunner's sine, streamed as ``steps`` chunks; the second half waits for the gate file (if one is named)."""

    def stream(self, request: GenerationRequest, ctx: JobContext) -> Iterator[AudioChunk]:
        gate = os.environ.get(STREAM_GATE_ENV)
        n = round(request.duration * SAMPLE_RATE)
        steps = request.steps or 4
        for take in range(request.takes):
            freq = 200 + request.take_seed(take) % 800
            audio = (0.5 * np.sin(2 * np.pi * freq * np.arange(n) / SAMPLE_RATE)).astype(np.float32)[None, :]
            bounds = np.linspace(0, n, steps + 1).astype(int)
            for step in range(1, steps + 1):
                if gate and step > steps // 2:
                    while not os.path.exists(gate):
                        ctx.check_cancelled()
                        time.sleep(0.01)
                ctx.progress("generating", step, steps)
                start, end = bounds[step - 1], bounds[step]
                yield AudioChunk(take=take, start=int(start), audio=audio[:, start:end], sample_rate=SAMPLE_RATE)


def takes_registry() -> Registry:
    """The TUI's fake models plus a streaming one and one that accepts ``audio_prompt`` (it ignores the audio)."""
    registry = tui_registry()
    registry.add(spec("stream-tone", "StreamingToneRunner", runner="tests.test_app_takes:StreamingToneRunner"))
    registry.add(
        spec(
            "continue-tone",
            "ToneRunner",
            params=(ParamSpec("steps", "int", 4, 1, 1000), ParamSpec("audio_prompt", "audio", None)),
            description="test double that can continue a take",
        )
    )
    return registry


def record_submits(app) -> list[GenerationRequest]:
    """Every request that reaches the bridge (creating the bridge now, as the first generation would)."""
    submitted: list[GenerationRequest] = []
    bridge = app.bridge
    original = bridge.submit

    def submit(request, *args, **kwargs):
        submitted.append(request)
        return original(request, *args, **kwargs)

    bridge.submit = submit
    return submitted


async def test_listen_to_a_job_while_it_is_still_generating(tmp_path, monkeypatch):
    gate = tmp_path / "let-the-job-finish"
    monkeypatch.setenv(STREAM_GATE_ENV, str(gate))
    device = FakeSoundDevice()
    app = make_app(
        tmp_path, player=Player(lambda: device, blocksize=BLOCK), registry=takes_registry(), default_model="stream-tone"
    )
    async with running(app) as pilot:
        await type_prompt(pilot, "a tone heard as it is made")
        app.screen.query_one("#set-duration").value = "0.5"  # 4000 frames at 8 kHz, in 4 chunks of 1000
        app.screen.query_one("#set-steps").value = "4"
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: len(job_items(app)) == 1, "the job's row")
        item = job_items(app)[0]
        half = 2000
        await wait_for(pilot, lambda: item.live.available_frames == half, "the first half streamed in")

        jobs = app.screen.query_one(JobsList)
        jobs.focus()
        await pilot.press("enter")  # listen
        await wait_for(pilot, lambda: app.player.status().state == "playing", "live playback")
        assert app.player.source is item.live
        # Playing began while the job still runs: no take yet, the job is recorded as running, the source still grows.
        assert item.status == "running" and not item.live.complete
        assert takes(app).row_count == 0
        assert app.store.jobs(app.screen.session.id)[0].status == "running"
        assert app.player.status().duration_s == 0.5  # the bar is drawn for the whole take, not what has arrived

        # The device plays what has arrived, then silence while it waits for more (the position stays put).
        live = np.concatenate([device.stream.pull(BLOCK) for _ in range(half // BLOCK + 1)])[:, 0]
        status = app.player.status()
        assert status.state == "playing" and status.waiting and status.position_s == half / SAMPLE_RATE
        assert not np.any(live[half:])
        assert not item.finished and takes(app).row_count == 0

        gate.touch()  # let the job stream its second half and finish
        await wait_for(pilot, lambda: takes(app).row_count == 1, "the take")
        await wait_for(pilot, lambda: item.live.complete, "the live source complete")
        rest = []
        while device.stream.active:
            rest.append(device.stream.pull(BLOCK)[:, 0])
            assert len(rest) < 100, "playback never reached the end"
        assert app.player.status().state == "stopped"
        played = np.concatenate([live[:half], *rest])

        take = takes(app).selected_take
        audio, rate = soundfile.read(take.path, dtype="float32")
        assert rate == SAMPLE_RATE and len(audio) == 4000
        assert np.allclose(live[:half], audio[:half], atol=1e-4)  # heard before the job ended: the take's start
        assert np.allclose(played[: len(audio)], audio, atol=1e-4)  # and then the rest of it, seamlessly
        assert not np.any(played[len(audio) :])
        assert len(device.streams) == 1  # one stream from the first frame to the last


async def test_copy_the_path_of_a_take(tmp_path):
    app = make_app(tmp_path)
    notes = record_notifications(app)
    async with running(app) as pilot:
        await generate(pilot, "a tone to share", 1)
        await generate(pilot, "another tone", 2)
        writes: list[str] = []
        driver_write = app._driver.write
        app._driver.write = lambda data: (writes.append(data), driver_write(data))[1]

        await pilot.press("ctrl+t", "home")  # the first take, not the one selected last
        first = takes(app).selected_take
        assert first is not None and first.prompt == "a tone to share"
        await pilot.press("c")
        await wait_for(pilot, lambda: app.clipboard == first.path, "the path in the clipboard")
        assert (first.path, "Path copied", "information") in notes
        osc52 = f"\x1b]52;c;{base64.b64encode(first.path.encode()).decode()}\a"
        assert osc52 in writes  # the terminal is asked to put it on the system clipboard


async def test_continue_a_take_with_a_model_that_can(tmp_path):
    app = make_app(tmp_path, registry=takes_registry(), default_model="continue-tone")
    notes = record_notifications(app)
    async with running(app) as pilot:
        submitted = record_submits(app)
        await type_prompt(pilot, "a tone to carry on")
        app.screen.query_one("#set-duration").value = "0.3"
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: takes(app).row_count == 1, "the first take")
        first = takes(app).selected_take
        assert len(submitted) == 1 and submitted[0].audio_prompt is None

        await pilot.press("ctrl+t", "e")  # continue this take
        await wait_for(pilot, lambda: takes(app).row_count == 2, "the continued take")
        assert len(submitted) == 2
        request = submitted[1]
        assert request.audio_prompt == first.path
        assert request.seed != first.seed
        assert (request.model, request.prompt, request.takes) == ("continue-tone", first.prompt, 1)
        spec = app.registry.get("continue-tone")
        # the duration counts the audio continued (as MusicGen and audiocraft read it): the take plus the default
        assert request.duration == pytest.approx(min(first.duration + spec.default_duration, spec.max_duration))
        assert request.duration > first.duration
        record = app.store.jobs(app.screen.session.id)[-1]
        assert record.request["audio_prompt"] == first.path and record.request["seed"] == request.seed
        await wait_for(pilot, lambda: record.id not in {i.record_id for i in job_items(app)}, "the job to finish")
        assert app.store.jobs(app.screen.session.id)[-1].status == "done"

        second = max(takes(app).takes.values(), key=lambda t: t.number)
        assert second.id != first.id and second.seed == request.seed
        assert second.parameters["audio_prompt"] == first.path
        assert Path(second.path).is_file() and second.path != first.path
        assert not [m for m, _, severity in notes if severity in ("warning", "error")]


async def test_continue_is_refused_for_a_model_without_audio_prompt(tmp_path):
    app = make_app(tmp_path, registry=takes_registry())  # the tone model takes no audio_prompt
    notes = record_notifications(app)
    async with running(app) as pilot:
        submitted = record_submits(app)
        await generate(pilot, "a tone that cannot go on", 1)
        jobs_before = app.store.jobs(app.screen.session.id)
        assert len(submitted) == 1 and len(jobs_before) == 1

        await pilot.press("ctrl+t", "e")
        await wait_for(pilot, lambda: any(severity == "warning" for _, _, severity in notes), "the warning")
        assert [m for m, _, severity in notes if severity == "warning"] == ["tone cannot continue a take."]
        assert len(submitted) == 1
        assert app.store.jobs(app.screen.session.id) == jobs_before
        assert not job_items(app) and takes(app).row_count == 1


async def test_empty_the_trash_from_the_command_palette(tmp_path):
    app = make_app(tmp_path)
    notes = record_notifications(app)
    async with running(app) as pilot:
        await generate(pilot, "a tone to throw away", 1)
        take = takes(app).selected_take
        trashed = Path(take.path).parent / ".ttag-trash" / Path(take.path).name
        await pilot.press("ctrl+t", "d")
        await wait_for(pilot, lambda: takes(app).row_count == 0, "the delete")
        assert trashed.exists() and trashed.with_suffix(".json").exists()

        await pilot.press("ctrl+p")
        await pilot.press(*"empty the trash")
        await pilot.press("enter")
        await wait_for(pilot, lambda: not trashed.exists(), "the trashed file deleted")
        assert not trashed.with_suffix(".json").exists()
        await wait_for(pilot, lambda: any(m.startswith("Emptied the trash: 1 take(s)") for m, _, _ in notes), "a note")
        assert app.store.take(take.id) is None
        await pilot.press("ctrl+t", "u")  # nothing left to bring back
        await wait_for(pilot, lambda: ("The trash is empty.", "", "warning") in notes, "the warning")
        assert takes(app).row_count == 0


async def test_takes_trashed_long_ago_are_emptied_at_start_up(tmp_path):
    app = make_app(tmp_path)
    async with running(app) as pilot:
        await generate(pilot, "old tone", 1)
        await generate(pilot, "recent tone", 2)
        old, recent = sorted(takes(app).takes.values(), key=lambda t: t.number)
        await pilot.press("ctrl+t", "home", "d")
        await wait_for(pilot, lambda: takes(app).row_count == 1, "the first delete")
        await pilot.press("d")
        await wait_for(pilot, lambda: takes(app).row_count == 0, "the second delete")
    store = SessionStore(tmp_path / "data" / "sessions.sqlite3")
    with store._transaction() as db:  # the first one was deleted 31 days ago
        db.execute("UPDATE takes SET deleted=deleted-? WHERE id=?", (31 * 86400, old.id))
    old_file, recent_file = (Path(store.take(t.id).trashed_path) for t in (old, recent))
    store.close()
    assert old_file.exists() and recent_file.exists()

    again = make_app(tmp_path)
    async with running(again) as pilot:
        await wait_for(pilot, lambda: not old_file.exists(), "the old take's file deleted")
        assert not old_file.with_suffix(".json").exists() and again.store.take(old.id) is None
        assert recent_file.exists()  # deleted today: kept, and undo still brings it back
        await pilot.press("ctrl+t", "u")
        await wait_for(pilot, lambda: takes(again).row_count == 1, "the undo")
        assert Path(recent.path).exists() and takes(again).selected_take.id == recent.id


async def test_rename_a_take(tmp_path):
    app = make_app(tmp_path)
    async with running(app) as pilot:
        await generate(pilot, "a tone with a long prompt", 1)
        take = takes(app).selected_take
        await pilot.press("ctrl+t", "n")
        await wait_for(pilot, lambda: app.screen.query("#answer"), "the name dialog")
        await pilot.press(*"keeper", "enter")
        await wait_for(pilot, lambda: app.store.take(take.id).name == "keeper", "the name saved")
        assert takes(app).selected_take.title == "keeper"
        assert any("keeper" in str(cell) for cell in takes(app).get_row_at(takes(app).cursor_row))


async def test_rename_and_delete_a_session_from_the_picker(tmp_path):
    app = make_app(tmp_path)
    async with running(app) as pilot:
        await generate(pilot, "a kept tone", 1)
        await generate(pilot, "a trashed tone", 2)
        kept, thrown = sorted(takes(app).takes.values(), key=lambda t: t.number)
        await pilot.press("ctrl+t", "d")  # the last take goes to the trash
        await wait_for(pilot, lambda: takes(app).row_count == 1, "the delete")
        trashed = Path(app.store.take(thrown.id).trashed_path)
        old_session = app.screen.session.id

        await pilot.press("f3", "n")
        await pilot.press(*"beats", "enter")
        await wait_for(pilot, lambda: app.screen.session.name == "beats", "a second session")
        await pilot.press("f3")
        await wait_for(pilot, lambda: hasattr(app.screen, "highlighted_id"), "the picker")
        picker = app.screen
        picker.query_one("#session-list").highlighted = 1  # the older session, below the current one
        assert picker.highlighted_id == old_session
        await pilot.press("r")
        await wait_for(pilot, lambda: app.screen.query("#answer"), "the name dialog")
        app.screen.query_one("#answer").value = ""
        await pilot.press(*"sketches", "enter")
        await wait_for(pilot, lambda: app.store.session(old_session).name == "sketches", "the rename")
        assert app.screen is picker

        await pilot.press("d")
        await wait_for(pilot, lambda: app.screen.query("#answer"), "the confirmation")
        await pilot.press("y", "enter")
        await wait_for(pilot, lambda: app.store.session(old_session) is None, "the delete")
        assert [s.name for s in app.store.sessions()] == ["beats"]
        assert Path(kept.path).exists()  # the audio files stay on disk ...
        assert not trashed.exists()  # ... but the trashed one goes: nothing could bring it back any more


async def test_d_pressed_faster_than_the_table_moves_trashes_each_take_once_and_undo_brings_every_file_back(tmp_path):
    """Keys queued before the table drops a deleted row may name that take again: a take already in the trash stays
    as it is (its record keeps where its file went), so undo can still bring every file back."""
    app = make_app(tmp_path)
    async with running(app) as pilot:
        for seed in (1, 2, 3):
            await generate(pilot, "a tone", seed)
        made = list(takes(app).takes.values())
        await pilot.press("ctrl+t")
        for _ in range(5):  # a burst of d: each posts a delete of the row selected then, before any is done
            takes(app).action_delete()
        await wait_for(pilot, lambda: takes(app).row_count == 2, "one take in the trash")
        await pilot.press("d", "d")
        await wait_for(pilot, lambda: takes(app).row_count == 0, "every take in the trash")
        assert all(app.store.take(t.id).trashed_path for t in made), "each trashed take knows where its file is"
        await pilot.press(*"uuu")
        await wait_for(pilot, lambda: takes(app).row_count == 3, "every take back")
        assert all(Path(t.path).exists() and Path(t.path).with_suffix(".json").exists() for t in made)
        assert not list((Path(made[0].path).parent / ".ttag-trash").iterdir())


def test_a_takes_length_fits_its_column_at_every_duration():
    from ttag_tui.widgets.takes import FIXED_COLUMNS, format_seconds

    cases = {0: "0.0s", 9.5: "9.5s", 59.96: "1:00.0", 61.25: "1:01.2", 599.9: "9:59.9", 599.96: "10:00", 600: "10:00"}
    assert {seconds: format_seconds(seconds) for seconds in cases} == cases
    assert max(len(format_seconds(tenths / 10)) for tenths in range(6001)) <= FIXED_COLUMNS["length"]
