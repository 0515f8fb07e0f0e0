"""Sessions on the main screen: the picker (F3), switching, and putting a session's saved state into the panes.

The state of the session being left is saved first; jobs still running keep going and file their takes under the
session they were started in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.content import Content

from ttag_tui.widgets.prompt import PromptArea

if TYPE_CHECKING:
    from ttag_tui.screens.main.screen import MainScreen


class SessionSwitcher:
    def __init__(self, screen: MainScreen) -> None:
        self.screen = screen

    async def open_picker(self) -> None:
        from ttag_tui.screens.sessions import SessionsScreen

        screen, store = self.screen, self.screen.ttag.store

        async def chosen(session_id: int | None) -> None:
            if session_id is not None:
                await self.switch(session_id)
            elif store.session(screen.session.id) is None:  # deleted from the picker
                await self.switch(store.latest_session().id)

        screen.state.save()
        await screen.app.push_screen(SessionsScreen(store, screen.session.id), chosen)

    async def switch(self, session_id: int) -> None:
        screen, store = self.screen, self.screen.ttag.store
        if store.session(screen.session.id) is not None:
            screen.state.save()
        session = store.session(session_id)
        if session is None:
            return
        store.touch_session(session_id)
        screen.session = session
        screen.jobs.last_request = None
        model = session.state.get("model") or screen.ttag.config.default_model
        if model in screen.ttag.registry:
            screen.model_id = model
            screen.model_pane.select(model, announce=False)
        settings = screen.settings_pane
        settings.last_seed = None
        await settings.load_values(session.state.get("settings", {}), screen.spec)
        self.show_prompt()
        self.show_takes()
        await screen.jobs.drop_finished()
        await screen.jobs.show_interrupted()
        screen.notify(f"Session {session.name!r}", timeout=2)

    def show_prompt(self) -> None:
        screen = self.screen
        state = screen.session.state
        screen.prompt_pane.load(state.get("prompt", ""), state.get("negative", ""))
        screen.prompt_pane.allow_negative(screen.spec.param("negative_prompt") is not None, screen.spec.id)
        screen.query_one(PromptArea).set_history(screen.ttag.store.prompt_history(None))

    def show_takes(self) -> None:
        screen = self.screen
        state = screen.session.state
        takes = screen.takes_table
        takes.border_title = Content(f"Takes · {screen.session.name}")  # a name like "[b]" is text
        takes.set_takes(screen.ttag.store.takes(screen.session.id))
        if state.get("last_seed") is not None:
            screen.settings_pane.show_last_seed(int(state["last_seed"]))
