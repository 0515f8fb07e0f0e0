"""The transport bar: the playing take's waveform with the position drawn on it, time, volume and loop."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from ttag_tui.playback import PlayerStatus
from ttag_tui.widgets.takes import format_seconds
from ttag_tui.widgets.waveform import Waveform

STATE_MARKS = {"playing": "▶", "paused": "⏸", "stopped": "■"}


def status_line(status: PlayerStatus) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(STATE_MARKS[status.state] + " ", style="bold")
    text.append(f"{format_seconds(status.position_s)} / {format_seconds(status.duration_s)}")
    if status.waiting:
        text.append(" (waiting for the generator)", style="yellow")
    text.append(f" · vol {round(status.volume * 100)}%")
    text.append(" · loop" if status.loop else "", style="bold")
    if status.label:
        text.append(f" · {status.label}", style="dim")
    return text


class Transport(Vertical):
    """Shows what the player is doing; the main screen owns the player and calls :meth:`show`."""

    def compose(self) -> ComposeResult:
        yield Waveform(id="transport-wave")
        yield Static(status_line(PlayerStatus("stopped", 0, 0, False, 1.0, "", False)), id="transport-status")

    def show(self, status: PlayerStatus, summary: list[float] | None, note: str = "") -> None:
        """``note`` (e.g. "no audio here · where the file is") takes the waveform's line while nothing plays."""
        wave = self.query_one(Waveform)
        playing = status.state != "stopped"
        wave.note = "" if playing else note
        if summary is not None and summary != wave.summary:
            wave.summary = summary
        wave.position = (status.position_s / status.duration_s) if status.duration_s and playing else None
        self.query_one("#transport-status", Static).update(status_line(status))
