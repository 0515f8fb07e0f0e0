"""The requests the main screen's widgets post, one message class per request.

A widget only turns a key into one of these; the main screen receives them (they bubble up the DOM) and hands each to
the module that does the work: take actions to ``screens/main/takes.py``, job requests to ``screens/main/jobs.py``.
Each take message names the keymap id (``ttag_tui.keymap``) whose binding posts it, so the keys, the command palette
and the handlers meet in one table, :data:`TAKES_KEY_MESSAGES`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.message import Message

if TYPE_CHECKING:
    from ttag_tui.widgets.jobs import JobItem


class TakeAction(Message):
    """Something to do to one take: the table's selected row, or None when the table is empty."""

    key_id: ClassVar[str]  # the keymap id of the binding that posts it

    def __init__(self, take_id: int | None) -> None:
        super().__init__()
        self.take_id = take_id


class PlayTake(TakeAction):
    key_id = "play_take"


class StarTake(TakeAction):
    key_id = "star"


class RenameTake(TakeAction):
    key_id = "rename"


class DeleteTake(TakeAction):
    """Move the take's file to the trash (undo brings it back)."""

    key_id = "delete"


class CopyTakePath(TakeAction):
    key_id = "copy_path"


class UseTakeSettings(TakeAction):
    """Load the take's prompt, model and parameters into the panes."""

    key_id = "use_settings"


class RegenerateNewSeed(TakeAction):
    key_id = "regen_new_seed"


class RegenerateSameSeed(TakeAction):
    key_id = "regen_same_seed"


class ContinueTake(TakeAction):
    """Generate more audio after the take (models with an ``audio_prompt``)."""

    key_id = "continue_take"


class UndoDelete(Message):
    """Bring back the take deleted last; it needs no selected row."""

    key_id: ClassVar[str] = "undo_delete"


TAKES_KEY_MESSAGES: dict[str, type[TakeAction] | type[UndoDelete]] = {
    message.key_id: message
    for message in (
        PlayTake,
        StarTake,
        RenameTake,
        DeleteTake,
        UndoDelete,
        CopyTakePath,
        UseTakeSettings,
        RegenerateNewSeed,
        RegenerateSameSeed,
        ContinueTake,
    )
}
"""Every key of the takes table (its keymap id) and the message it posts."""


class JobRequest(Message):
    """Something to do to one row of the jobs list."""

    key_id: ClassVar[str]

    def __init__(self, item: JobItem) -> None:
        super().__init__()
        self.item = item


class CancelJob(JobRequest):
    """Cancel a running job, or dismiss a finished row."""

    key_id = "cancel_job"


class ListenToJob(JobRequest):
    """Play the job's audio as it streams in."""

    key_id = "play_live"
