"""Session persistence for the main screen: the prompt, model, settings and last seed, saved to the session store.

A change is saved a fraction of a second later, not on every keystroke; anything that leaves the session (the picker,
a switch, shutdown) saves at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from textual.timer import Timer

    from ttag_tui.screens.main.screen import MainScreen

STATE_SAVE_DELAY_S = 0.3


class StateKeeper:
    def __init__(self, screen: MainScreen) -> None:
        self.screen = screen
        self._save_timer: Timer | None = None
        self._pending_state: dict[str, Any] | None = None

    def current(self) -> dict[str, Any]:
        """The state the panes show now."""
        prompt = self.screen.prompt_pane
        settings = self.screen.settings_pane
        return {
            "prompt": prompt.prompt,
            "negative": prompt.negative,
            "model": self.screen.model_id,
            "settings": settings.values,
            "last_seed": settings.last_seed,
        }

    def save(self) -> None:
        """Save now."""
        self._pending_state = self.current()
        self.flush()

    def flush(self) -> None:
        """Write the last state captured (also at shutdown, when the panes are already gone)."""
        if self._save_timer is not None:
            self._save_timer.stop()
            self._save_timer = None
        if self._pending_state is not None:
            self.screen.ttag.store.save_state(self.screen.session.id, self._pending_state)
            self._pending_state = None

    def changed(self) -> None:
        """Save soon, not on every keystroke; a kill loses at most the last fraction of a second of typing."""
        if not self.screen.panes_ready:  # fields settling as they mount: nothing typed yet (keys wait for the panes)
            return
        self._pending_state = self.current()
        if self._save_timer is not None:
            self._save_timer.stop()
        self._save_timer = self.screen.set_timer(STATE_SAVE_DELAY_S, self.flush)
