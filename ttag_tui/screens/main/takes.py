"""What the takes table's keys do: play, star, rename, delete (to the trash, with undo), copy the path, load the
settings, run again with a new or the same seed, continue — and the trash itself.

The table posts one typed message per key (``ttag_tui.messages``); :meth:`TakeActions.run` looks the message's class
up in :attr:`TakeActions.handlers`, an explicit table, and calls its handler with the take it names.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ttag_tui import trash
from ttag_tui.messages import (
    ContinueTake,
    CopyTakePath,
    DeleteTake,
    PlayTake,
    RegenerateNewSeed,
    RegenerateSameSeed,
    RenameTake,
    StarTake,
    TakeAction,
    UseTakeSettings,
)
from ttag_tui.sessions import Take

if TYPE_CHECKING:
    from ttag_tui.screens.main.screen import MainScreen


def take_request_fields(take: Take) -> dict[str, Any]:
    """The request that made this one take (takes=1, its own seed), as plain fields."""
    fields = {k: v for k, v in take.parameters.items() if v is not None}
    fields.update(model=take.model, seed=take.seed, takes=1)
    return fields


class TakeActions:
    def __init__(self, screen: MainScreen) -> None:
        self.screen = screen
        self.handlers: dict[type[TakeAction], Callable[[Take], Awaitable[None]]] = {
            PlayTake: screen.transport_control.play_take,
            StarTake: self.star,
            RenameTake: self.rename,
            DeleteTake: self.delete,
            CopyTakePath: self.copy_path,
            UseTakeSettings: self.use_settings,
            RegenerateNewSeed: self.regenerate_new_seed,
            RegenerateSameSeed: self.regenerate_same_seed,
            ContinueTake: self.continue_take,
        }

    async def run(self, message: TakeAction) -> None:
        """Do what the message asks to the take it names (from the store: the row may be stale)."""
        take = self.screen.ttag.store.take(message.take_id) if message.take_id is not None else None
        if take is None:
            self.screen.notify("No take selected: generate one with ctrl+g.", severity="warning")
            return
        if take.deleted is not None:  # keys pressed before the table dropped the row of a take now in the trash
            return
        await self.handlers[type(message)](take)

    async def star(self, take: Take) -> None:
        self.screen.ttag.store.set_starred(take.id, not take.starred)
        self._refresh(take.id)

    async def rename(self, take: Take) -> None:
        from ttag_tui.screens.ask import AskScreen

        def rename(name: str | None) -> None:
            if name is not None:
                self.screen.ttag.store.rename_take(take.id, name)
                self._refresh(take.id)

        await self.screen.app.push_screen(
            AskScreen(f"Name for take {take.number}", take.name, "empty: show the prompt"), rename
        )

    async def delete(self, take: Take) -> None:
        """Move the file and its sidecar to the trash; the take can come back with undo."""
        trashed = trash.move_to_trash(Path(take.path))
        self.screen.ttag.store.trash_take(take.id, str(trashed) if trashed else None)
        self.screen.takes_table.remove_take(take.id)
        self.screen.notify(f"Take {take.number} moved to the trash (u brings it back).", timeout=4)

    async def undo_delete(self) -> None:
        """Bring back the take of this session deleted last."""
        screen, store = self.screen, self.screen.ttag.store
        trashed = store.takes(screen.session.id, trashed=True)
        if not trashed:
            screen.notify("The trash is empty.", severity="warning")
            return
        take = trashed[0]
        if take.trashed_path:
            trash.restore(Path(take.trashed_path), Path(take.path))
        store.restore_take(take.id)
        table = screen.takes_table
        table.set_takes(store.takes(screen.session.id))
        table.select_take(take.id)
        screen.notify(f"Take {take.number} is back.", timeout=3)

    async def copy_path(self, take: Take) -> None:
        self.screen.app.copy_to_clipboard(take.path)
        self.screen.notify(take.path, title="Path copied", timeout=5)

    async def use_settings(self, take: Take) -> None:
        """Load the take's prompt, model and parameters back into the panes: the start of the next variation."""
        from ttag_tui.widgets.settings_pane import fields_for

        screen = self.screen
        fields = take_request_fields(take)
        await screen.choose_model(take.model)
        values = dict(screen.settings_pane.values)
        for name in fields_for(screen.spec):
            if fields.get(name) is not None and name != "takes":
                values[name] = f"{fields[name]:g}" if isinstance(fields[name], float) else str(fields[name])
        values["takes"] = ""
        await screen.settings_pane.load_values(values, screen.spec)
        screen.prompt_pane.load(take.prompt, fields.get("negative_prompt") or "")
        screen.state.changed()
        screen.notify(f"Loaded the settings of take {take.number} (seed {take.seed}).", timeout=3)

    async def regenerate_new_seed(self, take: Take) -> None:
        await self.screen.generator.run({**take_request_fields(take), "seed": None})

    async def regenerate_same_seed(self, take: Take) -> None:
        await self.screen.generator.run(take_request_fields(take))

    async def continue_take(self, take: Take) -> None:
        spec = self.screen.ttag.registry.get(take.model)
        if spec is None or spec.param("audio_prompt") is None:
            self.screen.notify(f"{take.model} cannot continue a take.", severity="warning")
            return
        # The model's duration counts the audio it continues: ask for the take plus the model's default length.
        duration = min(take.duration + spec.default_duration, spec.max_duration)
        if duration <= take.duration + 0.1:
            self.screen.notify(f"Take {take.number} is already as long as {spec.id} makes.", severity="warning")
            return
        await self.screen.generator.run(
            {**take_request_fields(take), "seed": None, "audio_prompt": take.path, "duration": duration}
        )

    def _refresh(self, take_id: int) -> None:
        take = self.screen.ttag.store.take(take_id)
        if take is not None:
            self.screen.takes_table.update_take(take)

    # -- the trash -------------------------------------------------------------------------------------------------
    async def tidy_output(self) -> None:
        """At start-up: empty the trash of old takes, delete half-written files of writers that were killed."""
        from ttag_tui.output import remove_stale_temp_files

        await self.empty_trash(trash.KEEP_DAYS)
        await asyncio.to_thread(remove_stale_temp_files, self.screen.ttag.config.resolved_output_dir())

    async def empty_trash(self, older_than_days: float | None = None) -> None:
        """Delete trashed takes for good: those older than the cutoff at start-up, all of them when asked."""
        emptied = await asyncio.to_thread(trash.empty, self.screen.ttag.store, older_than_days)
        if emptied.takes or older_than_days is None:
            age = f" deleted over {older_than_days:g} days ago" if older_than_days is not None else ""
            self.screen.notify(
                f"Emptied the trash: {emptied.takes} take(s){age}, {emptied.bytes / 1e6:.1f} MB freed.", timeout=5
            )
