"""Downloads share one encode per take and format while any client uses it, and leave no file behind."""

from __future__ import annotations

import asyncio
import io
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile
from fastapi.testclient import TestClient

from tests.fake_runners import fake_registry
from tests.waiting import until, wait_until
from ttag_tui.config import Config
from ttag_tui.output import transcode
from ttag_tui.paths import data_dir
from ttag_tui.server import downloads
from ttag_tui.server.app import create_app
from ttag_tui.server.downloads import SharedEncodes, SharedFileResponse


class CountedTranscode:
    """The real transcode, counted, each call held until ``release`` is set (so requests pile up meanwhile)."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[str] = []
        self.release = threading.Event()
        self.fail = fail

    def __call__(self, source: Path, destination: Path, fmt: str) -> None:
        self.calls.append(fmt)
        assert self.release.wait(30), "never released"
        if self.fail:
            raise OSError("disk full")
        transcode(source, destination, fmt)


@pytest.fixture
def take(tmp_path) -> Path:
    path = tmp_path / "take0.wav"
    soundfile.write(path, np.sin(np.arange(8000) / 10).astype(np.float32)[:, None] * 0.5, 8000, subtype="FLOAT")
    return path


@pytest.fixture
def counted(monkeypatch) -> CountedTranscode:
    counted = CountedTranscode()
    monkeypatch.setattr(downloads, "transcode", counted)
    return counted


def leftovers(folder: Path) -> list[Path]:
    return sorted(folder.glob(".download-*"))


async def test_requests_meanwhile_share_one_encode_and_the_last_one_removes_it(take, counted, tmp_path):
    with ThreadPoolExecutor(2) as pool:
        encodes = SharedEncodes(pool, lambda: tmp_path)
        waiting = [asyncio.create_task(encodes.open(("job", 0, "flac"), take)) for _ in range(3)]
        other = asyncio.create_task(encodes.open(("job", 0, "ogg"), take))
        await until(lambda: len(counted.calls) == 2, 30, "both encodes started")
        counted.release.set()
        paths = await asyncio.gather(*waiting)
        ogg = await other
        assert sorted(counted.calls) == ["flac", "ogg"] and len(set(paths)) == 1 and ogg != paths[0]
        assert soundfile.info(paths[0]).format == "FLAC" and soundfile.info(ogg).format == "OGG"
        for _ in range(2):
            encodes.close(("job", 0, "flac"))
        assert paths[0].exists(), "a response still sends it"
        late = await encodes.open(("job", 0, "flac"), take)  # asked while one is still being sent: no new encode
        assert late == paths[0] and len(counted.calls) == 2
        encodes.close(("job", 0, "flac"))
        encodes.close(("job", 0, "flac"))
        encodes.close(("job", 0, "ogg"))
        assert len(encodes) == 0
        await until(lambda: not leftovers(tmp_path), 30, "both files removed once their last response was done")
        again = await encodes.open(("job", 0, "flac"), take)  # nothing kept once every response is done
        assert len(counted.calls) == 3
        encodes.close(("job", 0, "flac"))
        await until(lambda: not again.exists(), 30, "the new encode's file removed")


async def test_clients_gone_mid_encode_leave_it_to_the_others_and_then_nothing_behind(take, counted, tmp_path):
    with ThreadPoolExecutor(2) as pool:
        encodes = SharedEncodes(pool, lambda: tmp_path)
        first = asyncio.create_task(encodes.open(("job", 0, "mp3"), take))
        second = asyncio.create_task(encodes.open(("job", 0, "mp3"), take))
        await until(lambda: counted.calls == ["mp3"], 30, "the encode started")
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        counted.release.set()
        path = await second
        assert soundfile.info(path).frames >= 8000
        encodes.close(("job", 0, "mp3"))
        await until(lambda: not leftovers(tmp_path), 30, "the file removed after its last response")

        counted.release.clear()
        alone = asyncio.create_task(encodes.open(("job", 1, "mp3"), take))
        await until(lambda: len(counted.calls) == 2, 30, "the second encode started")
        alone.cancel()  # the only client goes: the encode runs on in its thread, its file goes when it ends
        with pytest.raises(asyncio.CancelledError):
            await alone
        assert len(encodes) == 0
        counted.release.set()
        await until(lambda: not leftovers(tmp_path), 30, "the orphaned encode's file removed once it ended")


async def test_a_failed_encode_fails_every_waiter_and_leaves_nothing(take, monkeypatch, tmp_path):
    failing = CountedTranscode(fail=True)
    monkeypatch.setattr(downloads, "transcode", failing)
    with ThreadPoolExecutor(2) as pool:
        encodes = SharedEncodes(pool, lambda: tmp_path)
        waiting = [asyncio.create_task(encodes.open(("job", 0, "wav"), take)) for _ in range(2)]
        await until(lambda: failing.calls, 30, "the encode started")
        failing.release.set()
        for task in waiting:
            with pytest.raises(OSError, match="disk full"):
                await task
        assert len(encodes) == 0 and leftovers(tmp_path) == [] and failing.calls == ["wav"]


async def test_a_response_whose_client_went_away_still_releases_its_file(take, tmp_path):
    with ThreadPoolExecutor(1) as pool:
        encodes = SharedEncodes(pool, lambda: tmp_path)
        path = await encodes.open(("job", 0, "wav"), take)
        response = SharedFileResponse(encodes, ("job", 0, "wav"), path, media_type="audio/wav")

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def gone(message):
            raise OSError("connection reset")

        scope = {"type": "http", "method": "GET", "headers": [], "asgi": {"spec_version": "2.4"}}
        with pytest.raises(OSError):
            await response(scope, receive, gone)
        assert len(encodes) == 0
        await until(lambda: not path.exists(), 30, "the file removed")
        response.release()  # once only: a second call changes nothing
        assert len(encodes) == 0


def test_the_server_encodes_a_take_once_for_clients_that_ask_meanwhile(counted, monkeypatch):
    opened = []
    real_open = SharedEncodes.open

    async def counting_open(self, key, source):
        opened.append(key)
        return await real_open(self, key, source)

    monkeypatch.setattr(SharedEncodes, "open", counting_open)
    app = create_app(Config(default_model="tone", rate_limit="1000/minute"), registry=fake_registry())
    with TestClient(app, base_url="http://localhost:8000") as client:
        job = client.post("/api/jobs", json={"prompt": "x", "duration": 0.5, "seed": 3}).json()["id"]
        wait_until(lambda: client.get(f"/api/jobs/{job}").json()["state"] == "done", 30, "the job done")
        formats = ["flac", "mp3", "flac", "mp3", "flac", "mp3"]
        with ThreadPoolExecutor(len(formats)) as clients:
            answers = [
                clients.submit(client.get, f"/api/jobs/{job}/takes/0", params={"format": fmt}) for fmt in formats
            ]
            wait_until(lambda: len(opened) == len(formats), 30, "every request waiting on an encode")
            counted.release.set()
            replies = [answer.result() for answer in answers]
        assert [reply.status_code for reply in replies] == [200] * len(formats)
        bodies = [reply.content for reply in replies]
        assert [soundfile.info(io.BytesIO(body)).format for body in bodies[:2]] == ["FLAC", "MP3"]
        assert sorted(counted.calls) == ["flac", "mp3"]
        assert len({bodies[i] for i in (0, 2, 4)}) == 1 and len({bodies[i] for i in (1, 3, 5)}) == 1
        wait_until(lambda: not list((data_dir() / "server").glob("*/.download-*")), 10, "no encoded copy left")
