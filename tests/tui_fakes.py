"""Test doubles for the TUI: a sounddevice stand-in whose stream the test pulls frames from, and app builders."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np

from runners.registry import ParamSpec, Registry
from tests.fake_runners import spec
from ttag_tui.config import Config
from ttag_tui.playback import PlaybackUnavailable, Player
from ttag_tui.sessions import SessionStore


class CallbackStop(Exception):
    pass


class FakeOutputStream:
    """Records what the player's callback writes; ``pull`` plays as the audio device would."""

    def __init__(self, device: FakeSoundDevice, **kwargs: Any) -> None:
        self.device = device
        self.kwargs = kwargs
        self.callback = kwargs["callback"]
        self.finished_callback = kwargs.get("finished_callback")
        self.active = False
        self.closed = False
        device.streams.append(self)

    def start(self) -> None:
        self.active = True

    def abort(self) -> None:
        self.active = False

    def close(self) -> None:
        self.closed = True

    def pull(self, frames: int) -> np.ndarray:
        """One callback's worth of output (zeros once the stream stopped)."""
        out = np.zeros((frames, self.kwargs["channels"]), dtype=np.float32)
        if not self.active:
            return out
        try:
            self.callback(out, frames, None, None)
        except CallbackStop:
            self.active = False
            if self.finished_callback:
                self.finished_callback()
        self.device.played.append(out.copy())
        return out


class FakeSoundDevice:
    CallbackStop = CallbackStop

    def __init__(self) -> None:
        self.streams: list[FakeOutputStream] = []
        self.played: list[np.ndarray] = []

    def OutputStream(self, **kwargs: Any) -> FakeOutputStream:  # sounddevice spells it this way
        return FakeOutputStream(self, **kwargs)

    @property
    def stream(self) -> FakeOutputStream:
        return self.streams[-1]


def no_audio_device() -> Any:
    raise PlaybackUnavailable("no audio output device")


def tui_registry() -> Registry:
    """The lead's fake runners plus a model with different parameters (to see the settings pane change)."""
    registry = Registry()
    for model in (
        spec("tone", "ToneRunner"),
        spec("slow-tone", "SlowToneRunner"),
        spec("crash", "CrashRunner"),
        spec(
            "tone-sampler",
            "ToneRunner",
            params=(
                ParamSpec("steps", "int", 4, 1, 1000),
                ParamSpec("temperature", "float", 1.0, 0.0, 2.0),
                ParamSpec("top_k", "int", 250, 1, 1000),
                ParamSpec("negative_prompt", "str", ""),
            ),
            description="test double with sampling parameters",
        ),
    ):
        registry.add(model)
    return registry


def make_app(tmp_path: Path, *, player: Player | None = None, registry: Registry | None = None, **config: Any):
    """A TtagApp on its own store, output folder and (fake) audio device, with the tone model selected."""
    from ttag_tui.app import TtagApp

    settings = {"output_dir": str(tmp_path / "out"), "default_model": "tone", "theme": "ttag-night", **config}
    return TtagApp(
        Config(**settings),
        registry=registry or tui_registry(),
        store=SessionStore(tmp_path / "data" / "sessions.sqlite3"),
        player=player or Player(no_audio_device),
        persist_config=False,
    )


async def panes_mounted(pilot: Any) -> None:
    """Wait until the main screen has mounted the panes that follow its first frame."""
    await wait_for(pilot, lambda: getattr(pilot.app.screen, "panes_ready", False), "the main screen's panes")


@asynccontextmanager
async def running(app: Any, **run_test: Any) -> AsyncIterator[Any]:
    """``app.run_test()``, entered once the whole main screen is there."""
    async with app.run_test(**run_test) as pilot:
        await panes_mounted(pilot)
        yield pilot


# -- Pilot helpers shared by the TUI tests: every wait is for a state, never a fixed sleep -------------------------
TIMEOUT_S = 30


async def wait_for(pilot: Any, predicate: Any, what: str, timeout: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


def record_notifications(app: Any) -> list[tuple[str, str, str]]:
    """(message, title, severity) of every notification the app shows from now on."""
    seen: list[tuple[str, str, str]] = []
    original = app.notify

    def notify(message: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append((str(message), str(kwargs.get("title", "")), kwargs.get("severity", "information")))
        return original(message, *args, **kwargs)

    app.notify = notify
    return seen


def takes(app: Any) -> Any:
    from ttag_tui.widgets.takes import TakesTable

    return app.screen.query_one(TakesTable)


def job_items(app: Any) -> list[Any]:
    from ttag_tui.widgets.jobs import JobsList

    return app.screen.query_one(JobsList).items()


async def type_prompt(pilot: Any, text: str) -> None:
    from ttag_tui.widgets.prompt import PromptArea

    await pilot.press("ctrl+b")
    pilot.app.screen.query_one(PromptArea).load_text(text)


async def generate(pilot: Any, text: str, expected_takes: int) -> None:
    await type_prompt(pilot, text)
    await pilot.press("ctrl+g")
    await wait_for(pilot, lambda: takes(pilot.app).row_count == expected_takes, f"{expected_takes} takes")
