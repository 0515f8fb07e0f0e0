"""The one request type (CLI, TUI, API and workers all use it) and its one validation.

``validate_request`` turns loose input — CLI options, text typed into the TUI, a JSON body — into a
:class:`GenerationRequest` with every default filled in and the seed drawn, or raises :class:`RequestInvalid` listing
each bad field with a message a person understands. ``check_field`` runs the same rule for one field, so a form can
validate as the user types.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runners.registry import ModelSpec, ParamSpec, Registry

MAX_PROMPT_CHARS = 2000
# The longest audio a request may hand a model (a melody, audio to continue): no model takes more than 10 minutes, and
# a file is checked by its header before anything reads it whole.
MAX_AUDIO_INPUT_SECONDS = 600.0
UNKNOWN_LENGTH = 1 << 62  # libsndfile's frame count for a file whose header has none (2**63 - 1)
MAX_TAKES = 8
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class AudioFormat:
    """How a take is written in one format: libsndfile's container and subtype, and the media type the API sends."""

    container: str
    subtype: str
    media_type: str


# The one list of formats: the CLI's --format and -o suffixes, the config, the API schema and the web page use it.
AUDIO_FORMATS = {
    "wav": AudioFormat("WAV", "PCM_24", "audio/wav"),
    "flac": AudioFormat("FLAC", "PCM_24", "audio/flac"),
    "ogg": AudioFormat("OGG", "VORBIS", "audio/ogg"),
    "mp3": AudioFormat("MP3", "MPEG_LAYER_III", "audio/mpeg"),
}
FORMATS = tuple(AUDIO_FORMATS)


@dataclass(frozen=True, init=False, eq=True)
class GenerationRequest:
    """What to make. The fields every model takes are attributes; a model's own parameters (declared once, as
    ``ParamSpec``s in the registry) live in ``params`` and read as attributes too: ``request.temperature`` is
    ``params["temperature"]``, or None for a model without it."""

    prompt: str
    model: str = "synth"
    duration: float | None = None
    seed: int | None = None
    takes: int = 1
    format: str = "wav"
    params: Mapping[str, Any] = field(default_factory=dict)

    def __init__(
        self,
        prompt: str,
        model: str = "synth",
        duration: float | None = None,
        seed: int | None = None,
        takes: int = 1,
        format: str = "wav",
        params: Mapping[str, Any] | None = None,
        **named_params: Any,
    ) -> None:
        for name, value in (("prompt", prompt), ("model", model), ("duration", duration), ("seed", seed)):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "takes", takes)
        object.__setattr__(self, "format", format)
        object.__setattr__(self, "params", {**(params or {}), **named_params})

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.__dict__.get("params", {}).get(name)

    def __hash__(self) -> int:
        return hash((self.prompt, self.model, self.duration, self.seed, self.takes, self.format))

    def take_seed(self, take: int) -> int:
        """Seed of take ``take``: consecutive seeds, so take k re-creates alone as ``seed + k``."""
        if self.seed is None:
            raise ValueError("request has no seed; validate it first")
        return (self.seed + take) % (MAX_SEED + 1)

    def to_dict(self) -> dict[str, Any]:
        """One flat mapping (what JSON bodies, sidecars and the session store hold): the common fields and the
        model's parameters side by side."""
        return {**{name: getattr(self, name) for name in CORE_FIELDS}, **self.params}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GenerationRequest:
        core = {k: v for k, v in data.items() if k in CORE_FIELDS}
        return cls(**core, params={k: v for k, v in data.items() if k not in CORE_FIELDS and k != "params"})


CORE_FIELDS = ("prompt", "model", "duration", "seed", "takes", "format")  # what every model takes
# What each common field is, and what it is when left out: the CLI's help and the API's schema say it in these words.
CORE_FIELD_HELP = {
    "prompt": "what to make",
    "model": "model id (see list-models); default: the configured default model",
    "duration": "seconds of audio; default: the model's",
    "seed": "seed for reproducible output; default: random, recorded",
    "takes": f"how many variations (1-{MAX_TAKES}); take k uses seed+k; default: 1",
    "format": f"audio format ({', '.join(FORMATS)}); default: wav",
}


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class RequestInvalid(ValueError):
    """One or more fields of a request are wrong; ``errors`` says which and why."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors))


def _number(value: Any, *, integer: bool) -> float | int:
    """Parse an int or float from JSON, CLI or typed text; raise ValueError with the reason."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not true/false")
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError("must be a number")
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise ValueError(f"must be {'a whole number' if integer else 'a number'} (got {text!r})") from None
    if not isinstance(value, int | float):
        raise ValueError(f"must be a number (got {type(value).__name__})")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number")
    if integer:
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"must be a whole number (got {value:g})")
            value = int(value)
        return value
    return float(value)


def _fmt(x: float) -> str:
    """Whole numbers as whole numbers (4294967295, not 4.29497e+09); others short, but never rounded into another
    number: 600.0000001 is refused as above 600, and saying "got 600" would contradict it."""
    if isinstance(x, int) or (float(x).is_integer() and abs(x) < 1e16):
        return str(int(x))
    short = f"{x:g}"
    return short if float(short) == x else repr(float(x))


def _check_text(value: Any, *, required: bool) -> str | None:
    """Text as a person typed it: the length limit counts every character sent (as the API schema's maxLength
    does), and text that cannot be stored or encoded (lone surrogates, NUL) is refused up front."""
    if not isinstance(value, str):
        raise ValueError("must be text")
    if len(value) > MAX_PROMPT_CHARS:
        raise ValueError(f"is too long ({len(value)} characters; the limit is {MAX_PROMPT_CHARS})")
    bad = next((c for c in value if "\ud800" <= c <= "\udfff" or c == "\x00"), None)
    if bad is not None:
        what = "a NUL character" if bad == "\x00" else f"an invalid character (lone surrogate U+{ord(bad):04X})"
        raise ValueError(f"contains {what}: send UTF-8 text")
    text = value.strip()
    if required and not text:
        raise ValueError("is empty: describe the sound you want, e.g. 'lofi hip hop with piano, 85 bpm'")
    return text


def _check_range(value: float, lo: float | None, hi: float | None, unit: str = "") -> None:
    suffix = f" {unit}" if unit else ""  # e.g. "seconds for musicgen-small"
    if lo is not None and hi is not None and not lo <= value <= hi:
        raise ValueError(f"must be between {_fmt(lo)} and {_fmt(hi)}{suffix} (got {_fmt(value)})")
    if lo is not None and value < lo:
        raise ValueError(f"must be at least {_fmt(lo)}{suffix} (got {_fmt(value)})")
    if hi is not None and value > hi:
        raise ValueError(f"must be at most {_fmt(hi)}{suffix} (got {_fmt(value)})")


def _count_frames(path: Path, sample_rate: int) -> int:
    """The length of a file whose header does not say it (a FLAC from a streaming encoder), counted by decoding it a
    block at a time and no further than the limit allows, so it is never held whole."""
    import soundfile

    limit, frames = int(MAX_AUDIO_INPUT_SECONDS * sample_rate) + 1, 0
    try:
        for block in soundfile.blocks(str(path), blocksize=1 << 16, frames=limit):
            frames += len(block)
    except Exception as exc:
        raise ValueError(f"cannot read {path.name} as audio ({exc})") from None
    return frames


def _check_audio_file(value: Any) -> str:
    """A local audio file soundfile can read; its absolute path. (The API never lets a client name a path.)"""
    import soundfile

    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be the path of an audio file")
    path = Path(value.strip()).expanduser()
    if not path.exists():
        raise ValueError(f"no such file: {path}")
    if not path.is_file():
        raise ValueError(f"{path} is not a file (a folder, a device or a pipe): give an audio file")
    try:
        info = soundfile.info(str(path))
    except Exception as exc:
        raise ValueError(f"cannot read {path.name} as audio ({exc})") from None
    frames = info.frames if info.frames < UNKNOWN_LENGTH else _count_frames(path, info.samplerate)
    if frames == 0:
        raise ValueError(f"{path.name} has no audio in it")
    if frames > MAX_AUDIO_INPUT_SECONDS * info.samplerate:
        raise ValueError(
            f"{path.name} is {_fmt(round(frames / info.samplerate))} s long: "
            f"audio given to a model is at most {_fmt(MAX_AUDIO_INPUT_SECONDS)} s; cut it first"
        )
    return str(path.resolve())


def _check_param(param: ParamSpec, value: Any) -> Any:
    if param.type == "audio":
        return _check_audio_file(value)
    if param.type == "str":
        return _check_text(value, required=False)
    number = _number(value, integer=param.type == "int")
    _check_range(number, param.minimum, param.maximum)
    return number


def check_field(name: str, value: Any, spec: ModelSpec | None) -> Any:
    """Validate one field for one model; return the cleaned value or raise ValueError with the reason.

    ``None`` means "not given" and is accepted for every optional field.
    """
    if name == "prompt":
        if value is None:
            raise ValueError("is empty: describe the sound you want, e.g. 'lofi hip hop with piano, 85 bpm'")
        return _check_text(value, required=True)
    if value is None:
        return None
    if name == "duration":
        duration = _number(value, integer=False)
        if spec is not None:
            _check_range(duration, spec.min_duration, spec.max_duration, f"seconds for {spec.id}")
        elif duration <= 0:
            raise ValueError("must be more than 0 seconds")
        return duration
    if name == "seed":
        seed = _number(value, integer=True)
        _check_range(seed, 0, MAX_SEED)
        return seed
    if name == "takes":
        takes = _number(value, integer=True)
        _check_range(takes, 1, MAX_TAKES)
        return takes
    if name == "format":
        fmt = str(value).strip().lower().lstrip(".")
        if fmt not in FORMATS:
            raise ValueError(f"must be one of {', '.join(FORMATS)} (got {value!r})")
        return fmt
    param = spec.param(name) if spec is not None else None
    if spec is not None and param is None:
        accepted = ", ".join(p.name for p in spec.params) or "none"
        raise ValueError(f"{spec.id} does not take this parameter (it takes: {accepted})")
    if param is None:
        return value
    return _check_param(param, value)


def validate_request(
    data: Mapping[str, Any] | GenerationRequest, registry: Registry, *, draw_seed: bool = True
) -> GenerationRequest:
    """Check every field against the model's spec; fill in defaults; draw a seed when none is given."""
    raw = data.to_dict() if isinstance(data, GenerationRequest) else dict(data)
    errors: list[FieldError] = []
    declared = registry.param_names()
    for name in raw:
        if name not in CORE_FIELDS and name not in declared:
            errors.append(FieldError(name, "is not a request field"))

    model = raw.get("model") or "synth"
    spec = registry.get(model) if isinstance(model, str) else None
    if spec is None:
        errors.append(FieldError("model", f"unknown model {model!r} (known: {', '.join(registry.ids())})"))

    clean: dict[str, Any] = {"model": model}
    given = [name for name in (*CORE_FIELDS, *raw) if name in raw or name == "prompt"]
    for name in dict.fromkeys(given):
        if name == "model" or (name not in CORE_FIELDS and name not in declared):
            continue
        try:
            clean[name] = check_field(name, raw.get(name), spec)
        except ValueError as exc:
            errors.append(FieldError(name, str(exc)))
    if errors:
        order = [*CORE_FIELDS, *declared]
        errors.sort(key=lambda e: order.index(e.field) if e.field in order else len(order))
        raise RequestInvalid(errors)

    assert spec is not None
    core: dict[str, Any] = {name: clean.get(name) for name in CORE_FIELDS}
    if core["duration"] is None:
        core["duration"] = spec.default_duration
    if core["takes"] is None:
        core["takes"] = 1
    if core["format"] is None:
        core["format"] = "wav"
    if core["seed"] is None and draw_seed:
        core["seed"] = secrets.randbelow(MAX_SEED + 1)
    params = {p.name: p.default if clean.get(p.name) is None else clean[p.name] for p in spec.params}
    return GenerationRequest(**core, params=params)
