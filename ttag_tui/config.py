"""ttag's configuration: ``config.toml`` read with tomllib, written with tomli-w, overridden by ``TTAG_*`` variables.

A broken file is never overwritten: loading it raises :class:`ConfigError` naming the file, the line and the key, and
``set`` refuses to touch it until it is fixed. The file, the environment and ``set`` share one check per key: numbers
stay in their field's declared range, API keys are never empty, a rate limit is one the server's limiter can apply.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import tempfile
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tomli_w

from runners.musicgen import DECODERS
from runners.request import FORMATS
from ttag_tui import paths

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "float16", "bfloat16")
TABLES = ("interpreters", "keys", "models")  # free-form string → string tables


class ConfigError(Exception):
    def __init__(self, path: Path | str, message: str, *, line: int | None = None, key: str | None = None) -> None:
        where = f"{path}" + (f", line {line}" if line else "")
        what = f"{key}: " if key else ""
        super().__init__(f"{where}: {what}{message}")
        self.path, self.line, self.key, self.message = path, line, key, message

    @property
    def setting(self) -> str:
        """What is wrong, without where it was read: ``key: message`` (a form names its own fields)."""
        return f"{self.key}: {self.message}" if self.key else self.message


@dataclass(frozen=True)
class Config:
    default_model: str = "synth"
    # Numbers carry their allowed range (inclusive) in the field's metadata: every loader checks it, so a value a worker
    # or the server cannot use (a timeout too large for a thread lock, a queue of 0) never gets in.
    default_duration: float = field(default=0.0, metadata={"range": (0, 3600)})  # 0: the model's own default
    output_dir: str = ""  # empty: a ttag folder in the user's music directory
    format: str = "wav"
    device: str = "auto"
    dtype: str = "auto"
    musicgen_decoder: str = "fast"  # MusicGen's token loop: "fast" (runners/musicgen/fast_decode.py) or "transformers"
    threads: int = field(default=0, metadata={"range": (0, 1024)})  # 0: the library decides
    idle_unload_s: float = field(default=600.0, metadata={"range": (0, 7 * 24 * 3600)})  # 0: never unload
    cancel_grace_s: float = field(default=5.0, metadata={"range": (0, 3600)})
    # GB (10⁹ bytes) that warm models may hold on each device; the least recently used are unloaded to stay within it.
    # None (empty): on CUDA the GPU's free memory, on CPU and MPS 75% of the machine's RAM.
    memory_budget_gb: float | None = field(default=None, metadata={"range": (0.01, 100_000)})
    cache_dir: str = ""  # empty: the Hugging Face default (HF_HOME / HF_HUB_CACHE)
    theme: str = "textual-dark"
    backend: str = ""  # a ttag server's URL to send jobs to; empty: local workers
    backend_api_key: str = ""  # the Bearer token sent to that server
    api_keys: str = ""  # Bearer tokens `ttag server` accepts, comma-separated; empty: no auth, loopback only
    allowed_hosts: str = ""  # Host names a keyless `ttag server` answers besides loopback ones, comma-separated
    cluster: str = ""  # `ttag server` runs jobs on this Ray cluster (HEAD:6379, or auto for the local one); empty: no
    max_queue: int = field(default=16, metadata={"range": (1, 100_000)})  # jobs on `ttag server` before it answers 503
    rate_limit: str = "60/minute"  # per client on the server's generate/jobs endpoints (limits' notation)
    interpreters: dict[str, str] = field(default_factory=dict)  # runner name → python executable
    keys: dict[str, str] = field(default_factory=dict)  # action → key, overriding the TUI's defaults
    models: dict[str, str] = field(default_factory=dict)  # alias → a local checkpoint folder (`-m ALIAS`)

    @property
    def api_key_list(self) -> tuple[str, ...]:
        """The keys in ``api_keys``, stripped, never an empty one: what the server both authenticates with and checks
        before binding a non-loopback address (an empty tuple: no auth)."""
        return tuple(key for key in (k.strip() for k in self.api_keys.split(",")) if key)

    @property
    def allowed_host_list(self) -> tuple[str, ...]:
        return tuple(host for host in (h.strip().lower() for h in self.allowed_hosts.split(",")) if host)

    def resolved_output_dir(self) -> Path:
        return Path(self.output_dir).expanduser() if self.output_dir else paths.default_output_dir()


_FIELDS = {f.name: f for f in fields(Config)}


def _number(key: str, value: Any) -> float | int | None:
    """A number inside the key's range; text (command line, environment) is converted first. A key whose default is
    None (automatic) takes empty text for it."""
    whole = _FIELDS[key].type == "int"
    optional = _FIELDS[key].default is None
    low, high = _FIELDS[key].metadata["range"]
    shown = value if isinstance(value, str) else repr(value)
    allowed = f"a whole number from {low:g} to {high:g}" if whole else f"a number from {low:g} to {high:g}"
    if optional:
        if isinstance(value, str) and not value.strip():
            return None
        allowed = f"empty (automatic) or {allowed}"
    if isinstance(value, str):
        try:
            value = int(value) if whole else float(value)
        except ValueError:
            raise ValueError(f"must be {allowed} (got {shown})") from None
    kinds = int if whole else int | float
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"must be {allowed} (got {shown})")
    return value if whole else float(value)


API_KEY_MIN_LENGTH = 8


def _api_keys(value: Any) -> str:
    """Comma-separated text or a TOML list → the keys joined by single commas; an empty or weak entry is refused.

    The message never repeats a key: it may be a secret someone is typing over a shared screen.
    """
    entries = value.split(",") if isinstance(value, str) else value
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise ValueError("must be text (keys separated by commas) or a list of text")
    keys = [e.strip() for e in entries]
    if keys == [""]:
        return ""  # no key: the server stays on loopback
    for number, key in enumerate(keys, 1):
        which = f"key {number} of {len(keys)}"
        if not key:
            raise ValueError(f"{which} is empty (separate keys with single commas; an empty value means no key)")
        if "," in key or not key.isascii() or not key.isprintable() or any(c.isspace() for c in key):
            raise ValueError(f"{which} has a space, comma or character a Bearer header cannot carry")
        if len(key) < API_KEY_MIN_LENGTH:
            raise ValueError(f"{which} is shorter than {API_KEY_MIN_LENGTH} characters: too easy to guess")
    return ",".join(keys)


def parse_rate_limit(text: str) -> list[Any]:
    """The limits package's items for ``rate_limit``; ValueError in words when it cannot be."""
    from limits import parse_many  # imported only when a rate limit other than the default is set, or served

    try:
        items = parse_many(text)
    except ValueError:
        raise ValueError(
            f"cannot read {text!r} as a rate limit: write e.g. 60/minute, 10 per second, or several joined by ';' "
            "like 5/second;1000/day"
        ) from None
    if any(item.amount < 1 for item in items):
        raise ValueError(f"{text!r} allows no request at all: each limit needs at least 1")
    return items


_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"  # one part of a host name (RFC 1123)
HOST_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?")


def is_host(text: str) -> bool:
    """An IP address (IPv6 bare or in brackets, as in a URL) or a host name."""
    host = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(HOST_NAME.fullmatch(host))
    return True


def _host_and_port(address: str) -> tuple[str | None, int | None]:
    """``address``'s host and port (None where absent), for a URL or HOST:PORT; ValueError in words."""
    try:
        parts = urlsplit(address if "://" in address else f"//{address}")
    except ValueError:  # e.g. an IPv6 address whose [ is not closed
        raise ValueError(f"{address!r} cannot be read as an address") from None
    try:
        port = parts.port
    except ValueError:  # not a number, or above 65535
        port = 0
    if port == 0:
        raise ValueError(f"{address!r} has a port that is not a number from 1 to 65535")
    return parts.hostname, port


def check_backend_url(text: str) -> str:
    """A ttag server's URL (``backend``, ``--backend``): http or https, a host, and a port from 1 to 65535 if one is
    given; empty (no server) passes. Checked when set, so a typo is refused at once, not at the first job."""
    if not text:
        return text
    example = "write one like http://localhost:8000"
    if not text.startswith(("http://", "https://")):
        raise ValueError(f"{text!r} is not an http:// or https:// URL: {example}")
    try:
        host, _ = _host_and_port(text)
    except ValueError as exc:
        raise ValueError(f"{exc}: {example}") from None
    if not host or not is_host(host):
        raise ValueError(f"{text!r} names no valid host: {example}")
    return text


def check_cluster_address(text: str) -> str:
    """A Ray cluster's head (``cluster``, ``--cluster``): HOST:PORT (port 1-65535), a URL such as ray://HOST:10001,
    or auto; empty (no cluster) passes."""
    if text in ("", "auto"):
        return text
    example = "write the head's address, e.g. gpu1:6379, ray://gpu1:10001 or auto"
    try:
        host, port = _host_and_port(text)
    except ValueError as exc:
        raise ValueError(f"{exc}: {example}") from None
    if port is None or (host is not None and not is_host(host)):
        raise ValueError(f"{text!r} is not HOST:PORT: {example}")
    return text


def check_cache_dir(text: str) -> None:
    """``cache_dir`` names a folder, or a path where one can be made (on the first pull). Checked when set, not when
    the config is read: what is on disk changes, and a file that later moves into the way must not stop the config from
    loading (``ttag models`` says it then)."""
    path = Path(text).expanduser()
    if text and path.exists() and not path.is_dir():
        raise ValueError(f"{text} exists and is not a folder: give a folder for downloaded weights")


def _parse_value(key: str, value: Any) -> Any:
    """Check (and, for text from the command line or environment, convert) one value; ValueError says why."""
    if key in TABLES:
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise ValueError("must be a table of text values")
        return dict(value)
    if "range" in _FIELDS[key].metadata:
        return _number(key, value)
    if key == "api_keys":
        return _api_keys(value)
    if not isinstance(value, str):
        raise ValueError(f"must be text (got {value!r})")
    if key == "rate_limit" and value != _FIELDS[key].default:  # the default is good; limits costs ~0.1 s to import
        parse_rate_limit(value)
    if key == "backend":
        return check_backend_url(value)
    if key == "cluster":
        return check_cluster_address(value)
    choices = {"device": DEVICES, "dtype": DTYPES, "format": FORMATS, "musicgen_decoder": DECODERS}.get(key)
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
        changes: dict[str, Any] = {table: updated}
        config = replace(config, **changes)
    elif key in _FIELDS and key not in TABLES:
        try:
            value = _parse_value(key, raw)
            if key == "cache_dir":
                check_cache_dir(value)
            config = replace(config, **{key: value})
        except ValueError as exc:
            raise ConfigError(path, str(exc), key=key) from None
    else:
        hint = f" (use {key}.NAME)" if key in TABLES else f" (known: {', '.join(_FIELDS)})"
        raise ConfigError(path, f"unknown setting{hint}", key=key)
    save(config, path)
    return config
