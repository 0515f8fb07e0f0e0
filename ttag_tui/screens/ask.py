"""A one-line question (rename a take, name a session): the answer, or None when escaped."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Input, Label

from ttag_tui.screens.dialog import Dialog


class AskScreen(Dialog[str | None]):
    BINDINGS = [Binding("escape", "dismiss_none", "Cancel")]

    def __init__(self, question: str, value: str = "", placeholder: str = "") -> None:
        super().__init__()
        self.question = question
        self.value = value
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog small-dialog"):
            yield Label(self.question, markup=False)  # it quotes names the user typed
            answer = Input(self.value, placeholder=self.placeholder, id="answer")
            answer.cursor_blink = False
            yield answer
            yield Label("enter to confirm · escape to cancel", classes="hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
