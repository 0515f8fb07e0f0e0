"""The WebSocket job stream (``GET /api/jobs/{id}/events``): events and audio as they happen, late clients, auth,
origin, cancel and back-pressure; and the remote backend hearing a take while the server still makes it."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import struct
import time
from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest
import soundfile

from runners.request import validate_request
from tests.fake_runners import fake_registry
from tests.live_server import serve_in_thread
from tests.test_server import client_for, wait_state
from ttag_tui.backend import wire
from ttag_tui.backend.events import Chunk, ClipReady, Done, Failed, JobFailed, Progress
from ttag_tui.bridge import Bridge
from ttag_tui.config import Config
from ttag_tui.remote import RemoteBridge
from ttag_tui.server import stream
from ttag_tui.server.app import create_app
from ttag_tui.server.jobs import JobBoard, JobRecord, TakeStore

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


def test_cancel_over_the_socket_and_nothing_else_the_client_sends():
    """Binary frames, text that is not JSON and other JSON leave the stream running (a binary frame used to drop the
    connection without a close frame); then a cancel ends it."""
    with client_for() as client:
        body = {"model": "stepped-stream", "prompt": "x", "duration": 30, "steps": 300, "stream": True}
        job = client.post("/api/jobs", json=body).json()["id"]
        with client.websocket_connect(f"/api/jobs/{job}/events", headers=LOCAL) as ws:
            while json.loads(ws.receive_text())["type"] != "started":
                pass
            ws.send_bytes(b"\x00\xff" * 100)
            ws.send_text("not json")
            ws.send_json([{"cancel": True}])
            ws.send_json({"cancel": "yes"})
            assert client.get(f"/api/jobs/{job}").json()["state"] == "running"
            ws.send_json({"cancel": True})
            events, _, code = read_stream(ws)
        assert events[-1]["type"] == "cancelled" and code == 1000
        assert client.get(f"/api/jobs/{job}").json()["state"] == "cancelled"


def refused_with(client, path: str, **kwargs) -> int:
    """A refused socket's close code: accepted, then closed before any event (what a browser can read)."""
    with client.websocket_connect(path, **kwargs) as ws:
        message = ws.receive()
    assert message["type"] == "websocket.close", message
    return message["code"]


def test_refusals_reach_a_real_client_with_their_codes():
    """Over uvicorn, not TestClient: a socket closed before the handshake completes reaches the client as a bare
    HTTP 403, so each refusal must complete it first — also for a client that offered only its key as subprotocol
    (a browser drops a handshake whose answer names none of the subprotocols it offered)."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    def close_code(url: str, **kwargs) -> tuple[int, str | None]:
        with connect(url, open_timeout=10, **kwargs) as ws, pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        return closed.value.rcvd.code, ws.subprotocol

    def served(**config) -> contextlib.AbstractContextManager[str]:
        return serve_in_thread(create_app(Config(rate_limit="1000/minute", **config), registry=fake_registry()))

    with served(api_keys=KEY, default_model="tone") as base:
        made = httpx.post(
            f"{base}/api/jobs", json={"prompt": "x", "duration": 0.2}, headers={"authorization": f"Bearer {KEY}"}
        )
        socket = base.replace("http", "ws", 1) + f"/api/jobs/{made.json()['id']}/events"
        assert close_code(socket) == (4401, None)
        assert close_code(socket, subprotocols=["ttag.v1", "bearer.wrong-key-1"]) == (4401, "ttag.v1")
        assert close_code(socket, subprotocols=["bearer.wrong-key-1"]) == (4401, "bearer.wrong-key-1")
        key = {"subprotocols": ["ttag.v1", f"bearer.{KEY}"]}
        assert close_code(base.replace("http", "ws", 1) + "/api/jobs/0123456789abcdef/events", **key)[0] == 4404
    with served(default_model="tone") as base:  # no keys: the Origin must pass the Host rule
        made = httpx.post(f"{base}/api/jobs", json={"prompt": "x", "duration": 0.2})
        socket = base.replace("http", "ws", 1) + f"/api/jobs/{made.json()['id']}/events"
        assert close_code(socket, origin="http://evil.example", subprotocols=["ttag.v1"]) == (1008, "ttag.v1")


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


class HeldSocket:
    """A client that reads nothing until ``reading`` is set: each send waits, as a real socket's does once its buffer
    is full (uvicorn's send waits for the transport to drain)."""

    def __init__(self) -> None:
        self.reading = asyncio.Event()
        self.sent: list[str | bytes] = []
        self.waiting = 0  # sends begun and not yet taken

    async def _send(self, item: str | bytes) -> None:
        self.waiting += 1
        await self.reading.wait()
        self.waiting -= 1
        self.sent.append(item)

    async def send_text(self, text: str) -> None:
        await self._send(text)

    async def send_bytes(self, data: bytes) -> None:
        await self._send(data)


def streamed_frames(sent: list[str | bytes], take: int) -> np.ndarray:
    pieces = [wire.decode_audio(item) for item in sent if isinstance(item, bytes)]
    starts = [start for t, start, _, _ in pieces if t == take]
    assert starts == sorted(starts) and starts[0] == 0, "contiguous, in order"
    return np.concatenate([audio for t, _, audio, _ in pieces if t == take], axis=1)


@contextlib.asynccontextmanager
async def held_job(tmp_path, **fields) -> AsyncIterator[tuple[JobBoard, JobRecord, HeldSocket, asyncio.Task[None]]]:
    """A streamed stepped-stream job on a real bridge and job board, and a client (``HeldSocket``) being sent its
    feed, which reads nothing until told to."""
    registry = fake_registry()
    with Bridge(registry) as bridge:
        board = JobBoard(bridge, TakeStore(tmp_path / "server"))
        request = validate_request({"prompt": "x", "model": "stepped-stream", **fields}, registry)
        record = board.submit(request, stream=True)
        client = HeldSocket()
        sending = asyncio.create_task(stream._send_feed(client, record))
        try:
            yield board, record, client, sending
        finally:
            board.close()


async def test_a_client_that_does_not_read_holds_nothing_and_later_hears_every_take_from_disk(tmp_path):
    """7.7 MB of audio are made while the client reads nothing: the server keeps one copy of the job's audio (the
    feed) while it runs, none once it has ended, and holds back no more than the one frame that client's send waits
    on; when the client reads again, the rest comes from the takes on disk, whole."""
    async with held_job(tmp_path, duration=120, steps=20, takes=2, seed=1) as (_, record, client, sending):
        await asyncio.wait_for(record.ended.wait(), 120)
        assert client.waiting == 1 and client.sent == [], "one send waits; nothing else is held for this client"
        assert not any(isinstance(item, Chunk) for item in record.feed), "the job's audio left memory when it ended"
        client.reading.set()
        await asyncio.wait_for(sending, 60)
        kinds = [json.loads(item)["type"] for item in client.sent if isinstance(item, str)]
        assert kinds[0] == "status" and kinds[-1] == "done" and "audio_dropped" not in kinds
        assert [take.metadata["take"] for take in record.takes] == [0, 1]
        for take in record.takes:
            streamed = streamed_frames(client.sent, take.metadata["take"])
            np.testing.assert_array_equal(streamed, take.read(0, take.frames))


async def test_a_client_far_behind_when_the_job_ends_learns_the_end_at_once(tmp_path):
    """19 MB (past the 16 MiB a client may still be sent after the end) left to hear when the job ended: the client is
    told its audio is gone and gets the end at once — a browser would otherwise say "running" for a minute more."""
    async with held_job(tmp_path, duration=300, steps=20, takes=2, seed=1) as (_, record, client, sending):
        await asyncio.wait_for(record.ended.wait(), 120)
        client.reading.set()
        await asyncio.wait_for(sending, 60)
    kinds = [json.loads(item)["type"] for item in client.sent if isinstance(item, str)]
    assert kinds[0] == "status" and kinds[-1] == "done" and kinds.count("audio_dropped") == 1
    assert kinds.count("take") == 2 and not any(isinstance(item, bytes) for item in client.sent)


async def test_a_cancelled_job_keeps_its_finished_takes_and_a_client_behind_hears_them(tmp_path):
    """Cancelled during its second take, a job lists its first take (kept as soon as it was made) in its status and
    end event, and serves it; a client that was behind hears that take whole from disk, then is told the unfinished
    one's audio is gone."""
    async with held_job(tmp_path, duration=60, steps=30, takes=3, seed=3) as (_, record, client, sending):
        while not any(isinstance(item, Chunk) and item.take == 1 for item in record.feed):  # take 0 is made
            await asyncio.wait_for(record.wait_beyond(len(record.feed)), 60)
        record.cancel()
        await asyncio.wait_for(record.ended.wait(), 60)
        client.reading.set()
        await asyncio.wait_for(sending, 60)
        status = record.to_dict()
        assert status["state"] == "cancelled" and [r["take"] for r in status["results"]] == [0]
        events = [json.loads(item) for item in client.sent if isinstance(item, str)]
        assert events[-1]["type"] == "cancelled" and events[-1]["results"] == status["results"]
        assert [e["type"] for e in events].count("audio_dropped") == 1
        np.testing.assert_array_equal(streamed_frames(client.sent, 0), record.takes[0].read(0, 60 * 8000))


async def test_a_client_behind_a_job_dropped_meanwhile_is_told_and_sees_the_end(tmp_path):
    """The job's takes were deleted (retention dropped it) while a client was still behind: that client is told its
    audio is gone, then gets the end event, instead of a connection cut without a word."""
    async with held_job(tmp_path, duration=5, steps=5, seed=4) as (board, record, client, sending):
        await asyncio.wait_for(record.ended.wait(), 60)
        board.store.drop(record.id)
        client.reading.set()
        await asyncio.wait_for(sending, 60)
    kinds = [json.loads(item)["type"] for item in client.sent if isinstance(item, str)]
    assert kinds.count("audio_dropped") == 1 and kinds[-1] == "done"


def test_a_late_client_hears_long_takes_whole_over_a_real_socket():
    """A client that joins once the first take's 19 MB were streamed gets them at the pace it reads, then the rest
    live (the server used to queue the whole backlog at once for it, past its 16 MiB bound, and drop its audio). The
    stream is not compressed: float audio barely shrinks, and compressing it held up the server's event loop."""
    from websockets.sync.client import connect

    app = create_app(Config(rate_limit="1000/minute", default_model="stepped-stream"), registry=fake_registry())
    with serve_in_thread(app) as base, httpx.Client(base_url=base) as http:
        body = {"prompt": "x", "duration": 600, "steps": 30, "takes": 2, "seed": 2, "stream": True}
        job = http.post("/api/jobs", json=body).json()["id"]
        deadline = time.monotonic() + 60
        while http.get(f"/api/jobs/{job}/audio", params={"take": 1}).headers["x-ttag-frames"] == "0":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        events, audio = [], []
        with connect(base.replace("http", "ws", 1) + f"/api/jobs/{job}/events", max_size=None) as ws:
            assert ws.response.headers.get("Sec-WebSocket-Extensions") is None, "the client offered deflate"
            for message in ws:
                if isinstance(message, bytes):
                    audio.append(message)
                else:
                    events.append(json.loads(message))
        assert events[0]["state"] == "running" and events[-1]["type"] == "done"
        assert "audio_dropped" not in [e["type"] for e in events]
        for take in (0, 1):  # the finished take's own float samples, as the server reads them back from disk
            pieces, start = [], 0
            while (got := http.get(f"/api/jobs/{job}/audio", params={"take": take, "start": start})).content:
                pieces.append(np.frombuffer(got.content, "<f4"))
                start += int(got.headers["x-ttag-frames"])
            np.testing.assert_array_equal(streamed_frames(audio, take), np.concatenate(pieces)[None])


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


def test_a_remote_backend_refused_the_stream_polls_instead():
    """Refused with a code before any event (here the stream's rate limit, spent on sockets to a job that does not
    exist), the client polls, whose HTTP answers say why when they too refuse; here they do not."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    app = create_app(Config(rate_limit="2/minute", default_model="stepped-stream"), registry=fake_registry())
    with serve_in_thread(app) as base, RemoteBridge(base) as remote:
        for _ in range(2):
            with connect(base.replace("http", "ws", 1) + "/api/jobs/0123456789abcdef/events") as ws:
                with pytest.raises(ConnectionClosed) as closed:
                    ws.recv(timeout=10)
                assert closed.value.rcvd.code == 4404
        job = remote.submit(remote_request(remote, duration=1, steps=5), stream=True)
        events = list(job.events(timeout=60))
        assert isinstance(events[-1], Done) and remote.transport == "polling"


def remote_request(remote: RemoteBridge, **fields):
    from runners.request import validate_request

    return validate_request({"prompt": "x", "model": "stepped-stream", "seed": 5, **fields}, remote.registry())


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_a_remote_backend_keeps_the_takes_a_cancelled_job_finished(transport, monkeypatch):
    app = create_app(Config(rate_limit="1000/minute", default_model="stepped-stream"), registry=fake_registry())
    if transport == "polling":
        monkeypatch.setattr("ttag_tui.backend.wire.EVENTS_PATH", "/api/no-such-socket/{job}")
    with serve_in_thread(app) as base, RemoteBridge(base) as remote:
        job = remote.submit(remote_request(remote, duration=30, steps=30, takes=3), stream=True)
        for event in job.events(timeout=60):
            if isinstance(event, Chunk) and event.take == 1:  # the first take is made
                job.cancel()
                break
        with pytest.raises(JobFailed) as info:
            job.result(60)
    assert info.value.kind == "cancelled" and remote.transport == transport
    assert [clip.metadata["take"] for clip in info.value.clips] == [0]
    assert info.value.clips[0].duration == 30
