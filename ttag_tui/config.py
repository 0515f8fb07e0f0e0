"""ttag's configuration: ``config.toml`` read with tomllib, written with tomli-w, overridden by ``TTAG_*`` variables.

A broken file is never overwritten: loading it raises :class:`ConfigError` naming the file, the line and the key, and
``set`` refuses to touch it until it is fixed.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import tomli_w

from ttag_tui import paths

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "float16", "bfloat16")
FORMATS = ("wav", "flac", "ogg", "mp3")
TABLES = ("interpreters", "keys")  # free-form string → string tables


class ConfigError(Exception):
    def __init__(self, path: Path | str, message: str, *, line: int | None = None, key: str | None = None) -> None:
        where = f"{path}" + (f", line {line}" if line else "")
        what = f"{key}: " if key else ""
        super().__init__(f"{where}: {what}{message}")
        self.path, self.line, self.key = path, line, key


@dataclass(frozen=True)
class Config:
    default_model: str = "synth"
    default_duration: float = 0.0  # 0: the model's own default
    output_dir: str = ""  # empty: a ttag folder in the user's music directory
    format: str = "wav"
    device: str = "auto"
    dtype: str = "auto"
    threads: int = 0  # 0: the library decides
    idle_unload_s: float = 600.0
    cancel_grace_s: float = 5.0
    cache_dir: str = ""  # empty: the Hugging Face default (HF_HOME / HF_HUB_CACHE)
    theme: str = "textual-dark"
    backend: str = ""  # a ttag server's URL to send jobs to; empty: local workers
    backend_api_key: str = ""  # the Bearer token sent to that server
    api_keys: str = ""  # comma-separated Bearer tokens `ttag server` accepts; empty: no auth, loopback only
    max_queue: int = 16  # jobs waiting or running on `ttag server` before it answers 503
    rate_limit: str = "60/minute"  # per client on the server's generate/jobs endpoints (limits' notation)
    interpreters: dict[str, str] = field(default_factory=dict)  # runner name → python executable
    keys: dict[str, str] = field(default_factory=dict)  # action → key, overriding the TUI's defaults

    def resolved_output_dir(self) -> Path:
        return Path(self.output_dir).expanduser() if self.output_dir else paths.default_output_dir()


_FIELDS = {f.name: f for f in fields(Config)}


def _parse_value(key: str, value: Any) -> Any:
    """Check (and, for text from the command line or environment, convert) one value; ValueError says why."""
    kind = _FIELDS[key].type
    if key in TABLES:
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise ValueError("must be a table of text values")
        return dict(value)
    if kind == "float":
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"must be a number (got {value!r})") from None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise ValueError(f"must be a number of at least 0 (got {value!r})")
        return float(value)
    if kind == "int":
        if isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                raise ValueError(f"must be a whole number (got {value!r})") from None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"must be a whole number of at least 0 (got {value!r})")
        return value
    if not isinstance(value, str):
        raise ValueError(f"must be text (got {value!r})")
    choices = {"device": DEVICES, "dtype": DTYPES, "format": FORMATS}.get(key)
    if choices and value not in choices:
        raise ValueError(f"must be one of {', '.join(choices)} (got {value!r})")
    return value


def _line_of(text: str, key: str) -> int | None:
    name = key.split(".")[-1]
    for number, line in enumerate(text.splitlines(), 1):
        if re.match(rf"\s*(\[\s*)?{re.escape(name)}\s*[=\]]", line):
            return number
    return None


def _from_data(data: dict[str, Any], path: Path | str, text: str) -> Config:
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in _FIELDS:
            known = ", ".join(_FIELDS)
            raise ConfigError(path, f"unknown setting (known: {known})", line=_line_of(text, key), key=key)
        try:
            values[key] = _parse_value(key, value)
        except ValueError as exc:
            raise ConfigError(path, str(exc), line=_line_of(text, key), key=key) from None
    return Config(**values)


def _read_file(path: Path) -> tuple[dict[str, Any], str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}, ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, f"cannot read it: {exc}") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        raise ConfigError(path, f"not valid TOML: {exc}", line=int(match.group(1)) if match else None) from None


def _env_overrides(config: Config) -> Config:
    changes: dict[str, Any] = {}
    for key in _FIELDS:
        if key in TABLES:
            continue
        raw = os.environ.get(f"TTAG_{key.upper()}")
        if raw is None:
            continue
        try:
            changes[key] = _parse_value(key, raw)
        except ValueError as exc:
            raise ConfigError(f"environment variable TTAG_{key.upper()}", str(exc)) from None
    return replace(config, **changes)


def load(path: Path | None = None, *, environment: bool = True) -> Config:
    """The config file's settings (defaults where absent), then ``TTAG_*`` environment overrides."""
    path = path or paths.config_file()
    data, text = _read_file(path)
    config = _from_data(data, path, text)
    return _env_overrides(config) if environment else config


def to_toml(config: Config) -> str:
    """Only the settings that differ from the defaults, so new defaults reach users who never set them."""
    defaults = Config()
    data = {f: getattr(config, f) for f in _FIELDS if getattr(config, f) != getattr(defaults, f)}
    return tomli_w.dumps(data)


def save(config: Config, path: Path | None = None) -> Path:
    """Write atomically: a temp file in the same folder, then rename over the old one."""
    path = path or paths.config_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".toml.tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(to_toml(config))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def set_value(key: str, raw: str, path: Path | None = None) -> Config:
    """``ttag config set KEY VALUE``: change one setting (``interpreters.NAME`` / ``keys.ACTION`` for tables)."""
    path = path or paths.config_file()
    config = load(path, environment=False)  # raises on a broken file, which is then left as it is
    table, _, entry = key.partition(".")
    if table in TABLES and entry:
        updated = {**getattr(config, table), entry: raw}
        if not raw:
            updated.pop(entry)
        config = replace(config, **{table: updated})
    elif key in _FIELDS and key not in TABLES:
        try:
            config = replace(config, **{key: _parse_value(key, raw)})
        except ValueError as exc:
            raise ConfigError(path, str(exc), key=key) from None
    else:
        hint = f" (use {key}.NAME)" if key in TABLES else f" (known: {', '.join(_FIELDS)})"
        raise ConfigError(path, f"unknown setting{hint}", key=key)
    save(config, path)
    return config
