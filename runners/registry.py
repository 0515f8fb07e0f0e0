"""The model registry: every model ttag knows, what it needs, what it accepts.

Specs are plain data declared by each runner package (``runners/<name>/__init__.py`` exports ``MODELS``); reading
them never imports a machine-learning library. Availability is probed cheaply: the runner's Python modules are looked
up (not imported) and the weights are looked for in the Hugging Face cache.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shlex
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

DISTRIBUTION = "ttag-studio"  # ttag's name on the package index ("ttag" there is another project)
# Runner packages whose MODELS are part of ttag. Each is imported only to read its specs.
RUNNER_PACKAGES = ("runners.synth", "runners.musicgen", "runners.audiocraft", "runners.diffusion")

ParamType = Literal["int", "float", "str", "audio"]  # audio: the path of a readable audio file


@dataclass(frozen=True)
class ParamSpec:
    """One generation parameter a model accepts, with its default and allowed range."""

    name: str
    type: ParamType
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    help: str = ""


ModelKind = Literal["music", "sound effects", "music and sound"]


@dataclass(frozen=True)
class ModelSpec:
    id: str
    runner: str  # "package.module:Class", imported in the worker only
    kind: ModelKind
    description: str
    sample_rate: int
    channels: int
    min_duration: float
    max_duration: float
    default_duration: float
    params: tuple[ParamSpec, ...] = ()
    hub_repo: str | None = None
    revision: str | None = None
    size_bytes: int = 0
    licence: str = ""
    requires: tuple[str, ...] = ()  # importable modules the worker needs
    understands: str = ""  # free text for list-models (e.g. synth's vocabulary)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def runner_name(self) -> str:
        """The runner's short name: ``runners.musicgen.runner:MusicGenRunner`` → ``musicgen``."""
        parts = self.runner.split(":", 1)[0].split(".")
        return parts[1] if parts[0] == "runners" and len(parts) > 1 else parts[-1]

    def param(self, name: str) -> ParamSpec | None:
        return next((p for p in self.params if p.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "runner": self.runner,
            "kind": self.kind,
            "description": self.description,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "min_duration": self.min_duration,
            "max_duration": self.max_duration,
            "default_duration": self.default_duration,
            "params": [p.__dict__ for p in self.params],
            "hub_repo": self.hub_repo,
            "revision": self.revision,
            "size_bytes": self.size_bytes,
            "licence": self.licence,
            "requires": list(self.requires),
            "understands": self.understands,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        data = dict(data)
        data["params"] = tuple(ParamSpec(**p) for p in data.get("params", ()))
        data["requires"] = tuple(data.get("requires", ()))
        return cls(**data)


@dataclass(frozen=True)
class Availability:
    runnable: bool  # dependencies importable in the worker's environment
    weights_cached: bool | None  # None: the model needs no weights
    reason: str = ""  # what to do about it, when not runnable

    @property
    def available(self) -> bool:
        return self.runnable and self.weights_cached is not False

    def refusal(self, spec: ModelSpec) -> str:
        """The one line that turns a job away before any worker starts (with the download's size when the weights
        are what is missing): the CLI and the TUI say the same."""
        size = f" (a {human_size(spec.size_bytes)} download)" if self.runnable and spec.size_bytes else ""
        return f"{spec.id} cannot run here: {self.reason}{size}"


class Registry:
    """An ordered id → ModelSpec map. Tests build their own; the app uses :func:`default_registry`."""

    def __init__(self, specs: Iterable[ModelSpec] = ()) -> None:
        self._specs: dict[str, ModelSpec] = {}
        for spec in specs:
            self.add(spec)

    def add(self, spec: ModelSpec) -> None:
        if spec.id in self._specs:
            raise ValueError(f"model {spec.id!r} registered twice")
        self._specs[spec.id] = spec

    def get(self, model_id: str) -> ModelSpec | None:
        return self._specs.get(model_id)

    def __getitem__(self, model_id: str) -> ModelSpec:
        """The spec of a model known to be registered (a validated request's); KeyError otherwise."""
        return self._specs[model_id]

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._specs

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def param_names(self) -> list[str]:
        """Every parameter some model declares, in the order they are first declared: what a request may carry
        besides its common fields, and what the CLI, the TUI, the API schema and the web page offer."""
        return list(dict.fromkeys(p.name for spec in self._specs.values() for p in spec.params))

    def params_named(self, name: str) -> list[ParamSpec]:
        return [p for spec in self._specs.values() for p in spec.params if p.name == name]

    def ids(self) -> list[str]:
        return list(self._specs)


def default_registry() -> Registry:
    specs: list[ModelSpec] = []
    for package in RUNNER_PACKAGES:
        specs.extend(importlib.import_module(package).MODELS)
    return Registry(specs)


def human_size(size: float) -> str:
    """Bytes in decimal units, one decimal from GB up (``2.4 GB``, ``650 MB``): the one way ttag prints a size."""
    for unit in ("B", "KB", "MB"):
        if round(size) < 1000:
            return f"{size:.0f} {unit}"
        size /= 1000
    return f"{size:.1f} GB" if round(size, 1) < 1000 else f"{size / 1000:.1f} TB"


# Bytes per weight of each dtype a runner loads in (config ``dtype``).
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


def estimated_footprint(spec: ModelSpec, device: str, dtype: str = "auto") -> int:
    """The bytes ``spec`` is expected to take once loaded, before a load has measured it: its weights' size on disk
    (``size_bytes``), rescaled from the dtype they are stored in (``extra["weights_dtype"]``, float32 unless the spec
    says otherwise) to the one they load in (``auto``: float16 on CUDA, else float32, as the torch runners pick)."""
    stored = DTYPE_BYTES.get(spec.extra.get("weights_dtype", "float32"), 4)
    loaded = dtype if dtype in DTYPE_BYTES else ("float16" if device == "cuda" else "float32")
    return spec.size_bytes * DTYPE_BYTES[loaded] // stored


def hub_cache_dir(cache_dir: str | None = None) -> Path:
    """Where huggingface_hub keeps downloads, honouring ttag's cache setting, HF_HUB_CACHE and HF_HOME."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    hf_home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface"
    )
    return Path(hf_home).expanduser() / "hub"


def weights_cached(spec: ModelSpec, cache_dir: str | None = None) -> bool | None:
    """True when a snapshot of the model is on disk (a local folder, or the hub cache's layout)."""
    if spec.hub_repo is None:
        return None
    local = Path(spec.hub_repo).expanduser()
    if local.is_dir():
        return True
    repo_dir = hub_cache_dir(cache_dir) / ("models--" + spec.hub_repo.replace("/", "--"))
    snapshots = repo_dir / "snapshots"
    return snapshots.is_dir() and any(snapshots.iterdir())


def _importable(module: str) -> bool:
    """Whether ``module`` can be found, without importing it (its parent packages are imported: keep them light)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package is missing
        return False


def install_hint(extra: str) -> str:
    """The command that installs an extra's packages, for the way ttag was installed here; every "how to fix" uses it.

    An editable install (or a clone run from source) gets ``pip install -e`` of the clone, wherever the user stands; a
    pipx install gets pipx's reinstall with the extra; anything else (a wheel) pip's install by distribution name.
    """
    import importlib.metadata  # here, not at the top: it costs start-up time and only a "how to fix" line needs it

    source = Path(__file__).resolve().parent.parent  # the folder that holds the `runners` package
    # Every copy of the metadata: a clone run from its folder also sees the egg-info an editable install left there.
    installs = [dist.read_text("direct_url.json") for dist in importlib.metadata.distributions(name=DISTRIBUTION)]
    if installs:
        editable = any(json.loads(url).get("dir_info", {}).get("editable", False) for url in installs if url)
    else:
        editable = (source / "pyproject.toml").is_file()  # not installed: a clone on PYTHONPATH
    pip = f"{shlex.quote(sys.executable)} -m pip"  # the pip of the Python running ttag, not whichever is on PATH
    if editable:
        return f"{pip} install -e {shlex.quote(f'{source}[{extra}]')}"
    if {"pipx", "venvs"} <= set(Path(sys.prefix).parts):  # pipx keeps each app in .../pipx/venvs/NAME
        return f"pipx install --force '{DISTRIBUTION}[{extra}]'"
    return f"{pip} install '{DISTRIBUTION}[{extra}]'"


def probe_availability(
    spec: ModelSpec, *, interpreter: str | None = None, cache_dir: str | None = None
) -> Availability:
    """Can this model run here? Checked without importing anything heavy.

    With a separate interpreter for the runner, only its existence is checked here; the worker itself reports
    missing modules when it starts.
    """
    cached = weights_cached(spec, cache_dir)
    if interpreter:
        if not Path(interpreter).exists():
            fix = f": run `{spec.extra['setup']}`" if spec.extra.get("setup") else ""
            return Availability(False, cached, f"runner environment missing: {interpreter} does not exist{fix}")
    else:
        runner_module = spec.runner.split(":", 1)[0]
        missing = [m for m in (*spec.requires, runner_module) if not _importable(m)]
        if missing:  # the fix only now: install_hint reads the package metadata, a cost a runnable model never pays
            fix = f"run `{spec.extra['setup']}`" if spec.extra.get("setup") else install_hint(spec.runner_name)
            return Availability(False, cached, f"missing Python packages: {', '.join(missing)} ({fix})")
    if cached is False:
        return Availability(True, False, f"weights not downloaded: ttag models pull {spec.id}")
    return Availability(True, cached)
