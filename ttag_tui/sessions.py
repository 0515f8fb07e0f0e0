"""The session store: prompts, settings, takes, stars, trash and jobs, saved as they happen.

SQLite in WAL mode, one file under the data dir. Every change is committed at once, so a closed terminal or a killed
process loses nothing that had finished; jobs still queued or running when the process died are marked
``interrupted`` the next time the store is opened. The schema version lives in ``PRAGMA user_version`` and
:data:`MIGRATIONS` brings any older file up to date in order.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ttag_tui import paths

# Version N's script turns a version N-1 database into version N. Never edit a released entry: add a new one.
MIGRATIONS: dict[int, str] = {
    1: """
        CREATE TABLE sessions (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            created REAL NOT NULL,
            last_used REAL NOT NULL,
            state TEXT NOT NULL DEFAULT '{}'
        );
        CREATE TABLE prompts (
            id INTEGER PRIMARY KEY,
            session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            prompt TEXT NOT NULL,
            negative TEXT NOT NULL DEFAULT '',
            created REAL NOT NULL
        );
        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY,
            session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            request TEXT NOT NULL,
            status TEXT NOT NULL,
            message TEXT NOT NULL DEFAULT '',
            created REAL NOT NULL,
            finished REAL
        );
        CREATE TABLE takes (
            id INTEGER PRIMARY KEY,
            session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            job_id INTEGER REFERENCES jobs(id) ON DELETE SET NULL,
            number INTEGER NOT NULL,
            path TEXT NOT NULL,
            prompt TEXT NOT NULL,
            model TEXT NOT NULL,
            seed INTEGER NOT NULL,
            duration REAL NOT NULL,
            parameters TEXT NOT NULL,
            waveform TEXT NOT NULL DEFAULT '[]',
            starred INTEGER NOT NULL DEFAULT 0,
            trashed_path TEXT,
            deleted REAL,
            created REAL NOT NULL
        );
        CREATE INDEX takes_session ON takes(session_id, number);
        CREATE INDEX prompts_session ON prompts(session_id, created);
    """,
    # Takes got names (the "rename" action).
    2: "ALTER TABLE takes ADD COLUMN name TEXT NOT NULL DEFAULT '';",
    # Interrupted jobs stay on screen, across restarts, until dismissed.
    3: "ALTER TABLE jobs ADD COLUMN dismissed INTEGER NOT NULL DEFAULT 0;",
}
SCHEMA_VERSION = max(MIGRATIONS)

# What every row of the current schema looks like (SQL that is true for a row ttag wrote): checked on open, so the code
# that reads rows back never meets text where a number belongs or JSON it cannot decode.
_NUMBER = "typeof({0}) IN ('integer', 'real')"
_TEXT = "typeof({0}) = 'text'"
# Python's json writes NaN and Infinity (a waveform of a take that went wrong); SQLite's json functions read neither.
_AS_JSON = "replace(replace({0}, 'NaN', '0'), 'Infinity', '0')"
_JSON = (
    "typeof({0}) = 'text' AND CASE WHEN json_valid("
    + _AS_JSON
    + ") THEN json_type("
    + _AS_JSON
    + ") = '{1}' ELSE 0 END"
)
ROW_CHECKS: dict[str, str] = {
    "sessions": " AND ".join(
        [_TEXT.format("name"), _NUMBER.format("created"), _NUMBER.format("last_used"), _JSON.format("state", "object")]
    ),
    "prompts": " AND ".join(
        ["typeof(session_id) = 'integer'", _TEXT.format("prompt"), _TEXT.format("negative"), _NUMBER.format("created")]
    ),
    "jobs": " AND ".join(
        [
            "typeof(session_id) = 'integer'",
            _JSON.format("request", "object"),
            _TEXT.format("status"),
            _TEXT.format("message"),
            _NUMBER.format("created"),
        ]
    ),
    "takes": " AND ".join(
        [
            "typeof(session_id) = 'integer'",
            "typeof(number) = 'integer'",
            _TEXT.format("path"),
            _TEXT.format("prompt"),
            _TEXT.format("model"),
            "typeof(seed) = 'integer'",
            _NUMBER.format("duration"),
            _JSON.format("parameters", "object"),
            _JSON.format("waveform", "array"),
            "NOT EXISTS (SELECT 1 FROM json_each(CASE WHEN json_valid({0}) THEN {0} ELSE '[]' END) "
            "WHERE type NOT IN ('integer', 'real'))".format(_AS_JSON.format("waveform")),
            "typeof(starred) = 'integer'",
            _TEXT.format("name"),
            "(deleted IS NULL OR " + _NUMBER.format("deleted") + ")",
            "(trashed_path IS NULL OR " + _TEXT.format("trashed_path") + ")",
            "(job_id IS NULL OR typeof(job_id) = 'integer')",
        ]
    ),
}
ACTIVE_JOB_STATES = ("queued", "running")


class StoreError(Exception):
    """The session file cannot be used (newer schema, not a database, damaged, locked); the message says what to do."""


@functools.cache
def _expected_columns() -> dict[str, list[str]]:
    """Each table's columns at :data:`SCHEMA_VERSION`, taken from the migrations themselves (run in memory)."""
    db = sqlite3.connect(":memory:")
    try:
        for version in sorted(MIGRATIONS):
            db.executescript(MIGRATIONS[version])
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: [row[1] for row in db.execute(f"PRAGMA table_info({t})")] for t in tables}
    finally:
        db.close()


@dataclass(frozen=True)
class Session:
    id: int
    name: str
    created: float
    last_used: float
    state: dict[str, Any] = field(default_factory=dict)  # the panes: prompt, model, settings as typed


@dataclass(frozen=True)
class Take:
    id: int
    session_id: int
    number: int
    path: str
    prompt: str
    model: str
    seed: int
    duration: float
    parameters: dict[str, Any]
    waveform: list[float]
    starred: bool
    name: str
    deleted: float | None
    trashed_path: str | None
    job_id: int | None

    @property
    def title(self) -> str:
        return self.name or self.prompt


@dataclass(frozen=True)
class JobRecord:
    id: int
    session_id: int
    request: dict[str, Any]
    status: str  # queued | running | done | failed | cancelled | interrupted
    message: str
    created: float


def default_path() -> Path:
    return paths.data_dir() / "sessions.sqlite3"


class SessionStore:
    """One connection, used from the UI thread (and, under its lock, from any other)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=5)
        except sqlite3.DatabaseError as exc:
            raise self.failure(exc) from None
        try:
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
            self._check()
            self.interrupt_active_jobs("ttag stopped before this job finished")
        except (sqlite3.DatabaseError, StoreError) as exc:
            self._db.close()  # nothing more is read or written: the file stays as it was
            if isinstance(exc, StoreError):
                raise
            raise self.failure(exc) from None

    def failure(self, exc: sqlite3.DatabaseError) -> StoreError:
        """What to tell the user when SQLite gives up on the file, at open or later: locked, or damaged."""
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            return StoreError(
                f"{self.path}: the session file is locked by another program (another ttag?); close it and start "
                "ttag again, or set TTAG_DATA_DIR to another folder"
            )
        return self._damaged(str(exc))

    def _damaged(self, what: str) -> StoreError:
        what = " ".join(what.replace("*** in database main ***", "").split())  # SQLite's reports span lines
        return StoreError(
            f"{self.path}: cannot open the session file ({what}); move it aside to start afresh (your takes' audio "
            "files are not in it), or set TTAG_DATA_DIR to another folder"
        )

    def _check(self) -> None:
        """Refuse a file that opens but is not what ttag wrote — damaged pages, a missing table or column, rows that
        could not be read back — before anything is shown, so the user gets one line instead of a crash mid-screen."""
        with self._lock:
            problems = [row[0] for row in self._db.execute("PRAGMA quick_check(1)")]
            if problems != ["ok"]:
                raise self._damaged(f"damaged: {problems[0]}")
            for table, columns in _expected_columns().items():
                have = {row["name"] for row in self._db.execute(f"PRAGMA table_info({table})")}
                missing = [c for c in columns if c not in have]
                if missing:
                    raise self._damaged(f"table {table} lacks {', '.join(missing)}" if have else f"no {table} table")
            for table, good in ROW_CHECKS.items():
                bad = self._db.execute(f"SELECT id FROM {table} WHERE NOT ({good}) LIMIT 1").fetchone()
                if bad:
                    raise self._damaged(f"row {bad[0]} of {table} holds values ttag never writes")

    # -- plumbing --------------------------------------------------------------------------------------------------
    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        version = self.schema_version
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer ttag (schema {version}, this one knows "
                f"{SCHEMA_VERSION}); upgrade ttag or set TTAG_DATA_DIR to another folder"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self._transaction() as db:
                for statement in MIGRATIONS[target].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {target}")

    def interrupt_active_jobs(self, message: str) -> list[int]:
        """Mark queued and running jobs interrupted (they died with a previous run, or the app is closing); their ids.

        Called on open, so a job that was running when the process was killed is shown as interrupted, not running.
        """
        marks = ",".join("?" * len(ACTIVE_JOB_STATES))
        with self._transaction() as db:
            ids = [row[0] for row in db.execute(f"SELECT id FROM jobs WHERE status IN ({marks})", ACTIVE_JOB_STATES)]
            db.execute(
                f"UPDATE jobs SET status='interrupted', message=?, finished=? WHERE status IN ({marks})",
                (message, time.time(), *ACTIVE_JOB_STATES),
            )
        return ids

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- sessions --------------------------------------------------------------------------------------------------
    @staticmethod
    def _session(row: sqlite3.Row) -> Session:
        return Session(row["id"], row["name"], row["created"], row["last_used"], json.loads(row["state"]))

    def sessions(self) -> list[Session]:
        """Most recently used first."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM sessions ORDER BY last_used DESC, id DESC").fetchall()
        return [self._session(row) for row in rows]

    def session(self, session_id: int) -> Session | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM sessions WHERE id=?", (session_id,)).fetchone()
        return self._session(row) if row else None

    def create_session(self, name: str | None = None) -> Session:
        name = (name or "").strip() or self._free_name()
        now = time.time()
        try:
            with self._transaction() as db:
                cursor = db.execute("INSERT INTO sessions(name, created, last_used) VALUES (?, ?, ?)", (name, now, now))
        except sqlite3.IntegrityError:
            raise ValueError(f"there is already a session called {name!r}") from None
        session = self.session(int(cursor.lastrowid or 0))
        assert session is not None
        return session

    def _free_name(self) -> str:
        names = {s.name for s in self.sessions()}
        number = len(names) + 1
        while f"Session {number}" in names:
            number += 1
        return f"Session {number}"

    def latest_session(self) -> Session:
        """The session used last, or a new one when there is none."""
        sessions = self.sessions()
        return sessions[0] if sessions else self.create_session()

    def touch_session(self, session_id: int) -> None:
        with self._transaction() as db:
            db.execute("UPDATE sessions SET last_used=? WHERE id=?", (time.time(), session_id))

    def rename_session(self, session_id: int, name: str) -> None:
        name = name.strip()
        if not name:
            raise ValueError("a session needs a name")
        try:
            with self._transaction() as db:
                db.execute("UPDATE sessions SET name=? WHERE id=?", (name, session_id))
        except sqlite3.IntegrityError:
            raise ValueError(f"there is already a session called {name!r}") from None

    def delete_session(self, session_id: int) -> None:
        """Forget the session, its prompts, jobs and takes (the audio files stay where they are; empty its trash
        first, see ``trash.empty``)."""
        with self._transaction() as db:
            db.execute("DELETE FROM sessions WHERE id=?", (session_id,))

    def save_state(self, session_id: int, state: dict[str, Any]) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE sessions SET state=?, last_used=? WHERE id=?", (json.dumps(state), time.time(), session_id)
            )

    # -- prompts ---------------------------------------------------------------------------------------------------
    def add_prompt(self, session_id: int, prompt: str, negative: str = "") -> None:
        """Remember a prompt that was generated from (the same text twice in a row is kept once)."""
        with self._transaction() as db:
            last = db.execute(
                "SELECT prompt, negative FROM prompts WHERE session_id=? ORDER BY id DESC LIMIT 1", (session_id,)
            ).fetchone()
            if last and (last["prompt"], last["negative"]) == (prompt, negative):
                return
            db.execute(
                "INSERT INTO prompts(session_id, prompt, negative, created) VALUES (?, ?, ?, ?)",
                (session_id, prompt, negative, time.time()),
            )

    def prompt_history(self, session_id: int | None = None, limit: int = 200) -> list[str]:
        """Distinct prompts, newest first; every session's when ``session_id`` is None."""
        query = "SELECT prompt, MAX(id) AS last FROM prompts"
        args: tuple[Any, ...] = ()
        if session_id is not None:
            query += " WHERE session_id=?"
            args = (session_id,)
        query += " GROUP BY prompt ORDER BY last DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(query, (*args, limit)).fetchall()
        return [row["prompt"] for row in rows]

    # -- jobs ------------------------------------------------------------------------------------------------------
    def add_job(self, session_id: int, request: dict[str, Any]) -> int:
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO jobs(session_id, request, status, created) VALUES (?, ?, 'queued', ?)",
                (session_id, json.dumps(request), time.time()),
            )
        return int(cursor.lastrowid or 0)

    def set_job_status(self, job_id: int, status: str, message: str = "") -> None:
        finished = None if status in ACTIVE_JOB_STATES else time.time()
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET status=?, message=?, finished=? WHERE id=?", (status, message, finished, job_id)
            )

    def interrupted_jobs(self, session_id: int) -> list[JobRecord]:
        """The session's jobs that a stop cut short (a kill, a closed terminal, a quit) and nobody has dismissed."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM jobs WHERE session_id=? AND status='interrupted' AND NOT dismissed", (session_id,)
            ).fetchall()
        return self.jobs(session_id, [row["id"] for row in rows]) if rows else []

    def dismiss_job(self, job_id: int) -> None:
        with self._transaction() as db:
            db.execute("UPDATE jobs SET dismissed=1 WHERE id=?", (job_id,))

    def jobs(self, session_id: int, ids: list[int] | None = None) -> list[JobRecord]:
        """The session's jobs in order (only those in ``ids`` when given)."""
        query = "SELECT * FROM jobs WHERE session_id=?"
        args: list[Any] = [session_id]
        if ids is not None:
            query += f" AND id IN ({','.join('?' * len(ids))})"
            args += ids
        with self._lock:
            rows = self._db.execute(query + " ORDER BY id", args).fetchall()
        return [
            JobRecord(r["id"], r["session_id"], json.loads(r["request"]), r["status"], r["message"], r["created"])
            for r in rows
        ]

    # -- takes -----------------------------------------------------------------------------------------------------
    @staticmethod
    def _take(row: sqlite3.Row) -> Take:
        return Take(
            id=row["id"],
            session_id=row["session_id"],
            number=row["number"],
            path=row["path"],
            prompt=row["prompt"],
            model=row["model"],
            seed=row["seed"],
            duration=row["duration"],
            parameters=json.loads(row["parameters"]),
            waveform=json.loads(row["waveform"]),
            starred=bool(row["starred"]),
            name=row["name"],
            deleted=row["deleted"],
            trashed_path=row["trashed_path"],
            job_id=row["job_id"],
        )

    def add_take(
        self,
        session_id: int,
        *,
        path: str,
        prompt: str,
        model: str,
        seed: int,
        duration: float,
        parameters: dict[str, Any],
        waveform: list[float],
        job_id: int | None = None,
    ) -> Take:
        with self._transaction() as db:
            number = db.execute(
                "SELECT COALESCE(MAX(number), 0) + 1 FROM takes WHERE session_id=?", (session_id,)
            ).fetchone()[0]
            cursor = db.execute(
                "INSERT INTO takes(session_id, job_id, number, path, prompt, model, seed, duration, parameters, "
                "waveform, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    session_id,
                    job_id,
                    number,
                    path,
                    prompt,
                    model,
                    seed,
                    duration,
                    json.dumps(parameters),
                    json.dumps([round(v, 3) for v in waveform]),
                    time.time(),
                ),
            )
        take = self.take(int(cursor.lastrowid or 0))
        assert take is not None
        return take

    def take(self, take_id: int) -> Take | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM takes WHERE id=?", (take_id,)).fetchone()
        return self._take(row) if row else None

    def takes(self, session_id: int, *, trashed: bool = False) -> list[Take]:
        """The session's takes in order; the ones in the trash instead when ``trashed``, last deleted first."""
        if trashed:
            query = "SELECT * FROM takes WHERE session_id=? AND deleted IS NOT NULL ORDER BY deleted DESC"
        else:
            query = "SELECT * FROM takes WHERE session_id=? AND deleted IS NULL ORDER BY number"
        with self._lock:
            rows = self._db.execute(query, (session_id,)).fetchall()
        return [self._take(row) for row in rows]

    def set_starred(self, take_id: int, starred: bool) -> None:
        with self._transaction() as db:
            db.execute("UPDATE takes SET starred=? WHERE id=?", (int(starred), take_id))

    def rename_take(self, take_id: int, name: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE takes SET name=? WHERE id=?", (name.strip(), take_id))

    def trash_take(self, take_id: int, trashed_path: str | None) -> None:
        """Mark a take deleted; ``trashed_path`` is where its file was moved (None when the file was gone). A take in
        the trash already keeps its record: where its file went is what undo needs."""
        with self._transaction() as db:
            db.execute(
                "UPDATE takes SET deleted=?, trashed_path=? WHERE id=? AND deleted IS NULL",
                (time.time(), trashed_path, take_id),
            )

    def trashed_takes(self, before: float | None = None, session_id: int | None = None) -> list[Take]:
        """Takes in the trash (of one session, or of all), deleted before the ``before`` timestamp (all with None)."""
        query = "SELECT * FROM takes WHERE deleted IS NOT NULL AND deleted < ?"
        args: list[Any] = [before if before is not None else float("inf")]
        if session_id is not None:
            query += " AND session_id = ?"
            args.append(session_id)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY deleted", args).fetchall()
        return [self._take(row) for row in rows]

    def forget_takes(self, take_ids: list[int]) -> None:
        """Remove takes for good (their files are the caller's to delete)."""
        with self._transaction() as db:
            db.executemany("DELETE FROM takes WHERE id=?", [(take_id,) for take_id in take_ids])

    def restore_take(self, take_id: int) -> None:
        with self._transaction() as db:
            db.execute("UPDATE takes SET deleted=NULL, trashed_path=NULL WHERE id=?", (take_id,))
