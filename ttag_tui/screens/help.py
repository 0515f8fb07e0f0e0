"""The help screen: ``help.md`` plus every key, generated from the keymap with the user's overrides applied."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Markdown

from ttag_tui import keymap
from ttag_tui.screens.dialog import Dialog

HELP_FILE = Path(__file__).resolve().parent.parent / "help.md"
TEXTUAL_KEYS = (
    "\n| Key | Action |\n| :- | :- |\n| `ctrl+p` | Command palette |\n| `ctrl+q` | Quit |\n"
    "| `tab` / `shift+tab` | Next / previous pane |\n"
)


def help_markdown(overrides: Mapping[str, str]) -> str:
    return HELP_FILE.read_text(encoding="utf-8") + "\n" + keymap.help_table(overrides) + TEXTUAL_KEYS


class HelpScreen(Dialog[None]):
    DEFAULT_CSS = """
    HelpScreen #help-box {
        overflow-y: auto;
    }
    """
    BINDINGS = [Binding("escape,f1,q", "dismiss", "Close")]

    def __init__(self, overrides: Mapping[str, str]) -> None:
        super().__init__()
        self.overrides = overrides

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box", classes="dialog"):
            yield Markdown(help_markdown(self.overrides), id="help-text")

    def on_mount(self) -> None:
        self.query_one("#help-box").focus()
