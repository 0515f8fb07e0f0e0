"""The main screen's typed messages: every key of the takes table (from the keymap data, overrides applied) posts its
message and reaches its handler, and a message posted by hand does what its key does.

No worker process runs here: the takes are written into the store directly, as a finished job would.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

from tests.tui_fakes import make_app, record_notifications, running, takes, wait_for
from ttag_tui import keymap
from ttag_tui.messages import (
    TAKES_KEY_MESSAGES,
    CancelJob,
    DeleteTake,
    ListenToJob,
    StarTake,
    TakeAction,
    UndoDelete,
)
from ttag_tui.sessions import Take

OVERRIDES = {"star": "y", "delete": "k"}  # [keys] in config.toml: the handler must follow the key


def add_take(app, tmp_path: Path, name: str) -> Take:
    """A take as a finished job leaves it: a file on disk and a row in the store, shown in the table."""
    path = tmp_path / "out" / f"{name}.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.zeros(800, dtype=np.float32), 8000)
    take = app.store.add_take(
        app.screen.session.id,
        path=str(path),
        prompt=name,
        model="tone",
        seed=7,
        duration=0.1,
        parameters={"prompt": name, "duration": 0.1},
        waveform=[0.0] * 8,
    )
    table = takes(app)
    table.set_takes(app.store.takes(app.screen.session.id))
    table.select_take(take.id)
    return take


def test_every_key_of_the_takes_table_has_a_message_and_every_take_message_a_handler():
    take_keys = {spec.id for spec in keymap.KEYS if spec.scope == "takes"}
    assert set(TAKES_KEY_MESSAGES) == take_keys
    assert all(message.key_id == key_id for key_id, message in TAKES_KEY_MESSAGES.items())
    job_keys = {spec.id for spec in keymap.KEYS if spec.scope == "jobs"}
    assert {CancelJob.key_id, ListenToJob.key_id} == job_keys


async def test_each_takes_key_reaches_its_handler_with_the_selected_take(tmp_path):
    app = make_app(tmp_path, keys=OVERRIDES)
    async with running(app) as pilot:
        take = add_take(app, tmp_path, "first")
        actions = app.screen.take_actions
        take_messages = {m for m in TAKES_KEY_MESSAGES.values() if issubclass(m, TakeAction)}
        assert set(actions.handlers) == take_messages  # the explicit table covers every take message
        reached: list[tuple[type, int | None]] = []

        def recorder(message: type):
            async def handle(given: Take) -> None:
                reached.append((message, given.id))

            return handle

        for message in take_messages:
            actions.handlers[message] = recorder(message)

        async def undo() -> None:
            reached.append((UndoDelete, None))

        actions.undo_delete = undo
        takes(app).focus()
        for spec in (spec for spec in keymap.KEYS if spec.scope == "takes"):
            for key in keymap.effective_key(spec, app.config.keys).split(","):
                reached.clear()
                await pilot.press(key)
                message = TAKES_KEY_MESSAGES[spec.id]
                expected = (message, None if message is UndoDelete else take.id)
                await wait_for(pilot, lambda expected=expected: reached == [expected], f"{key} → {message.__name__}")
        # The keys the overrides moved away from no longer act.
        reached.clear()
        await pilot.press("s", "d")
        await pilot.pause()
        assert reached == []


async def test_posted_messages_star_delete_and_undo_a_take(tmp_path):
    app = make_app(tmp_path)
    async with running(app) as pilot:
        take = add_take(app, tmp_path, "second")
        table = takes(app)

        table.post_message(StarTake(take.id))
        await wait_for(pilot, lambda: app.store.take(take.id).starred, "the star")
        assert table.takes[take.id].starred  # the row is redrawn from the store

        table.post_message(DeleteTake(take.id))
        await wait_for(pilot, lambda: take.id not in table.takes, "the row to go")
        assert not Path(take.path).exists()
        assert [t.id for t in app.store.takes(app.screen.session.id, trashed=True)] == [take.id]

        table.post_message(UndoDelete())
        await wait_for(pilot, lambda: take.id in table.takes, "the row to come back")
        assert Path(take.path).is_file() and table.selected_take_id == take.id


async def test_a_take_message_without_a_take_says_so(tmp_path):
    app = make_app(tmp_path)
    async with running(app) as pilot:
        seen = record_notifications(app)
        takes(app).post_message(StarTake(None))  # an empty table has no selected row
        await wait_for(pilot, lambda: seen, "a notice")
        assert seen == [("No take selected: generate one with ctrl+g.", "", "warning")]
        takes(app).post_message(UndoDelete())
        await wait_for(pilot, lambda: len(seen) == 2, "the second notice")
        assert seen[1] == ("The trash is empty.", "", "warning")
