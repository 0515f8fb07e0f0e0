"""Playing audio through sounddevice, which may be missing (no PortAudio) or have no device (over SSH)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class PlaybackUnavailable(Exception):
    """No way to play sound here; the message says why in words."""


def load_sounddevice() -> Any:
    """Import sounddevice and check there is an output device, or raise PlaybackUnavailable."""
    try:
        import sounddevice
    except OSError as exc:  # the PortAudio library itself is missing
        raise PlaybackUnavailable(f"no PortAudio library ({exc})") from None
    except ImportError:
        raise PlaybackUnavailable("the sounddevice package is not installed") from None
    try:
        sounddevice.query_devices(kind="output")
    except Exception:
        raise PlaybackUnavailable("no audio output device") from None
    return sounddevice


def play_file(path: Path) -> None:
    """Play a file to the end (used by ``ttag generate --play``)."""
    import soundfile

    sounddevice = load_sounddevice()
    audio, sample_rate = soundfile.read(path, dtype="float32", always_2d=True)
    try:
        sounddevice.play(audio, sample_rate)
        sounddevice.wait()
    except sounddevice.PortAudioError as exc:
        raise PlaybackUnavailable(f"the audio device failed: {exc}") from None
