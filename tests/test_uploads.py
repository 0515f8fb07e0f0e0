"""``POST /api/uploads`` and jobs that name an upload (a melody to follow, audio to continue).

Every format goes in and reaches the runner (a test runner reads the file as a real one does and reports what it read);
what is not audio, empty, too long, too big or NaN-filled is refused in one line and leaves nothing on disk; a job can
name an upload only by its id (a path, ``../``, an unknown or expired id, a model that takes no file: 422); uploads are
bounded, expire, and go with the server. The remote backend uploads a request's local files (CLI end to end).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile
from fastapi.testclient import TestClient

from runners.registry import Registry
from runners.request import AUDIO_FORMATS, FORMATS, validate_request
from tests.fake_runners import audio_input_specs, fake_registry
from tests.live_server import ROOT, serve_in_thread
from tests.test_server import wait_state
from tests.waiting import wait_until
from ttag_tui.config import Config
from ttag_tui.server.app import MAX_BODY_BYTES, create_app

REGISTRY = Registry([*fake_registry(), *audio_input_specs()])
KEY = "upload-key-1"


def make_app(**config):
    config.setdefault("default_model", "fake-melody")
    config.setdefault("rate_limit", "1000/minute")
    return create_app(Config(**config), registry=REGISTRY)


@pytest.fixture
def client():
    with TestClient(make_app(), base_url="http://localhost:8000") as c:
        yield c


def audio_bytes(fmt: str, seconds: float = 1.5, rate: int = 22050, channels: int = 2, peak: float = 0.5) -> bytes:
    t = np.arange(round(seconds * rate)) / rate
    audio = np.stack([peak * np.sin(2 * np.pi * (220 + 110 * c) * t) for c in range(channels)], axis=1)
    buffer = io.BytesIO()
    spec = AUDIO_FORMATS[fmt]
    subtype = "PCM_16" if fmt == "wav" else spec.subtype
    soundfile.write(buffer, audio.astype(np.float32), rate, format=spec.container, subtype=subtype)
    return buffer.getvalue()


def upload(client, data: bytes, **headers: str) -> httpx.Response:
    return client.post("/api/uploads", content=data, headers={"Content-Type": "application/octet-stream", **headers})


def kept_files(client) -> list[str]:
    folder = client.app.state.board.store.root / "uploads"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def run_job(client, **body) -> dict:
    created = client.post("/api/jobs", json={"prompt": "follow this", "duration": 0.5, **body})
    assert created.status_code == 202, created.text
    status = wait_state(client, created.json()["id"], timeout=60)
    assert status["state"] == "done", status
    take = client.get(status["results"][0]["url"])
    return json.loads(take.headers["x-ttag-metadata"])


def field_errors(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    return {d["loc"][-1]: d["msg"] for d in response.json()["detail"]}


# -- every format in, and into the runner --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_uploads_and_reaches_the_runner(client, fmt):
    data = audio_bytes(fmt)
    answer = upload(client, data)
    assert answer.status_code == 201, answer.text
    kept = answer.json()
    assert set(kept) == {"id", "duration", "sample_rate", "channels", "size_bytes"}
    assert kept["sample_rate"] == 22050 and kept["channels"] == 2 and kept["size_bytes"] == len(data)
    assert abs(kept["duration"] - 1.5) < 0.1, kept  # MP3 and Vorbis pad a little
    assert kept_files(client) == [f"{kept['id']}.{fmt}"]  # the server's own name, never the client's

    melody = run_job(client, model="fake-melody", melody=kept["id"])["inputs"]["melody"]
    assert melody["duration"] == pytest.approx(kept["duration"]) and melody["channels"] == 2
    assert melody["peak"] == pytest.approx(0.5, abs=0.05)
    continued = run_job(client, model="fake-continue", audio_prompt=kept["id"])["inputs"]
    assert continued["audio_prompt"]["duration"] == pytest.approx(kept["duration"])
    assert run_job(client, model="fake-melody")["inputs"] == {}  # no file named, none read


def test_generate_route_takes_an_upload_too(client):
    kept = upload(client, audio_bytes("flac", seconds=0.75)).json()
    answer = client.post("/api/generate", json={"prompt": "x", "model": "fake-melody", "melody": kept["id"]})
    assert answer.status_code == 200, answer.text
    inputs = json.loads(answer.headers["x-ttag-metadata"])["inputs"]
    assert inputs["melody"]["duration"] == pytest.approx(0.75, abs=1e-3)


def test_a_job_keeps_its_own_copy_when_the_upload_expires(client):
    store = client.app.state.uploads
    now = [1000.0]
    store.clock = lambda: now[0]
    kept = upload(client, audio_bytes("wav")).json()
    created = client.post("/api/jobs", json={"prompt": "x", "duration": 0.5, "melody": kept["id"]}).json()
    record = client.app.state.board.get(created["id"])
    own = Path(record.request.melody)
    assert own.parent.name == created["id"] and own.name == "melody.wav"  # linked into the job's folder
    now[0] += store.keep_s + 1
    assert store.get(kept["id"]) is None and kept_files(client) == []  # expired: its file is gone
    assert own.is_file()
    status = wait_state(client, created["id"], timeout=60)
    assert status["state"] == "done", status
    # The expired id is refused in one line that says what to do.
    again = client.post("/api/jobs", json={"prompt": "x", "melody": kept["id"]})
    assert "upload the file again" in field_errors(again)["melody"]


# -- what is refused, in one line, leaving nothing behind ----------------------------------------------------------


def float_wav_with(value: float, channels: int) -> bytes:
    """A float WAV whose samples are silent except one ``value`` (NaN, infinity) in its last channel."""
    audio = np.zeros((8000, channels), np.float32)
    audio[4000, -1] = value
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, 8000, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def header_only_wav() -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros((0, 1), np.float32), 8000, format="WAV")
    return buffer.getvalue()


REFUSED = {
    "empty": (b"", "empty"),
    "garbage": (b"this is not audio\n" * 500, "not an audio file"),
    "random bytes": (np.random.default_rng(7).bytes(50_000), "not an audio file"),
    "json": (b'{"melody": "/etc/passwd"}', "not an audio file"),
    "nan": (float_wav_with(np.nan, channels=1), "NaN"),
    "infinity": (float_wav_with(np.inf, channels=2), "NaN or infinity"),
    "no frames": (header_only_wav(), "no audio"),
    "truncated flac": (audio_bytes("flac")[:200], ""),
}


@pytest.mark.parametrize("case", REFUSED)
def test_what_is_not_usable_audio_is_refused_in_one_line(client, case):
    data, words = REFUSED[case]
    answer = upload(client, data)
    assert answer.status_code == 422, (answer.status_code, answer.text)
    detail = answer.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and words in detail
    assert str(client.app.state.board.store.root) not in detail  # the server's own paths stay its own
    assert kept_files(client) == []  # no partial file left behind


def test_too_long_and_too_big_are_refused(client):
    store = client.app.state.uploads
    store.max_seconds = 1.0
    long = upload(client, audio_bytes("wav", seconds=1.5))
    assert long.status_code == 422 and long.json()["detail"] == "the audio is longer than 1 seconds"
    store.max_seconds = 600.0
    store.max_bytes = 100_000
    data = audio_bytes("wav", seconds=3)  # ~260 kB
    announced = upload(client, data)  # Content-Length says so: refused before the body is read
    assert announced.status_code == 413 and "over 100000 bytes" in announced.json()["detail"]
    chunked = client.post("/api/uploads", content=iter([data[i : i + 4096] for i in range(0, len(data), 4096)]))
    assert chunked.status_code == 413 and "over 100000 bytes" in chunked.json()["detail"]
    assert kept_files(client) == []
    store.max_bytes = len(data)  # exactly at the limit is fine
    assert upload(client, data).status_code == 201
    # A form is refused with what to send instead; every other route keeps its small body limit.
    form = client.post("/api/uploads", files={"file": ("x.wav", data, "audio/wav")})
    assert form.status_code == 415 and "not a form" in form.json()["detail"]
    big_job = client.post("/api/jobs", content=b'{"prompt": "' + b"x" * MAX_BODY_BYTES + b'"}')
    assert big_job.status_code == 413


# -- a job names an upload by its id only ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "/etc/passwd",
        "../../../../etc/passwd",
        "..%2F..%2Fetc%2Fpasswd",
        "C:\\Windows\\win.ini",
        "~/music/tune.wav",
        "0123456789abcdef0123456789abcdef/../x",
        "0123456789ABCDEF0123456789ABCDEF",  # ids are lower-case hex
        "",
        " ",
        "\ud800",
    ],
)
def test_a_path_or_anything_but_an_id_is_refused_unopened(client, value, monkeypatch):
    import runners.request

    def never(value):  # the server must not even look at a client's path
        raise AssertionError(f"opened {value!r}")

    monkeypatch.setattr(runners.request, "_check_audio_file", never)
    body = json.dumps({"prompt": "x", "model": "fake-melody", "melody": value})  # ASCII: a lone surrogate escaped
    answer = client.post("/api/jobs", content=body, headers={"Content-Type": "application/json"})
    message = field_errors(answer)["melody"]
    assert "must be the id of an upload" in message
    assert "passwd" not in answer.text and "win.ini" not in answer.text  # the input is never echoed


def test_unknown_id_wrong_type_and_models_that_take_no_file(client):
    unknown = client.post("/api/jobs", json={"prompt": "x", "melody": "0" * 32})
    assert field_errors(unknown)["melody"].startswith(f"no upload {'0' * 32}")
    assert field_errors(client.post("/api/jobs", json={"prompt": "x", "melody": 42}))["melody"] == "must be text"
    kept = upload(client, audio_bytes("wav")).json()["id"]
    plain = client.post("/api/jobs", json={"prompt": "x", "model": "fake-plain", "melody": kept})
    assert field_errors(plain)["melody"] == "fake-plain does not take this parameter (it takes: steps)"
    continuation = client.post("/api/jobs", json={"prompt": "x", "model": "fake-melody", "audio_prompt": kept})
    assert "fake-melody does not take this parameter" in field_errors(continuation)["audio_prompt"]
    path_to_plain = client.post("/api/jobs", json={"prompt": "x", "model": "fake-plain", "melody": "/etc/passwd"})
    assert "does not take" in field_errors(path_to_plain)["melody"]
    # An upload error and another field's error come back together.
    both = field_errors(client.post("/api/jobs", json={"prompt": "x", "melody": "/x", "duration": -1}))
    assert set(both) == {"melody", "duration"}


def test_the_schema_says_what_an_audio_field_takes(client):
    schema = client.get("/openapi.json").json()
    melody = schema["components"]["schemas"]["GenerateBody"]["properties"]["melody"]
    assert melody["anyOf"][0] == {"type": "string", "pattern": "^[0-9a-f]{32}$"}
    assert "POST /api/uploads" in melody["description"]
    route = schema["paths"]["/api/uploads"]["post"]
    assert set(route["responses"]) >= {"201", "413", "415", "422"}
    assert "application/octet-stream" in route["requestBody"]["content"]


# -- bounds, expiry, shutdown, keys and rate limits ------------------------------------------------------------------


def test_uploads_are_bounded_and_expire(client):
    store = client.app.state.uploads
    now = [0.0]
    store.clock = lambda: now[0]
    store.keep = 2
    ids = [upload(client, audio_bytes("wav", seconds=0.2)).json()["id"] for _ in range(3)]
    assert store.get(ids[0]) is None and store.get(ids[1]) and store.get(ids[2])  # the oldest went first
    assert len(kept_files(client)) == 2
    size = store.get(ids[2]).size_bytes
    store.keep_bytes = size  # only the newest fits
    assert store.get(ids[1]) is None and len(kept_files(client)) == 1
    now[0] += store.keep_s  # exactly keep_s old: still kept
    assert store.get(ids[2]) is not None
    now[0] += 0.001
    assert store.get(ids[2]) is None and kept_files(client) == []


def test_uploads_are_deleted_with_the_server(tmp_path):
    with TestClient(make_app(), base_url="http://localhost:8000") as client:
        assert upload(client, audio_bytes("ogg")).status_code == 201
        root = client.app.state.board.store.root
        assert len(kept_files(client)) == 1
    assert not root.exists()


def test_keys_and_rate_limits_hold_for_uploads():
    with TestClient(make_app(api_keys=KEY, rate_limit="2/minute"), base_url="http://localhost:8000") as client:
        data = audio_bytes("wav", seconds=0.2)
        assert upload(client, data).status_code == 401
        assert kept_files(client) == []
        auth = {"Authorization": f"Bearer {KEY}"}
        assert upload(client, data, **auth).status_code == 201
        assert upload(client, data, **auth).status_code == 201
        limited = upload(client, data, **auth)
        assert limited.status_code == 429 and "Retry-After" in limited.headers


def test_concurrent_uploads_over_the_wire(tmp_path):
    """Eight clients at once against a real uvicorn: every upload kept under its own id, none mixed up."""
    app = make_app()
    with serve_in_thread(app) as base:
        payloads = [audio_bytes(FORMATS[k % len(FORMATS)], seconds=0.5 + k / 10, channels=1 + k % 2) for k in range(8)]

        def send(data: bytes) -> dict:
            answer = httpx.post(f"{base}/api/uploads", content=data, timeout=60)
            assert answer.status_code == 201, answer.text
            return answer.json()

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(send, payloads))
        assert len({a["id"] for a in answers}) == 8
        for k, answer in enumerate(answers):
            assert abs(answer["duration"] - (0.5 + k / 10)) < 0.1 and answer["channels"] == 1 + k % 2
        assert len(app.state.uploads) == 8


# -- the remote backend uploads a request's files ----------------------------------------------------------------


def test_remote_backend_uploads_the_melody_and_the_runner_reads_it(tmp_path):
    from ttag_tui.backend.events import JobFailed
    from ttag_tui.remote import RemoteBridge

    melody = tmp_path / "my tune.flac"
    melody.write_bytes(audio_bytes("flac", seconds=1.25, channels=1))
    with serve_in_thread(make_app()) as base, RemoteBridge(base) as remote:
        request = validate_request(
            {"prompt": "x", "model": "fake-melody", "melody": str(melody), "duration": 0.5}, remote.registry()
        )
        (clip,) = remote.generate(request, timeout=60)
        assert clip.metadata["inputs"]["melody"]["duration"] == pytest.approx(1.25, abs=1e-3)
        assert clip.metadata["parameters"]["melody"] == str(melody)  # the local file, as the request named it
        missing = validate_request(
            {"prompt": "x", "model": "fake-continue", "audio_prompt": str(melody)}, remote.registry()
        )
        melody.unlink()  # gone between validation and upload: the job fails in one line, naming the file
        job = remote.submit(missing)
        with pytest.raises(JobFailed, match=r"cannot read my tune\.flac"):
            job.result(60)


def test_cli_generate_with_a_melody_through_the_server(tmp_path):
    melody = tmp_path / "tune.wav"
    melody.write_bytes(audio_bytes("wav", seconds=1.0))
    out = tmp_path / "take.wav"
    with serve_in_thread(make_app()) as base:
        result = subprocess.run(
            [
                *(sys.executable, "-m", "ttag_tui", "--backend", base, "generate", "-m", "fake-melody"),
                *("--melody", str(melody), "--duration", "0.5", "-o", str(out), "a tune"),
            ],
            cwd=ROOT,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
    assert soundfile.info(str(out)).duration == pytest.approx(0.5)


def test_a_client_that_leaves_mid_upload_leaves_nothing_behind():
    import socket

    app = make_app()
    with serve_in_thread(app) as base:
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as raw:
            raw.sendall(
                b"POST /api/uploads HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: audio/wav\r\n"
                b"Content-Length: 1000000\r\n\r\n" + audio_bytes("wav")[:50_000]
            )
            folder = app.state.board.store.root / "uploads"
            wait_until(lambda: any(folder.glob(".*.part")), 60, "the upload under way")
        wait_until(lambda: not any(folder.glob(".*.part")), 60, "the part file removed")
        assert list(folder.iterdir()) == [] and len(app.state.uploads) == 0
        # The server carries on.
        assert httpx.post(f"{base}/api/uploads", content=audio_bytes("ogg"), timeout=60).status_code == 201
