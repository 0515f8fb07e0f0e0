"""The TUI's flows, driven with Textual's Pilot against real worker processes running the fake runners.

Every wait is for a state (a row, a status), never a fixed sleep: ``wait_for`` polls while the app keeps running.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from textual import events

from runners.request import check_field
from tests.fake_runners import spec
from tests.live_server import ROOT
from tests.tui_fakes import (
    FakeSoundDevice,
    generate,
    job_items,
    make_app,
    no_audio_device,
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
from ttag_tui.widgets.prompt import PromptArea
from ttag_tui.widgets.settings_pane import SettingsPane
from ttag_tui.widgets.waveform import Waveform


async def test_generate_play_regenerate_star_then_the_session_comes_back(tmp_path):
    device = FakeSoundDevice()
    app = make_app(tmp_path, player=Player(lambda: device, blocksize=256))
    async with running(app) as pilot:
        await generate(pilot, "a calm tone", 1)
        first = takes(app).selected_take
        assert first is not None and Path(first.path).is_file() and first.prompt == "a calm tone"
        assert Path(first.path).with_suffix(".json").is_file()

        await pilot.press("ctrl+t", "space")  # play the selected take
        await wait_for(pilot, lambda: app.player.status().state == "playing", "playback")
        played = np.concatenate([device.stream.pull(256) for _ in range(4)])[:, 0]
        audio, _ = soundfile.read(first.path, dtype="float32")
        assert np.allclose(played, audio[: len(played)], atol=1e-4)  # what plays is the take (24-bit on disk)
        await wait_for(pilot, lambda: app.screen.query_one(Waveform).position is not None, "position drawn")
        await pilot.press("space")
        assert app.player.status().state == "paused"

        await pilot.press("ctrl+r")  # the same request, a new seed
        await wait_for(pilot, lambda: takes(app).row_count == 2, "the regenerated take")
        seeds = [take.seed for take in takes(app).takes.values()]
        assert seeds[0] != seeds[1]
        await wait_for(pilot, lambda: not job_items(app), "finished jobs to leave the list")

        await pilot.press("ctrl+t", "home", "s")  # star the first take
        await wait_for(pilot, lambda: app.store.take(first.id).starred, "the star")
    # The app is gone (as if the terminal closed); a new one opens the same store.
    again = make_app(tmp_path)
    async with running(again) as pilot:
        await wait_for(pilot, lambda: takes(again).row_count == 2, "restored takes")
        restored = list(takes(again).takes.values())
        assert [t.starred for t in restored] == [True, False]
        assert again.screen.query_one(PromptArea).text == "a calm tone"
        assert again.screen.query_one(SettingsPane).last_seed == seeds[1]


async def test_cancel_the_focused_job(tmp_path):
    app = make_app(tmp_path, default_model="slow-tone")
    async with running(app) as pilot:
        await type_prompt(pilot, "a very slow tone")
        app.screen.query_one("#set-steps").value = "500"  # 0.2 s a step: it would take 100 s
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: job_items(app) and job_items(app)[0].status == "running", "a running job")
        app.screen.query_one(JobsList).focus()
        await pilot.press("c")
        item = job_items(app)[0]
        await wait_for(pilot, lambda: item.status == "cancelled" and item.detail == "cancelled", "the cancel")
        assert app.store.jobs(app.screen.session.id)[0].status == "cancelled"
        assert takes(app).row_count == 0
        await pilot.press("c")  # dismiss the cancelled row
        await wait_for(pilot, lambda: not job_items(app), "the row to go")


async def test_a_worker_crash_shows_the_error_and_the_app_lives_on(tmp_path):
    app = make_app(tmp_path, default_model="crash")
    notes = record_notifications(app)
    async with running(app) as pilot:
        await type_prompt(pilot, "this will crash")
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: job_items(app) and job_items(app)[0].status == "failed", "the failure")
        assert "SIGKILL" in job_items(app)[0].detail
        assert any("SIGKILL" in message and severity == "error" for message, _, severity in notes)
        app.screen.query_one("#models").select("tone")
        await pilot.pause()
        await generate(pilot, "still alive", 1)


async def test_no_audio_device_is_said_once_and_shows_where_the_files_are(tmp_path):
    app = make_app(tmp_path, player=Player(no_audio_device))
    notes = record_notifications(app)
    async with running(app) as pilot:
        await generate(pilot, "silent machine", 1)
        path = takes(app).selected_take.path
        await pilot.press("ctrl+t", "space")
        await wait_for(pilot, lambda: app.screen.transport_control.audio_problem, "the audio problem")
        await pilot.press("space", "enter")  # again: no second warning
        await pilot.pause()
        warnings = [m for m, _, severity in notes if severity == "warning" and "Cannot play" in m]
        assert len(warnings) == 1 and str(tmp_path / "out") in warnings[0]
        assert warnings[0].startswith("Cannot play sound here: no audio output device. ttag keeps working;")
        assert app.screen.query_one(Waveform).note.endswith(path)
        await generate(pilot, "still working", 2)


async def test_a_rejected_value_shows_the_cli_message_and_generates_nothing(tmp_path):
    app = make_app(tmp_path)
    notes = record_notifications(app)
    async with running(app) as pilot:
        await type_prompt(pilot, "too long")
        duration = app.screen.query_one("#set-duration")
        duration.focus()
        await pilot.press(*"99")
        with pytest.raises(ValueError) as cli_rule:  # the message `ttag generate -d 99 -m tone` prints
            check_field("duration", "99", app.registry.get("tone"))
        errors = app.screen.query_one("#setting-errors")
        assert str(errors.content) == f"duration {cli_rule.value}"
        assert "between 0.1 and 30 seconds" in str(cli_rule.value)
        assert not duration.is_valid
        await pilot.press("ctrl+g")
        assert app.store.jobs(app.screen.session.id) == []
        assert any(f"duration: {cli_rule.value}" in m for m, _, _ in notes)
        await pilot.press("backspace", "backspace")
        await pilot.pause()
        assert not errors.display


async def test_switching_models_changes_the_settings_shown(tmp_path):
    app = make_app(tmp_path)
    async with running(app) as pilot:
        shown = lambda: {w.id for w in app.screen.query(".setting-row Input")}  # noqa: E731
        assert shown() == {"set-duration", "set-seed", "set-takes", "set-steps"}
        assert app.screen.query_one("#negative").disabled
        app.screen.query_one("#model-list").focus()
        await pilot.press("down", "down", "down")  # tone → slow-tone → crash → tone-sampler
        await wait_for(pilot, lambda: "set-temperature" in shown(), "the sampler's fields")
        assert shown() == {"set-duration", "set-seed", "set-takes", "set-steps", "set-temperature", "set-top_k"}
        assert not app.screen.query_one("#negative").disabled
        await pilot.press("up")
        await wait_for(pilot, lambda: "set-temperature" not in shown(), "the fields to go")


async def test_use_settings_delete_undo_and_same_seed(tmp_path):
    app = make_app(tmp_path)
    async with running(app) as pilot:
        await type_prompt(pilot, "first idea")
        app.screen.query_one("#set-steps").value = "7"
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: takes(app).row_count == 1, "a take")
        take = takes(app).selected_take
        await type_prompt(pilot, "something else")
        app.screen.query_one("#set-steps").value = ""
        await pilot.press("ctrl+t", "l")  # use these settings
        await wait_for(pilot, lambda: app.screen.query_one(PromptArea).text == "first idea", "the prompt back")
        settings = app.screen.query_one(SettingsPane)
        assert settings.values["steps"] == "7" and settings.values["seed"] == str(take.seed)

        await pilot.press("ctrl+t", "R")  # same settings, same seed
        await wait_for(pilot, lambda: takes(app).row_count == 2, "the same-seed take")
        again = max(takes(app).takes.values(), key=lambda t: t.number)
        assert again.seed == take.seed
        assert soundfile.read(again.path)[0].tolist() == soundfile.read(take.path)[0].tolist()

        takes(app).select_take(take.id)
        await pilot.press("d")
        await wait_for(pilot, lambda: takes(app).row_count == 1, "the delete")
        assert not Path(take.path).exists()
        assert (Path(take.path).parent / ".ttag-trash" / Path(take.path).name).exists()
        await pilot.press("u")
        await wait_for(pilot, lambda: takes(app).row_count == 2, "the undo")
        assert Path(take.path).exists() and Path(take.path).with_suffix(".json").exists()


async def test_prompt_history_with_up_at_the_start_and_the_picker(tmp_path):
    app = make_app(tmp_path)
    async with running(app) as pilot:
        await generate(pilot, "older prompt", 1)
        await generate(pilot, "newer prompt", 2)
        await type_prompt(pilot, "draft")
        area = app.screen.query_one(PromptArea)
        area.move_cursor((0, 0))
        await pilot.press("up")
        assert area.text == "newer prompt"
        await pilot.press("up")
        assert area.text == "older prompt"
        await pilot.press("down", "down")
        assert area.text == "draft"
        await pilot.press("ctrl+o")
        await pilot.press(*"older", "enter")
        await wait_for(pilot, lambda: area.text == "older prompt", "the picked prompt")


async def test_sessions_create_switch_and_keep_their_takes(tmp_path):
    app = make_app(tmp_path)
    async with running(app) as pilot:
        await generate(pilot, "in the first session", 1)
        first_session = app.screen.session.id
        await pilot.press("f3", "n")
        await pilot.press(*"beats", "enter")
        await wait_for(pilot, lambda: app.screen.session.name == "beats", "the new session")
        assert takes(app).row_count == 0 and app.screen.query_one(PromptArea).text == ""
        await pilot.press("f3")
        await wait_for(pilot, lambda: app.screen.id != "_default" and hasattr(app.screen, "highlighted_id"), "picker")
        await pilot.press("down", "enter")
        await wait_for(
            pilot,
            lambda: getattr(app.screen, "session", None) and app.screen.session.id == first_session,
            "the first session",
        )
        assert takes(app).row_count == 1
        assert app.screen.query_one(PromptArea).text == "in the first session"


async def test_an_interrupted_job_is_shown_as_interrupted(tmp_path):
    store = SessionStore(tmp_path / "data" / "sessions.sqlite3")
    session = store.latest_session()
    job = store.add_job(session.id, {"prompt": "cut short"})
    store.set_job_status(job, "running")
    store.close()  # the process died here
    app = make_app(tmp_path)
    async with running(app) as pilot:
        await wait_for(pilot, lambda: bool(job_items(app)), "the interrupted job")
        assert job_items(app)[0].status == "interrupted"
        assert "cut short" in job_items(app)[0].title
    again = make_app(tmp_path)  # still there on the next start, however that one ends ...
    async with running(again) as pilot:
        await wait_for(pilot, lambda: bool(job_items(again)), "the interrupted job again")
        again.screen.query_one(JobsList).focus()
        await pilot.press("c")  # ... until dismissed
        await wait_for(pilot, lambda: not job_items(again), "the dismissal")
    last = make_app(tmp_path)
    async with running(last):  # the panes are there once the interrupted jobs are shown
        assert not job_items(last)


async def test_help_lists_keys_with_overrides_and_the_theme_is_remembered(tmp_path, monkeypatch):
    app = make_app(tmp_path, keys={"generate": "f5"})
    app.persist_config = True
    async with running(app) as pilot:
        await pilot.press("f1")
        markdown = app.screen.query_one("#help-text").source
        assert "| `f5` | Generate from the prompt and settings | generate |" in markdown
        await pilot.press("escape")
        await type_prompt(pilot, "by f5")
        await pilot.press("f5")
        await wait_for(pilot, lambda: takes(app).row_count == 1, "a take made with the overridden key")
        app.theme = "ttag-paper"
        await pilot.pause()
    config_file = tmp_path / "config" / "config.toml"
    assert 'theme = "ttag-paper"' in config_file.read_text()


NO_TORCH = """
import asyncio, sys
from pathlib import Path
from tests.tui_fakes import generate, make_app, running

async def main():
    app = make_app(Path(sys.argv[1]))
    async with running(app) as pilot:
        await generate(pilot, "no torch here", 1)
    print(sorted(m for m in ("torch", "transformers", "diffusers", "audiocraft") if m in sys.modules))

asyncio.run(main())
"""


def test_the_ui_process_never_imports_torch(tmp_path):
    """In a process of its own: this test process may hold torch already (other test modules import it)."""
    done = subprocess.run(
        [sys.executable, "-c", NO_TORCH, str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.slow
async def test_the_real_synth_model(tmp_path):
    from runners.registry import default_registry

    app = make_app(tmp_path, registry=default_registry(), default_model="synth")
    async with running(app) as pilot:
        await type_prompt(pilot, "lofi hip hop with piano, 85 bpm")
        app.screen.query_one("#set-duration").value = "3"
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: takes(app).row_count == 1, "a synth take", timeout=60)
        take = takes(app).selected_take
        info = soundfile.info(take.path)
        assert (info.samplerate, info.channels) == (44100, 2) and info.duration == pytest.approx(3.0, abs=0.05)
        assert max(take.waveform) > 0.01


async def test_the_model_list_tells_every_real_model_apart_at_80_columns(tmp_path):
    from textual.widgets import OptionList

    from runners.registry import default_registry

    registry = default_registry()
    app = make_app(tmp_path, registry=registry, default_model="synth")
    async with running(app, size=(80, 24)) as pilot:
        await pilot.pause()
        options = app.screen.query_one("#model-list", OptionList)
        names = [str(options.get_option_at_index(i).prompt).split()[0] for i in range(options.option_count)]
        assert len(set(names)) == len(names) == len(registry)  # no two rows read the same
        assert all(len(name) + 10 <= options.scrollable_content_region.width + 1 for name in names)
        long_id = "audiocraft-musicgen-stereo-melody-large"
        await app.screen.choose_model(long_id)
        await pilot.pause()
        details = str(app.screen.query_one("#model-details").render())
        assert details.startswith(long_id)  # shortened in the list, whole in the details


async def test_keys_pressed_before_the_panes_are_mounted_wait_for_them(tmp_path, monkeypatch):
    """The first frame is the prompt (restored from the session); the other panes mount a moment later. Keys pressed
    in between (here the moment is held open) are kept and run in order once the panes are there: an early ctrl+g
    generates from the restored prompt, a key typed after it lands in the prompt; nothing fails, nothing is lost."""
    import asyncio

    from ttag_tui.screens.main.screen import MainScreen

    store = SessionStore(tmp_path / "data" / "sessions.sqlite3")
    store.save_state(store.latest_session().id, {"prompt": "calm tone"})
    store.close()
    gate = asyncio.Event()
    mount_panes = MainScreen._mount_panes

    def held_mount(screen):  # the mount waits in a task of its own, so the screen stays idle meanwhile
        async def later():
            await gate.wait()
            await mount_panes(screen)

        screen.run_worker(later())

    monkeypatch.setattr(MainScreen, "_mount_panes", held_mount)
    app = make_app(tmp_path)
    async with app.run_test() as pilot:
        await pilot.pause()
        assert not app.screen.panes_ready and not app.screen.query("#takes")
        await pilot.press("ctrl+g", "x")
        assert app.screen.query_one(PromptArea).text == "calm tone"  # held: not typed yet, not run against nothing
        gate.set()
        await wait_for(pilot, lambda: app.screen.panes_ready, "the panes")
        await wait_for(pilot, lambda: takes(app).row_count == 1, "the take from the early ctrl+g")
        assert takes(app).selected_take.prompt == "calm tone"
        assert app.screen.query_one(PromptArea).text == "calm tonex"


async def test_the_config_screen_saves_with_the_config_rules_and_applies_at_once(tmp_path):
    import tomllib

    from ttag_tui import paths

    app = make_app(tmp_path)
    async with running(app) as pilot:
        await pilot.press("f2")
        await wait_for(pilot, lambda: app.screen.query("#cfg-threads"), "the config dialog")
        dialog = app.screen
        dialog.query_one("#cfg-threads").value = "-3"
        await pilot.press("ctrl+s")  # a bad value: the config module's own message, nothing written, still open
        message = str(dialog.query_one("#config-message").render())
        assert message == "not saved: threads: must be a whole number from 0 to 1024 (got -3)"  # no file, no line
        assert not paths.config_file().exists() and app.screen is dialog

        dialog.query_one("#cfg-threads").value = "2"
        dialog.query_one("#cfg-default_duration").value = "0.5"
        dialog.query_one("#cfg-keys").value = "generate=f5"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app.screen is not dialog, "the dialog to close")
        saved = tomllib.loads(paths.config_file().read_text())
        assert (saved["threads"], saved["default_duration"], saved["keys"]) == (2, 0.5, {"generate": "f5"})
        assert app.config.threads == 2 and app.config.keys == {"generate": "f5"}

        await type_prompt(pilot, "a tone from a remapped key")
        await pilot.press("f5")  # the new key generates at once, with the new default duration
        await wait_for(pilot, lambda: takes(app).row_count == 1, "the take")
        assert takes(app).selected_take.duration == 0.5


async def test_transport_keys_seek_volume_loop_stop_from_the_takes(tmp_path):
    device = FakeSoundDevice()
    app = make_app(tmp_path, player=Player(lambda: device, blocksize=256))
    async with running(app) as pilot:
        app.screen.query_one("#set-duration").value = "12"
        await generate(pilot, "a tone to move around in", 1)
        audio, rate = soundfile.read(takes(app).selected_take.path, dtype="float32")
        await pilot.press("ctrl+t", "space")
        await wait_for(pilot, lambda: app.player.status().state == "playing", "playback")

        await pilot.press("right")  # +5 s: what plays next is the take from 5 s on
        assert app.player.status().position_s == pytest.approx(5.0)
        played = device.stream.pull(256)[:, 0]
        assert np.allclose(played, audio[5 * rate : 5 * rate + 256], atol=1e-4)
        await pilot.press("left")
        assert app.player.status().position_s == pytest.approx(256 / rate, abs=1e-3)

        await pilot.press("minus")  # volume 90 %: the same samples, scaled
        start = round(app.player.status().position_s * rate)
        played = device.stream.pull(256)[:, 0]
        assert np.allclose(played, 0.9 * audio[start : start + 256], atol=1e-4)

        await pilot.press("o")
        assert app.player.status().loop
        await pilot.press("x")
        assert app.player.status().state == "stopped"
        shown = lambda: str(app.screen.query_one("#transport-status").render())  # noqa: E731
        await wait_for(pilot, lambda: shown().startswith("■") and "vol 90% · loop" in shown(), "the transport line")


async def test_jobs_queue_show_phase_progress_and_eta_and_the_next_starts_after_a_cancel(tmp_path):
    from textual.widgets import ProgressBar

    app = make_app(tmp_path, default_model="slow-tone")
    async with running(app) as pilot:
        await type_prompt(pilot, "first slow tone")
        app.screen.query_one("#set-steps").value = "500"  # 0.2 s a step
        await pilot.press("ctrl+g")
        await type_prompt(pilot, "second slow tone")
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: len(job_items(app)) == 2, "two jobs")
        first, second = sorted(job_items(app), key=lambda item: item.record_id)
        await wait_for(pilot, lambda: first.detail.startswith("generating ~"), "the phase with an ETA")
        assert first.detail.endswith(" left") and second.status == "queued"  # one worker: the second waits
        bar = first.query_one(ProgressBar)
        assert bar.total == 500 and 0 < bar.progress < 500

        app.screen.query_one(JobsList).focus()
        app.screen.query_one(JobsList).index = job_items(app).index(first)
        await pilot.press("c")
        await wait_for(pilot, lambda: first.status == "cancelled", "the first cancelled")
        await wait_for(pilot, lambda: second.status == "running", "the second to start")
        app.screen.query_one(JobsList).index = job_items(app).index(second)
        await pilot.press("c")
        await wait_for(pilot, lambda: second.status == "cancelled", "the second cancelled")
        assert takes(app).row_count == 0


async def test_pin_the_last_seed_then_generate_two_takes_from_it(tmp_path):
    app = make_app(tmp_path)
    notes = record_notifications(app)
    async with running(app) as pilot:
        await pilot.press("ctrl+l")  # nothing to pin yet: said, not failed
        assert notes == [("No seed yet: generate once, then pin its seed.", "", "warning")]
        await generate(pilot, "a tone worth keeping", 1)
        seed = takes(app).selected_take.seed
        assert app.screen.query_one("#set-seed").value == ""
        await pilot.press("ctrl+l")
        assert app.screen.query_one("#set-seed").value == str(seed)
        assert app.screen.query_one(SettingsPane).last_seed == seed

        app.screen.query_one("#set-takes").value = "2"
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: takes(app).row_count == 3, "two more takes")
        pinned = sorted(takes(app).takes.values(), key=lambda t: t.number)[1:]
        assert [t.seed for t in pinned] == [seed, seed + 1]  # take k of a request: seed + k
        first, _ = soundfile.read(sorted(takes(app).takes.values(), key=lambda t: t.number)[0].path)
        again, _ = soundfile.read(pinned[0].path)
        assert np.array_equal(first, again)  # the pinned seed makes the same take again


async def test_the_command_palette_offers_models_themes_sessions_and_actions(tmp_path):
    store = SessionStore(tmp_path / "data" / "sessions.sqlite3")
    other = store.create_session("beats")
    store.create_session("ideas")  # the latest: the app opens it
    store.close()
    app = make_app(tmp_path)

    async def run_command(pilot, text: str) -> None:
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: app.screen.query("CommandInput"), "the palette")
        await pilot.press(*text)

        def top_hit() -> str:  # the palette searches in a worker of its own: wait for its answer to this text
            hits = app.screen.query("CommandList")
            if not hits or not hits.first().option_count:
                return ""
            return str(hits.first().get_option_at_index(0).prompt).lower()

        await wait_for(pilot, lambda: text in top_hit(), f"{text!r} at the top of the palette")
        await pilot.press("enter")

    async with running(app) as pilot:
        await run_command(pilot, "model: tone-sampler")
        await wait_for(pilot, lambda: app.screen.model_id == "tone-sampler", "the model chosen")
        shown = {w.id for w in app.screen.query(".setting-row Input")}
        assert {"set-temperature", "set-top_k"} <= shown  # its settings, not tone's
        await run_command(pilot, "theme: ttag-paper")
        await wait_for(pilot, lambda: app.theme == "ttag-paper", "the theme")
        await run_command(pilot, "session: beats")
        await wait_for(pilot, lambda: app.screen.session.id == other.id, "the session")
        await run_command(pilot, "help")
        await wait_for(pilot, lambda: app.screen.query("#help-text"), "the help screen")


async def test_a_session_file_that_fails_mid_run_ends_the_app_with_its_one_line_and_is_not_written_again(tmp_path):
    app = make_app(tmp_path)
    async with running(app) as pilot:
        await type_prompt(pilot, "rain on a roof")
        holder = sqlite3.connect(app.store.path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # another program takes the file: ttag's next write waits, then fails
        try:  # the key is posted, not pressed: Pilot's press waits for a screen that is going away
            app.post_message(events.Key("ctrl+g", None))
            async with asyncio.timeout(30):
                while app.store_failure is None:
                    await asyncio.sleep(0.05)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
    assert app.return_code == 1
    assert str(app.store_failure).startswith(f"{app.store.path}: the session file is locked by another program")
    check = SessionStore(app.store.path)
    assert check.prompt_history() == [] and check.sessions()[0].state == {}, "nothing saved after the failure"
    check.close()


async def test_a_model_that_cannot_run_is_refused_before_a_worker_starts(tmp_path):
    registry = tui_registry()
    registry.add(spec("tone-unpulled", "ToneRunner", hub_repo="nobody/never-pulled", size_bytes=2_400_000_000))
    app = make_app(tmp_path, registry=registry, cache_dir=str(tmp_path / "hub"))
    notes = record_notifications(app)
    async with running(app) as pilot:
        app.screen.query_one("#models").select("tone-unpulled")
        await pilot.pause()
        await type_prompt(pilot, "rain")
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: any(title == "Not generated" for _, title, _ in notes), "the refusal")
        assert [message for message, title, _ in notes if title == "Not generated"] == [
            "tone-unpulled cannot run here: weights not downloaded: ttag models pull tone-unpulled (a 2.4 GB download)"
        ]
        assert not job_items(app) and not app.bridge._handles, "no job, no worker"
        (tmp_path / "hub" / "models--nobody--never-pulled" / "snapshots" / "main").mkdir(parents=True)
        await generate(pilot, "rain, now that it is pulled", 1)  # pulled while ttag runs: no restart needed
