"""The prompt pane: a multi-line prompt with history on up/down at its edges, and the negative prompt."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.lazy import Lazy
from textual.widgets import Input, TextArea

PLACEHOLDER = "Describe the sound: 'lofi hip hop with piano, 85 bpm'"
NEGATIVE_PLACEHOLDER = "negative prompt (what to avoid)"


class PromptArea(TextArea):
    """A TextArea that recalls earlier prompts: up on the first line goes back, down on the last line forward."""

    def __init__(self, text: str = "", **kwargs: Any) -> None:
        super().__init__(text, soft_wrap=True, show_line_numbers=False, compact=True, **kwargs)
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
    """What to generate: the prompt, and what to avoid for models that take a negative prompt.

    The negative prompt's field is mounted a frame after the prompt (Textual's ``Lazy``), so the first paint is the
    prompt alone; until then the field exists unmounted and keeps its value.
    """

    def __init__(self, prompt: str = "", negative: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.prompt_area = PromptArea(prompt, id="prompt", placeholder=PLACEHOLDER)
        self.negative_input = Input(negative, id="negative", placeholder=NEGATIVE_PLACEHOLDER, compact=True)
        self.negative_input.cursor_blink = False

    def compose(self) -> ComposeResult:
        yield self.prompt_area
        yield Lazy(self.negative_input)

    def on_mount(self) -> None:
        self.prompt_area.move_cursor(self.prompt_area.document.end)

    @property
    def prompt(self) -> str:
        return self.prompt_area.text

    @property
    def negative(self) -> str:
        return self.negative_input.value

    def load(self, prompt: str, negative: str = "") -> None:
        self.prompt_area.load_text(prompt)
        self.prompt_area.move_cursor(self.prompt_area.document.end)
        self.negative_input.value = negative

    def allow_negative(self, allowed: bool, model: str) -> None:
        self.negative_input.disabled = not allowed
        self.negative_input.placeholder = NEGATIVE_PLACEHOLDER if allowed else f"({model} takes no negative prompt)"
