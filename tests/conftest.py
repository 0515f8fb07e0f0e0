"""Shared test set-up: never touch the real home or the Hugging Face hub."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# Workers import test runners as ``tests.fake_runners:Name``: the project root goes on their path, whatever the cwd.
ROOT = str(Path(__file__).resolve().parent.parent)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)


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
