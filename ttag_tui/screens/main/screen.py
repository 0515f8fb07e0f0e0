"""The main screen: prompt, model, settings, takes, jobs and transport, laid out and wired to the modules that act.

This module is composition and wiring only. The work lives beside it, one concern per module:

- ``state.py`` saves the session's state (prompt, model, settings) soon after each change;
- ``models.py`` probes which models can run (in a thread) and opens local checkpoint folders;
- ``generate.py`` turns the panes into a validated request; ``jobs.py`` follows each job's events;
- ``takes.py`` does what the takes table's keys ask (typed messages from ``ttag_tui.messages``) and the trash;
- ``transport.py`` plays takes and live jobs and keeps the transport bar current;
- ``sessions.py`` switches sessions and shows a session's state in the panes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen

from ttag_tui import keymap
from ttag_tui.messages import CancelJob, ListenToJob, TakeAction, UndoDelete
from ttag_tui.screens.main.generate import Generator
from ttag_tui.screens.main.jobs import JobFollower
from ttag_tui.screens.main.models import ModelProbe
from ttag_tui.screens.main.sessions import SessionSwitcher
from ttag_tui.screens.main.state import StateKeeper
from ttag_tui.screens.main.takes import TakeActions
from ttag_tui.screens.main.transport import TICK_S, TransportControl
from ttag_tui.sessions import Session
from ttag_tui.widgets.footer import KeyFooter
from ttag_tui.widgets.prompt import PromptArea, PromptPane

if TYPE_CHECKING:
    from runners.registry import ModelSpec
    from ttag_tui.app import TtagApp
    from ttag_tui.widgets.jobs import JobsList
    from ttag_tui.widgets.models import ModelPane
    from ttag_tui.widgets.settings_pane import SettingsPane
    from ttag_tui.widgets.takes import TakesTable
    from ttag_tui.widgets.transport import Transport


class MainScreen(Screen[None]):
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]  # app.tcss widens the sidebar on wide terminals
    AUTO_FOCUS = "PromptArea"  # focused as the screen mounts: the footer lays out its keys once, not twice
    BINDINGS = [*keymap.bindings("app"), *keymap.bindings("main")]

    def __init__(self) -> None:
        super().__init__()
        app = cast("TtagApp", self.app)
        self.ttag = app
        self.session: Session = app.store.latest_session()
        model = self.session.state.get("model") or app.config.default_model
        self.model_id = model if model in app.registry else next(iter(app.registry.ids()))
        self.panes_ready = False  # the panes after the first frame are mounted (the app holds keys until then)
        self.state = StateKeeper(self)
        self.models = ModelProbe(self)
        self.generator = Generator(self)
        self.jobs = JobFollower(self)
        self.transport_control = TransportControl(self)
        self.take_actions = TakeActions(self)  # its table names the transport's play_take
        self.sessions = SessionSwitcher(self)

    # -- layout ----------------------------------------------------------------------------------------------------
    @property
    def spec(self) -> ModelSpec:
        spec = self.ttag.registry.get(self.model_id)
        assert spec is not None
        return spec

    @property
    def prompt_pane(self) -> PromptPane:
        return self.query_one(PromptPane)

    @property
    def model_pane(self) -> ModelPane:
        return cast("ModelPane", self.query_one("#models"))

    @property
    def settings_pane(self) -> SettingsPane:
        return cast("SettingsPane", self.query_one("#settings"))

    @property
    def takes_table(self) -> TakesTable:
        return cast("TakesTable", self.query_one("#takes"))

    @property
    def jobs_list(self) -> JobsList:
        return cast("JobsList", self.query_one("#jobs"))

    @property
    def transport(self) -> Transport:
        return cast("Transport", self.query_one("#transport"))

    def compose(self) -> ComposeResult:
        """The first frame: the layout, the prompt (focused, with the session's text) and the keys.

        The other panes are mounted right after that frame has been drawn (``_mount_panes``): the prompt can be typed
        into at once, and composing and styling the rest does not delay the first paint.
        """
        state = self.session.state
        prompt = PromptPane(state.get("prompt", ""), state.get("negative", ""), id="prompt-pane")
        prompt.allow_negative(self.spec.param("negative_prompt") is not None, self.spec.id)
        prompt.border_title = "Prompt · ctrl+g generate"
        with Horizontal(id="body"):
            yield Vertical(id="sidebar")
            with Vertical(id="main"):
                yield prompt
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one(PromptArea).set_history(self.ttag.store.prompt_history(None))
        self.call_after_refresh(self._mount_panes)

    async def _mount_panes(self) -> None:
        """After the first frame: the other panes, their modules (DataTable, ListView, Select, ...) imported now."""
        from ttag_tui.widgets.jobs import JobsList
        from ttag_tui.widgets.models import ModelPane
        from ttag_tui.widgets.settings_pane import SettingsPane
        from ttag_tui.widgets.takes import TakesTable
        from ttag_tui.widgets.transport import Transport

        try:
            await self.query_one("#sidebar").mount(
                ModelPane(self.ttag.registry, self.model_id, id="models"),
                SettingsPane(self.spec, self.session.state.get("settings", {}), id="settings"),
            )
            await self.query_one("#main").mount(TakesTable(id="takes"), JobsList(id="jobs"), Transport(id="transport"))
            self.query_one("#models").border_title = "Model"
            self.query_one("#settings").border_title = "Settings"
            self.query_one("#jobs").border_title = "Jobs"
            self.sessions.show_takes()
            await self.jobs.show_interrupted()
            self.panes_ready = True
        finally:
            self.ttag.release_keys()  # even if something above failed: ctrl+q must still work
        self.set_interval(TICK_S, self.transport_control.tick)
        self.call_after_refresh(self._start_background_work)

    def _start_background_work(self) -> None:
        """Once the whole screen is drawn: the model probe (a thread that would compete for the GIL) and tidying."""
        self.models.start_probe()
        self.run_worker(self.take_actions.tidy_output(), group="tidy")

    async def choose_model(self, model_id: str) -> None:
        if model_id not in self.ttag.registry:
            return
        self.model_id = model_id
        self.model_pane.select(model_id, announce=False)
        await self.settings_pane.set_model(self.spec)
        self.prompt_pane.allow_negative(self.spec.param("negative_prompt") is not None, model_id)
        self.state.changed()

    # -- messages from the panes -----------------------------------------------------------------------------------
    def on_text_area_changed(self, event: PromptArea.Changed) -> None:
        self.state.changed()

    def on_input_changed(self, event: Any) -> None:
        if getattr(event.input, "id", None) == "negative":
            self.state.changed()

    def on_settings_pane_changed(self, event: SettingsPane.Changed) -> None:
        self.state.changed()

    async def on_model_pane_chosen(self, event: ModelPane.Chosen) -> None:
        await self.choose_model(event.model_id)

    @on(TakeAction)  # every subclass: StarTake, DeleteTake, ...
    async def _take_action(self, message: TakeAction) -> None:
        await self.take_actions.run(message)

    async def on_undo_delete(self, message: UndoDelete) -> None:
        await self.take_actions.undo_delete()

    async def on_cancel_job(self, message: CancelJob) -> None:
        await self.jobs.cancel(message.item)

    def on_listen_to_job(self, message: ListenToJob) -> None:
        self.jobs.listen(message.item)

    # -- key bindings (``keymap`` scopes "app" and "main"): each hands over to the module that acts -------------------
    async def action_generate(self) -> None:
        await self.generator.generate()

    async def action_regenerate(self) -> None:
        await self.generator.regenerate()

    def action_pin_seed(self) -> None:
        if not self.settings_pane.pin_seed():
            self.notify("No seed yet: generate once, then pin its seed.", severity="warning")

    def action_focus_prompt(self) -> None:
        self.query_one(PromptArea).focus()

    def action_focus_takes(self) -> None:
        self.takes_table.focus()

    async def action_history(self) -> None:
        from ttag_tui.screens.history import HistoryScreen

        def chosen(prompt: str | None) -> None:
            if prompt is not None:
                self.prompt_pane.load(prompt, self.prompt_pane.negative)
                self.query_one(PromptArea).focus()

        await self.app.push_screen(HistoryScreen(self.ttag.store.prompt_history(None)), chosen)

    async def action_help(self) -> None:
        from ttag_tui.screens.help import HelpScreen  # Markdown and its parser: only when asked for

        await self.app.push_screen(HelpScreen(self.ttag.config.keys))

    async def action_config(self) -> None:
        from ttag_tui.screens.settings import ConfigScreen

        def saved(config: Any) -> None:
            if config is not None:
                self.ttag.apply_config(config)

        await self.app.push_screen(
            ConfigScreen(self.ttag.config, self.ttag.registry.ids(), sorted(self.app.available_themes)), saved
        )

    async def action_sessions(self) -> None:
        await self.sessions.open_picker()

    async def action_play_pause(self) -> None:
        await self.transport_control.play_pause()

    def action_stop(self) -> None:
        self.transport_control.stop()

    def action_loop(self) -> None:
        self.transport_control.toggle_loop()

    def action_seek_back(self) -> None:
        self.transport_control.seek_back()

    def action_seek_forward(self) -> None:
        self.transport_control.seek_forward()

    def action_volume_up(self) -> None:
        self.transport_control.volume_up()

    def action_volume_down(self) -> None:
        self.transport_control.volume_down()
