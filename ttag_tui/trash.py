"""The takes' trash: deleting a take moves its file (and sidecar) into a ``.ttag-trash`` folder beside it, so undo can
put it back — in this run or a later one. Takes stay there for ``KEEP_DAYS``; ttag empties older ones at start-up, and
"Empty the trash" in the command palette empties it all. Deleting a session empties its trash (nothing else
could bring those files back).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from ttag_tui.sessions import SessionStore

TRASH_FOLDER = ".ttag-trash"
KEEP_DAYS = 30


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def move_to_trash(path: Path) -> Path | None:
    """Move the take's file and its sidecar into the trash; where the file went, or None when it was gone already."""
    if not path.exists():
        return None
    trash = path.parent / TRASH_FOLDER
    trash.mkdir(exist_ok=True)
    target = trash / path.name
    os.replace(path, target)
    if _sidecar(path).exists():
        os.replace(_sidecar(path), _sidecar(target))
    return target


def restore(trashed: Path, original: Path) -> None:
    """Put a trashed file (and its sidecar) back where it was."""
    if trashed.exists():
        os.replace(trashed, original)
        if _sidecar(trashed).exists():
            os.replace(_sidecar(trashed), _sidecar(original))


@dataclass(frozen=True)
class Emptied:
    takes: int
    bytes: int


def empty(store: SessionStore, older_than_days: float | None = None, session_id: int | None = None) -> Emptied:
    """Delete the files of takes trashed before the cutoff (all of them with None), of one session or all, and
    forget those takes."""
    cutoff = None if older_than_days is None else time.time() - older_than_days * 86400
    trashed = store.trashed_takes(cutoff, session_id)
    freed = 0
    for take in trashed:
        if take.trashed_path:
            for path in (Path(take.trashed_path), _sidecar(Path(take.trashed_path))):
                try:
                    freed += path.stat().st_size
                    path.unlink()
                except FileNotFoundError:
                    pass
    store.forget_takes([take.id for take in trashed])
    return Emptied(len(trashed), freed)
