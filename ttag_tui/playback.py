"""Playing audio through sounddevice, which may be missing (no PortAudio) or have no device (over SSH).

:class:`Player` drives one PortAudio output stream from its callback: play, pause, stop, loop, seek and volume act on
shared state under a lock, and the callback copies frames out of an :class:`AudioSource`. A source can still be growing
while it plays (a streaming job appends chunks), so listening starts before generation ends; when the callback
catches up with the end of a growing source it plays silence until more arrives.
"""

from __future__ import annotations

import shlex
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import numpy as np

PlayerState = Literal["stopped", "playing", "paused"]
SEEK_STEP_S = 5.0
VOLUME_STEP = 0.1
MAX_VOLUME = 2.0


class PlaybackUnavailable(Exception):
    """No way to play sound here; the message says why, once, in words, and what to install when that is the fix."""


def load_sounddevice() -> Any:
    """Import sounddevice and check there is an output device, or raise PlaybackUnavailable."""
    try:
        import sounddevice
    except OSError:  # the PortAudio library itself is missing (sounddevice's own text repeats "PortAudio library")
        raise PlaybackUnavailable(
            "the PortAudio library is not installed (on Debian or Ubuntu: sudo apt install libportaudio2)"
        ) from None
    except ImportError:
        raise PlaybackUnavailable(
            f"the sounddevice package is not installed ({shlex.quote(sys.executable)} -m pip install sounddevice)"
        ) from None
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


class AudioSource:
    """Audio to play, frames × channels float32, complete or still being appended to by a streaming job."""

    def __init__(self, sample_rate: int, channels: int, label: str = "", expected_frames: int = 0) -> None:
        import numpy as np

        self.sample_rate = sample_rate
        self.channels = channels
        self.label = label
        self.expected_frames = expected_frames  # for a growing source: how long it will be, to draw the bar
        self.complete = False
        self._frames = np.zeros((max(expected_frames, sample_rate), channels), dtype=np.float32)
        self._available = 0
        self._lock = threading.Lock()

    @classmethod
    def from_array(cls, audio: np.ndarray, sample_rate: int, label: str = "") -> AudioSource:
        """A complete source from (channels, samples) audio, the layout of clips and chunks."""
        source = cls(sample_rate, audio.shape[0], label, audio.shape[1])
        source.write(0, audio)
        source.finish()
        return source

    @classmethod
    def from_file(cls, path: Path, label: str = "") -> AudioSource:
        import soundfile

        audio, sample_rate = soundfile.read(path, dtype="float32", always_2d=True)
        return cls.from_array(audio.T, sample_rate, label)

    @property
    def available_frames(self) -> int:
        return self._available

    @property
    def total_frames(self) -> int:
        return self._available if self.complete else max(self._available, self.expected_frames)

    def write(self, start: int, audio: np.ndarray) -> None:
        """Put (channels, n) audio at frame ``start`` (chunks of a stream arrive in order, but may overlap)."""
        import numpy as np

        frames = audio.T.astype(np.float32, copy=False)
        if frames.shape[1] != self.channels:  # mono chunk into a stereo source or the other way round
            frames = np.repeat(frames.mean(axis=1, keepdims=True), self.channels, axis=1)
        end = start + frames.shape[0]
        with self._lock:
            if end > self._frames.shape[0]:
                grown = np.zeros((max(end, 2 * self._frames.shape[0]), self.channels), dtype=np.float32)
                grown[: self._available] = self._frames[: self._available]
                self._frames = grown
            self._frames[start:end] = frames
            self._available = max(self._available, end)

    def finish(self) -> None:
        self.complete = True

    def read_into(self, out: np.ndarray, position: int, gain: float) -> int:
        """Copy frames from ``position`` into ``out`` (scaled by ``gain``); how many there were."""
        with self._lock:
            count = max(0, min(out.shape[0], self._available - position))
            if count:
                out[:count] = self._frames[position : position + count] * gain
        return count


@dataclass(frozen=True)
class PlayerStatus:
    state: PlayerState
    position_s: float
    duration_s: float
    loop: bool
    volume: float
    label: str
    waiting: bool  # caught up with a source that is still growing


class Player:
    """One output stream at a time. ``backend`` loads sounddevice (tests hand in a fake one)."""

    def __init__(self, backend: Callable[[], Any] = load_sounddevice, blocksize: int = 1024) -> None:
        self._load_backend = backend
        self._backend: Any = None
        self.blocksize = blocksize
        self._lock = threading.Lock()
        self._stream: Any = None
        self._source: AudioSource | None = None
        self._position = 0
        self._state: PlayerState = "stopped"
        self._waiting = False
        self._generation = 0  # which stream is current, so a late "finished" from an old one is ignored
        self.loop = False
        self.volume = 1.0

    # -- controls (UI thread) --------------------------------------------------------------------------------------
    def backend(self) -> Any:
        """The sounddevice module, loaded on first use; PlaybackUnavailable when there is no way to play."""
        if self._backend is None:
            self._backend = self._load_backend()
        return self._backend

    def play(self, source: AudioSource, start_s: float = 0.0) -> None:
        """Play ``source`` from ``start_s``, replacing whatever played before."""
        backend = self.backend()
        self._close_stream()
        with self._lock:
            self._source = source
            self._position = int(start_s * source.sample_rate)
            self._state = "playing"
            self._waiting = False
            self._generation += 1
            generation = self._generation
        try:
            stream = backend.OutputStream(
                samplerate=source.sample_rate,
                channels=source.channels,
                dtype="float32",
                blocksize=self.blocksize,
                callback=self._callback,
                finished_callback=lambda: self._on_finished(generation),
            )
            stream.start()
        except Exception as exc:  # PortAudioError, or a device that vanished
            with self._lock:
                self._state = "stopped"
            raise PlaybackUnavailable(f"the audio device failed: {exc}") from None
        self._stream = stream

    def toggle_pause(self) -> PlayerState:
        with self._lock:
            if self._state == "playing":
                self._state = "paused"
            elif self._state == "paused":
                self._state = "playing"
            return self._state

    def stop(self) -> None:
        with self._lock:
            self._state = "stopped"
            self._position = 0
        self._close_stream()

    def seek(self, delta_s: float) -> None:
        with self._lock:
            if self._source is None:
                return
            frames = self._position + int(delta_s * self._source.sample_rate)
            self._position = max(0, min(frames, max(self._source.available_frames - 1, 0)))

    def change_volume(self, delta: float) -> float:
        with self._lock:
            self.volume = round(min(MAX_VOLUME, max(0.0, self.volume + delta)), 2)
            return self.volume

    def toggle_loop(self) -> bool:
        with self._lock:
            self.loop = not self.loop
            return self.loop

    def status(self) -> PlayerStatus:
        with self._lock:
            source = self._source
            if source is None:
                return PlayerStatus(self._state, 0.0, 0.0, self.loop, self.volume, "", False)
            return PlayerStatus(
                self._state,
                self._position / source.sample_rate,
                source.total_frames / source.sample_rate,
                self.loop,
                self.volume,
                source.label,
                self._waiting,
            )

    @property
    def source(self) -> AudioSource | None:
        return self._source

    def close(self) -> None:
        self.stop()

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.abort()
                stream.close()
            except Exception:  # a device that went away: nothing left to release
                pass

    def _on_finished(self, generation: int) -> None:
        with self._lock:
            if generation == self._generation and self._state == "playing":
                self._state = "stopped"
                self._position = 0

    # -- the audio thread ----------------------------------------------------------------------------------------
    def _callback(self, outdata: np.ndarray, frames: int, time: Any, status: Any) -> None:
        """Fill ``outdata``; raise the backend's CallbackStop at the end of a complete source (unless looping)."""
        with self._lock:
            source = self._source
            if self._state != "playing" or source is None:
                outdata.fill(0)
                return
            filled = 0
            self._waiting = False
            while filled < frames:
                count = source.read_into(outdata[filled:], self._position, self.volume)
                filled += count
                self._position += count
                if filled == frames:
                    break
                if not source.complete:
                    self._waiting = True  # the stream has not caught up: silence until the next chunk
                    break
                if not self.loop or source.available_frames == 0:
                    outdata[filled:].fill(0)
                    raise self._backend.CallbackStop
                self._position = 0
            outdata[filled:].fill(0)
