"""The look every dialog shares: a centred, bordered box over the main screen."""

from __future__ import annotations

from typing import TypeVar

from textual.screen import ModalScreen

ResultType = TypeVar("ResultType")


class Dialog(ModalScreen[ResultType]):
    DEFAULT_CSS = """
    Dialog {
        align: center middle;
        .dialog {
            width: 90%;
            max-width: 100;
            height: 80%;
            border: round $primary;
            background: $surface;
            padding: 0 1;
        }
        .small-dialog {
            height: auto;
        }
        .hint {
            color: $text-muted;
        }
        .dialog OptionList {
            height: 1fr;
        }
    }
    """
