"""Snapshots of each screen and state, at 80×24 (the SSH default) and at a wide size.

The store is filled directly (no workers, fixed seeds) so every run draws the same thing. Update after a deliberate
change with ``pytest tests/test_app_snapshots.py --snapshot-update`` and look at the SVGs before committing them.
"""

from __future__ import annotations

import pytest

from tests.tui_fakes import make_app, panes_mounted
from ttag_tui.sessions import SessionStore
from ttag_tui.widgets.jobs import JobItem, JobsList
from ttag_tui.widgets.models import ModelPane
from ttag_tui.widgets.prompt import PromptArea

NARROW = (80, 24)
WIDE = (140, 40)
FIXED_OUTPUT_DIR = "~/Music/ttag-snapshots"  # shown in the config dialog; a tmp path would differ every run
WAVE = [abs(((i * 37) % 100) / 100 - 0.5) * 2 for i in range(96)]


def filled_app(tmp_path):
    """An app whose session already has three takes (one starred, one renamed) and a prompt typed."""
    out = tmp_path / "out"
    out.mkdir()
    store = SessionStore(tmp_path / "data" / "sessions.sqlite3")
    store.create_session("beats")
    session = store.create_session("ideas")
    for number, (prompt, seed) in enumerate(
        [("warm lofi hip hop with piano, 85 bpm", 1234), ("rain on a tin roof at night", 98765), ("dark techno", 7)]
    ):
        path = out / f"take{number}.wav"
        path.write_bytes(b"")
        take = store.add_take(
            session.id,
            path=str(path),
            prompt=prompt,
            model="tone",
            seed=seed,
            duration=4.0 + number * 31.5,
            parameters={"prompt": prompt, "seed": seed},
            waveform=WAVE[number * 7 :] + WAVE[: number * 7],
        )
        if number == 0:
            store.set_starred(take.id, True)
        if number == 2:
            store.rename_take(take.id, "the keeper")
    store.save_state(
        session.id,
        {"prompt": "warm lofi hip hop with piano", "model": "tone", "settings": {"duration": "8"}, "last_seed": 98765},
    )
    store.close()
    return make_app(tmp_path, output_dir=FIXED_OUTPUT_DIR)


async def settle(pilot) -> None:
    """Wait for the panes and the model probe (a thread) so the statuses are drawn, then for the screen to be idle."""
    await panes_mounted(pilot)
    pane = pilot.app.screen.query_one(ModelPane)
    for _ in range(200):
        if all(status.label != "checking" for status in pane.statuses.values()):
            break
        await pilot.pause(0.02)
    await pilot.pause()


@pytest.mark.parametrize("size", [NARROW, WIDE], ids=["80x24", "wide"])
def test_empty_first_start(snap_compare, tmp_path, size):
    assert snap_compare(make_app(tmp_path, output_dir=FIXED_OUTPUT_DIR), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", [NARROW, WIDE], ids=["80x24", "wide"])
def test_session_with_takes_and_jobs(snap_compare, tmp_path, size):
    async def jobs(pilot):
        await settle(pilot)
        listing = pilot.app.screen.query_one(JobsList)
        running = JobItem(41, "deep house groove, 122 bpm")
        await listing.add_job(running)
        running.set_progress("generating", 3, 10, 12.4)
        failed = JobItem(42, "orchestral swell", status="failed", message="the worker was killed by SIGKILL")
        await listing.add_job(failed)
        pilot.app.screen.query_one("#takes").focus()
        await pilot.pause()

    assert snap_compare(filled_app(tmp_path), terminal_size=size, run_before=jobs)


@pytest.mark.parametrize("size", [NARROW, WIDE], ids=["80x24", "wide"])
def test_a_value_the_validation_rejects(snap_compare, tmp_path, size):
    async def bad_duration(pilot):
        await settle(pilot)
        pilot.app.screen.query_one("#set-duration").focus()
        await pilot.press("9", "9")

    assert snap_compare(make_app(tmp_path, output_dir=FIXED_OUTPUT_DIR), terminal_size=size, run_before=bad_duration)


@pytest.mark.parametrize("size", [NARROW, WIDE], ids=["80x24", "wide"])
def test_a_model_with_more_parameters(snap_compare, tmp_path, size):
    async def sampler(pilot):
        await settle(pilot)
        await pilot.app.screen.choose_model("tone-sampler")
        pilot.app.screen.query_one(PromptArea).focus()
        await pilot.pause()

    assert snap_compare(make_app(tmp_path, output_dir=FIXED_OUTPUT_DIR), terminal_size=size, run_before=sampler)


@pytest.mark.parametrize("size", [NARROW, WIDE], ids=["80x24", "wide"])
@pytest.mark.parametrize("key", ["f1", "f2", "f3", "ctrl+o"], ids=["help", "config", "sessions", "history"])
def test_dialogs(snap_compare, tmp_path, key, size):
    async def open_dialog(pilot):
        await settle(pilot)
        await pilot.press(key)
        await pilot.pause()

    assert snap_compare(filled_app(tmp_path), terminal_size=size, run_before=open_dialog)


def test_paper_theme_wide(snap_compare, tmp_path):
    async def paper(pilot):
        await settle(pilot)
        pilot.app.theme = "ttag-paper"
        await pilot.pause()

    assert snap_compare(filled_app(tmp_path), terminal_size=WIDE, run_before=paper)
