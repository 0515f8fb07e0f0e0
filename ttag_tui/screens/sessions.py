"""The session picker: create, rename, switch and delete sessions. Dismisses with the session to show next."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from ttag_tui import trash
from ttag_tui.screens.ask import AskScreen
from ttag_tui.screens.dialog import Dialog
from ttag_tui.sessions import SessionStore


class SessionsScreen(Dialog[int | None]):
    BINDINGS = [
        Binding("escape,f3", "close", "Close"),
        Binding("n", "new", "New"),
        Binding("r", "rename", "Rename"),
        Binding("d,delete", "delete", "Delete"),
    ]

    def __init__(self, store: SessionStore, current: int) -> None:
        super().__init__()
        self.store = store
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Sessions · enter switch · n new · r rename · d delete · escape close")
            yield OptionList(id="session-list")
            yield Label("", id="session-message", classes="hint", markup=False)

    def on_mount(self) -> None:
        self._fill(self.current)

    def _fill(self, highlight: int | None) -> None:
        options = self.query_one(OptionList)
        sessions = self.store.sessions()
        rows = []
        for session in sessions:
            takes = len(self.store.takes(session.id))
            row = Text(no_wrap=True, overflow="ellipsis")
            row.append("● " if session.id == self.current else "  ", style="bold")
            row.append(session.name, style="bold")
            row.append(f"  {takes} take{'s' * (takes != 1)}", style="dim")
            rows.append(Option(row, id=str(session.id)))
        options.set_options(rows)
        ids = [s.id for s in sessions]
        if ids:
            options.highlighted = ids.index(highlight) if highlight in ids else 0
        options.focus()

    @property
    def highlighted_id(self) -> int | None:
        options = self.query_one(OptionList)
        if options.highlighted is None:
            return None
        return int(options.get_option_at_index(options.highlighted).id or 0)

    def _say(self, message: str) -> None:
        self.query_one("#session-message", Label).update(message)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(int(event.option.id or 0))

    def action_close(self) -> None:
        self.dismiss(None)

    def action_new(self) -> None:
        def create(name: str | None) -> None:
            if name is None:
                return
            try:
                session = self.store.create_session(name)
            except ValueError as exc:
                self._say(str(exc))
                return
            self.dismiss(session.id)

        self.app.push_screen(AskScreen("Name of the new session", placeholder="empty: Session N"), create)

    def action_rename(self) -> None:
        session_id = self.highlighted_id
        session = self.store.session(session_id) if session_id is not None else None
        if session is None:
            return

        def rename(name: str | None) -> None:
            if name is None:
                return
            try:
                self.store.rename_session(session.id, name)
            except ValueError as exc:
                self._say(str(exc))
            self._fill(session.id)

        self.app.push_screen(AskScreen(f"Rename session {session.name!r}", session.name), rename)

    def action_delete(self) -> None:
        session_id = self.highlighted_id
        session = self.store.session(session_id) if session_id is not None else None
        if session is None:
            return

        def delete(answer: str | None) -> None:
            if (answer or "").strip().lower() not in ("y", "yes"):
                self._say("not deleted")
                return
            trash.empty(self.store, session_id=session.id)  # its takes' trashed files: nothing could restore them
            self.store.delete_session(session.id)
            if session.id == self.current:
                self.dismiss(self.store.latest_session().id)  # a fresh one when that was the last
                return
            self._say(f"deleted {session.name!r}")
            self._fill(self.current)

        self.app.push_screen(
            AskScreen(f"Delete session {session.name!r}? Its audio files stay on disk. (y/n)", placeholder="y or n"),
            delete,
        )
