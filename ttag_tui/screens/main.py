"""The main screen: prompt, model, settings, takes, jobs and transport, and everything the keys do to them.

Generation never runs here: a request is validated with ``runners.request.validate_request`` (the CLI's rules), handed
to the bridge, and an async Textual worker awaits the job's events, so the screen stays live. Each finished take is
written to disk (in a thread) and recorded in the session store at once; nothing waits for the job to end.

Start-up: the first frame is the layout, the prompt and the keys. The other panes are mounted right after it, and their
modules (Textual's DataTable, ListView, Select, ...) are imported then, not before the first paint; the screen reaches
them through the typed properties below.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import Screen

from ttag_tui import keymap, trash
from ttag_tui.playback import SEEK_STEP_S, VOLUME_STEP, AudioSource, PlaybackUnavailable
from ttag_tui.sessions import Session, Take
from ttag_tui.widgets.footer import KeyFooter
from ttag_tui.widgets.prompt import PromptArea, PromptPane

if TYPE_CHECKING:
    from runners.contract import Clip
    from runners.registry import ModelSpec
    from runners.request import GenerationRequest
    from ttag_tui.app import TtagApp
    from ttag_tui.backend.events import Job
    from ttag_tui.widgets.jobs import JobItem, JobsList
    from ttag_tui.widgets.models import ModelPane
    from ttag_tui.widgets.settings_pane import SettingsPane
    from ttag_tui.widgets.takes import TakesTable
    from ttag_tui.widgets.transport import Transport

STATE_SAVE_DELAY_S = 0.3
TICK_S = 0.1
TITLE_CHARS = 40


def short(text: str, limit: int = TITLE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def take_request_fields(take: Take) -> dict[str, Any]:
    """The request that made this one take (takes=1, its own seed), as plain fields."""
    fields = {k: v for k, v in take.parameters.items() if v is not None}
    fields.update(model=take.model, seed=take.seed, takes=1)
    return fields


class MainScreen(Screen[None]):
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]  # app.tcss widens the sidebar on wide terminals
    AUTO_FOCUS = "PromptArea"  # focused as the screen mounts: the footer lays out its keys once, not twice
    BINDINGS = [*keymap.bindings("app"), *keymap.bindings("main")]

    def __init__(self) -> None:
        super().__init__()
        app = cast("TtagApp", self.app)
        self.ttag = app
        self.session: Session = app.store.latest_session()
        state = self.session.state
        model = state.get("model") or app.config.default_model
        self.model_id = model if model in app.registry else next(iter(app.registry.ids()))
        self.last_request: GenerationRequest | None = None
        self.audio_problem: str = ""  # set once playback turned out to be impossible here
        self.playing_summary: list[float] | None = None
        self._save_timer: Any = None
        self._pending_state: dict[str, Any] | None = None
        self._last_status: Any = None
        self.transport_note = ""
        self._jobs: dict[int, JobItem] = {}
        self.panes_ready = False  # the panes after the first frame are mounted (the app holds keys until then)

    # -- layout ----------------------------------------------------------------------------------------------------
    @property
    def spec(self) -> ModelSpec:
        spec = self.ttag.registry.get(self.model_id)
        assert spec is not None
        return spec

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
        from ttag_tui.widgets.jobs import JobsList
        from ttag_tui.widgets.models import ModelPane
        from ttag_tui.widgets.settings_pane import SettingsPane
        from ttag_tui.widgets.takes import TakesTable
        from ttag_tui.widgets.transport import Transport

        state = self.session.state
        try:
            await self.query_one("#sidebar").mount(
                ModelPane(self.ttag.registry, self.model_id, id="models"),
                SettingsPane(self.spec, state.get("settings", {}), id="settings"),
            )
            await self.query_one("#main").mount(TakesTable(id="takes"), JobsList(id="jobs"), Transport(id="transport"))
            self.query_one("#models").border_title = "Model"
            self.query_one("#settings").border_title = "Settings"
            self.query_one("#jobs").border_title = "Jobs"
            self._show_takes()
            await self._show_interrupted()
            self.panes_ready = True
        finally:
            self.ttag.release_keys()  # even if something above failed: ctrl+q must still work
        self.set_interval(TICK_S, self._tick)
        self.call_after_refresh(self._start_background_work)

    def _start_background_work(self) -> None:
        """Once the whole screen is drawn: the model probe (a thread that would compete for the GIL) and tidying."""
        self.run_worker(self._probe_models, thread=True, group="probe")
        self.run_worker(self._tidy_output(), group="tidy")

    def _show_session(self) -> None:
        """Put the session's saved state into the panes."""
        self._show_prompt()
        self._show_takes()

    def _show_prompt(self) -> None:
        state = self.session.state
        self.query_one(PromptPane).load(state.get("prompt", ""), state.get("negative", ""))
        self.query_one(PromptPane).allow_negative(self.spec.param("negative_prompt") is not None, self.spec.id)
        self.query_one(PromptArea).set_history(self.ttag.store.prompt_history(None))

    def _show_takes(self) -> None:
        state = self.session.state
        takes = self.takes_table
        takes.border_title = Content(f"Takes · {self.session.name}")  # a name like "[b]" is text
        takes.set_takes(self.ttag.store.takes(self.session.id))
        if state.get("last_seed") is not None:
            self.settings_pane.show_last_seed(int(state["last_seed"]))

    async def _show_interrupted(self) -> None:
        """Jobs that were running when ttag last stopped: shown as interrupted, to dismiss or run again."""
        from ttag_tui.widgets.jobs import JobItem

        for record in self.ttag.store.interrupted_jobs(self.session.id):
            item = JobItem(
                record.id, short(record.request.get("prompt", "")), status="interrupted", message=record.message
            )
            await self.jobs_list.add_job(item)

    # -- state -----------------------------------------------------------------------------------------------------
    def current_state(self) -> dict[str, Any]:
        prompt = self.query_one(PromptPane)
        settings = self.settings_pane
        return {
            "prompt": prompt.prompt,
            "negative": prompt.negative,
            "model": self.model_id,
            "settings": settings.values,
            "last_seed": settings.last_seed,
        }

    def save_state(self) -> None:
        self._pending_state = self.current_state()
        self.flush_state()

    def flush_state(self) -> None:
        """Write the last state captured (also at shutdown, when the panes are already gone)."""
        if self._save_timer is not None:
            self._save_timer.stop()
            self._save_timer = None
        if self._pending_state is not None:
            self.ttag.store.save_state(self.session.id, self._pending_state)
            self._pending_state = None

    def _state_changed(self) -> None:
        """Save soon, not on every keystroke; a kill loses at most the last fraction of a second of typing."""
        if not self.panes_ready:  # fields settling as they mount: nothing typed yet (keys wait for the panes)
            return
        self._pending_state = self.current_state()
        if self._save_timer is not None:
            self._save_timer.stop()
        self._save_timer = self.set_timer(STATE_SAVE_DELAY_S, self.flush_state)

    def on_text_area_changed(self, event: PromptArea.Changed) -> None:
        self._state_changed()

    def on_input_changed(self, event: Any) -> None:
        if getattr(event.input, "id", None) == "negative":
            self._state_changed()

    def on_settings_pane_changed(self, event: SettingsPane.Changed) -> None:
        self._state_changed()

    async def on_model_pane_chosen(self, event: ModelPane.Chosen) -> None:
        await self.choose_model(event.model_id)

    async def choose_model(self, model_id: str) -> None:
        if model_id not in self.ttag.registry:
            return
        self.model_id = model_id
        self.model_pane.select(model_id, announce=False)
        await self.settings_pane.set_model(self.spec)
        self.query_one(PromptPane).allow_negative(self.spec.param("negative_prompt") is not None, model_id)
        self._state_changed()

    # -- models ----------------------------------------------------------------------------------------------------
    async def open_local_model(self) -> None:
        """Ask for a local checkpoint folder, then list it as a model and choose it (its weights are hashed in a
        thread: a few seconds for gigabytes)."""
        from ttag_tui.screens.ask import AskScreen

        def opened(path: str | None) -> None:
            if path:
                self.run_worker(self._add_local_model(path), group="local-model", exit_on_error=False)

        await self.app.push_screen(
            AskScreen("Local checkpoint folder", placeholder="a MusicGen, diffusers or AudioCraft folder"), opened
        )

    async def _add_local_model(self, path: str) -> None:
        from runners.local_models import NotAModel, spec_for_folder
        from ttag_tui.widgets.models import ModelStatus

        if self.ttag.config.backend:
            self.notify("A local folder runs on this machine only; the server has its own models.", severity="error")
            return
        registry = self.ttag.registry
        try:
            spec = await asyncio.to_thread(spec_for_folder, self.ttag.config.models.get(path, path), registry)
        except NotAModel as exc:
            self.notify(str(exc), title="Not a model ttag can run", severity="error", timeout=10)
            return
        if spec.id not in registry:
            registry.add(spec)
            availability = await asyncio.to_thread(self.ttag.bridge.availability, spec)
            self.model_pane.add_model(spec, ModelStatus.from_availability(availability, False))
        await self.choose_model(spec.id)
        self.notify(f"{spec.id}: {spec.description}", title="Local model", timeout=6)

    def _probe_models(self) -> None:
        """In a thread: can each model run (here, or on the remote server)? Imports nothing heavy."""
        bridge = self.ttag.bridge
        found = {spec.id: bridge.availability(spec) for spec in self.ttag.registry}
        self.app.call_from_thread(self._show_availability, found)

    def _show_availability(self, found: dict[str, Any]) -> None:
        self.availability = found
        self._refresh_model_statuses()

    def _refresh_model_statuses(self) -> None:
        found = getattr(self, "availability", None)
        if not found:
            return
        from ttag_tui.widgets.models import ModelStatus

        loaded = set(self.ttag.loaded_models())
        self.model_pane.set_statuses(
            {
                model: ModelStatus.from_availability(availability, model in loaded)
                for model, availability in found.items()
            }
        )

    # -- generating ------------------------------------------------------------------------------------------------
    def form_fields(self) -> dict[str, Any]:
        """The request the panes describe, as typed."""
        prompt = self.query_one(PromptPane)
        data: dict[str, Any] = {"prompt": prompt.prompt, "model": self.model_id, "format": self.ttag.config.format}
        data.update(self.settings_pane.request_fields())
        if "duration" not in data and self.ttag.config.default_duration:
            data["duration"] = self.ttag.config.default_duration
        if prompt.negative.strip() and self.spec.param("negative_prompt") is not None:
            data["negative_prompt"] = prompt.negative
        return data

    def validated(self, data: dict[str, Any]) -> GenerationRequest | None:
        from runners.request import RequestInvalid, validate_request

        try:
            request = validate_request(data, self.ttag.registry)
        except RequestInvalid as exc:
            self.notify(
                "\n".join(str(error) for error in exc.errors), title="Not generated", severity="error", timeout=8
            )
            return None
        from ttag_tui.bridge import Bridge

        bridge, spec = self.ttag.bridge, self.ttag.registry.get(request.model)
        if isinstance(bridge, Bridge) and spec is not None:  # a ttag server decides for itself
            status = bridge.availability(spec)  # probed now (milliseconds): a model pulled since start-up is welcome
            if not status.available:  # said now, not after a worker has imported torch
                self.notify(status.refusal(spec), title="Not generated", severity="error")
                return None
        return request

    async def action_generate(self) -> None:
        request = self.validated(self.form_fields())
        if request is not None:
            await self.submit(request)

    async def action_regenerate(self) -> None:
        if self.last_request is None:
            self.notify("Nothing to regenerate yet: ctrl+g generates from the prompt.", severity="warning")
            return
        request = self.validated({**self.last_request.to_dict(), "seed": None})
        if request is not None:
            await self.submit(request)

    async def submit(self, request: GenerationRequest) -> JobItem:
        """Record the job, show it, and follow it in a background worker."""
        from ttag_tui.widgets.jobs import JobItem

        store = self.ttag.store
        self.last_request = request
        store.add_prompt(self.session.id, request.prompt, request.negative_prompt or "")
        self.query_one(PromptArea).set_history(store.prompt_history(None))
        self.settings_pane.show_last_seed(int(request.seed or 0))
        record_id = store.add_job(self.session.id, request.to_dict())
        item = JobItem(record_id, short(request.prompt))
        spec = self.ttag.registry.get(request.model)
        assert spec is not None
        expected = int((request.duration or spec.default_duration) * spec.sample_rate)
        item.live = AudioSource(spec.sample_rate, spec.channels, f"live: {short(request.prompt, 24)}", expected)
        self._jobs[record_id] = item
        await self.jobs_list.add_job(item)
        self._state_changed()
        self.run_worker(self._follow(request, item, self.session.id), group="jobs", exit_on_error=False)
        return item

    async def _follow(self, request: GenerationRequest, item: JobItem, session_id: int) -> None:
        """Await the job's events (the bridge wakes us from its threads) and show each as it comes."""
        from ttag_tui.backend.events import Chunk, ClipReady, JobState, JobStatus, Progress, fold

        store = self.ttag.store
        try:
            job: Job = await asyncio.to_thread(self.ttag.bridge.submit, request, stream=True)
            item.job = job
            if item.status == "cancelled":  # cancelled while the bridge was starting
                job.cancel()
            status = JobStatus()
            async for event in job.aevents():
                before, status = status.state, fold(status, event)
                if isinstance(event, Progress):
                    item.set_progress(event.phase, event.step, event.total, event.eta_s)
                elif isinstance(event, Chunk):
                    if event.take == 0:
                        item.live.write(event.start, event.audio)
                elif isinstance(event, ClipReady):
                    if event.clip.metadata.get("take", 0) == 0:
                        item.live.write(0, event.clip.audio)
                        item.live.finish()
                    await self._keep_clip(event.clip, item.record_id, session_id)
                if status.state == before:
                    continue
                store.set_job_status(item.record_id, status.state.value, status.error_message or "")
                if status.state is JobState.RUNNING:
                    item.set_status("running", "starting")
                elif status.state is JobState.DONE:
                    item.set_status("done")
                    await self._forget_job(item)
                else:
                    item.set_status(status.state.value, status.error_message or "")
                    if status.state is JobState.FAILED:
                        self.notify(
                            status.error_message or "",
                            title=f"Job #{item.record_id} failed ({status.error_kind})",
                            severity="error",
                            timeout=10,
                        )
        except Exception as exc:  # a bug or a full disk must not take the app down; say what happened
            message = f"{type(exc).__name__}: {exc}"
            store.set_job_status(item.record_id, "failed", message)
            item.set_status("failed", message)
            self.notify(message, title=f"Job #{item.record_id} failed", severity="error", timeout=10)
        finally:
            self._refresh_model_statuses()

    async def _forget_job(self, item: JobItem) -> None:
        """Take a finished job off the list (for good: an interrupted one does not come back on the next start)."""
        self._jobs.pop(item.record_id, None)
        self.ttag.store.dismiss_job(item.record_id)
        if item.parent is not None:
            await self.jobs_list.remove_job(item)

    async def _keep_clip(self, clip: Clip, job_id: int, session_id: int) -> None:
        """Write the take (atomically, in a thread), record it, show it."""
        from ttag_tui.output import write_clip
        from ttag_tui.widgets.waveform import summarize

        config = self.ttag.config

        def write() -> tuple[Path, list[float]]:
            return write_clip(clip, config.resolved_output_dir(), config.format), summarize(clip.audio)

        path, summary = await asyncio.to_thread(write)
        parameters = {**clip.metadata.get("parameters", {}), "seed": clip.metadata.get("seed"), "takes": 1}
        take = self.ttag.store.add_take(
            session_id,
            path=str(path),
            prompt=parameters.get("prompt", ""),
            model=clip.metadata.get("model", ""),
            seed=int(clip.metadata.get("seed", 0)),
            duration=clip.duration,
            parameters=parameters,
            waveform=summary,
            job_id=job_id,
        )
        if session_id == self.session.id:
            table = self.takes_table
            table.add_take(take)
            if not table.has_focus:
                table.select_take(take.id)

    # -- jobs ------------------------------------------------------------------------------------------------------
    async def on_jobs_list_cancel_requested(self, event: JobsList.CancelRequested) -> None:
        item = event.item
        if item.finished:
            await self._forget_job(item)
            return
        item.set_status("cancelled", "cancelling…")
        if item.job is not None:
            await asyncio.to_thread(item.job.cancel)

    def on_jobs_list_listen_requested(self, event: JobsList.ListenRequested) -> None:
        from ttag_tui.widgets.waveform import FLAT_SUMMARY

        item = event.item
        if item.live is None or (item.finished and item.status != "done"):
            self.notify("This job made no audio to listen to.", severity="warning")
            return
        self._play_source(item.live, FLAT_SUMMARY, None)

    # -- takes -----------------------------------------------------------------------------------------------------
    async def on_takes_table_action_requested(self, event: TakesTable.ActionRequested) -> None:
        if event.action == "undo_delete":
            await self.undo_delete()
            return
        take = self.ttag.store.take(event.take_id) if event.take_id is not None else None
        if take is None:
            self.notify("No take selected: generate one with ctrl+g.", severity="warning")
            return
        await getattr(self, f"take_{event.action}")(take)

    async def take_play_take(self, take: Take) -> None:
        await self.play_take(take)

    async def take_star(self, take: Take) -> None:
        self.ttag.store.set_starred(take.id, not take.starred)
        self._refresh_take(take.id)

    async def take_rename(self, take: Take) -> None:
        from ttag_tui.screens.ask import AskScreen

        def rename(name: str | None) -> None:
            if name is not None:
                self.ttag.store.rename_take(take.id, name)
                self._refresh_take(take.id)

        await self.app.push_screen(
            AskScreen(f"Name for take {take.number}", take.name, "empty: show the prompt"), rename
        )

    async def take_delete(self, take: Take) -> None:
        """Move the file and its sidecar to the trash; the take can come back with undo."""
        trashed = trash.move_to_trash(Path(take.path))
        self.ttag.store.trash_take(take.id, str(trashed) if trashed else None)
        self.takes_table.remove_take(take.id)
        self.notify(f"Take {take.number} moved to the trash (u brings it back).", timeout=4)

    async def undo_delete(self) -> None:
        trashed = self.ttag.store.takes(self.session.id, trashed=True)
        if not trashed:
            self.notify("The trash is empty.", severity="warning")
            return
        take = trashed[0]
        if take.trashed_path:
            trash.restore(Path(take.trashed_path), Path(take.path))
        self.ttag.store.restore_take(take.id)
        table = self.takes_table
        table.set_takes(self.ttag.store.takes(self.session.id))
        table.select_take(take.id)
        self.notify(f"Take {take.number} is back.", timeout=3)

    async def _tidy_output(self) -> None:
        """At start-up: empty the trash of old takes, delete half-written files of writers that were killed."""
        from ttag_tui.output import remove_stale_temp_files

        await self.empty_trash(trash.KEEP_DAYS)
        await asyncio.to_thread(remove_stale_temp_files, self.ttag.config.resolved_output_dir())

    async def empty_trash(self, older_than_days: float | None = None) -> None:
        """Delete trashed takes for good: those older than the cutoff at start-up, all of them when asked."""
        emptied = await asyncio.to_thread(trash.empty, self.ttag.store, older_than_days)
        if emptied.takes or older_than_days is None:
            age = f" deleted over {older_than_days:g} days ago" if older_than_days is not None else ""
            self.notify(
                f"Emptied the trash: {emptied.takes} take(s){age}, {emptied.bytes / 1e6:.1f} MB freed.", timeout=5
            )

    async def take_copy_path(self, take: Take) -> None:
        self.app.copy_to_clipboard(take.path)
        self.notify(take.path, title="Path copied", timeout=5)

    async def take_use_settings(self, take: Take) -> None:
        """Load the take's prompt, model and parameters back into the panes: the start of the next variation."""
        from ttag_tui.widgets.settings_pane import fields_for

        fields = take_request_fields(take)
        await self.choose_model(take.model)
        values = dict(self.settings_pane.values)
        for name in fields_for(self.spec):
            if fields.get(name) is not None and name != "takes":
                values[name] = f"{fields[name]:g}" if isinstance(fields[name], float) else str(fields[name])
        values["takes"] = ""
        await self.settings_pane.load_values(values, self.spec)
        self.query_one(PromptPane).load(take.prompt, fields.get("negative_prompt") or "")
        self._state_changed()
        self.notify(f"Loaded the settings of take {take.number} (seed {take.seed}).", timeout=3)

    async def take_regen_new_seed(self, take: Take) -> None:
        request = self.validated({**take_request_fields(take), "seed": None})
        if request is not None:
            await self.submit(request)

    async def take_regen_same_seed(self, take: Take) -> None:
        request = self.validated(take_request_fields(take))
        if request is not None:
            await self.submit(request)

    async def take_continue_take(self, take: Take) -> None:
        spec = self.ttag.registry.get(take.model)
        if spec is None or spec.param("audio_prompt") is None:
            self.notify(f"{take.model} cannot continue a take.", severity="warning")
            return
        # The model's duration counts the audio it continues: ask for the take plus the model's default length.
        duration = min(take.duration + spec.default_duration, spec.max_duration)
        if duration <= take.duration + 0.1:
            self.notify(f"Take {take.number} is already as long as {spec.id} makes.", severity="warning")
            return
        fields = {**take_request_fields(take), "seed": None, "audio_prompt": take.path, "duration": duration}
        request = self.validated(fields)
        if request is not None:
            await self.submit(request)

    def _refresh_take(self, take_id: int) -> None:
        take = self.ttag.store.take(take_id)
        if take is not None:
            self.takes_table.update_take(take)

    # -- playback --------------------------------------------------------------------------------------------------
    async def play_take(self, take: Take) -> None:
        path = Path(take.path)
        if not path.exists():
            self.notify(f"The file is gone: {path}", severity="error")
            return
        if self.audio_problem:
            self._show_transport(note=f"no audio here · {path}")
            return
        label = f"take {take.number}: {short(take.title, 24)}"
        source = await asyncio.to_thread(AudioSource.from_file, path, label)
        self._play_source(source, take.waveform, path)

    def _play_source(self, source: AudioSource, summary: list[float], path: Path | None) -> None:
        if self.audio_problem:
            where = path or self.ttag.config.resolved_output_dir()
            self._show_transport(note=f"no audio here · {where}")
            return
        try:
            self.ttag.player.play(source)
        except PlaybackUnavailable as exc:
            self.audio_problem = str(exc)
            where = path or self.ttag.config.resolved_output_dir()
            self.notify(
                f"Cannot play sound here: {exc}. ttag keeps working; the takes are files in "
                f"{self.ttag.config.resolved_output_dir()}",
                title="No audio",
                severity="warning",
                timeout=10,
            )
            self._show_transport(note=f"no audio here · {where}")
            return
        self.playing_summary = summary
        self._show_transport(note="")

    def _show_transport(self, note: str | None = None) -> None:
        """Redraw the transport; ``note`` replaces the standing note (e.g. where the file is, when nothing plays)."""
        if note is not None:
            self.transport_note = note
        self.transport.show(self.ttag.player.status(), self.playing_summary, self.transport_note)

    def _tick(self) -> None:
        status = self.ttag.player.status()
        if status != self._last_status:
            self._last_status = status
            self._show_transport()

    async def action_play_pause(self) -> None:
        if self.ttag.player.status().state != "stopped":
            self.ttag.player.toggle_pause()
        else:
            take = self.takes_table.selected_take
            if take is None:
                self.notify("No take to play yet: generate one with ctrl+g.", severity="warning")
                return
            await self.play_take(take)
        self._show_transport()

    def action_stop(self) -> None:
        self.ttag.player.stop()

    def action_loop(self) -> None:
        self.ttag.player.toggle_loop()

    def action_seek_back(self) -> None:
        self.ttag.player.seek(-SEEK_STEP_S)

    def action_seek_forward(self) -> None:
        self.ttag.player.seek(SEEK_STEP_S)

    def action_volume_up(self) -> None:
        self.ttag.player.change_volume(VOLUME_STEP)

    def action_volume_down(self) -> None:
        self.ttag.player.change_volume(-VOLUME_STEP)

    # -- everything else -------------------------------------------------------------------------------------------
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
                self.query_one(PromptPane).load(prompt, self.query_one(PromptPane).negative)
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
        from ttag_tui.screens.sessions import SessionsScreen

        async def chosen(session_id: int | None) -> None:
            if session_id is not None:
                await self.switch_session(session_id)
            elif self.ttag.store.session(self.session.id) is None:  # deleted from the picker
                await self.switch_session(self.ttag.store.latest_session().id)

        self.save_state()
        await self.app.push_screen(SessionsScreen(self.ttag.store, self.session.id), chosen)

    async def switch_session(self, session_id: int) -> None:
        if self.ttag.store.session(self.session.id) is not None:
            self.save_state()
        session = self.ttag.store.session(session_id)
        if session is None:
            return
        self.ttag.store.touch_session(session_id)
        self.session = session
        self.last_request = None
        model = session.state.get("model") or self.ttag.config.default_model
        if model in self.ttag.registry:
            self.model_id = model
            self.model_pane.select(model, announce=False)
        settings = self.settings_pane
        settings.last_seed = None
        await settings.load_values(session.state.get("settings", {}), self.spec)
        self._show_session()
        for item in self.jobs_list.items():
            if item.finished:
                self._jobs.pop(item.record_id, None)
                await self.jobs_list.remove_job(item)
        await self._show_interrupted()
        self.notify(f"Session {session.name!r}", timeout=2)
