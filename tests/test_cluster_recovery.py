"""The server outlives its Ray cluster: the head killed mid-job fails that job in one line, health says down, new jobs
get 503, and once a head is back on the same address the server joins it again and jobs run — no restart.

A real head started with ``ray start --head --block`` in a process group of its own, twice; it is lost the way a machine
is, its GCS, raylet and workers killed at once (SIGKILL: no goodbye to the server, no graceful shutdown, which with a
job running made Ray's raylet wait ~30 s for its worker). Skipped without Ray unless ``TTAG_REQUIRE_CLUSTER=1`` (CI).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from runners.request import validate_request
from tests.fake_runners import fake_registry
from tests.live_server import free_port, serve_in_thread
from tests.waiting import wait_until
from ttag_tui.backend.cluster import ClusterSettings
from ttag_tui.backend.cluster_link import ClusterLink, LinkSettings
from ttag_tui.backend.errors import BackendBusy
from ttag_tui.backend.events import JobFailed, Progress
from ttag_tui.config import Config
from ttag_tui.server.app import create_app

try:
    import ray  # noqa: F401  (only to know it is installed: the link imports it in its own process)
except ImportError:
    if os.environ.get("TTAG_REQUIRE_CLUSTER") == "1":
        raise
    pytest.skip("Ray is not installed; TTAG_REQUIRE_CLUSTER=1 makes this a failure", allow_module_level=True)

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
REGISTRY = fake_registry()


def start_head(port: int, home: Path) -> subprocess.Popen:
    """A one-node cluster whose node offers one ``ttag`` unit (a replica); the temp dir stays short (socket paths)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
        **{f"TTAG_{name}_DIR": str(home / name.lower()) for name in ("CONFIG", "DATA", "OUTPUT")},
    }
    return subprocess.Popen(
        [
            str(Path(sys.executable).with_name("ray")),
            "start",
            "--head",
            "--port",
            str(port),
            "--num-cpus",
            "1",
            "--resources",
            json.dumps({"ttag": 1}),
            "--temp-dir",
            tempfile.mkdtemp(prefix="ttag-ray-", dir="/tmp"),
            "--include-dashboard",
            "false",
            "--block",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its GCS, raylet and workers share the group: one kill takes the whole node
    )


def kill(head: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group gone already: nothing to kill
        os.killpg(head.pid, signal.SIGKILL)
    head.wait(30)


def request(model: str, **fields):
    return validate_request({"model": model, "prompt": "a test tone", **fields}, REGISTRY)


def test_the_server_survives_losing_the_head_and_joins_it_again_when_it_is_back(tmp_path):
    port = free_port()
    head = start_head(port, tmp_path)
    link = None
    try:
        settings = ClusterSettings(address=f"127.0.0.1:{port}", resource="ttag", health_check_period_s=1)
        for _ in range(120):  # `ray start` returns before the head listens: join once it does
            try:
                link = ClusterLink(
                    REGISTRY, Config(cancel_grace_s=1), settings, LinkSettings(down_after_s=3, retry_s=1, watch_s=0.5)
                )
                break
            except ConnectionError:
                assert head.poll() is None, "ray start ended"
                time.sleep(1)
        assert link is not None, "never joined the head"
        config = Config(rate_limit="10000/minute", cancel_grace_s=1)
        with serve_in_thread(create_app(config, registry=REGISTRY, bridge=link)) as base:
            assert link.submit(request("tone", seed=1)).result(timeout=120)

            running = link.submit(request("slow-tone", steps=400, seed=2))
            next(e for e in running.events(timeout=120) if isinstance(e, Progress) and e.phase == "generating")
            kill(head)  # the head and its node go away mid-job
            with pytest.raises(JobFailed) as failure:
                running.result(timeout=120)
            assert failure.value.kind in {"cluster", "crashed"} and "\n" not in str(failure.value)

            detail = {"detail": "true"}

            def cluster_state() -> str:
                return httpx.get(f"{base}/api/health", params=detail, timeout=30).json()["cluster"]["state"]

            wait_until(lambda: cluster_state() == "down", timeout=60)
            with pytest.raises(BackendBusy):
                link.submit(request("tone", seed=3))
            refused = httpx.post(f"{base}/api/jobs", json={"model": "tone", "prompt": "x"}, timeout=30)
            assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
            assert "reconnects when its head is back" in refused.json()["detail"]

            head = start_head(port, tmp_path)  # the operator brings the head back on the same address
            wait_until(lambda: link.joins == 2 and link.nodes()["state"] == "up", timeout=240, longest=1)
            clips = link.submit(request("tone", seed=4)).result(timeout=120)
            assert clips and clips[0].audio.size > 0
            assert cluster_state() == "up"
    finally:
        if link is not None:
            link.close()
        kill(head)
