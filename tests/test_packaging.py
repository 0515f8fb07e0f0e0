"""How ttag is packaged: every package in the wheel's list, the shipped themes found as package data, the install hint
that fits the way ttag was installed, and workers in another interpreter that see only ttag's ``runners`` package.

The wheel itself is built, installed in a fresh venv and run in ``tests/test_wheel.py``.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shlex
import shutil
import subprocess
import sys
import textwrap
import tomllib
import venv
from pathlib import Path

import pytest

import runners
from runners.registry import DISTRIBUTION, ModelSpec, install_hint, probe_availability
from tests.worker_probe import PROBE_RUNNER, site_packages, stub_torch
from ttag_tui import runner_envs
from ttag_tui.themes import SHIPPED_THEMES_DIR, load_themes

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

# Run by the "main" interpreter: one job of the probe model through the real Bridge; prints what the worker saw.
PROBE_JOB = textwrap.dedent(
    """
    import json, sys
    sys.path[:0] = json.loads(sys.argv[2])  # where this process finds ttag (a fake site-packages, the clone)
    from runners.registry import ModelSpec, Registry
    from runners.request import validate_request
    from ttag_tui.bridge import Bridge, BridgeSettings

    module = sys.argv[3]
    spec = ModelSpec(
        id="probe", runner=module + ":ProbeRunner", kind="music", description="probe", sample_rate=8000, channels=1,
        min_duration=0.01, max_duration=1.0, default_duration=0.01,
    )
    registry = Registry([spec])
    settings = BridgeSettings(interpreters={module: sys.argv[1]} if sys.argv[1] else {})
    with Bridge(registry, settings) as bridge:
        clips = bridge.submit(validate_request({"prompt": "x", "model": "probe"}, registry)).result(120)
    print(json.dumps(clips[0].metadata["probe"]))
    """
)


def run_probe_job(main_python: str, worker_python: str, module: str, path: list[str], env: dict[str, str]) -> dict:
    done = subprocess.run(
        [main_python, "-c", PROBE_JOB, worker_python, json.dumps(path), module],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the package list ------------------------------------------------------------------------------------------------
def test_every_package_folder_is_in_the_wheel_list():
    """The list is explicit (themes/ is mapped to ttag_themes): a new package folder must be added to it."""
    folders = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("ttag_tui", "runners")
        for init in (ROOT / top).rglob("__init__.py")
    }
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    assert folders | {"ttag_themes"} == listed, f"missing from pyproject.toml: {sorted(folders - listed)}"
    assert PYPROJECT["tool"]["setuptools"]["package-dir"] == {"ttag_themes": "themes"}


def test_the_shipped_themes_are_the_top_level_themes_folder():
    assert SHIPPED_THEMES_DIR.samefile(ROOT / "themes")  # an editable install maps ttag_themes to the folder
    shipped = {path.stem for path in (ROOT / "themes").glob("*.toml")}
    themes, problems = load_themes([SHIPPED_THEMES_DIR])
    assert not problems and {theme.name for theme in themes} == shipped and len(shipped) >= 3


def test_the_licence_file_and_the_distribution_name_match_the_metadata():
    assert PYPROJECT["project"]["name"] == DISTRIBUTION == "ttag-studio"  # "ttag" on the index is another project
    assert PYPROJECT["project"]["scripts"] == {"ttag": "ttag_tui.cli:main"}
    assert PYPROJECT["project"]["license"] == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "the ttag authors" in text


# -- the install hint ------------------------------------------------------------------------------------------------
class FakeDistribution:
    def __init__(self, direct_url: dict | None) -> None:
        self.direct_url = direct_url

    def read_text(self, name: str) -> str | None:
        return json.dumps(self.direct_url) if name == "direct_url.json" and self.direct_url else None


def installed_as(monkeypatch, *direct_urls: dict | None, prefix: str = "/opt/venv") -> None:
    """ttag-studio's metadata as found on the path: one copy per direct_url.json (None: a copy without one)."""

    def distributions(name: str) -> list[FakeDistribution]:
        return [FakeDistribution(url) for url in direct_urls] if name == DISTRIBUTION else []

    monkeypatch.setattr(importlib.metadata, "distributions", distributions)
    monkeypatch.setattr(sys, "prefix", prefix)


PIP = f"{shlex.quote(sys.executable)} -m pip"  # the pip of the Python running ttag


def test_install_hint_for_an_editable_clone_names_the_clone(monkeypatch):
    editable = {"url": ROOT.as_uri(), "dir_info": {"editable": True}}
    installed_as(monkeypatch, editable)
    assert install_hint("musicgen") == f"{PIP} install -e '{ROOT}[musicgen]'"
    installed_as(monkeypatch, None, editable)  # run from the clone's folder: its egg-info comes first
    assert install_hint("musicgen") == f"{PIP} install -e '{ROOT}[musicgen]'"


def test_install_hint_for_a_wheel_and_for_pipx(monkeypatch):
    installed_as(monkeypatch, None)
    assert install_hint("diffusion") == f"{PIP} install 'ttag-studio[diffusion]'"
    installed_as(monkeypatch, {"url": "file:///tmp/ttag_studio-0.1.0-py3-none-any.whl", "archive_info": {}})
    assert install_hint("musicgen") == f"{PIP} install 'ttag-studio[musicgen]'"
    installed_as(monkeypatch, None, prefix="/home/me/.local/share/pipx/venvs/ttag-studio")
    assert install_hint("musicgen") == "pipx install --force 'ttag-studio[musicgen]'"


def test_install_hint_for_a_clone_run_from_source(monkeypatch):
    installed_as(monkeypatch)  # no metadata at all: the clone is on PYTHONPATH
    assert install_hint("musicgen") == f"{PIP} install -e '{ROOT}[musicgen]'"


def test_a_missing_package_is_reported_with_the_install_hint(monkeypatch):
    installed_as(monkeypatch, None)
    spec = ModelSpec(
        id="needs-it",
        runner="runners.musicgen.runner:MusicGenRunner",
        kind="music",
        description="",
        sample_rate=8000,
        channels=1,
        min_duration=1,
        max_duration=2,
        default_duration=1,
        requires=("ttag_no_such_module",),
    )
    reason = probe_availability(spec).reason
    assert reason == f"missing Python packages: ttag_no_such_module ({PIP} install 'ttag-studio[musicgen]')"


# -- workers in another interpreter ----------------------------------------------------------------------------------
def test_the_worker_path_holds_only_the_runners_package_ttag_runs():
    folder = runner_envs.worker_path_dir()
    assert [p.name for p in folder.iterdir()] == ["runners"]
    assert (folder / "runners").resolve() == Path(runners.__file__).resolve().parent
    assert runner_envs.worker_path_dir() == folder  # the same folder next time, link untouched


def test_a_stale_worker_path_is_pointed_at_this_runners_package(tmp_path):
    folder = runner_envs.worker_path_dir()
    (folder / "runners").unlink()
    (folder / "runners").symlink_to(tmp_path, target_is_directory=True)  # e.g. a clone that moved
    assert runner_envs.worker_path_dir() == folder
    assert (folder / "runners").resolve() == Path(runners.__file__).resolve().parent


@pytest.fixture(scope="module")
def other_env(tmp_path_factory) -> Path:
    """A venv standing for a runner's own environment: its own (stub) torch and the probe runner; numpy and soundfile
    come from this environment through a .pth line placed after its own site-packages."""
    prefix = tmp_path_factory.mktemp("other-env")
    venv.create(prefix, with_pip=False)
    site = site_packages(prefix)
    stub_torch(site, "the runner's environment")
    (site / "ttag_probe_runner.py").write_text(PROBE_RUNNER)
    here = Path(importlib.metadata.distribution("numpy").locate_file("")).resolve()
    (site / "zz-main-env.pth").write_text(f"{here}\n")
    return prefix


def test_a_worker_in_another_interpreter_imports_its_own_torch_not_the_main_environments(tmp_path, other_env):
    """Like a wheel install: ttag's packages sit in a site-packages that also holds a torch. The runner env's worker
    must find its own torch; putting the folder that holds `runners` on its path would give it the main one."""
    main_site = tmp_path / "main-site-packages"
    shutil.copytree(ROOT / "runners", main_site / "runners", ignore=shutil.ignore_patterns("__pycache__"))
    stub_torch(main_site, "the main environment")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    other_python = str(other_env / "bin" / "python")
    seen = run_probe_job(sys.executable, other_python, "ttag_probe_runner", [str(main_site), str(ROOT)], env)
    assert seen["executable"] == other_python
    assert Path(seen["torch"]).is_relative_to(other_env)
    assert Path(seen["runners"]).resolve().is_relative_to(main_site)  # ttag's runner code: the one the app runs
    [worker_path] = seen["pythonpath"].split(os.pathsep)  # one folder, and it holds only `runners`
    assert [p.name for p in Path(worker_path).iterdir()] == ["runners"]
    assert (Path(worker_path) / "runners").resolve() == (main_site / "runners").resolve()


def test_a_worker_in_this_interpreter_gets_no_path_of_ttags(tmp_path):
    (tmp_path / "ttag_probe_runner.py").write_text(PROBE_RUNNER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    seen = run_probe_job(sys.executable, "", "ttag_probe_runner", [], env)
    assert seen["executable"] == sys.executable
    assert seen["pythonpath"] == env["PYTHONPATH"]  # what the app had, nothing added
