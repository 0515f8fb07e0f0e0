"""The session store: everything saved at once, interrupted jobs marked, old files migrated, newer ones refused."""

from __future__ import annotations

import re
import sqlite3
import time

import pytest

from ttag_tui.sessions import MIGRATIONS, ROW_CHECKS, SCHEMA_VERSION, SessionStore, StoreError, _expected_columns


@pytest.fixture
def store(tmp_path):
    store = SessionStore(tmp_path / "s.sqlite3")
    yield store
    store.close()


def add_take(store, session_id, **overrides):
    fields = dict(
        path="/x/a.wav",
        prompt="rain",
        model="synth",
        seed=7,
        duration=2.0,
        parameters={"prompt": "rain", "seed": 7},
        waveform=[0.1, 0.5],
    )
    fields.update(overrides)
    return store.add_take(session_id, **fields)


def test_wal_mode_and_current_schema(store):
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.schema_version == SCHEMA_VERSION


def test_latest_session_is_created_once_and_state_round_trips(store, tmp_path):
    session = store.latest_session()
    assert session.name == "Session 1"
    store.save_state(session.id, {"prompt": "rain on a tin roof", "settings": {"duration": "12"}})
    store.close()
    reopened = SessionStore(tmp_path / "s.sqlite3")
    again = reopened.latest_session()
    assert again.id == session.id
    assert again.state == {"prompt": "rain on a tin roof", "settings": {"duration": "12"}}
    reopened.close()


def test_sessions_create_rename_delete(store):
    first = store.create_session()
    second = store.create_session("drums")
    with pytest.raises(ValueError, match="already a session"):
        store.create_session("drums")
    store.rename_session(first.id, "ambient")
    with pytest.raises(ValueError, match="already a session"):
        store.rename_session(first.id, "drums")
    add_take(store, second.id)
    store.delete_session(second.id)
    assert [s.name for s in store.sessions()] == ["ambient"]
    assert store.takes(second.id) == []


def test_prompt_history_is_distinct_newest_first(store):
    session = store.latest_session()
    for prompt in ("a", "b", "b", "a", "c"):
        store.add_prompt(session.id, prompt)
    assert store.prompt_history(session.id) == ["c", "a", "b"]


def test_takes_are_numbered_starred_renamed_trashed_and_restored(store):
    session = store.latest_session()
    first = add_take(store, session.id)
    second = add_take(store, session.id, seed=8)
    assert (first.number, second.number) == (1, 2)
    store.set_starred(first.id, True)
    store.rename_take(second.id, "  keeper ")
    store.trash_take(first.id, "/x/.ttag-trash/a.wav")
    assert [t.id for t in store.takes(session.id)] == [second.id]
    assert store.take(second.id).title == "keeper"
    trashed = store.takes(session.id, trashed=True)
    assert [(t.id, t.starred, t.trashed_path) for t in trashed] == [(first.id, True, "/x/.ttag-trash/a.wav")]
    store.restore_take(first.id)
    assert [t.number for t in store.takes(session.id)] == [1, 2]
    assert store.takes(session.id, trashed=True) == []


def test_trashed_takes_of_every_session_by_age_and_forgetting_them(store):
    first_session = store.latest_session()
    other = store.create_session("other")
    old = add_take(store, first_session.id)
    recent = add_take(store, other.id, seed=8)
    kept = add_take(store, other.id, seed=9)
    store.trash_take(old.id, "/x/.ttag-trash/old.wav")
    cutoff = time.time()
    store.trash_take(recent.id, None)
    assert [t.id for t in store.trashed_takes(cutoff)] == [old.id]
    assert [t.id for t in store.trashed_takes()] == [old.id, recent.id]
    store.forget_takes([old.id, recent.id])
    assert store.trashed_takes() == [] and store.take(old.id) is None
    assert [t.id for t in store.takes(other.id)] == [kept.id]


def test_jobs_left_running_are_interrupted_on_the_next_open(store, tmp_path):
    session = store.latest_session()
    running = store.add_job(session.id, {"prompt": "x"})
    store.set_job_status(running, "running")
    done = store.add_job(session.id, {"prompt": "y"})
    store.set_job_status(done, "done")
    store.close()  # as if the process was killed: nothing else happens
    reopened = SessionStore(tmp_path / "s.sqlite3")
    assert [job.id for job in reopened.interrupted_jobs(session.id)] == [running]
    statuses = {job.id: job.status for job in reopened.jobs(session.id)}
    assert statuses == {running: "interrupted", done: "done"}
    reopened.close()
    again = SessionStore(tmp_path / "s.sqlite3")  # still there on the next start, until dismissed
    assert [job.id for job in again.interrupted_jobs(session.id)] == [running]
    again.dismiss_job(running)
    assert again.interrupted_jobs(session.id) == []
    again.close()


def test_a_version_1_file_is_migrated_keeping_its_takes(tmp_path):
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[1] + "PRAGMA user_version = 1;")
    db.execute("INSERT INTO sessions(name, created, last_used) VALUES ('old', 0, 0)")
    db.execute(
        "INSERT INTO takes(session_id, number, path, prompt, model, seed, duration, parameters, created) "
        "VALUES (1, 1, '/a.wav', 'rain', 'synth', 3, 1.0, '{}', 0)"
    )
    db.commit()
    db.close()
    store = SessionStore(path)
    assert store.schema_version == SCHEMA_VERSION
    [take] = store.takes(1)
    assert (take.prompt, take.name) == ("rain", "")
    store.close()


def test_a_file_from_a_newer_ttag_is_refused_untouched(tmp_path):
    path = tmp_path / "new.sqlite3"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer ttag"):
        SessionStore(path)
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1


def test_every_table_has_a_row_check():
    assert set(ROW_CHECKS) == set(_expected_columns()) == {"sessions", "prompts", "jobs", "takes"}


def test_whatever_ttag_writes_passes_the_open_check_even_nan_and_infinity(tmp_path):
    path = tmp_path / "s.sqlite3"
    store = SessionStore(path)
    session = store.latest_session()
    store.save_state(session.id, {"guidance": float("nan"), "prompt": "NaN and Infinity"})
    add_take(store, session.id, waveform=[float("nan"), float("inf"), -float("inf"), 0.5], prompt="Infinity")
    store.add_job(session.id, {"prompt": "x", "guidance": float("inf")})
    store.close()
    again = SessionStore(path)  # a file ttag wrote is never called damaged
    assert len(again.takes(session.id)) == 1 and again.sessions()[0].state["prompt"] == "NaN and Infinity"
    again.close()


@pytest.mark.parametrize(
    ("statement", "fragment"),
    [
        ("UPDATE sessions SET state = '[1, 2]'", "row 1 of sessions"),
        ("UPDATE prompts SET prompt = x'00ff'", "of prompts"),
        ("UPDATE jobs SET request = 'not json'", "of jobs"),
        ("UPDATE takes SET waveform = '[\"loud\"]'", "of takes"),
        ("UPDATE takes SET parameters = 3.5", "of takes"),
        ("ALTER TABLE takes DROP COLUMN name", "table takes lacks name"),
    ],
)
def test_a_file_with_rows_or_columns_ttag_never_writes_is_refused_untouched(tmp_path, statement, fragment):
    path = tmp_path / "s.sqlite3"
    store = SessionStore(path)
    session = store.latest_session()
    store.add_prompt(session.id, "rain")
    store.add_job(session.id, {"prompt": "rain"})
    add_take(store, session.id)
    store.close()
    db = sqlite3.connect(path)
    db.execute(statement)
    db.commit()
    db.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match=rf"cannot open the session file \(.*{re.escape(fragment)}.*\); move it aside"):
        SessionStore(path)
    assert path.read_bytes() == before
