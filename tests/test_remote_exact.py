"""A take made through ``--backend`` is the same file, byte for byte, as the take a local run of the request writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.live_server import ROOT, start_server, stop_server
from ttag_tui.output import sha256_file


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base, process = start_server(tmp_path_factory.mktemp("exact-server"))
    yield base
    stop_server(process)


def generate(*args: str) -> list[dict]:
    result = subprocess.run(
        [sys.executable, "-m", "ttag_tui", *args, "--json", "-q"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=os.environ,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# Ogg is left out: libsndfile gives each Ogg stream a random serial number, so two local runs differ as well.
@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3"])
def test_a_remote_take_is_the_file_a_local_run_writes(server, tmp_path, fmt):
    request = ("generate", "house 124 bpm", "-d", "2.5", "--seed", "7", "-n", "2", "--format", fmt)
    local = generate(*request, "-o", str(tmp_path / "local"))
    remote = generate("--backend", server, *request, "-o", str(tmp_path / "remote"))
    assert [take["sha256"] for take in remote] == [take["sha256"] for take in local]
    for take in remote:  # the sidecar's sha256 is the written file's
        assert sha256_file(tmp_path / "remote" / take["file"]) == take["sha256"]
    facts = ("sample_rate", "channels", "duration", "recreate")
    assert [{k: t[k] for k in facts} for t in remote] == [{k: t[k] for k in facts} for t in local]
