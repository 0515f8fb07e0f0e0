"""The wheel works like the editable install: built from the sources, installed with its dependencies in a fresh venv
(no torch), then ``ttag --help``, ``ttag generate``, ``ttag server``, the shipped themes, the install hints, and
``ttag runners setup`` plus a generation through the runner's own environment — all run from a folder that is not
the clone, with nothing of the clone on the path.

The runner environment is built from a small recipe (numpy, soundfile, a probe runner and a stub torch) instead of
audiocraft's 8 GB one; ``tests/test_audiocraft.py`` runs the real audiocraft environment when it is built.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import venv
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.live_server import free_port
from tests.worker_probe import PROBE_RUNNER, site_packages, stub_torch

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "ttag_tui", "runners", "themes")
TIMEOUT = 600  # building and installing on a busy 2-core machine


def clean_env() -> dict[str, str]:
    """This environment without the clone on the path: conftest puts it there for workers, and an editable install
    leaves an egg-info in it, which pip would take for ttag-studio being installed already."""
    return {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}}


class Installed:
    """A fresh venv with ttag's wheel in it, and a way to run its commands away from the clone."""

    def __init__(self, prefix: Path, wheel: Path, home: Path) -> None:
        self.prefix, self.wheel, self.home = prefix, wheel, home
        self.python = str(prefix / "bin" / "python")
        self.env = clean_env()
        self.env.update(
            TTAG_CONFIG_DIR=str(home / "config"), TTAG_DATA_DIR=str(home / "data"), TTAG_OUTPUT_DIR=str(home / "out")
        )

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args, capture_output=True, text=True, cwd=self.home, env=self.env, timeout=timeout, check=False
        )

    def ttag(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.prefix / "bin" / "ttag"), *args, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"  # a copy: building in the clone would leave build/ and *.egg-info behind
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", str(source), "-w", str(work / "dist")],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=clean_env(),
    )
    assert build.returncode == 0, build.stderr
    [wheel] = (work / "dist").glob("ttag_studio-*.whl")
    prefix = work / "venv"
    venv.create(prefix, with_pip=True)
    install = subprocess.run(
        [
            str(prefix / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-compile",  # byte-compiling all of numpy, scipy and textual is not what is tested (~10 s of CPU)
            "-c",
            str(ROOT / "constraints.txt"),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=clean_env(),
    )
    assert install.returncode == 0, install.stderr
    (work / "home").mkdir()
    return Installed(prefix, wheel, work / "home")


def test_the_wheel_holds_ttag_its_themes_and_licence_and_nothing_else(installed):
    names = zipfile.ZipFile(installed.wheel).namelist()
    assert {name.split("/")[0] for name in names} == {
        "ttag_tui",
        "runners",
        "ttag_themes",
        "ttag_studio-0.1.0.dist-info",
    }
    shipped = {f"ttag_themes/{path.name}" for path in (ROOT / "themes").glob("*.toml")}
    assert shipped <= set(names) and len(shipped) >= 3
    assert {"ttag_tui/app.tcss", "ttag_tui/help.md", "ttag_tui/web/index.html"} <= set(names)
    assert any(name.endswith("dist-info/licenses/LICENSE") for name in names)
    metadata = zipfile.ZipFile(installed.wheel).read("ttag_studio-0.1.0.dist-info/METADATA").decode()
    assert "Name: ttag-studio" in metadata and "License-Expression: MIT" in metadata


def test_help_generate_themes_and_install_hints(installed):
    assert installed.ttag("--help").returncode == 0
    made = installed.ttag("generate", "rain on a tin roof", "-d", "1", "--seed", "1", "-o", "takes")
    assert made.returncode == 0, made.stderr
    [take] = (installed.home / "takes").glob("*.wav")
    assert take.with_suffix(".json").is_file()

    code = "from ttag_tui.themes import SHIPPED_THEMES_DIR, load_themes; import json; themes, problems = load_themes()"
    code += "; print(json.dumps([str(SHIPPED_THEMES_DIR), sorted(t.name for t in themes), len(problems)]))"
    shown = installed.run(installed.python, "-c", code)
    folder, names, problems = json.loads(shown.stdout)
    assert Path(folder).is_relative_to(installed.prefix) and problems == 0
    assert set(names) >= {path.stem for path in (ROOT / "themes").glob("*.toml")}

    listed = installed.ttag("list-models", "--json")
    models = {m["id"]: m for m in json.loads(listed.stdout)}
    assert "pip install 'ttag-studio[musicgen]'" in models["musicgen-small"]["reason"]  # no torch in this venv


def test_the_server_answers_health(installed):
    port = free_port()
    server = subprocess.Popen(
        [str(installed.prefix / "bin" / "ttag"), "server", "--port", str(port)],
        cwd=installed.home,
        env=installed.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stderr.read()
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server never answered"
                time.sleep(0.2)
        assert health.status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=30)


SETUP_AND_GENERATE = """
import json, sys
from runners.registry import ModelSpec, Registry
from runners.request import validate_request
from ttag_tui import cli, runner_envs
from ttag_tui.bridge import Bridge, BridgeSettings
from ttag_tui.config import Config

runner_envs.RECIPES["tiny"] = runner_envs.Recipe(
    runner="tiny",
    steps=(runner_envs.Step("base", tuple(sys.argv[1].split())), runner_envs.Step("probe", (sys.argv[2],))),
    constraints=(),
    probe_imports=("numpy", "soundfile"),
    probe_modules=("tiny",),
    packages=("numpy",),
)
assert cli.main(["runners", "setup", "tiny"]) == 0
spec = ModelSpec(
    id="probe", runner="tiny:ProbeRunner", kind="music", description="probe", sample_rate=8000, channels=1,
    min_duration=0.01, max_duration=1.0, default_duration=0.01,
)
registry = Registry([spec])
with Bridge(registry, BridgeSettings.from_config(Config())) as bridge:
    clips = bridge.submit(validate_request({"prompt": "x", "model": "probe"}, registry)).result(120)
print(json.dumps(clips[0].metadata["probe"]))
"""


def probe_wheel(folder: Path) -> Path:
    """The runner environment's own code: the probe runner (module ``tiny``) and a stub torch."""
    path = folder / "tiny-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr("tiny.py", PROBE_RUNNER)
        whl.writestr("torch/__init__.py", "WHERE = 'the runner environment'\n")
        whl.writestr("tiny-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: tiny\nVersion: 1.0\n")
        whl.writestr("tiny-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        whl.writestr("tiny-1.0.dist-info/RECORD", "")
    return path


def test_runners_setup_then_a_generation_in_that_environment_sees_its_own_torch(installed, tmp_path):
    """`ttag runners setup` from the wheel builds the env; its worker imports the env's torch, not the one in the
    main environment's site-packages beside ttag's packages, and ttag's runner code from the wheel."""
    main_site = site_packages(installed.prefix)
    stub_torch(main_site, "the main environment")
    versions = installed.run(
        installed.python, "-c", "from importlib.metadata import version as v; print(v('numpy'), v('soundfile'))"
    ).stdout.split()
    pins = f"numpy=={versions[0]} soundfile=={versions[1]}"
    done = installed.run(installed.python, "-c", SETUP_AND_GENERATE, pins, str(probe_wheel(tmp_path)), timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    env_dir = installed.home / "data" / "envs" / "tiny"
    assert Path(seen["executable"]).is_relative_to(env_dir)
    assert Path(seen["torch"]).is_relative_to(env_dir)  # not main_site/torch
    assert Path(seen["runners"]).resolve().is_relative_to(main_site)  # ttag's runner code: the wheel's
    [worker_path] = seen["pythonpath"].split(os.pathsep)
    assert [p.name for p in Path(worker_path).iterdir()] == ["runners"]
