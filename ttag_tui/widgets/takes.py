"""The takes table: every clip of the session as a row, with the actions people use while auditioning.

The table only shows takes and turns keys into the typed messages of ``ttag_tui.messages`` (``StarTake``,
``DeleteTake``, ...); the main screen hands them to ``screens/main/takes.py``, which does the work (files, store,
player), so every action is in one place whether it came from a key or the command palette.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from ttag_tui import keymap
from ttag_tui.messages import (
    ContinueTake,
    CopyTakePath,
    DeleteTake,
    PlayTake,
    RegenerateNewSeed,
    RegenerateSameSeed,
    RenameTake,
    StarTake,
    TakeAction,
    UndoDelete,
    UseTakeSettings,
)
from ttag_tui.sessions import Take
from ttag_tui.widgets.waveform import bars

WAVE_WIDTH = 8
FIXED_COLUMNS = {"number": 3, "star": 1, "status": 1, "model": 8, "seed": 10, "length": 6, "wave": WAVE_WIDTH}
MIN_PROMPT_WIDTH = 8
MODEL_COLUMN_FROM = 72  # narrower than this, the model column gives its room to the prompt


def format_seconds(seconds: float) -> str:
    """At most the length column's 6 characters (``9.5s``, ``9:59.9``, ``10:00``): one more would meet the next."""
    minutes, tenths = divmod(round(max(seconds, 0.0) * 10), 600)  # rounded once: 59.96 s is 1:00.0, never 0:60.0
    if minutes >= 10:
        return f"{minutes}:{tenths // 10:02d}"
    return f"{minutes}:{tenths // 10:02d}.{tenths % 10}" if minutes else f"{tenths / 10:.1f}s"


def status_mark(take: Take) -> Text:
    if Path(take.path).exists():
        return Text("✓", style="green")
    return Text("?", style="red")  # the file was moved or deleted outside ttag


class TakesTable(DataTable[Text | str]):
    """Rows keyed by take id. Left/right are the transport's seek keys here, so the table only moves up and down."""

    inherit_bindings = False
    BINDINGS = [
        Binding("up", "cursor_up", "Up", show=False),
        Binding("down", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "scroll_top", "First", show=False),
        Binding("end", "scroll_bottom", "Last", show=False),
        *keymap.bindings("takes"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, cell_padding=0, **kwargs)
        self.takes: dict[int, Take] = {}
        self._layout_width = 0

    def on_mount(self) -> None:
        self._build_columns()

    def on_resize(self) -> None:
        if self.size.width != self._layout_width:
            self._rebuild()

    def _show_model(self) -> bool:
        return self.size.width >= MODEL_COLUMN_FROM

    def _prompt_width(self) -> int:
        fixed = sum(w + 1 for name, w in FIXED_COLUMNS.items() if name != "model" or self._show_model())
        return max(MIN_PROMPT_WIDTH, self.size.width - fixed - 3)  # the vertical scrollbar's room

    def _build_columns(self) -> None:
        self._layout_width = self.size.width
        self.add_column("#", width=FIXED_COLUMNS["number"] + 1, key="number")
        self.add_column("★", width=FIXED_COLUMNS["star"] + 1, key="star")
        self.add_column("prompt", width=self._prompt_width() + 1, key="prompt")
        if self._show_model():
            self.add_column("model", width=FIXED_COLUMNS["model"] + 1, key="model")
        self.add_column("seed", width=FIXED_COLUMNS["seed"] + 1, key="seed")
        self.add_column("length", width=FIXED_COLUMNS["length"] + 1, key="length")
        self.add_column("", width=FIXED_COLUMNS["status"] + 1, key="status")
        self.add_column("wave", width=FIXED_COLUMNS["wave"], key="wave")

    def _cells(self, take: Take) -> list[Text | str]:
        title = Text(take.title, no_wrap=True, style="italic" if take.name else "")
        title.truncate(self._prompt_width(), overflow="ellipsis")  # the column's last cell stays a gap
        cells: list[Text | str] = [
            Text(str(take.number), justify="right"),
            Text("★" if take.starred else " ", style="yellow"),
            title,
        ]
        if self._show_model():
            model = Text(take.model, no_wrap=True)
            model.truncate(FIXED_COLUMNS["model"], overflow="ellipsis")
            cells.append(model)
        cells += [
            str(take.seed),
            format_seconds(take.duration),
            status_mark(take),
            Text(bars(take.waveform, WAVE_WIDTH), style="cyan"),
        ]
        return cells

    def _rebuild(self) -> None:
        selected = self.selected_take_id
        self.clear(columns=True)
        self._build_columns()
        for take in self.takes.values():
            self.add_row(*self._cells(take), key=str(take.id))
        if selected is not None:
            self.select_take(selected)

    def set_takes(self, takes: list[Take]) -> None:
        self.takes = {take.id: take for take in takes}
        self._rebuild()
        if takes:
            self.move_cursor(row=len(takes) - 1)

    def add_take(self, take: Take) -> None:
        self.takes[take.id] = take
        self.add_row(*self._cells(take), key=str(take.id))

    def update_take(self, take: Take) -> None:
        if take.id in self.takes:
            self.takes[take.id] = take
            self._rebuild()

    def remove_take(self, take_id: int) -> None:
        if self.takes.pop(take_id, None) is not None:
            self.remove_row(str(take_id))

    def select_take(self, take_id: int) -> None:
        if take_id in self.takes:
            self.move_cursor(row=self.get_row_index(str(take_id)))

    @property
    def selected_take_id(self) -> int | None:
        if not self.takes or self.row_count == 0:
            return None
        row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        return int(row_key.value) if row_key.value is not None else None

    @property
    def selected_take(self) -> Take | None:
        take_id = self.selected_take_id
        return self.takes.get(take_id) if take_id is not None else None

    def _request(self, action: type[TakeAction]) -> None:
        self.post_message(action(self.selected_take_id))

    # One action per binding of the "takes" scope (its keymap id), each posting its message.
    def action_play_take(self) -> None:
        self._request(PlayTake)

    def action_star(self) -> None:
        self._request(StarTake)

    def action_rename(self) -> None:
        self._request(RenameTake)

    def action_delete(self) -> None:
        self._request(DeleteTake)

    def action_undo_delete(self) -> None:
        self.post_message(UndoDelete())

    def action_copy_path(self) -> None:
        self._request(CopyTakePath)

    def action_use_settings(self) -> None:
        self._request(UseTakeSettings)

    def action_regen_new_seed(self) -> None:
        self._request(RegenerateNewSeed)

    def action_regen_same_seed(self) -> None:
        self._request(RegenerateSameSeed)

    def action_continue_take(self) -> None:
        self._request(ContinueTake)
