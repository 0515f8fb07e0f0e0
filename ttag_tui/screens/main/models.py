"""The model probe: can each model run (here, or on the remote server)? And local checkpoint folders as models.

The probe runs in a thread once the whole screen is drawn (it would compete with the first paint for the GIL) and
imports nothing heavy; the statuses are shown again after every job, when a model may have been loaded or unloaded.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runners.registry import Availability
    from ttag_tui.screens.main.screen import MainScreen


class ModelProbe:
    def __init__(self, screen: MainScreen) -> None:
        self.screen = screen
        self.availability: dict[str, Availability] | None = None  # None until the probe has run

    def start_probe(self) -> None:
        self.screen.run_worker(self._probe, thread=True, group="probe")

    def _probe(self) -> None:
        """In a thread: ask the bridge about every model of the registry."""
        ttag = self.screen.ttag
        found = {spec.id: ttag.bridge.availability(spec) for spec in ttag.registry}
        ttag.call_from_thread(self._show_availability, found)

    def _show_availability(self, found: dict[str, Availability]) -> None:
        self.availability = found
        self.refresh_statuses()

    def refresh_statuses(self) -> None:
        """Show each model's status (loaded models included) in the model pane, once the probe has answered."""
        found = self.availability
        if not found:
            return
        from ttag_tui.widgets.models import ModelStatus

        loaded = set(self.screen.ttag.loaded_models())
        self.screen.model_pane.set_statuses(
            {
                model: ModelStatus.from_availability(availability, model in loaded)
                for model, availability in found.items()
            }
        )

    async def open_local_model(self) -> None:
        """Ask for a local checkpoint folder, then list it as a model and choose it (its weights are hashed in a
        thread: a few seconds for gigabytes)."""
        from ttag_tui.screens.ask import AskScreen

        def opened(path: str | None) -> None:
            if path:
                self.screen.run_worker(self._add_local_model(path), group="local-model", exit_on_error=False)

        await self.screen.app.push_screen(
            AskScreen("Local checkpoint folder", placeholder="a MusicGen, diffusers or AudioCraft folder"), opened
        )

    async def _add_local_model(self, path: str) -> None:
        from runners.local_models import NotAModel, spec_for_folder
        from ttag_tui.widgets.models import ModelStatus

        screen, ttag = self.screen, self.screen.ttag
        if ttag.config.backend:
            screen.notify("A local folder runs on this machine only; the server has its own models.", severity="error")
            return
        registry = ttag.registry
        try:
            spec = await asyncio.to_thread(spec_for_folder, ttag.config.models.get(path, path), registry)
        except NotAModel as exc:
            screen.notify(str(exc), title="Not a model ttag can run", severity="error", timeout=10)
            return
        if spec.id not in registry:
            registry.add(spec)
            availability = await asyncio.to_thread(ttag.bridge.availability, spec)
            screen.model_pane.add_model(spec, ModelStatus.from_availability(availability, False))
        await screen.choose_model(spec.id)
        screen.notify(f"{spec.id}: {spec.description}", title="Local model", timeout=6)
