"""The one validation: every bad input gets a clear message naming the field."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile

from runners.registry import ModelSpec, ParamSpec, Registry
from runners.request import MAX_SEED, GenerationRequest, RequestInvalid, check_field, validate_request

SPEC = ModelSpec(
    id="m",
    runner="tests.fake_runners:ToneRunner",
    kind="music",
    description="",
    sample_rate=8000,
    channels=1,
    min_duration=1,
    max_duration=30,
    default_duration=8,
    params=(
        ParamSpec("temperature", "float", 1.0, 0.0, 2.0),
        ParamSpec("top_k", "int", 250, 0, 2048),
        ParamSpec("melody", "audio", None),
    ),
)
OTHER = ModelSpec(**{**SPEC.__dict__, "id": "other", "params": (ParamSpec("guidance", "float", 3.0, 1.0, 20.0),)})
REGISTRY = Registry([SPEC, OTHER])


def errors(data) -> dict[str, str]:
    with pytest.raises(RequestInvalid) as info:
        validate_request(data, REGISTRY)
    return {e.field: e.message for e in info.value.errors}


def test_defaults_filled_and_seed_drawn():
    request = validate_request({"prompt": "  calm piano  ", "model": "m"}, REGISTRY)
    assert request.prompt == "calm piano"
    assert request.duration == 8 and request.takes == 1 and request.format == "wav"
    assert request.temperature == 1.0 and request.top_k == 250
    assert request.seed is not None and 0 <= request.seed <= MAX_SEED
    drawn = {validate_request({"prompt": "x", "model": "m"}, REGISTRY).seed for _ in range(5)}
    assert len(drawn) > 1, "seeds are drawn at random"


def test_seeds_of_takes_are_consecutive():
    request = validate_request({"prompt": "x", "model": "m", "seed": MAX_SEED, "takes": 3}, REGISTRY)
    assert [request.take_seed(k) for k in range(3)] == [MAX_SEED, 0, 1]


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t", None])
def test_empty_prompt(prompt):
    assert "is empty" in errors({"prompt": prompt, "model": "m"})["prompt"]


def test_prompt_too_long():
    assert "too long" in errors({"prompt": "a" * 2001, "model": "m"})["prompt"]


def test_unknown_model_lists_known_ones():
    message = errors({"prompt": "x", "model": "nope"})["model"]
    assert "unknown model 'nope'" in message and "m" in message


@pytest.mark.parametrize("duration", [0.5, 31, -1])
def test_duration_outside_model_range(duration):
    message = errors({"prompt": "x", "model": "m", "duration": duration})["duration"]
    assert "between 1 and 30 seconds for m" in message


@pytest.mark.parametrize("value", [math.nan, math.inf, "NaN", "abc", True])
def test_non_numbers(value):
    assert "must be" in errors({"prompt": "x", "model": "m", "duration": value})["duration"]


@pytest.mark.parametrize("takes", [0, 9, -2, 1.5])
def test_takes_outside_1_to_8(takes):
    assert errors({"prompt": "x", "model": "m", "takes": takes})["takes"]


def test_negative_seed_and_too_large_seed():
    assert "between 0 and" in errors({"prompt": "x", "model": "m", "seed": -1})["seed"]
    assert "between 0 and" in errors({"prompt": "x", "model": "m", "seed": MAX_SEED + 1})["seed"]
    huge = 10**23 - 1  # said as given, not as the float 1e+23 it is near
    assert errors({"prompt": "x", "model": "m", "seed": huge})["seed"].endswith(f"(got {huge})")


def test_unsupported_parameter_names_what_the_model_takes():
    message = errors({"prompt": "x", "model": "m", "guidance": 3})["guidance"]
    assert message == "m does not take this parameter (it takes: temperature, top_k, melody)"
    assert errors({"prompt": "x", "model": "m", "warmth": 3})["warmth"] == "is not a request field"  # no model has it


def test_parameter_range_and_type():
    assert "between 0 and 2" in errors({"prompt": "x", "model": "m", "temperature": -0.5})["temperature"]
    assert "whole number" in errors({"prompt": "x", "model": "m", "top_k": 2.5})["top_k"]


def test_several_errors_reported_together_in_field_order():
    with pytest.raises(RequestInvalid) as info:
        validate_request({"prompt": "", "model": "m", "takes": 0, "duration": 99}, REGISTRY)
    assert [e.field for e in info.value.errors] == ["prompt", "duration", "takes"]
    assert "prompt: is empty" in str(info.value)


def test_unknown_field_and_format():
    found = errors({"prompt": "x", "model": "m", "colour": "red", "format": "aiff"})
    assert found["colour"] == "is not a request field"
    assert "wav, flac, ogg, mp3" in found["format"]


def test_typed_text_is_accepted_like_the_cli():
    """The TUI passes what the user typed; the same rules apply."""
    assert check_field("duration", " 12.5 ", SPEC) == 12.5
    assert check_field("top_k", "40", SPEC) == 40
    with pytest.raises(ValueError, match="must be a number"):
        check_field("duration", "ten", SPEC)


def test_audio_parameter_must_be_a_readable_file(tmp_path):
    good = tmp_path / "tune.flac"
    soundfile.write(good, np.zeros(800, dtype=np.float32), 8000)
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    request = validate_request({"prompt": "x", "model": "m", "melody": str(good)}, REGISTRY)
    assert request.melody == str(good.resolve())
    assert "cannot read notes.wav as audio" in errors({"prompt": "x", "model": "m", "melody": str(bad)})["melody"]
    assert "no such file" in errors({"prompt": "x", "model": "m", "melody": str(tmp_path / "gone.wav")})["melody"]
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    for path in (tmp_path, fifo, Path("/dev/zero")):
        assert "is not a file" in errors({"prompt": "x", "model": "m", "melody": str(path)})["melody"]


def test_audio_whose_header_gives_no_length_is_not_said_to_be_millennia_long(tmp_path):
    """A FLAC from a streaming encoder leaves STREAMINFO's sample count 0: libsndfile then reports 2**63 - 1 frames.
    Its length is counted by decoding (no further than the limit); libsndfile cannot read such a file to its end."""
    made = tmp_path / "made.flac"
    soundfile.write(made, np.zeros(5 * 8000, dtype=np.float32), 8000)
    data = bytearray(made.read_bytes())
    streaminfo = int.from_bytes(data[18:26], "big")  # rate 20 bits, channels 3, depth 5, then 36 bits of samples
    data[18:26] = (streaminfo & ~((1 << 36) - 1)).to_bytes(8, "big")
    unknown = tmp_path / "unknown.flac"
    unknown.write_bytes(data)
    assert soundfile.info(str(unknown)).frames >= 1 << 62
    message = errors({"prompt": "x", "model": "m", "melody": str(unknown)})["melody"]
    assert message.startswith("cannot read unknown.flac as audio") and "s long" not in message


def test_audio_past_ten_minutes_is_refused_by_its_header(tmp_path):
    """Read whole, a 3-hour file filled the machine's memory before the model could say it was too long."""
    long = tmp_path / "long.wav"
    soundfile.write(long, np.zeros(601 * 1000, dtype=np.int16), 1000, subtype="PCM_16")
    message = errors({"prompt": "x", "model": "m", "melody": str(long)})["melody"]
    assert message == "long.wav is 601 s long: audio given to a model is at most 600 s; cut it first"
    fits = tmp_path / "fits.wav"
    soundfile.write(fits, np.zeros(600 * 1000, dtype=np.int16), 1000, subtype="PCM_16")
    assert validate_request({"prompt": "x", "model": "m", "melody": str(fits)}, REGISTRY).melody


def test_round_trip_through_dict():
    request = validate_request({"prompt": "x", "model": "m", "seed": 5}, REGISTRY)
    assert GenerationRequest.from_dict(request.to_dict()) == request
    assert validate_request(request, REGISTRY) == request
