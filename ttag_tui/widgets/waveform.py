"""Waveform drawings: a peak summary computed once per take, drawn as block characters.

The summary (a few dozen peaks between 0 and 1) is what the session store keeps, so drawing a take never touches its
audio again; computing it is one vectorised pass, done off the UI thread for long clips.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

if TYPE_CHECKING:
    import numpy as np

SUMMARY_POINTS = 96
FLAT_SUMMARY = [0.02] * SUMMARY_POINTS  # a flat line to draw the position on while a take is still being made
BLOCKS = " ▁▂▃▄▅▆▇█"


def summarize(audio: np.ndarray, points: int = SUMMARY_POINTS) -> list[float]:
    """Peak level of each of ``points`` equal slices of (channels, samples) audio, each in 0..1."""
    import numpy as np

    samples = audio.shape[-1]
    if samples == 0:
        return [0.0] * points
    mono = np.abs(audio).max(axis=0) if audio.ndim == 2 else np.abs(audio)
    edges = np.linspace(0, samples, points + 1).astype(int)
    edges[-1] = samples
    starts = np.minimum(edges[:-1], samples - 1)
    peaks = np.maximum.reduceat(mono, starts)
    return [float(min(1.0, p)) for p in peaks]


def resample(summary: list[float], width: int) -> list[float]:
    """The summary stretched or squeezed to ``width`` columns (the peak of the points each column covers)."""
    if width <= 0 or not summary:
        return [0.0] * max(width, 0)
    count = len(summary)
    columns = []
    for column in range(width):
        start = column * count // width
        end = max(start + 1, (column + 1) * count // width)
        columns.append(max(summary[start:end]))
    return columns


def bars(summary: list[float], width: int) -> str:
    """The summary as ``width`` block characters (for a table cell)."""
    top = len(BLOCKS) - 1
    return "".join(
        BLOCKS[min(top, round(level * top))] if level > 0 else BLOCKS[1] for level in resample(summary, width)
    )


class Waveform(Widget):
    """A one-line waveform of the playing take, the part already played in the accent colour."""

    DEFAULT_CSS = """
    Waveform {
        height: 1;
        & > .waveform--played {
            color: $accent;
        }
        & > .waveform--ahead {
            color: $primary 60%;
        }
    }
    """
    COMPONENT_CLASSES = {"waveform--played", "waveform--ahead"}
    summary: reactive[list[float]] = reactive(list, always_update=True)
    position: reactive[float | None] = reactive(None)  # 0..1 through the take; None when nothing plays
    note: reactive[str] = reactive("")  # shown instead of the drawing (e.g. why nothing can play)

    def render(self) -> Text:
        width = self.size.width
        if self.note:  # a long path keeps its end (the file name), the part that tells takes apart
            note = self.note if len(self.note) <= width else "…" + self.note[-(width - 1) :]
            return Text(note, style="yellow", no_wrap=True)
        if not self.summary:
            return Text("no take playing", style="dim")
        drawing = bars(self.summary, width)
        played = 0 if self.position is None else round(self.position * width)
        text = Text()
        text.append(drawing[:played], style=self.get_component_rich_style("waveform--played"))
        text.append(drawing[played:], style=self.get_component_rich_style("waveform--ahead"))
        return text
