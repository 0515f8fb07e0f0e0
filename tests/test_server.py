"""The REST API: endpoints through the ASGI client, security limits, the bounded queue, and schemathesis."""

from __future__ import annotations

import io
import ipaddress
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import soundfile
from fastapi.testclient import TestClient

from runners.registry import ParamSpec
from tests.fake_runners import SAMPLE_RATE, fake_registry, spec
from tests.waiting import wait_until
from ttag_tui.config import Config
from ttag_tui.server import CannotListen, UnsafeBind, check_bind, is_loopback, listen
from ttag_tui.server.app import create_app

REGISTRY = fake_registry()
REGISTRY.add(spec("guided", "ToneRunner", params=(ParamSpec("guidance", "float", 3.0, 1.0, 20.0),)))


def client_for(**config) -> TestClient:
    config.setdefault("default_model", "tone")
    config.setdefault("rate_limit", "1000/minute")
    return TestClient(create_app(Config(**config), registry=REGISTRY), base_url="http://localhost:8000")


@pytest.fixture
def client():
    with client_for() as c:
        yield c


def decode(response) -> tuple[np.ndarray, int]:
    audio, sr = soundfile.read(io.BytesIO(response.content), dtype="float32", always_2d=True)
    return audio, sr


def wait_state(client, job_id: str, states=("done", "failed", "cancelled"), timeout=30) -> dict:
    def finished() -> dict | None:
        status = client.get(f"/api/jobs/{job_id}").json()
        return status if status["state"] in states else None

    return wait_until(finished, timeout, f"job {job_id} in one of {states}")


def test_health_and_detail(client):
    assert client.get("/api/health").json() == {"status": "ok", "version": "0.1.0"}
    detail = client.get("/api/health", params={"detail": True}).json()
    assert detail["queue_depth"] == 0 and detail["max_queue"] == 16 and detail["loaded_models"] == []


def test_models_lists_registry_with_availability(client):
    models = {m["id"]: m for m in client.get("/api/models").json()}
    assert set(models) == set(REGISTRY.ids())
    assert models["tone"]["available"] is True and models["tone"]["sample_rate"] == SAMPLE_RATE


def test_generate_returns_audio_with_metadata(client):
    response = client.post("/api/generate", json={"prompt": "a tone", "duration": 0.5, "seed": 11})
    assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
    audio, sr = decode(response)
    assert sr == SAMPLE_RATE and audio.shape == (SAMPLE_RATE // 2, 1)
    assert response.headers["x-ttag-seed"] == "11"
    flac = client.post("/api/generate", json={"prompt": "a tone", "duration": 0.5, "seed": 11, "format": "flac"})
    assert flac.headers["content-type"] == "audio/flac"
    np.testing.assert_allclose(decode(flac)[0], audio, atol=1e-4)


def test_streaming_generate_sends_a_valid_wav(client):
    response = client.post("/api/generate", json={"prompt": "a tone", "duration": 0.5, "seed": 11, "stream": True})
    assert response.status_code == 200
    streamed, _ = decode(response)
    whole, _ = decode(client.post("/api/generate", json={"prompt": "a tone", "duration": 0.5, "seed": 11}))
    assert streamed.shape == whole.shape
    np.testing.assert_allclose(streamed, whole, atol=1e-4)


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({"prompt": "  "}, "prompt", "is empty"),
        ({"prompt": "x", "duration": 99}, "duration", "between 0.1 and 30 seconds for tone"),
        ({"prompt": "x", "model": "nope"}, "model", "unknown model 'nope'"),
        ({"prompt": "x", "takes": 9}, "takes", "between 1 and 8"),
        ({"prompt": "x", "guidance": 2}, "guidance", "tone does not take this parameter"),
        ({"prompt": "x", "takes": 2}, "takes", "use POST /api/jobs"),
        ({"prompt": "x", "melody": "/etc/passwd"}, "melody", "Extra inputs are not permitted"),
        ({"prompt": "x", "audio_prompt": "/etc/passwd"}, "audio_prompt", "Extra inputs are not permitted"),
        ({"prompt": "x", "duration": "soon"}, "duration", "must be a number, not text"),
        ({"prompt": "x", "model": "no-such-runner"}, "model", "cannot run on this server"),
    ],
)
def test_validation_is_422_naming_the_field(client, body, field, fragment):
    response = client.post("/api/generate", json=body)
    assert response.status_code == 422
    errors = {e["loc"][-1]: e["msg"] for e in response.json()["detail"]}
    assert fragment in errors[field]


def test_nan_in_json_is_rejected(client):
    response = client.post(
        "/api/generate", content=b'{"prompt": "x", "duration": NaN}', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422


def test_jobs_flow_takes_download_and_unknown_ids(client):
    created = client.post("/api/jobs", json={"prompt": "x", "takes": 3, "duration": 0.25, "seed": 5})
    assert created.status_code == 202
    job_id = created.json()["id"]
    assert created.headers["location"] == f"/api/jobs/{job_id}"
    status = wait_state(client, job_id)
    assert status["state"] == "done" and [r["seed"] for r in status["results"]] == [5, 6, 7]
    audio, _ = decode(client.get(status["results"][2]["url"]))
    assert audio.shape == (SAMPLE_RATE // 4, 1)
    assert client.get(f"/api/jobs/{job_id}/takes/3").status_code == 404
    assert client.get("/api/jobs/0123456789abcdef").status_code == 404
    assert client.get("/api/jobs/..%2F..%2Fetc").status_code in (404, 422)
    assert client.get(f"/api/jobs/{job_id}/takes/0", params={"format": "aiff"}).status_code == 422


def test_cancel_job_and_take_of_unfinished_job(client):
    job_id = client.post("/api/jobs", json={"model": "slow-tone", "prompt": "x", "steps": 200}).json()["id"]
    wait_state(client, job_id, states=("running",))
    assert client.get(f"/api/jobs/{job_id}/takes/0").status_code == 409
    assert client.post(f"/api/jobs/{job_id}/cancel").status_code == 202
    status = wait_state(client, job_id)
    assert status["state"] == "cancelled" and status["error"]["kind"] == "cancelled"


def test_failed_job_reports_kind_and_message(client):
    job_id = client.post("/api/jobs", json={"model": "fake-missing", "prompt": "x"}).json()["id"]
    status = wait_state(client, job_id)
    assert status["state"] == "failed" and status["error"]["kind"] == "missing_weights"
    response = client.post("/api/generate", json={"model": "fake-missing", "prompt": "x"})
    assert response.status_code == 500 and response.json()["detail"]["kind"] == "missing_weights"


def test_queue_full_is_503_with_retry_after():
    with client_for(max_queue=1) as client:
        first = client.post("/api/jobs", json={"model": "slow-tone", "prompt": "x", "steps": 100}).json()["id"]
        refused = client.post("/api/jobs", json={"prompt": "x"})
        assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
        assert client.post("/api/generate", json={"prompt": "x"}).status_code == 503
        client.post(f"/api/jobs/{first}/cancel")
        wait_state(client, first)
        assert client.post("/api/jobs", json={"prompt": "x"}).status_code == 202


def test_rate_limit_is_429_with_retry_after():
    with client_for(rate_limit="3/minute") as client:
        codes = [client.post("/api/jobs", json={"prompt": "x", "duration": 0.1}).status_code for _ in range(4)]
        assert codes == [202, 202, 202, 429]
        limited = client.post("/api/generate", json={"prompt": "x"})
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
        assert client.get("/api/health").status_code == 200, "reads are not rate limited"


def test_api_keys_as_bearer_tokens():
    with client_for(api_keys="s3cret, other") as client:
        assert client.get("/api/models").status_code == 401
        assert client.get("/api/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/api/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.get("/api/models", headers={"Authorization": "Bearer other"}).status_code == 200
        assert client.post("/api/generate", json={"prompt": "x"}).status_code == 401
        assert client.get("/api/health").status_code == 200, "liveness needs no key"
        assert client.get("/api/health", params={"detail": True}).status_code == 401


def test_body_size_limit(client):
    response = client.post("/api/generate", json={"prompt": "x" * 100_000})
    assert response.status_code == 413


def test_no_cors_by_default(client):
    response = client.options(
        "/api/generate", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in response.headers


def test_refuses_public_address_without_key():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    with pytest.raises(UnsafeBind, match="without an API key"):
        check_bind("0.0.0.0", "", allow_public=False)
    check_bind("0.0.0.0", "key", allow_public=False)
    check_bind("0.0.0.0", "", allow_public=True)


def test_the_socket_is_bound_before_serving_and_each_failure_is_one_line(monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(CannotListen, match=r"is in use \(another ttag server\?\): pick one with --port"):
            listen("127.0.0.1", taken.getsockname()[1], (), allow_public=False)
    listeners = listen("localhost", 0, (), allow_public=False)  # every address the name has, as uvicorn binds
    try:
        assert listeners and all(ipaddress.ip_address(s.getsockname()[0]).is_loopback for s in listeners)
    finally:
        for listener in listeners:
            listener.close()

    def resolver(answer):
        def getaddrinfo(host, port, *args, **kwargs):
            if isinstance(answer, Exception):
                raise answer
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answer, port))]

        return getaddrinfo

    monkeypatch.setattr(socket, "getaddrinfo", resolver(socket.gaierror(-2, "Name or service not known")))
    with pytest.raises(CannotListen, match=r"cannot serve on nowhere\.example: Name or service not known"):
        listen("nowhere.example", 8000, (), allow_public=False)
    # a loopback-looking name that /etc/hosts points elsewhere is judged by where it points
    monkeypatch.setattr(socket, "getaddrinfo", resolver("192.0.2.7"))
    with pytest.raises(UnsafeBind, match=r"serve on studio.localhost \(192.0.2.7\) without an API key"):
        listen("studio.localhost", 8000, (), allow_public=False)


def test_ttag_server_on_a_taken_port_says_so_in_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "TTAG_CONFIG_DIR": str(tmp_path / "config"), "TTAG_DATA_DIR": str(tmp_path / "data")}
        done = subprocess.run(
            [sys.executable, "-m", "ttag_tui", "server", "--port", str(port)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [
        f"ttag: error: port {port} on 127.0.0.1 is in use (another ttag server?): pick one with --port"
    ]


def test_openapi_schema_describes_the_api(client):
    schema = client.get("/openapi.json").json()
    assert {"/api/generate", "/api/models", "/api/health", "/api/jobs", "/api/jobs/{job_id}"} <= set(schema["paths"])
    body = schema["components"]["schemas"]["GenerateBody"]
    assert "melody" not in body["properties"] and body["additionalProperties"] is False
    assert "audio/wav" in schema["paths"]["/api/generate"]["post"]["responses"]["200"]["content"]


def test_stream_job_audio_arrives_in_pieces_that_add_up(client):
    job_id = client.post(
        "/api/jobs", json={"model": "tone", "prompt": "x", "duration": 0.5, "seed": 4, "stream": True}
    ).json()["id"]
    wait_state(client, job_id)
    whole, _ = decode(client.get(f"/api/jobs/{job_id}/takes/0"))
    first = client.get(f"/api/jobs/{job_id}/audio", params={"start": 0})
    frames = int(first.headers["x-ttag-frames"])
    assert frames == SAMPLE_RATE // 2 and first.headers["x-ttag-channels"] == "1"
    streamed = np.frombuffer(first.content, dtype="<f4")
    np.testing.assert_allclose(streamed, whole[:, 0], atol=1e-4)
    tail = client.get(f"/api/jobs/{job_id}/audio", params={"start": 1000})
    assert int(tail.headers["x-ttag-frames"]) == frames - 1000
    assert int(client.get(f"/api/jobs/{job_id}/audio", params={"start": frames}).headers["x-ttag-frames"]) == 0
    beyond = client.get(f"/api/jobs/{job_id}/audio", params={"take": 1})  # a one-take job: nothing will ever come
    assert beyond.status_code == 404 and "no take 1" in beyond.json()["detail"]
