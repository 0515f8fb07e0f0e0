"""The ttag Textual app: ``ttag`` with no arguments opens it.

The app object holds the services the screens share — config, registry, session store, player and the bridge — and
the app-wide behaviour: themes, key overrides, the command palette, and a clean shutdown. The bridge (and with it
numpy and the worker machinery) is created on the first generation, after the first paint; machine-learning libraries
are only ever imported in worker processes.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import events
from textual.app import App, SystemCommand
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.theme import Theme

from runners.registry import Registry, default_registry
from ttag_tui import config as config_module
from ttag_tui import keymap
from ttag_tui.config import Config, ConfigError
from ttag_tui.playback import Player
from ttag_tui.screens.main.screen import MainScreen
from ttag_tui.sessions import SessionStore, StoreError
from ttag_tui.themes import load_themes

if TYPE_CHECKING:
    from ttag_tui.backend import Backend

FALLBACK_THEME = "textual-dark"


class TtagApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "ttag"

    def __init__(
        self,
        config: Config | None = None,
        *,
        registry: Registry | None = None,
        store: SessionStore | None = None,
        player: Player | None = None,
        bridge_factory: Callable[[], Backend] | None = None,
        theme_folders: Iterable[Path] | None = None,
        persist_config: bool = True,
    ) -> None:
        super().__init__()
        self.config = config if config is not None else config_module.load()
        self.registry = registry if registry is not None else default_registry()
        self.store = store if store is not None else SessionStore()
        self.player = player if player is not None else Player()
        self.persist_config = persist_config  # tests that hand in a config keep the user's file out of it
        self._bridge_factory = bridge_factory
        self._bridge: Backend | None = None
        self._bridge_lock = threading.Lock()
        self._held_keys: list[events.Key] | None = []  # until the main screen's panes are mounted
        self.main_screen: MainScreen | None = None  # made by get_default_screen, which may fail on a bad store
        self.store_failure: StoreError | None = None  # why the session file stopped working while the app ran
        # Themes are set before the stylesheet is first parsed: a change after that parses it all again.
        themes, self._theme_problems = load_themes(theme_folders)
        for theme in themes:
            self.register_theme(theme)
        self.theme = self.config.theme if self.config.theme in self.available_themes else FALLBACK_THEME

    # -- services --------------------------------------------------------------------------------------------------
    @property
    def bridge(self) -> Backend:
        """Created on first use (from a thread: importing it pulls in numpy and subprocess machinery)."""
        with self._bridge_lock:
            if self._bridge is None:
                if self._bridge_factory is not None:
                    self._bridge = self._bridge_factory()
                else:
                    from ttag_tui.bridge import Bridge, BridgeSettings

                    self._bridge = Bridge(self.registry, BridgeSettings.from_config(self.config))
            return self._bridge

    def loaded_models(self) -> list[str]:
        return self._bridge.loaded_models() if self._bridge is not None else []

    # -- start-up --------------------------------------------------------------------------------------------------
    def get_default_screen(self) -> MainScreen:
        """The main screen is the first screen: no empty default screen to lay out and paint before it."""
        self._apply_keys()
        self.main_screen = MainScreen()
        return self.main_screen

    async def on_event(self, event: events.Event) -> None:
        """Keys that arrive before the main screen has mounted its panes (a frame after the first paint) wait for
        them and then run in order: an early ctrl+g generates instead of finding no settings pane."""
        if isinstance(event, events.Key) and not event.is_forwarded and self._held_keys is not None:
            self._held_keys.append(event)
            return
        await super().on_event(event)

    def release_keys(self) -> None:
        """The main screen is complete: replay the keys held until now, and stop holding."""
        held, self._held_keys = self._held_keys or [], None
        for key in held:
            self.post_message(events.Key(key.key, key.character))

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """Every notice as plain text, whatever the caller asks: ttag's notices quote prompts, paths, session names and
        errors, where brackets are text (``[musicgen]``, a prompt like ``[/]``), not Textual markup that could eat or
        crash on them. Screens and widgets pass ``markup=True`` by default, hence the override here."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    def on_mount(self) -> None:
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        for problem in self._theme_problems:
            self.notify(str(problem), title="Theme skipped", severity="warning", timeout=8)

    def _apply_keys(self) -> None:
        unknown = keymap.unknown_actions(self.config.keys)
        if unknown:
            self.notify(f"config [keys]: no action called {', '.join(unknown)} (F1 lists them)", severity="warning")
        self.set_keymap({k: v for k, v in self.config.keys.items() if k not in unknown})

    def _theme_changed(self, theme: Theme) -> None:
        """Remember a theme picked anywhere (command palette, config screen) for the next start."""
        if theme.name == self.config.theme:
            return
        self.config = replace(self.config, theme=theme.name)
        if not self.persist_config:
            return
        try:
            config_module.set_value("theme", theme.name)
        except (ConfigError, OSError) as exc:
            self.notify(f"theme not saved: {exc}", severity="warning")

    def apply_config(self, config: Config) -> None:
        """Use a config saved from the config screen: theme and keys at once, machine settings for new workers."""
        machine_changed = (config.device, config.dtype, config.threads, config.cache_dir) != (
            self.config.device,
            self.config.dtype,
            self.config.threads,
            self.config.cache_dir,
        )
        self.config = config
        if config.theme in self.available_themes and config.theme != self.theme:
            self.theme = config.theme
        self._apply_keys()
        if machine_changed and self._bridge is not None:
            self.notify("New device settings apply after ttag restarts (the model is loaded already).", timeout=6)

    # -- command palette -------------------------------------------------------------------------------------------
    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if not isinstance(screen, MainScreen) or not screen.panes_ready:
            return
        for spec in keymap.KEYS:
            target = {"takes": "#takes", "jobs": "#jobs"}.get(spec.scope)
            node = screen.query_one(target) if target else screen
            key = keymap.effective_key(spec, self.config.keys)
            yield SystemCommand(spec.description, f"{spec.help} ({key})", partial(node.run_action, spec.id))
        yield SystemCommand(
            "Empty the trash", "delete trashed takes for good (no undo after this)", screen.take_actions.empty_trash
        )
        yield SystemCommand(
            "Open a local model folder",
            "a fine-tune or a copied checkpoint: MusicGen (transformers), diffusers or AudioCraft",
            screen.models.open_local_model,
        )
        for model in self.registry:
            yield SystemCommand(f"Model: {model.id}", model.description, partial(screen.choose_model, model.id))
        for session in self.store.sessions():
            yield SystemCommand(
                f"Session: {session.name}", "switch to this session", partial(screen.sessions.switch, session.id)
            )
        for name in sorted(self.available_themes):
            yield SystemCommand(f"Theme: {name}", "use this theme (remembered)", partial(setattr, self, "theme", name))

    # -- shutdown --------------------------------------------------------------------------------------------------
    def _handle_exception(self, error: Exception) -> None:
        """The session file failing mid-run (locked by another program, damaged) ends the app with the store's one
        line, printed by the CLI after the terminal is restored, instead of a traceback; anything else is Textual's."""
        if isinstance(error, sqlite3.DatabaseError):
            error = self.store.failure(error)
        if not isinstance(error, StoreError):
            super()._handle_exception(error)
            return
        if self.store_failure is None:
            self.store_failure = error
        self.exit(return_code=1)

    def on_unmount(self) -> None:
        """Save, stop the sound, stop the workers; jobs cut short are recorded as interrupted. A store that failed is
        not written to again: the file stays as it was for the user to move aside."""
        self.player.close()
        if self.store_failure is None:
            if self.main_screen is not None:
                self.main_screen.state.flush()
            self.store.interrupt_active_jobs("ttag was closed before this job finished")
        if self._bridge is not None:
            self._bridge.close()
        self.store.close()


def run(backend: str | None = None) -> int:
    """Open the TUI; with a backend URL (``--backend`` or config ``backend``), jobs run on that ttag server."""
    config = config_module.load()
    if not (backend or config.backend):
        app = TtagApp(config)  # local workers: the bridge is made on first use, off the start-up path
    else:
        from ttag_tui.backend import open_backend

        remote = open_backend(config, backend)
        app = TtagApp(config, registry=remote.registry(), bridge_factory=lambda: remote)
    app.run()
    if app.store_failure is not None:
        raise app.store_failure
    return app.return_code or 0
