"""A real uvicorn on 127.0.0.1: the CLI as remote client, a bounded load test, a server going away, schemathesis."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import schemathesis
import soundfile
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance

from runners.request import validate_request
from tests.fake_runners import fake_registry
from tests.live_server import free_port, start_server, stop_server
from tests.waiting import wait_until
from ttag_tui.backend.events import Chunk, Done, JobFailed, Progress
from ttag_tui.config import Config
from ttag_tui.remote import RemoteBridge
from ttag_tui.server.app import create_app

ROOT = Path(__file__).resolve().parent.parent


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def started(home):
    """``ttag server`` as a user starts it (a small queue, no rate limit to speak of); yields (base_url, process)."""
    base, process = start_server(home, TTAG_MAX_QUEUE="4")
    yield base, process
    stop_server(process)


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    """One server for the module's tests that leave it running."""
    yield from started(tmp_path_factory.mktemp("live-server"))


@pytest.fixture
def own_server(tmp_path):
    """A server of the test's own, for a test that kills it."""
    yield from started(tmp_path / "server")


def ttag(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ttag_tui", *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout
    )


def test_cli_against_a_real_server(live_server, tmp_path):
    base, _ = live_server
    models = json.loads(ttag("--backend", base, "list-models", "--json").stdout)
    assert any(m["id"] == "synth" and m["available"] for m in models)
    result = ttag(
        "--backend",
        base,
        "generate",
        "house 124 bpm",
        "-d",
        "1.5",
        "-n",
        "2",
        "--seed",
        "3",
        "-o",
        str(tmp_path),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    takes = json.loads(result.stdout)
    assert [t["seed"] for t in takes] == [3, 4]
    local = ttag("generate", "house 124 bpm", "-d", "1.5", "--seed", "3", "-o", str(tmp_path / "local"), "--json")
    remote_audio, sr = soundfile.read(takes[0]["path"])
    local_audio, _ = soundfile.read(json.loads(local.stdout)[0]["path"])
    assert sr == 44100 and remote_audio.shape == local_audio.shape == (66150, 2)
    assert abs(remote_audio - local_audio).max() < 1e-4, "the server renders what the local worker renders"
    bad = ttag("--backend", base, "generate", "x", "-d", "9999")
    assert bad.returncode == 2 and "duration: must be between" in bad.stderr


def test_remote_bridge_streams_progresses_and_cancels_like_a_local_one(live_server):
    base, _ = live_server
    with RemoteBridge(base) as remote:
        registry = remote.registry()
        request = validate_request({"prompt": "techno 128 bpm", "duration": 20, "seed": 2}, registry)
        job = remote.submit(request, stream=True)
        events = list(job.events(timeout=120))
        chunks = [e for e in events if isinstance(e, Chunk)]
        assert any(isinstance(e, Progress) for e in events) and isinstance(events[-1], Done)
        assert len(chunks) >= 2 and chunks[0].start == 0, "audio arrived in pieces while the job ran"
        clip = events[-1].clips[0]
        streamed = np.concatenate([c.audio for c in chunks], axis=1)
        assert streamed.shape == clip.audio.shape == (2, 20 * 44100)
        assert np.abs(streamed - clip.audio).max() < 1e-4
        long_job = remote.submit(validate_request({"prompt": "rain", "duration": 600}, registry))
        next(e for e in long_job.events(timeout=60) if isinstance(e, Progress) and e.phase == "generating")
        long_job.cancel()
        with pytest.raises(JobFailed) as info:
            long_job.result(60)
        assert info.value.kind == "cancelled"


def test_unreachable_server_is_a_clear_error():
    result = ttag("--backend", f"http://127.0.0.1:{free_port()}", "generate", "x")
    assert result.returncode == 1 and "cannot reach the ttag server" in result.stderr
    assert "Traceback" not in result.stderr


def test_server_going_away_mid_job(own_server, tmp_path):
    base, process = own_server
    cli = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ttag_tui",
            "--backend",
            base,
            "generate",
            "ambient rain",
            "-d",
            "600",
            "-o",
            str(tmp_path),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until(
        lambda: httpx.get(f"{base}/api/health", params={"detail": True}).json()["queue_depth"],
        30,
        "the job reached the server",
    )
    process.kill()
    _, stderr = cli.communicate(timeout=120)
    assert cli.returncode == 1 and "cannot reach the ttag server" in stderr and "Traceback" not in stderr


def test_server_going_away_during_the_stream_handshake_fails_the_job_in_one_line(live_server, monkeypatch):
    """The server can die between accepting the socket and answering the upgrade; websockets then raises
    ConnectionClosedError from connect() itself (a race the test above hits now and then on a loaded box)."""
    import websockets.sync.client
    from websockets.exceptions import ConnectionClosedError

    def closed_mid_handshake(*args, **kwargs):
        raise ConnectionClosedError(None, None)

    monkeypatch.setattr(websockets.sync.client, "connect", closed_mid_handshake)
    base, _ = live_server
    with RemoteBridge(base) as remote:
        job = remote.submit(validate_request({"prompt": "rain", "duration": 1}, remote.registry()))
        with pytest.raises(JobFailed) as info:
            job.result(60)
    assert info.value.kind == "connection" and "cannot reach the ttag server" in str(info.value)


def test_bounded_load(live_server):
    """32 concurrent clients, 3 requests each: every answer is correct audio or a clean 503/429; memory bounded."""
    base, process = live_server

    def client(n: int) -> list[tuple[int, object]]:
        answers = []
        with httpx.Client(base_url=base, timeout=120) as http:
            for i in range(3):
                response = http.post(
                    "/api/generate", json={"prompt": f"techno {100 + n} bpm", "duration": 0.5, "seed": n * 10 + i}
                )
                if response.status_code == 200:
                    audio, sr = soundfile.read(io.BytesIO(response.content))
                    answers.append((200, (audio.shape, sr, response.headers["x-ttag-seed"] == str(n * 10 + i))))
                else:
                    answers.append((response.status_code, response.headers.get("retry-after")))
        return answers

    rounds = []
    for _ in range(2):
        with ThreadPoolExecutor(32) as pool:
            answers = [a for batch in pool.map(client, range(32)) for a in batch]
        rounds.append(rss_kib(process.pid))
        assert len(answers) == 96
        for status, detail in answers:
            assert status in (200, 503), (status, detail)
            if status == 200:
                assert detail == ((22050, 2), 44100, True)
            else:
                assert int(detail) >= 1
        assert sum(status == 200 for status, _ in answers) >= 4
    assert rounds[1] - rounds[0] < 50 * 1024, f"server memory grew {rounds[1] - rounds[0]} KiB in the second round"


schema = schemathesis.openapi.from_asgi(
    "/openapi.json",
    create_app(
        # schemathesis' ASGI client says Host: testserver, a name a keyless server answers only when configured
        Config(default_model="tone", rate_limit="100000/minute", max_queue=100_000, allowed_hosts="testserver"),
        registry=fake_registry(),
    ),
)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case):
    """No 5xx, and every response matches the served OpenAPI schema.

    Positive-data acceptance is left out: limits that depend on the model (a duration valid for one model is not for
    another) cannot be expressed in a static schema, so a schema-valid body can rightly get a 422.
    """
    failing_on_purpose = {"hang", "crash", "fake-missing", "slow-tone", "stream-then-crash"}
    if (
        isinstance(case.body, dict)
        and isinstance(case.body.get("model"), str)
        and case.body["model"] in failing_on_purpose
    ):
        case.body["model"] = "tone"  # test doubles that fail on purpose are not the API's fault
    case.call_and_validate(excluded_checks=[positive_data_acceptance])


async def test_the_tui_against_a_real_server(own_server, tmp_path):
    """The TUI with a remote backend: a take made on the server lands here; a server gone mid-job is an error."""
    from tests.tui_fakes import generate, job_items, no_audio_device, running, takes, type_prompt, wait_for
    from ttag_tui.app import TtagApp
    from ttag_tui.playback import Player
    from ttag_tui.sessions import SessionStore

    base, process = own_server
    remote = RemoteBridge(base)
    app = TtagApp(
        Config(output_dir=str(tmp_path / "out"), theme="ttag-night"),
        registry=remote.registry(),
        bridge_factory=lambda: remote,
        store=SessionStore(tmp_path / "sessions.sqlite3"),
        player=Player(no_audio_device),
        persist_config=False,
    )
    async with running(app) as pilot:
        app.screen.query_one("#set-duration").value = "2"
        await generate(pilot, "house 124 bpm", 1)
        take = takes(app).selected_take
        sidecar = json.loads(Path(take.path).with_suffix(".json").read_text())
        assert sidecar["model"] == "synth" and sidecar["duration"] == 2
        assert soundfile.info(take.path).frames == 2 * 44100

        app.screen.query_one("#set-duration").value = "600"
        await type_prompt(pilot, "ambient rain")
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: job_items(app) and job_items(app)[0].status == "running", "a running job")
        process.kill()
        await wait_for(pilot, lambda: job_items(app)[0].status == "failed", "the failure", timeout=60)
        assert "cannot reach the ttag server" in job_items(app)[0].detail
        assert takes(app).row_count == 1, "the app lives on with its takes"
