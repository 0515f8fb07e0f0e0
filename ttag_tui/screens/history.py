"""The prompt history picker: earlier prompts, newest first, filtered by what you type."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from ttag_tui.screens.dialog import Dialog


class HistoryScreen(Dialog[str | None]):
    BINDINGS = [
        Binding("escape", "dismiss_none", "Cancel"),
        Binding("down", "move(1)", "Next", show=False),
        Binding("up", "move(-1)", "Previous", show=False),
    ]

    def __init__(self, prompts: list[str]) -> None:
        super().__init__()
        self.prompts = prompts

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Earlier prompts (type to filter, enter to use)")
            search = Input(placeholder="filter", id="history-filter", compact=True)
            search.cursor_blink = False
            yield search
            yield OptionList(id="history-list")
            if not self.prompts:
                yield Label("No prompts yet: generate something first.", classes="hint")

    def on_mount(self) -> None:
        self._fill("")

    def _fill(self, needle: str) -> None:
        options = self.query_one(OptionList)
        words = needle.lower().split()
        options.set_options(
            Option(Text(prompt, no_wrap=True, overflow="ellipsis"), id=str(index))
            for index, prompt in enumerate(self.prompts)
            if all(word in prompt.lower() for word in words)
        )
        if options.option_count:
            options.highlighted = 0

    def on_input_changed(self, event: Input.Changed) -> None:
        self._fill(event.value)

    def action_move(self, step: int) -> None:
        options = self.query_one(OptionList)
        if options.option_count:
            options.highlighted = ((options.highlighted or 0) + step) % options.option_count

    def on_input_submitted(self, event: Input.Submitted) -> None:
        options = self.query_one(OptionList)
        if options.highlighted is not None:
            self.dismiss(self.prompts[int(options.get_option_at_index(options.highlighted).id or 0)])

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.prompts[int(event.option.id or 0)])

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
