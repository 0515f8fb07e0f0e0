"""The WebSocket job stream (``GET /api/jobs/{id}/events``): events and audio as they happen, late clients, auth,
origin, cancel and back-pressure; and the remote backend hearing a take while the server still makes it."""

from __future__ import annotations

import io
import json
import struct
import time

import httpx
import numpy as np
import pytest
import soundfile
from starlette.websockets import WebSocketDisconnect
from websockets.sync.client import connect

from tests.fake_runners import fake_registry
from tests.live_server import serve_in_thread
from tests.test_server import client_for, wait_state
from ttag_tui.backend.events import Chunk, ClipReady, Done, Failed, Progress
from ttag_tui.config import Config
from ttag_tui.remote import RemoteBridge
from ttag_tui.server.app import create_app

KEY = "s3cret-key-1"
LOCAL = {"host": "localhost:8000"}  # TestClient says Host: testserver on WebSockets


def read_stream(ws) -> tuple[list[dict], dict[int, list[tuple[int, np.ndarray]]], int]:
    """(JSON events, audio pieces per take as (start frame, (frames, channels) samples), close code)."""
    events, audio = [], {}
    while True:
        message = ws.receive()
        if message["type"] == "websocket.close":
            return events, audio, message["code"]
        if message.get("bytes") is not None:
            take, channels, _rate, start = struct.unpack("<HHIQ", message["bytes"][:16])
            samples = np.frombuffer(message["bytes"][16:], "<f4").reshape(-1, channels)
            audio.setdefault(take, []).append((start, samples))
        else:
            events.append(json.loads(message["text"]))


def take_audio(client, url: str) -> np.ndarray:
    audio, _ = soundfile.read(io.BytesIO(client.get(url, params={"format": "flac"}).content), dtype="float32")
    return audio.reshape(len(audio), -1)


def test_events_and_audio_as_they_happen_equal_the_finished_takes():
    with client_for() as client:
        body = {"model": "stepped-stream", "prompt": "x", "duration": 1, "seed": 3, "stream": True, "takes": 2}
        job = client.post("/api/jobs", json=body).json()["id"]
        with client.websocket_connect(f"/api/jobs/{job}/events", subprotocols=["ttag.v1"], headers=LOCAL) as ws:
            assert ws.accepted_subprotocol == "ttag.v1"
            events, audio, code = read_stream(ws)
        assert code == 1000
        kinds = [e["type"] for e in events]
        assert kinds[0] == "status" and kinds[-1] == "done" and "started" in kinds
        assert [e["take"] for e in events if e["type"] == "take"] == [0, 1]
        assert any(e["type"] == "progress" and e["step"] == 2 for e in events)
        for take in (0, 1):
            starts = [start for start, _ in audio[take]]
            assert len(starts) == 4 and starts == sorted(starts) and starts[0] == 0, "contiguous, in order"
            streamed = np.concatenate([samples for _, samples in audio[take]])
            np.testing.assert_allclose(streamed, take_audio(client, f"/api/jobs/{job}/takes/{take}"), atol=1e-5)


def test_a_late_client_gets_what_was_streamed_first_then_the_rest():
    with client_for() as client:
        body = {"model": "stepped-stream", "prompt": "x", "duration": 2, "steps": 20, "seed": 4, "stream": True}
        job = client.post("/api/jobs", json=body).json()["id"]
        deadline = time.monotonic() + 30
        while int(client.get(f"/api/jobs/{job}/audio").headers["x-ttag-frames"]) < 3000:
            assert time.monotonic() < deadline
        with client.websocket_connect(f"/api/jobs/{job}/events", headers=LOCAL) as ws:
            events, audio, code = read_stream(ws)
        assert events[0]["type"] == "status" and events[0]["state"] == "running" and code == 1000
        streamed = np.concatenate([samples for _, samples in audio[0]])
        assert audio[0][0][0] == 0 and len(streamed) == 16000
        np.testing.assert_allclose(streamed, take_audio(client, f"/api/jobs/{job}/takes/0"), atol=1e-5)


def test_an_ended_job_answers_its_status_and_how_it_ended():
    with client_for() as client:
        job = client.post("/api/jobs", json={"prompt": "x", "duration": 0.5, "stream": True}).json()["id"]
        wait_state(client, job)
        with client.websocket_connect(f"/api/jobs/{job}/events", headers=LOCAL) as ws:
            events, audio, code = read_stream(ws)
        assert [e["type"] for e in events] == ["status", "done"] and audio == {} and code == 1000
        assert events[1]["results"][0]["url"] == f"/api/jobs/{job}/takes/0"


def test_cancel_over_the_socket():
    with client_for() as client:
        body = {"model": "stepped-stream", "prompt": "x", "duration": 30, "steps": 300, "stream": True}
        job = client.post("/api/jobs", json=body).json()["id"]
        with client.websocket_connect(f"/api/jobs/{job}/events", headers=LOCAL) as ws:
            while json.loads(ws.receive_text())["type"] != "started":
                pass
            ws.send_json({"cancel": True})
            events, _, code = read_stream(ws)
        assert events[-1]["type"] == "cancelled" and code == 1000
        assert client.get(f"/api/jobs/{job}").json()["state"] == "cancelled"


def refused_with(client, path: str, **kwargs) -> int:
    with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect(path, **kwargs):
        pass
    return refused.value.code


def test_the_socket_asks_for_the_same_key_never_in_the_query_string():
    with client_for(api_keys=KEY) as client:
        auth = {"Authorization": f"Bearer {KEY}"}
        job = client.post("/api/jobs", json={"prompt": "x", "duration": 0.2}, headers=auth).json()["id"]
        path = f"/api/jobs/{job}/events"
        assert refused_with(client, path) == 4401
        assert refused_with(client, f"{path}?key={KEY}") == 4401
        assert refused_with(client, path, subprotocols=["ttag.v1", "bearer.wrong-key-1"]) == 4401
        with client.websocket_connect(path, headers={"authorization": f"bearer {KEY}"}) as ws:
            assert read_stream(ws)[2] == 1000
        with client.websocket_connect(path, subprotocols=["ttag.v1", f"bearer.{KEY}"]) as ws:
            assert ws.accepted_subprotocol == "ttag.v1" and read_stream(ws)[2] == 1000
        assert refused_with(client, "/api/jobs/0123456789abcdef/events", headers=auth) == 4404


def test_the_socket_follows_the_host_and_origin_rule():
    with client_for() as client:
        job = client.post("/api/jobs", json={"prompt": "x", "duration": 0.2}).json()["id"]
        path = f"/api/jobs/{job}/events"
        assert refused_with(client, path) == 1008  # Host: testserver
        assert refused_with(client, path, headers={**LOCAL, "origin": "http://evil.example"}) == 1008
        with client.websocket_connect(path, headers={**LOCAL, "origin": "http://localhost:8000"}) as ws:
            assert read_stream(ws)[2] == 1000


def test_a_client_that_does_not_read_stops_getting_audio_instead_of_growing_the_server():
    app = create_app(Config(rate_limit="1000/minute"), registry=fake_registry())
    with serve_in_thread(app) as base:
        body = {"model": "stepped-stream", "prompt": "x", "duration": 600, "steps": 60, "stream": True}
        job = httpx.post(f"{base}/api/jobs", json=body).json()["id"]
        url = base.replace("http", "ws") + f"/api/jobs/{job}/events"
        with connect(url, max_queue=1, max_size=None) as ws:  # reads nothing while the job runs
            deadline = time.monotonic() + 120
            while httpx.get(f"{base}/api/jobs/{job}").json()["state"] != "done":
                assert time.monotonic() < deadline
                time.sleep(0.2)
            received, events = 0, []
            for message in ws:
                if isinstance(message, bytes):
                    received += len(message) - 16
                else:
                    events.append(json.loads(message))
        kinds = [e["type"] for e in events]
        assert "audio_dropped" in kinds and kinds[-1] == "done"
        assert received < 600 * 8000 * 4, "not all of the 19 MB of audio was queued for a client that did not read"
        assert app.state.board.get(job).feed.count(None) > 0, "and the job's audio left memory once it was over"


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_remote_backend_hears_the_take_while_the_server_makes_it(transport, monkeypatch):
    app = create_app(Config(rate_limit="1000/minute", default_model="stepped-stream"), registry=fake_registry())
    if transport == "polling":  # a proxy that refuses the upgrade: the client falls back to polling
        monkeypatch.setattr("ttag_tui.backend.wire.EVENTS_PATH", "/api/no-such-socket/{job}")
    with serve_in_thread(app) as base, RemoteBridge(base) as remote:
        request = remote_request(remote, duration=2, steps=10)
        job = remote.submit(request, stream=True)
        events = list(job.events(timeout=60))
    chunks = [e for e in events if isinstance(e, Chunk)]
    first_chunk = events.index(chunks[0])
    assert first_chunk < next(i for i, e in enumerate(events) if isinstance(e, ClipReady)), "heard before it ended"
    assert any(isinstance(e, Progress) for e in events[: first_chunk + 2])
    assert isinstance(events[-1], Done) and not any(isinstance(e, Failed) for e in events)
    streamed = np.concatenate([c.audio for c in chunks if c.take == 0], axis=1)
    np.testing.assert_allclose(streamed, events[-1].clips[0].audio, atol=1e-5)
    assert remote.transport == transport


def remote_request(remote: RemoteBridge, **fields):
    from runners.request import validate_request

    return validate_request({"prompt": "x", "model": "stepped-stream", "seed": 5, **fields}, remote.registry())
