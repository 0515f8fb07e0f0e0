"""Writing takes: safe names, no clobbering, atomic files, and a sidecar that re-creates the take."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shlex
import time
from datetime import datetime

import numpy as np
import pytest
import soundfile

from runners.contract import Clip
from ttag_tui import output


def make_clip(prompt="lofi hip hop, 85 bpm", seed=42, take=0, channels=2, seconds=0.5, sr=8000) -> Clip:
    t = np.arange(int(seconds * sr)) / sr
    audio = np.stack([0.3 * np.sin(2 * np.pi * 440 * t)] * channels).astype(np.float32)
    params = {
        "prompt": prompt,
        "model": "synth",
        "duration": seconds,
        "seed": seed,
        "takes": 2,
        "temperature": 1.0,
        "top_k": None,
        "top_p": None,
        "guidance": None,
        "steps": None,
        "negative_prompt": None,
        "audio_prompt": None,
        "melody": None,
        "format": "wav",
    }
    meta = {
        "model": "synth",
        "revision": None,
        "runner": "synth",
        "runner_version": "1",
        "take": take,
        "seed": seed + take,
        "parameters": params,
        "sample_rate": sr,
        "ttag_version": "0.1.0",
        "timings": {"load_s": 0.1, "generate_s": 0.2},
    }
    return Clip(audio=audio, sample_rate=sr, metadata=meta)


@pytest.mark.parametrize(
    ("prompt", "slug"),
    [
        ("Lofi Hip Hop, 85 BPM!", "lofi-hip-hop-85-bpm"),
        ("../../etc/passwd", "etc-passwd"),
        ("Café für Ünïcode ♫", "cafe-fur-unicode"),
        ("///...", "clip"),
        ("a" * 300, "a" * 40),
        ("NUL\x00and\nnewline", "nul-and-newline"),
    ],
)
def test_slug_is_safe_and_bounded(prompt, slug):
    assert output.slugify(prompt) == slug


def test_stem_has_slug_seed_and_timestamp():
    assert output.clip_stem("Rain", 7, datetime(2026, 1, 2, 3, 4, 5)) == "rain_s7_20260102-030405"


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "mp3"])
def test_write_each_format_with_sidecar(tmp_path, fmt):
    clip = make_clip()
    path = output.write_clip(clip, tmp_path, fmt)
    assert path.suffix == f".{fmt}" and path.parent == tmp_path
    audio, sr = soundfile.read(path, always_2d=True)
    assert sr == 8000 and audio.shape[1] == 2
    assert abs(audio.shape[0] - 4000) <= (0 if fmt in ("wav", "flac") else 2000)
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert sidecar["file"] == path.name


def test_sidecar_recreates_the_take(tmp_path):
    path = output.write_clip(make_clip(take=1), tmp_path)
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["seed"] == 43 and sidecar["parameters"]["seed"] == 43 and sidecar["parameters"]["takes"] == 1
    assert sidecar["prompt"] == "lofi hip hop, 85 bpm" and sidecar["model"] == "synth"
    assert sidecar["ttag_version"] == "0.1.0" and sidecar["sample_rate"] == 8000 and sidecar["duration"] == 0.5
    assert sidecar["inputs_sha256"] == {}  # made from no audio file: nothing read, nothing pinned
    assert shlex.split(sidecar["recreate"]) == [
        "ttag",
        "generate",
        "lofi hip hop, 85 bpm",
        "-m",
        "synth",
        "-d",
        "0.5",
        "--seed",
        "43",
        "--temperature",
        "1.0",
    ]


def test_the_sidecar_pins_each_audio_input_by_its_sha256_and_one_gone_by_now_is_recorded_as_such(tmp_path):
    """What the TUI writes too: a take of a model that follows a melody, written after the audio it continued was
    deleted (a trashed take, say), is kept, with the melody pinned and the continued audio unknown."""
    melody = tmp_path / "melody.wav"
    soundfile.write(melody, np.zeros(800), 8000)
    clip = make_clip()
    clip.metadata["parameters"] |= {"melody": str(melody), "audio_prompt": str(tmp_path / "gone.wav")}
    sidecar = json.loads(output.write_clip(clip, tmp_path / "take.wav").with_suffix(".json").read_text())
    digest = hashlib.sha256(melody.read_bytes()).hexdigest()
    assert sidecar["inputs_sha256"] == {"audio_prompt": None, "melody": digest}
    recreate = shlex.split(sidecar["recreate"])
    assert recreate[-2:] == ["--input-sha256", f"melody={digest}"] and recreate.count("--input-sha256") == 1


def test_never_clobbers(tmp_path):
    stem = "same"
    first = output.write_clip(make_clip(), tmp_path, stem=stem)
    second = output.write_clip(make_clip(), tmp_path, stem=stem)
    (tmp_path / "same-3.json").write_text("{}")  # a stray sidecar also blocks the name
    third = output.write_clip(make_clip(), tmp_path, stem=stem)
    assert [first.name, second.name, third.name] == ["same.wav", "same-2.wav", "same-4.wav"]


def test_explicit_file_name_and_takes(tmp_path):
    target = tmp_path / "song.flac"
    assert output.write_clip(make_clip(take=0), target, "wav").name == "song.flac"
    assert output.write_clip(make_clip(take=1), target, "wav").name == "song-take2.flac"


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    real = soundfile.SoundFile.write

    def broken_write(self, data):  # half the audio reaches the disk, then it is full
        real(self, data[: len(data) // 2])
        raise RuntimeError("disk full")

    monkeypatch.setattr(soundfile.SoundFile, "write", broken_write)
    with pytest.raises(RuntimeError):
        output.write_clip(make_clip(), tmp_path)
    assert os.listdir(tmp_path) == []


def test_a_failed_sidecar_write_publishes_neither_file_and_leaves_no_temp(tmp_path, monkeypatch):
    real = type(tmp_path).write_text

    def disk_full_for_sidecars(self, text, *args, **kwargs):  # the audio fitted; the sidecar gets half-way
        if self.name.endswith(".json.tmp"):
            real(self, text[: len(text) // 2], *args, **kwargs)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real(self, text, *args, **kwargs)

    monkeypatch.setattr(type(tmp_path), "write_text", disk_full_for_sidecars)
    with pytest.raises(OSError, match=rf"^cannot write {tmp_path / 'song.wav'}: no space left on device$"):
        output.write_clip(make_clip(), tmp_path / "song.wav")
    assert os.listdir(tmp_path) == []


def test_a_name_taken_while_writing_gets_the_next_one_with_a_sidecar_that_names_it(tmp_path, monkeypatch):
    real = output._publish

    def another_writer_first(tmp, final):  # another ttag takes the name between the check and the rename
        if final.name == "same.wav":
            final.write_bytes(b"theirs")
        return real(tmp, final)

    monkeypatch.setattr(output, "_publish", another_writer_first)
    path = output.write_clip(make_clip(), tmp_path, stem="same")
    assert path.name == "same-2.wav" and (tmp_path / "same.wav").read_bytes() == b"theirs"
    assert json.loads((tmp_path / "same-2.json").read_text())["file"] == "same-2.wav"
    assert sorted(os.listdir(tmp_path)) == ["same-2.json", "same-2.wav", "same.wav"]


def test_writing_a_take_removes_the_stale_temps_of_a_killed_writer_there(tmp_path):
    stale, fresh = tmp_path / ".ttag-killed.flac.tmp", tmp_path / ".ttag-writing.wav.tmp"
    for temp in (stale, fresh):
        temp.write_bytes(b"half a take")
    old = time.time() - output.STALE_TEMP_S - 60
    os.utime(stale, (old, old))
    output.write_clip(make_clip(), tmp_path / "next.wav")
    assert not stale.exists() and fresh.exists()  # a fresh one may be another ttag's, writing right now


def test_a_take_from_a_server_is_written_as_the_server_encoded_it(tmp_path):
    clip = make_clip()
    clip.encoded = ("flac", b"the server's flac file")
    assert output.write_clip(clip, tmp_path / "a.flac").read_bytes() == b"the server's flac file"
    sidecar = json.loads((tmp_path / "a.json").read_text())
    assert sidecar["sha256"] == hashlib.sha256(b"the server's flac file").hexdigest()
    assert soundfile.info(output.write_clip(clip, tmp_path / "b.wav")).format == "WAV"  # another format: encoded here
