"""Runner environments: virtual environments that ttag builds for runners that cannot live in the main one.

audiocraft 1.3.0 pins torch 2.1, xformers < 0.0.23 and av 11, none of which coexist with current transformers and
diffusers. So its runner gets its own venv under ``data_dir()/envs/<runner>``, built from a :class:`Recipe` kept here as
data: install steps of pinned requirement lines plus a constraints file. The bridge starts that runner's worker with the
venv's python (see :func:`managed_interpreters`); the worker reaches ``runners.*`` through PYTHONPATH set to
:func:`worker_path_dir`, a folder holding only that package, so the venv needs numpy and soundfile but not ttag itself,
and never sees the main environment's torch or transformers (for a wheel install, ``runners`` sits in site-packages).

``setup`` is idempotent and resumable: after each step it records the step's hash (which chains the hashes of the
steps before it) in ``ttag-env.json``, so a rerun skips finished steps, an interrupted build continues where it
stopped, and a changed recipe reinstalls from the first changed step on. ``status`` reports every managed env: present,
complete for the current recipe, healthy (the env's python imports its core packages), versions and size on disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import runners
from runners.registry import Availability, ModelSpec, human_size, probe_availability
from ttag_tui.config import Config
from ttag_tui.paths import data_dir

STATE_FILE = "ttag-env.json"
LOG_FILE = "setup.log"


@dataclass(frozen=True)
class Step:
    """One ``pip install`` of the recipe. ``no_deps`` installs packages without their (conflicting) pins."""

    name: str
    requirements: tuple[str, ...]
    no_deps: bool = False


@dataclass(frozen=True)
class Recipe:
    """How to build one runner's environment. Its hash (with the Python version) names a finished build."""

    runner: str
    steps: tuple[Step, ...]
    constraints: tuple[str, ...]  # written to constraints.txt and passed to every step
    probe_imports: tuple[str, ...]  # imported by the health check (keep them fast: no `import audiocraft`)
    probe_modules: tuple[str, ...]  # only looked up (find_spec): heavy imports that must be present
    packages: tuple[str, ...]  # distributions whose versions `ttag runners status` shows
    approx_size: str = ""

    def step_hashes(self) -> list[str]:
        """Each step's hash, chained with the constraints and every earlier step, so an edit reruns what follows."""
        digest = hashlib.sha256(json.dumps([self.runner, _python_tag(), self.constraints]).encode())
        hashes = []
        for step in self.steps:
            digest.update(json.dumps(asdict(step), sort_keys=True).encode())
            hashes.append(digest.copy().hexdigest()[:16])
        return hashes

    def hash(self) -> str:
        return self.step_hashes()[-1]


def _python_tag() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


# Every package of a good build (`pip freeze`, less audiocraft and xformers), passed as constraints: rebuilds get the
# same set. Regenerate it from a fresh build when a pin changes.
_AUDIOCRAFT_LOCK_TEXT = """
annotated-doc==0.0.7 annotated-types==0.8.0 antlr4-python3-runtime==4.9.3 anyio==4.16.0 audioread==3.1.0 av==18.1.0
blis==1.3.4 catalogue==2.0.10 certifi==2026.10.19.post1 cffi==2.1.1 charset-normalizer==3.5.3 click==8.5.1
cloudpathlib==0.26.0 cloudpickle==3.1.3 colorlog==6.12.0 confection==1.3.4 cymem==2.0.16 decorator==5.3.1
docopt==0.6.2 dora_search==0.1.13 einops==0.8.2 filelock==4.3.1 flashy==0.0.2 fsspec==2026.9.0 h11==0.16.0
hf-xet==1.8.0 httpcore==1.0.9 httpcore2==2.16.2 httpx==0.28.1 httpx2==2.16.2 huggingface_hub==2.4.0
hydra-core==1.3.8 idna==3.20 Jinja2==3.1.6 joblib==1.6.0 julius==0.2.8 lazy-loader==0.6 librosa==0.11.0
lightning-utilities==0.15.3 llvmlite==0.50.0 markdown-it-py==4.3.0 MarkupSafe==3.0.4 mdurl==0.1.2 mpmath==1.3.0
msgpack==1.2.4 murmurhash==1.0.16 narwhals==2.29.0 networkx==3.6.1 num2words==0.5.14 numba==0.68.1 numpy==2.4.6
nvidia-cublas-cu12==12.8.4.1 nvidia-cuda-cupti-cu12==12.8.90 nvidia-cuda-nvrtc-cu12==12.8.93
nvidia-cuda-runtime-cu12==12.8.90 nvidia-cudnn-cu12==9.10.2.21 nvidia-cufft-cu12==11.3.3.83
nvidia-cufile-cu12==1.13.1.3 nvidia-curand-cu12==10.3.9.90 nvidia-cusolver-cu12==11.7.3.90
nvidia-cusparse-cu12==12.5.8.93 nvidia-cusparselt-cu12==0.7.1 nvidia-nccl-cu12==2.27.5
nvidia-nvjitlink-cu12==12.8.93 nvidia-nvshmem-cu12==3.3.20 nvidia-nvtx-cu12==12.8.90 omegaconf==2.3.1
packaging==26.4 platformdirs==4.14.8 pooch==1.9.0 preshed==3.0.15 pycparser==3.12 pydantic==2.14.4
pydantic_core==2.50.5 Pygments==2.21.0 PyYAML==6.0.4 regex==2026.11.19 requests==2.34.2 retrying==1.4.2 rich==15.0.0
safetensors==0.8.0 scikit-learn==1.9.1 scipy==1.17.1 sentencepiece==0.2.3 shellingham==1.5.4 smart_open==9.0.2
soundfile==0.14.0 soxr==1.1.0 spacy==3.8.18 spacy-legacy==3.0.12 spacy-loggers==1.0.5 srsly==2.5.6 submitit==1.5.4
sympy==1.14.0 thinc==8.3.14 threadpoolctl==3.8.0 tokenizers==0.23.3 torch==2.9.1 torchaudio==2.9.1
torchmetrics==1.9.0 tqdm==4.70.1 transformers==5.24.0 treetable==0.2.6 triton==3.5.1 truststore==0.10.5
typer==0.29.2 typing-inspection==0.4.5 typing_extensions==4.16.0 urllib3==2.8.0 wasabi==1.1.3 weasel==1.0.1
wrapt==2.5.2
"""
AUDIOCRAFT_LOCK = tuple(_AUDIOCRAFT_LOCK_TEXT.split())

# audiocraft 1.3.0 with a modern torch. The combination (and why each pin) is recorded in shared/notes/audiocraft.md:
# torch 2.9.1 is the newest torch with a matching xformers wheel (0.0.33.post2) and a torchaudio that imports on CPU.
# audiocraft and xformers go in without dependencies (their pins are what breaks); then what audiocraft's inference
# path imports, with torch held by the constraints. PyPI's torch 2.9.1 is the CUDA build: it runs fine on CPU.
AUDIOCRAFT = Recipe(
    runner="audiocraft",
    steps=(
        Step("torch", ("torch==2.9.1", "torchaudio==2.9.1")),
        Step("audiocraft", ("audiocraft==1.3.0", "xformers==0.0.33.post2"), no_deps=True),
        Step(
            "dependencies",
            (
                "numpy==2.4.6",
                "soundfile==0.14.0",
                "einops==0.8.2",
                "flashy==0.0.2",
                "hydra-core==1.3.8",
                "omegaconf==2.3.1",
                "julius==0.2.8",
                "num2words==0.5.14",
                "sentencepiece==0.2.3",
                "transformers==5.24.0",
                "huggingface_hub==2.4.0",
                "av==18.1.0",
                "librosa==0.11.0",
                "spacy==3.8.18",
                "torchmetrics==1.9.0",
            ),
        ),
    ),
    constraints=AUDIOCRAFT_LOCK,
    probe_imports=("numpy", "soundfile", "torch", "torchaudio"),
    probe_modules=("audiocraft", "xformers", "spacy", "transformers", "av", "librosa", "julius", "flashy"),
    packages=("audiocraft", "torch", "torchaudio", "xformers", "transformers", "numpy", "spacy", "av"),
    approx_size="about 8 GB (CUDA builds of torch, which also run on CPU)",
)

RECIPES: dict[str, Recipe] = {AUDIOCRAFT.runner: AUDIOCRAFT}


class EnvError(Exception):
    """A setup that cannot go on; the message says why and what to try (printed as one line by the CLI)."""


# -- where -----------------------------------------------------------------------------------------------------------
def env_dir(runner: str) -> Path:
    return data_dir() / "envs" / runner


def env_python(runner: str) -> Path:
    bindir = "Scripts" if os.name == "nt" else "bin"
    return env_dir(runner) / bindir / ("python.exe" if os.name == "nt" else "python")


def worker_path_dir() -> Path:
    """A folder holding only the ``runners`` package ttag runs from: the PYTHONPATH of a worker in another interpreter.

    The folder that really holds ``runners`` is site-packages for a wheel install (and the clone, with its tests, for an
    editable one); on PYTHONPATH it would put the main environment's torch ahead of the runner venv's own. The package
    is linked, so an edited clone is seen at once; where links are not allowed it is copied, refreshed each time.
    """
    source = Path(runners.__file__).resolve().parent
    folder = data_dir() / "envs" / ".worker-path" / hashlib.sha256(str(source).encode()).hexdigest()[:16]
    link = folder / "runners"
    if link.is_symlink() and Path(os.readlink(link)) == source:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    staged = folder / f".runners-{os.getpid()}-{threading.get_ident()}"
    try:
        staged.symlink_to(source, target_is_directory=True)
        staged.replace(link)  # atomic: a worker starting meanwhile sees the old link or the new one
    except OSError:
        staged.unlink(missing_ok=True)
        if link.is_symlink():
            link.unlink()
        shutil.copytree(source, link, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def setup_command(runner: str) -> str:
    return f"ttag runners setup {runner}"


def _read_state(runner: str) -> dict[str, Any]:
    try:
        return json.loads((env_dir(runner) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _write_state(runner: str, state: dict[str, Any]) -> None:
    path = env_dir(runner) / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    tmp.replace(path)


# -- the hook the bridge, CLI, TUI and server use ---------------------------------------------------------------------
def managed_interpreter(runner: str) -> str | None:
    """The python of ``runner``'s managed env once a setup finished (any recipe version), else None.

    A half-built env is not used: the runner then runs in the main environment, where it says which command fixes it.
    """
    python = env_python(runner)
    if runner in RECIPES and python.exists() and _read_state(runner).get("recipe_hash"):
        return str(python)
    return None


def managed_interpreters() -> dict[str, str]:
    """runner name → python of every finished managed env."""
    return {name: python for name in RECIPES if (python := managed_interpreter(name))}


# numpy loads OpenBLAS, which starts a thread pool as it is imported (a thread for each further core): ~65 ms of CPU on
# a 2-core machine, and threads that spin beside the work. A process that calls no BLAS routine gets one thread: the
# `ttag generate` CLI (it only converts and writes audio) and the workers of these runners (numpy's ufuncs and FFTs
# only). Torch runners are left alone: their BLAS may be an OpenBLAS that this variable would pin to one thread.
SINGLE_THREAD_BLAS = {"OPENBLAS_NUM_THREADS": "1"}
NO_BLAS_RUNNERS = frozenset({"synth"})


def worker_variables(runner: str) -> dict[str, str]:
    """The environment variables ttag sets for ``runner``'s worker process, except any the user has set."""
    wanted = SINGLE_THREAD_BLAS if runner in NO_BLAS_RUNNERS else {}
    return {name: value for name, value in wanted.items() if name not in os.environ}


def availability(spec: ModelSpec, config: Config) -> Availability:
    """Can this model run here, with this config's interpreters and cache? (imports nothing heavy)"""
    return probe_availability(
        spec, interpreter=interpreter_for(config.interpreters, spec.runner_name), cache_dir=config.cache_dir or None
    )


def interpreter_for(configured: Mapping[str, str], runner: str) -> str | None:
    """The python to run ``runner`` with: the configured one (``interpreters.NAME``), else its managed env's."""
    return configured.get(runner) or managed_interpreter(runner)


# -- setup -----------------------------------------------------------------------------------------------------------
Say = Callable[[str], None]


def _pip_env() -> dict[str, str]:
    """The environment for pip and probes in the runner env: nothing leaks in from the main venv or ~/.local."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}}
    env.update(PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return env


def setup(runner: str, *, force: bool = False, say: Say | None = None, show_progress: bool = True) -> EnvStatus:
    """Build (or finish, or update) ``runner``'s env; a no-op when it is complete for the current recipe and healthy."""
    recipe = RECIPES.get(runner)
    if recipe is None:
        raise EnvError(f"no managed environment for {runner!r} (known: {', '.join(RECIPES)})")
    say = say or (lambda text: print(text, file=sys.stderr))
    root = env_dir(runner)
    if force and root.exists():
        say(f"removing {root}")
        shutil.rmtree(root)
    python = env_python(runner)
    state = _read_state(runner) if python.exists() else {}
    hashes = recipe.step_hashes()
    if state.get("recipe_hash") == recipe.hash() and state.get("steps", {}).get(recipe.steps[-1].name) == hashes[-1]:
        current = status(runner)
        if current.healthy:
            say(f"{runner}: environment up to date ({root})")
            return current
        say(f"{runner}: environment unhealthy ({current.problem}); reinstalling its packages")
        state = {}

    started = time.monotonic()
    if not python.exists():
        say(f"{runner}: creating a virtual environment in {root} ({recipe.approx_size} when done)")
        root.mkdir(parents=True, exist_ok=True)
        _run([sys.executable, "-m", "venv", str(root)], root / LOG_FILE, f"{runner}: venv", show_progress)
    state = {"runner": runner, "python": _python_tag(), "steps": dict(state.get("steps", {}))}
    _write_state(runner, state)
    constraints = root / "constraints.txt"
    constraints.write_text("\n".join(recipe.constraints) + "\n")

    for index, (step, step_hash) in enumerate(zip(recipe.steps, hashes, strict=True), start=1):
        label = f"{runner} [{index}/{len(recipe.steps)}] {step.name}"
        if state["steps"].get(step.name) == step_hash:
            say(f"{label}: already installed")
            continue
        command = [str(python), "-m", "pip", "install", "--progress-bar", "off", "-c", str(constraints)]
        command += ["--no-deps"] if step.no_deps else []
        say(f"{label}: pip install {' '.join(step.requirements)}")
        _run([*command, *step.requirements], root / LOG_FILE, label, show_progress)
        state["steps"][step.name] = step_hash
        state["steps"] = {s.name: state["steps"][s.name] for s in recipe.steps[:index]}  # later steps must rerun
        _write_state(runner, state)

    result = status(runner)
    if not result.healthy:
        raise EnvError(
            f"{runner}: built, but the health check failed: {result.problem} (log: {root / LOG_FILE}; "
            f"`{setup_command(runner)} --force` rebuilds it)"
        )
    state.update(
        recipe_hash=recipe.hash(),
        built_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        build_s=round(time.monotonic() - started, 1),
    )
    _write_state(runner, state)
    say(f"{runner}: ready in {time.monotonic() - started:.0f} s ({human_size(result.size_bytes)}, {root})")
    return status(runner)


def _run(command: list[str], log: Path, label: str, show_progress: bool) -> None:
    """Run one build command; its output goes to the log, its last line to a rich status line on stderr."""
    from rich.console import Console

    console = Console(stderr=True)
    with log.open("a") as log_file:
        log_file.write(f"\n$ {' '.join(command)}\n")
        log_file.flush()
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_pip_env(), bufsize=1
        )
        assert process.stdout is not None
        tail: list[str] = []
        started = time.monotonic()
        with console.status(label, spinner="dots") if show_progress else _nothing() as status_line:
            for line in process.stdout:
                log_file.write(line)
                line = line.strip()
                if not line:
                    continue
                tail = [*tail[-19:], line]
                if status_line is not None:
                    status_line.update(f"{label} ({time.monotonic() - started:.0f} s): {line[:100]}")
        code = process.wait()
    if code != 0:
        shown = "\n".join(tail[-8:])
        raise EnvError(
            f"{label} failed (exit {code}); the end of its output:\n{shown}\nfull log: {log}. Running the "
            "same setup command again resumes from this step."
        )


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


# -- status ----------------------------------------------------------------------------------------------------------
@dataclass
class EnvStatus:
    runner: str
    path: str
    present: bool = False  # the env's python exists
    complete: bool = False  # a setup finished (some recipe)
    up_to_date: bool = False  # ... and for the current recipe
    healthy: bool = False  # the health probe ran and imported everything
    problem: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    size_bytes: int = 0
    recipe_hash: str = ""
    built_recipe_hash: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PROBE = """\
import importlib, importlib.metadata as md, importlib.util, json, sys
imports, modules, packages = json.loads(sys.argv[1])
for name in imports:
    importlib.import_module(name)
missing = [m for m in modules if importlib.util.find_spec(m) is None]
versions = {}
for name in packages:
    try:
        versions[name] = md.version(name)
    except md.PackageNotFoundError:
        pass
print(json.dumps({"missing": missing, "versions": versions}))
"""


def probe(python: Path, recipe: Recipe, timeout_s: float = 120.0) -> tuple[list[str], dict[str, str]]:
    """Run the health probe in the env: (modules that are missing, package versions); raises EnvError if it fails."""
    args = json.dumps([recipe.probe_imports, recipe.probe_modules, recipe.packages])
    try:
        done = subprocess.run(
            [str(python), "-c", PROBE, args], capture_output=True, text=True, timeout=timeout_s, env=_pip_env()
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvError(f"cannot run {python}: {exc}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise EnvError(f"the health check failed: {last}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["missing"], result["versions"]


def status(runner: str, *, check_health: bool = True) -> EnvStatus:
    recipe = RECIPES[runner]
    root, python = env_dir(runner), env_python(runner)
    state = _read_state(runner)
    result = EnvStatus(
        runner,
        str(root),
        present=python.exists(),
        recipe_hash=recipe.hash(),
        built_recipe_hash=state.get("recipe_hash", ""),
    )
    result.complete = result.present and bool(result.built_recipe_hash)
    result.up_to_date = result.complete and result.built_recipe_hash == recipe.hash()
    result.size_bytes = _dir_size(root) if root.exists() else 0
    if not result.present:
        result.problem = f"not set up: run `{setup_command(runner)}`"
        return result
    if not result.complete:
        result.problem = f"setup did not finish: run `{setup_command(runner)}` to resume it"
    if check_health:
        try:
            missing, result.versions = probe(python, recipe)
        except EnvError as exc:
            result.problem = result.problem or f"{exc}: `{setup_command(runner)} --force` rebuilds it"
            return result
        if missing:
            result.problem = result.problem or f"missing {', '.join(missing)}: run `{setup_command(runner)}`"
        result.healthy = not missing
    if result.complete and not result.up_to_date and not result.problem:
        result.problem = f"built from an older recipe: `{setup_command(runner)}` updates it"
    return result


def statuses(*, check_health: bool = True) -> list[EnvStatus]:
    return [status(name, check_health=check_health) for name in RECIPES]


def _dir_size(root: Path) -> int:
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):  # a file removed while we walk
                total += os.lstat(os.path.join(folder, name)).st_size
    return total
