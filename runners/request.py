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
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runners.registry import ModelSpec, ParamSpec, Registry

MAX_PROMPT_CHARS = 2000
MAX_TAKES = 8
MAX_SEED = 2**32 - 1
FORMATS = ("wav", "flac", "ogg", "mp3")
# Parameters that exist only for some models; the registry says which model takes which.
MODEL_PARAMS = (
    "temperature",
    "top_k",
    "top_p",
    "guidance",
    "steps",
    "negative_prompt",
    "audio_prompt",
    "melody",
    "strength",
    "end_prompt",
    "alpha",
)


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    model: str = "synth"
    duration: float | None = None
    seed: int | None = None
    takes: int = 1
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    guidance: float | None = None
    steps: int | None = None
    negative_prompt: str | None = None
    audio_prompt: str | None = None  # an audio file to continue ("continue this take")
    melody: str | None = None  # an audio file whose melody conditions the model
    strength: float | None = None  # how much of audio_prompt diffusion repaints (img2img denoising strength)
    end_prompt: str | None = None  # a second prompt that a riff moves towards
    alpha: float | None = None  # where a riff starts between prompt (0) and end_prompt (1)
    format: str = "wav"

    def take_seed(self, take: int) -> int:
        """Seed of take ``take``: consecutive seeds, so take k re-creates alone as ``seed + k``."""
        if self.seed is None:
            raise ValueError("request has no seed; validate it first")
        return (self.seed + take) % (MAX_SEED + 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GenerationRequest:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def with_changes(self, **changes: Any) -> GenerationRequest:
        return replace(self, **changes)


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
    """Whole numbers as whole numbers (4294967295, not 4.29497e+09); others short."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e16 else f"{x:g}"


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


def _check_audio_file(value: Any) -> str:
    """A local audio file soundfile can read; its absolute path. (The API never lets a client name a path.)"""
    import soundfile

    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be the path of an audio file")
    path = Path(value.strip()).expanduser()
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    try:
        info = soundfile.info(str(path))
    except Exception as exc:
        raise ValueError(f"cannot read {path.name} as audio ({exc})") from None
    if info.frames == 0:
        raise ValueError(f"{path.name} has no audio in it")
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
    if name in MODEL_PARAMS:
        param = spec.param(name) if spec is not None else None
        if spec is not None and param is None:
            takes = ", ".join(p.name for p in spec.params) or "none"
            raise ValueError(f"{spec.id} does not take this parameter (it takes: {takes})")
        if param is None:
            return value
        return _check_param(param, value)
    raise ValueError("is not a request field")


def validate_request(
    data: Mapping[str, Any] | GenerationRequest, registry: Registry, *, draw_seed: bool = True
) -> GenerationRequest:
    """Check every field against the model's spec; fill in defaults; draw a seed when none is given."""
    raw = data.to_dict() if isinstance(data, GenerationRequest) else dict(data)
    errors: list[FieldError] = []
    known = {f.name for f in fields(GenerationRequest)}
    for name in raw:
        if name not in known:
            errors.append(FieldError(name, "is not a request field"))

    model = raw.get("model") or "synth"
    spec = registry.get(model) if isinstance(model, str) else None
    if spec is None:
        errors.append(FieldError("model", f"unknown model {model!r} (known: {', '.join(registry.ids())})"))

    clean: dict[str, Any] = {"model": model}
    for name in known - {"model"}:
        if name not in raw and name != "prompt":
            continue
        try:
            clean[name] = check_field(name, raw.get(name), spec)
        except ValueError as exc:
            errors.append(FieldError(name, str(exc)))
    if errors:
        order = [f.name for f in fields(GenerationRequest)]
        errors.sort(key=lambda e: order.index(e.field) if e.field in order else len(order))
        raise RequestInvalid(errors)

    assert spec is not None
    if clean.get("duration") is None:
        clean["duration"] = spec.default_duration
    for param in spec.params:
        if clean.get(param.name) is None:
            clean[param.name] = param.default
    if clean.get("takes") is None:
        clean["takes"] = 1
    if clean.get("format") is None:
        clean["format"] = "wav"
    if clean.get("seed") is None and draw_seed:
        clean["seed"] = secrets.randbelow(MAX_SEED + 1)
    return GenerationRequest(**clean)
