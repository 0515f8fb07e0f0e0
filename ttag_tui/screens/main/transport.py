"""Playback from the main screen: takes and live jobs into the app's player, and the transport bar kept current.

Where no audio device works, ttag keeps working: the first failure is said once, and the transport shows where the
files are instead of a waveform.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from ttag_tui.playback import SEEK_STEP_S, VOLUME_STEP, AudioSource, PlaybackUnavailable, PlayerStatus
from ttag_tui.screens.main.jobs import short

if TYPE_CHECKING:
    from ttag_tui.screens.main.screen import MainScreen
    from ttag_tui.sessions import Take

TICK_S = 0.1  # how often the transport looks at the player


class TransportControl:
    def __init__(self, screen: MainScreen) -> None:
        self.screen = screen
        self.player = screen.ttag.player
        self.audio_problem = ""  # set once playback turned out to be impossible here
        self.playing_summary: list[float] | None = None
        self.note = ""
        self._last_status: PlayerStatus | None = None

    async def play_take(self, take: Take) -> None:
        """Play the take from the start (its file is decoded in a thread)."""
        path = Path(take.path)
        if not path.exists():
            self.screen.notify(f"The file is gone: {path}", severity="error")
            return
        if self.audio_problem:
            self.show(note=f"no audio here · {path}")
            return
        label = f"take {take.number}: {short(take.title, 24)}"
        source = await asyncio.to_thread(AudioSource.from_file, path, label)
        self.play_source(source, take.waveform, path)

    def play_source(self, source: AudioSource, summary: list[float], path: Path | None) -> None:
        """Play a take's or a live job's audio; ``summary`` is the waveform the transport draws."""
        config = self.screen.ttag.config
        if self.audio_problem:
            where = path or config.resolved_output_dir()
            self.show(note=f"no audio here · {where}")
            return
        try:
            self.player.play(source)
        except PlaybackUnavailable as exc:
            self.audio_problem = str(exc)
            where = path or config.resolved_output_dir()
            self.screen.notify(
                f"Cannot play sound here: {exc}. ttag keeps working; the takes are files in "
                f"{config.resolved_output_dir()}",
                title="No audio",
                severity="warning",
                timeout=10,
            )
            self.show(note=f"no audio here · {where}")
            return
        self.playing_summary = summary
        self.show(note="")

    def show(self, note: str | None = None) -> None:
        """Redraw the transport; ``note`` replaces the standing note (e.g. where the file is, when nothing plays)."""
        if note is not None:
            self.note = note
        self.screen.transport.show(self.player.status(), self.playing_summary, self.note)

    def tick(self) -> None:
        """Often (a timer): redraw when the player's status changed."""
        status = self.player.status()
        if status != self._last_status:
            self._last_status = status
            self.show()

    async def play_pause(self) -> None:
        """Pause or resume; with nothing playing, play the selected take."""
        if self.player.status().state != "stopped":
            self.player.toggle_pause()
        else:
            take = self.screen.takes_table.selected_take
            if take is None:
                self.screen.notify("No take to play yet: generate one with ctrl+g.", severity="warning")
                return
            await self.play_take(take)
        self.show()

    def stop(self) -> None:
        self.player.stop()

    def toggle_loop(self) -> None:
        self.player.toggle_loop()

    def seek_back(self) -> None:
        self.player.seek(-SEEK_STEP_S)

    def seek_forward(self) -> None:
        self.player.seek(SEEK_STEP_S)

    def volume_up(self) -> None:
        self.player.change_volume(VOLUME_STEP)

    def volume_down(self) -> None:
        self.player.change_volume(-VOLUME_STEP)
