"""The jobs list: one row per generation in flight (or failed), with its phase, a progress bar and an ETA."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal
from textual.widgets import Label, ListItem, ListView, ProgressBar

from ttag_tui import keymap
from ttag_tui.messages import CancelJob, ListenToJob

if TYPE_CHECKING:
    from ttag_tui.backend.events import Job
    from ttag_tui.playback import AudioSource

PHASE_WORDS = {"loading": "loading model", "generating": "generating", "decoding": "decoding"}
FINISHED_STATES = ("done", "failed", "cancelled", "interrupted")


def format_eta(seconds: float | None) -> str:
    """'~12s left', '~2:05 left'; nothing when unknown or under half a second (a phase ending says nothing new)."""
    if seconds is None or seconds < 0.5:
        return ""
    seconds = round(seconds)
    return f"~{seconds // 60}:{seconds % 60:02d} left" if seconds >= 60 else f"~{seconds}s left"


class JobItem(ListItem):
    """One job: '#12 queued · lofi piano…' then a bar while it runs, or the error in words when it failed."""

    def __init__(
        self, record_id: int, title: str, job: Job | None = None, status: str = "queued", message: str = ""
    ) -> None:
        super().__init__(classes=f"job -{status}")
        self.record_id = record_id
        self.title = title
        self.job = job
        self.status = status
        self.detail = message
        self.live: AudioSource | None = None  # the job's audio as it streams in (take 1), for listening early

    def compose(self) -> ComposeResult:
        with Horizontal(classes="job-row"):
            yield Label(self._line(), classes="job-label")
            yield ProgressBar(total=None, show_eta=False, classes="job-bar")

    def on_mount(self) -> None:
        self._sync()

    def _line(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        style = {"failed": "red", "interrupted": "yellow", "cancelled": "dim"}.get(self.status, "")
        text.append(f"#{self.record_id} {self.status}", style=style or "bold")
        if self.detail:
            text.append(f" · {self.detail}", style=style)
        text.append(f" · {self.title}", style="dim")
        return text

    def _sync(self) -> None:
        for status in ("queued", "running", *FINISHED_STATES):
            self.set_class(status == self.status, f"-{status}")
        self.query_one(".job-label", Label).update(self._line())
        self.query_one(ProgressBar).display = self.status in ("queued", "running")

    def set_status(self, status: str, detail: str = "") -> None:
        self.status = status
        self.detail = detail
        self._sync()

    def set_progress(self, phase: str, step: int, total: int, eta_s: float | None) -> None:
        self.status = "running"
        self.detail = " ".join(part for part in (PHASE_WORDS.get(phase, phase), format_eta(eta_s)) if part)
        bar = self.query_one(ProgressBar)
        bar.update(total=max(total, 1), progress=step)
        self._sync()

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATES


class JobsList(ListView):
    """Hidden while empty. Keys post ``CancelJob`` (or dismiss a finished row) and ``ListenToJob`` (listen early)."""

    DEFAULT_CSS = """
    JobsList {
        .job, .job-row {
            height: 1;
        }
        .job-label {
            width: 1fr;
        }
        .job-bar {
            width: 22;
        }
        .job-bar Bar {
            width: 14;
        }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [*keymap.bindings("jobs")]

    def on_mount(self) -> None:
        self.display = False

    async def add_job(self, item: JobItem) -> None:
        await self.append(item)
        self.display = True
        if self.index is None:
            self.index = 0

    async def remove_job(self, item: JobItem) -> None:
        await item.remove()
        self.display = bool(self.children)
        if self.children and (self.index is None or self.index >= len(self.children)):
            self.index = len(self.children) - 1

    def items(self) -> list[JobItem]:
        return [child for child in self.children if isinstance(child, JobItem)]

    @property
    def focused_item(self) -> JobItem | None:
        item = self.highlighted_child
        return item if isinstance(item, JobItem) else None

    def action_cancel_job(self) -> None:
        if self.focused_item is not None:
            self.post_message(CancelJob(self.focused_item))

    def action_play_live(self) -> None:
        if self.focused_item is not None:
            self.post_message(ListenToJob(self.focused_item))
