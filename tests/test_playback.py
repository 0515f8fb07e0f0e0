"""The player: what its callback writes for play, pause, seek, volume, loop and a still-growing source, and — where
there is an audio device (CI's PulseAudio null sink) — what actually comes out of it, recorded from the monitor."""

from __future__ import annotations

import importlib.abc
import os
import sys
import threading
import time

import numpy as np
import pytest

from tests.tui_fakes import FakeSoundDevice, no_audio_device
from ttag_tui.playback import AudioSource, PlaybackUnavailable, Player, load_sounddevice

RATE = 8000


def ramp(seconds: float, channels: int = 1) -> np.ndarray:
    """(channels, n) audio whose every sample is distinct, so positions can be read back from the output."""
    n = int(seconds * RATE)
    return np.tile(np.arange(n, dtype=np.float32) / n, (channels, 1))


@pytest.fixture
def device():
    return FakeSoundDevice()


@pytest.fixture
def player(device):
    player = Player(lambda: device, blocksize=100)
    yield player
    player.close()


def test_plays_the_source_in_order_then_stops(player, device):
    audio = ramp(0.05)
    player.play(AudioSource.from_array(audio, RATE))
    assert device.stream.kwargs["samplerate"] == RATE
    out = np.concatenate([device.stream.pull(100)[:, 0] for _ in range(5)])
    assert np.array_equal(out[:400], audio[0])
    assert not out[400:].any()
    assert player.status().state == "stopped"


def test_pause_outputs_silence_and_resumes_where_it_was(player, device):
    audio = ramp(0.1)
    player.play(AudioSource.from_array(audio, RATE))
    device.stream.pull(100)
    assert player.toggle_pause() == "paused"
    assert not device.stream.pull(100).any()
    player.toggle_pause()
    assert np.array_equal(device.stream.pull(100)[:, 0], audio[0, 100:200])


def test_seek_volume_and_loop(player, device):
    audio = ramp(1.0)
    player.play(AudioSource.from_array(audio, RATE))
    player.seek(0.5)
    assert player.status().position_s == pytest.approx(0.5)
    player.change_volume(-0.5)
    assert np.allclose(device.stream.pull(100)[:, 0], audio[0, 4000:4100] * 0.5)
    player.seek(-10)  # clamps at the start
    assert player.status().position_s == 0
    player.seek(0.99)
    player.toggle_loop()
    out = device.stream.pull(100)[:, 0]  # 80 frames to the end, then from the top again
    assert np.allclose(out[80:], audio[0, :20] * 0.5)
    assert player.status().state == "playing"


def test_a_growing_source_waits_for_more_instead_of_stopping(player, device):
    audio = ramp(0.1, channels=2)
    source = AudioSource(RATE, 2, expected_frames=800)
    source.write(0, audio[:, :150])
    player.play(source)
    first = device.stream.pull(200)
    assert np.array_equal(first[:150], audio[:, :150].T)
    assert player.status().waiting and player.status().state == "playing"
    source.write(150, audio[:, 150:])
    source.finish()
    assert np.array_equal(device.stream.pull(200)[:, 1], audio[1, 150:350])
    assert not player.status().waiting


def test_a_mono_chunk_fills_a_stereo_source():
    source = AudioSource(RATE, 2)
    source.write(0, np.ones((1, 10), dtype=np.float32))
    out = np.zeros((10, 2), dtype=np.float32)
    assert source.read_into(out, 0, 1.0) == 10 and out.all()


def test_without_a_device_play_says_why(tmp_path):
    player = Player(no_audio_device)
    with pytest.raises(PlaybackUnavailable, match="no audio output device"):
        player.play(AudioSource.from_array(ramp(0.1), RATE))
    assert player.status().state == "stopped"


# -- a real audio device ---------------------------------------------------------------------------------------------
def real_sounddevice():
    """sounddevice with an output device, or a skip — a failure when CI says there must be one."""
    try:
        return load_sounddevice()
    except PlaybackUnavailable as exc:
        if os.environ.get("TTAG_REQUIRE_AUDIO") == "1":
            pytest.fail(f"TTAG_REQUIRE_AUDIO=1 but {exc} (start .ci/pulse.sh)")
        pytest.skip(f"no audio device here ({exc}); CI runs this with a PulseAudio null sink")


def dominant_frequency(signal: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return float(np.fft.rfftfreq(len(signal), 1 / rate)[spectrum.argmax()])


def record_while(sd, seconds: float, rate: int, action) -> np.ndarray:
    """Record the default input (the null sink's monitor) while ``action`` runs."""
    frames: list[np.ndarray] = []
    with sd.InputStream(samplerate=rate, channels=1, dtype="float32", callback=lambda d, *_: frames.append(d.copy())):
        action()
        time.sleep(seconds)
    return np.concatenate(frames)[:, 0] if frames else np.zeros(0, dtype=np.float32)


def wait_until_stopped(player: Player, timeout: float) -> float:
    start = time.monotonic()
    while player.status().state != "stopped":
        assert time.monotonic() - start < timeout, "playback did not end"
        time.sleep(0.01)
    return time.monotonic() - start


def test_real_device_plays_the_take_at_real_time_rate():
    sd = real_sounddevice()
    rate = 48000
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(int(1.5 * rate)) / rate)).astype(np.float32)[None, :]
    player = Player()
    elapsed: list[float] = []

    def play() -> None:
        player.play(AudioSource.from_array(tone, rate, "tone"))
        elapsed.append(wait_until_stopped(player, timeout=10))

    recorded = record_while(sd, 0.3, rate, play)
    player.close()
    assert 1.3 < elapsed[0] < 4.0, f"1.5 s of audio took {elapsed[0]:.2f} s"
    loud = recorded[np.abs(recorded) > 0.1]
    assert len(loud) > rate, "the monitor heard less than a second of the tone"
    assert abs(dominant_frequency(recorded, rate) - 440) < 3


def test_real_device_starts_playing_a_stream_before_it_is_complete():
    sd = real_sounddevice()
    rate = 48000
    tone = (0.5 * np.sin(2 * np.pi * 660 * np.arange(rate) / rate)).astype(np.float32)[None, :]
    source = AudioSource(rate, 1, "stream", expected_frames=rate)
    source.write(0, tone[:, : rate // 4])
    player = Player()

    def feed() -> None:  # the rest arrives as a streaming job would deliver it, while the start is playing
        for start in range(rate // 4, rate, rate // 4):
            time.sleep(0.15)
            source.write(start, tone[:, start : start + rate // 4])
        source.finish()

    def play() -> None:
        player.play(source)
        threading.Thread(target=feed).start()
        wait_until_stopped(player, timeout=10)

    recorded = record_while(sd, 0.2, rate, play)
    player.close()
    assert abs(dominant_frequency(recorded, rate) - 660) < 3
    assert len(recorded[np.abs(recorded) > 0.1]) > rate * 0.8


class _NoPortAudio(importlib.abc.MetaPathFinder):
    """``import sounddevice`` as it fails without Debian's libportaudio2."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "sounddevice":
            raise OSError("PortAudio library not found")


def test_the_no_audio_reasons_say_it_once_and_what_to_install(monkeypatch):
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_NoPortAudio(), *sys.meta_path])
    with pytest.raises(PlaybackUnavailable) as info:
        load_sounddevice()
    assert (
        str(info.value)
        == "the PortAudio library is not installed (on Debian or Ubuntu: sudo apt install libportaudio2)"
    )
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # the package itself absent
    with pytest.raises(PlaybackUnavailable, match=r"^the sounddevice package is not installed \(.* -m pip install "):
        load_sounddevice()
