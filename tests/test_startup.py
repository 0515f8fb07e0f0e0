"""`ttag generate`'s start-up path: the worker is spawned before the CLI imports numpy, nobody builds an install hint
for a model that can run, and numpy's BLAS thread pool is kept out of processes that call no BLAS routine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runners import registry as registry_module
from runners.registry import default_registry, probe_availability
from ttag_tui.runner_envs import SINGLE_THREAD_BLAS, worker_variables

ROOT = Path(__file__).resolve().parent.parent

# Runs `ttag generate` in-process and records, at the first Popen (the worker's), which heavy modules were loaded.
AT_SPAWN = """
import json, subprocess, sys
seen = {}
popen = subprocess.Popen.__init__
def spawn(self, *args, **kwargs):
    if not seen:
        seen.update({name: name in sys.modules for name in ("numpy", "soundfile", "importlib.metadata")})
        seen["command"] = args[0]
    popen(self, *args, **kwargs)
subprocess.Popen.__init__ = spawn
from ttag_tui.cli import main
code = main(["generate", "house 124 bpm", "-m", "synth", "-d", "1", "-q", "--seed", "2", "-o", sys.argv[1]])
print(json.dumps({"code": code, **seen}))
"""


def test_the_worker_is_spawned_before_the_cli_imports_numpy(tmp_path):
    target = tmp_path / "take.wav"
    env = {key: value for key, value in os.environ.items() if key not in SINGLE_THREAD_BLAS}
    result = subprocess.run(
        [sys.executable, "-c", AT_SPAWN, str(target)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.splitlines()[-1])
    assert seen["code"] == 0 and "runners.worker" in seen["command"]
    assert seen["numpy"] is False and seen["soundfile"] is False
    assert seen["importlib.metadata"] is False  # no install hint was built: synth can run
    assert target.is_file() and json.loads(target.with_suffix(".json").read_text())["duration"] == 1


def test_probe_availability_builds_the_install_hint_only_when_something_is_missing(monkeypatch):
    def hint(extra: str) -> str:
        calls.append(extra)
        return "pip install it"

    calls: list[str] = []
    monkeypatch.setattr(registry_module, "install_hint", hint)
    spec = default_registry()["synth"]
    assert probe_availability(spec).available
    assert calls == []
    missing = registry_module.ModelSpec.from_dict({**spec.to_dict(), "requires": ["no_such_module_for_ttag"]})
    status = probe_availability(missing)
    assert not status.available and "no_such_module_for_ttag" in status.reason and "pip install it" in status.reason
    assert calls == ["synth"]


def test_the_synth_worker_gets_one_blas_thread_unless_the_user_chose(monkeypatch):
    for name in SINGLE_THREAD_BLAS:
        monkeypatch.delenv(name, raising=False)
    assert worker_variables("synth") == SINGLE_THREAD_BLAS
    assert worker_variables("musicgen") == {}  # a torch runner's BLAS is left alone
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")
    assert "OPENBLAS_NUM_THREADS" not in worker_variables("synth")


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")
@pytest.mark.parametrize("user_value", [None, "2"])
def test_the_cli_loads_numpy_with_one_blas_thread_and_leaves_the_environment_as_it_was(user_value):
    code = (
        "import os, json; from ttag_tui.cli import _load_audio_libraries; _load_audio_libraries(); "
        "print(json.dumps([len(os.listdir('/proc/self/task')), os.environ.get('OPENBLAS_NUM_THREADS')]))"
    )
    env = {key: value for key, value in os.environ.items() if key not in SINGLE_THREAD_BLAS}
    if user_value:
        env["OPENBLAS_NUM_THREADS"] = user_value
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    threads, variable = json.loads(result.stdout)
    expected = 1 if user_value is None else min(int(user_value), os.cpu_count() or 1)
    assert threads == expected  # OpenBLAS's pool: the caller and n - 1 threads
    assert variable == user_value  # set only while numpy loaded; a user's own value untouched
