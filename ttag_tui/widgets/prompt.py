"""The prompt pane: a multi-line prompt with history on up/down at its edges, and the negative prompt."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Input, TextArea


class PromptArea(TextArea):
    """A TextArea that recalls earlier prompts: up on the first line goes back, down on the last line forward."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(soft_wrap=True, show_line_numbers=False, compact=True, **kwargs)  # type: ignore[arg-type]
        self.cursor_blink = False  # a blinking cursor redraws twice a second: noise over SSH, churn in snapshots
        self.recalled_prompts: list[str] = []  # newest first
        self._history_index = -1  # -1: the user's own draft
        self._draft = ""

    def set_history(self, prompts: list[str]) -> None:
        self.recalled_prompts = prompts
        self._history_index = -1

    def _recall(self, index: int) -> None:
        if self._history_index == -1:
            self._draft = self.text
        self._history_index = index
        self.load_text(self._draft if index == -1 else self.recalled_prompts[index])
        self.move_cursor(self.document.end if index == -1 else (0, 0))

    def action_cursor_up(self, select: bool = False) -> None:
        if not select and self.cursor_location[0] == 0 and self._history_index + 1 < len(self.recalled_prompts):
            self._recall(self._history_index + 1)
            return
        super().action_cursor_up(select)

    def action_cursor_down(self, select: bool = False) -> None:
        last_row = self.document.line_count - 1
        if not select and self.cursor_location[0] == last_row and self._history_index >= 0:
            self._recall(self._history_index - 1)
            return
        super().action_cursor_down(select)


class PromptPane(Vertical):
    """What to generate: the prompt, and what to avoid for models that take a negative prompt."""

    def compose(self) -> ComposeResult:
        yield PromptArea(id="prompt", placeholder="Describe the sound: 'lofi hip hop with piano, 85 bpm'")
        negative = Input(id="negative", placeholder="negative prompt (what to avoid)", compact=True)
        negative.cursor_blink = False
        yield negative

    @property
    def prompt(self) -> str:
        return self.query_one(PromptArea).text

    @property
    def negative(self) -> str:
        return self.query_one("#negative", Input).value

    def load(self, prompt: str, negative: str = "") -> None:
        area = self.query_one(PromptArea)
        area.load_text(prompt)
        area.move_cursor(area.document.end)
        self.query_one("#negative", Input).value = negative

    def allow_negative(self, allowed: bool, model: str) -> None:
        negative = self.query_one("#negative", Input)
        negative.disabled = not allowed
        negative.placeholder = "negative prompt (what to avoid)" if allowed else f"({model} takes no negative prompt)"
