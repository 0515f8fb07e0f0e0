"""Shared test set-up: never touch the real home or the Hugging Face hub."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# Workers import test runners as ``tests.fake_runners:Name``: the project root goes on their path, whatever the cwd.
ROOT = str(Path(__file__).resolve().parent.parent)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
# numpy's BLAS on one thread in every test process (set before the xdist workers start and import numpy): four workers
# on two cores, each with OpenBLAS's pool spinning after every call, burnt a quarter of the suite's CPU for nothing
# (test_synth alone: 126 → 95 s of CPU in the same wall time). Torch tests set their own threads; a value the
# developer set is kept.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Config, data and output under the test's own folder."""
    monkeypatch.setenv("TTAG_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("TTAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TTAG_OUTPUT_DIR", str(tmp_path / "out"))
    for name in list(os.environ):  # a developer's own TTAG_* settings must not leak into tests
        if (
            name.startswith("TTAG_")
            and not name.startswith("TTAG_REQUIRE_")
            and name
            not in {
                "TTAG_CONFIG_DIR",
                "TTAG_DATA_DIR",
                "TTAG_OUTPUT_DIR",
                "TTAG_WORKER_LOG",
            }
        ):
            monkeypatch.delenv(name)
    return tmp_path


# Tests that start a Ray cluster share one xdist worker: two local clusters at once would fight over two cores.
SHARED_WORKER = {"test_cluster.py": "ray", "test_cluster_recovery.py": "ray"}
# The groups that take longest (each run prints its slowest tests), started first so that none of them is left to run
# alone at the end; `make test` passes --no-loadscope-reorder, or xdist would order groups by their number of tests.
LONGEST_FIRST = (
    "ray",
    "test_api_fuzz.py",  # its 600 s take in every format: the longest single test (80-200 s), so it starts early
    "test_synth.py",
    "test_audiocraft.py",
    "test_web.py",
    "test_wheel.py",
    "test_app.py",
    "test_diffusion.py",
    "test_tmux.py",
)


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under ``pytest -n N --dist loadgroup`` (make test), a module's tests run on one worker, so its module-scoped
    fixtures (a live server, a model, a browser) are made once; the longest groups come first."""
    groups = {}
    for item in items:
        name = item.path.name
        groups[item.nodeid] = SHARED_WORKER.get(name, name)
        item.add_marker(pytest.mark.xdist_group(groups[item.nodeid]))
    rank = {group: i for i, group in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(groups[item.nodeid], len(rank)))  # stable: a file keeps its order


@pytest.fixture(scope="session")
def tiny_musicgen_folders(tmp_path_factory) -> dict[str, Path]:
    """The tiny random-weight MusicGen checkpoints (mono, stereo, melody), built once per test run: under xdist the
    first worker to ask builds them in the run's shared temp folder while the others wait on a file lock. Read-only
    for tests: one that changes a folder copies it first."""
    from tests import tiny_musicgen

    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "tiny-musicgen"
    root.mkdir(exist_ok=True)
    builders = {
        "mono": tiny_musicgen.build_musicgen,
        "stereo": lambda folder: tiny_musicgen.build_musicgen(folder, channels=2),
        "melody": tiny_musicgen.build_musicgen_melody,
    }
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / ".built").exists():
            for name, build in builders.items():
                build(root / name)
            (root / ".built").touch()
    return {name: root / name for name in builders}
