"""The server's trust classes: each test names a class of defect an outside probe found, and keeps it from coming back.

Audio of any length in any format, memory after a job, who may call and how often, what JSON may carry, streams that
cannot finish, and what the schema promises. The API fuzz run over a real server is in tests/test_api_fuzz.py.
"""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile

from runners.contract import Clip
from tests.fake_runners import fake_registry
from tests.live_server import ROOT, serve_in_thread, start_server, stop_server
from tests.test_server import client_for, decode, wait_state
from ttag_tui import output
from ttag_tui.backend.events import Chunk
from ttag_tui.config import Config
from ttag_tui.server import UnsafeBind, check_bind, is_loopback
from ttag_tui.server.app import MAX_BODY_BYTES, create_app

REGISTRY = fake_registry()
KEY = "s3cret-key-1"


def headers(value: str) -> dict[str, str]:
    return {"Authorization": value}


# -- audio of any length, in any format ------------------------------------------------------------------------------
# The server's downloads (``transcode``) of the longest take in every format, by eight clients at once, are
# tests/test_api_fuzz.py's; here the direct write the CLI makes for ``--format ogg``.
WRITE_OGG = """
import sys, numpy as np, soundfile
from ttag_tui.output import write_audio
rate, seconds = 44100, 600
t = np.arange(rate * seconds, dtype=np.float32) / rate
audio = np.stack([0.3 * np.sin(2 * np.pi * 220 * t), 0.3 * np.sin(2 * np.pi * 330 * t)]).astype(np.float32)
write_audio(f"{sys.argv[1]}/direct.ogg", audio, rate, "ogg")
print(round(soundfile.info(f"{sys.argv[1]}/direct.ogg").duration))
"""


@pytest.mark.slow
def test_the_longest_take_writes_as_ogg_without_crashing_the_process(tmp_path):
    """One soundfile.write of ≥ 50 s of stereo Vorbis segfaulted: a child process, so a crash fails the test."""
    done = subprocess.run(
        [sys.executable, "-c", WRITE_OGG, str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["600"]


def test_cli_writes_a_long_ogg_take_and_leaves_no_temp_file(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "ttag_tui", "generate", "rain", "-d", "60", "--format", "ogg", "-o", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    takes = list(tmp_path.glob("*.ogg"))
    assert len(takes) == 1 and round(soundfile.info(takes[0]).duration) == 60
    assert not list(tmp_path.glob(".ttag-*"))


def make_clip(seconds: float = 1.0) -> Clip:
    audio = np.zeros((2, int(8000 * seconds)), np.float32)
    return Clip(audio=audio, sample_rate=8000, metadata={"seed": 1, "take": 0, "parameters": {"prompt": "x"}})


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_are_written_with_the_users_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        take = output.write_clip(make_clip(), tmp_path)
        stored = output.write_atomically(tmp_path / "other.json", lambda p: p.write_text("{}"))
    finally:
        os.umask(previous)
    for path in (take, take.with_suffix(".json"), stored):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path


# -- memory after a job ------------------------------------------------------------------------------------------------
def test_finished_jobs_keep_their_takes_on_disk_not_in_memory():
    with client_for() as client:
        board = client.app.state.board
        job_id = client.post("/api/jobs", json={"prompt": "x", "takes": 2, "duration": 0.5, "seed": 3}).json()["id"]
        assert wait_state(client, job_id)["state"] == "done"
        record = board.get(job_id)
        assert record.job is None and not any(isinstance(i, Chunk) for i in record.feed), "samples left memory"
        files = [t.path for t in record.takes]
        root = board.store.root
        assert all(p.is_file() and p.parent.parent == root for p in files)
        audio, _ = decode(client.get(f"/api/jobs/{job_id}/takes/1"))
        assert audio.shape == (4000, 1)
        board.keep_s = 0  # expire it: its files go with it
        assert client.get(f"/api/jobs/{job_id}").status_code == 404
        assert not any(p.exists() for p in files)
    assert not root.exists(), "the server's take folder goes when it stops"


def test_takes_on_disk_are_bounded_in_bytes_oldest_first():
    with client_for() as client:
        client.app.state.board.keep_bytes = 8000 * 4  # one second of the tone's mono float32
        first = client.post("/api/jobs", json={"prompt": "x", "duration": 1, "seed": 1}).json()["id"]
        wait_state(client, first)
        second = client.post("/api/jobs", json={"prompt": "x", "duration": 1, "seed": 2}).json()["id"]
        wait_state(client, second)
        assert client.get(f"/api/jobs/{second}").status_code == 200
        assert client.get(f"/api/jobs/{first}").status_code == 404


def test_a_killed_servers_take_folder_is_removed_by_the_next_one(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftover = Path(os.environ["TTAG_DATA_DIR"]) / "server" / f"{dead.pid}-0000"
    leftover.mkdir(parents=True)
    with client_for() as client:
        client.post("/api/generate", json={"prompt": "x", "duration": 0.1})
        assert not leftover.exists()


# -- who may call, and how often -----------------------------------------------------------------------------------
@pytest.mark.parametrize("keys", [",", " , ", ",,,", ""])
def test_a_key_list_of_only_separators_is_no_key(keys):
    config = Config(api_keys=keys)
    assert config.api_key_list == ()
    with pytest.raises(UnsafeBind):
        check_bind("0.0.0.0", config.api_key_list, allow_public=False)
    with client_for(api_keys=keys) as client:  # no key: loopback names only, and nothing asks for a key
        assert client.get("/api/models").status_code == 200
        assert client.get("/api/models", headers={"Host": "evil.example"}).status_code == 421


def test_auth_scheme_is_case_insensitive_and_every_spelling_shares_one_rate_budget():
    spellings = [
        f"Bearer {KEY}",
        f"bearer {KEY}",
        f"BEARER {KEY}",
        f"Bearer  {KEY}",
        f"  Bearer {KEY} ",
        f"bEaReR {KEY}",
    ]
    with client_for(api_keys=KEY, rate_limit="3/minute") as client:
        codes = [
            client.post("/api/jobs", json={"prompt": "x", "duration": 0.1}, headers=headers(h)).status_code
            for h in spellings
        ]
        assert codes == [202, 202, 202, 429, 429, 429]
        assert client.get("/api/models", headers=headers(f"bearer   {KEY}")).status_code == 200


def test_rate_limit_cannot_be_dodged_with_made_up_keys():
    with client_for(api_keys=KEY, rate_limit="1000/minute") as client:
        codes = [client.get("/api/models", headers=headers(f"Bearer anything{i}")).status_code for i in range(12)]
        assert codes[:10] == [401] * 10 and codes[10:] == [429, 429], "failed authentications are throttled"
        assert int(client.get("/api/models", headers=headers("Bearer x")).headers["retry-after"]) >= 1
        assert client.get("/api/models", headers=headers(f"Bearer {KEY}")).status_code == 429, "per address"


def test_without_keys_the_limit_is_per_client_address():
    with client_for(rate_limit="2/minute") as client:
        codes = [
            client.post("/api/jobs", json={"prompt": "x", "duration": 0.1}, headers=headers(f"Bearer k{i}")).status_code
            for i in range(3)
        ]
        assert codes == [202, 202, 429]


def test_a_forwarded_for_header_is_not_the_clients_address(tmp_path):
    """``ttag server`` as started: a loopback client's X-Forwarded-For (uvicorn trusts it by default) must neither
    dodge the limits nor aim them at another address — a made-up address per wrong key is still one client."""
    base, process = start_server(tmp_path, TTAG_API_KEYS=KEY, TTAG_RATE_LIMIT="1000/minute")
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            codes = [
                client.get("/api/models", headers={**headers("Bearer wrong"), "x-forwarded-for": f"10.0.0.{i}"})
                for i in range(11)
            ]
            assert [r.status_code for r in codes] == [401] * 10 + [429]
            victim = {**headers(f"Bearer {KEY}"), "x-forwarded-for": "10.0.0.99"}
            assert client.get("/api/models", headers=victim).status_code == 429, "the address is the socket's"
    finally:
        stop_server(process)
    assert "10.0.0." not in (tmp_path / "server.log").read_text()


@pytest.mark.parametrize("bad", ["banana", "60/min", "", "0/second"])
def test_a_rate_limit_that_cannot_apply_is_refused(bad):
    with pytest.raises(ValueError, match=r"rate limit|no request"):
        create_app(Config(rate_limit=bad), registry=REGISTRY)


@pytest.mark.parametrize(
    ("host", "code"),
    [
        ("localhost:8000", 200),
        ("127.0.0.1:8000", 200),
        ("127.1.2.3", 200),
        ("[::1]:8000", 200),
        ("app.localhost", 200),
        ("LOCALHOST", 200),
        ("evil.example", 421),
        ("evil.example:8000", 421),
        ("127.0.0.1.evil.example", 421),
        ("", 421),
        ("studio.lan", 200),  # configured
    ],
)
def test_keyless_server_answers_loopback_host_names_only(host, code):
    with client_for(allowed_hosts="studio.lan") as client:
        assert client.get("/api/health", headers={"Host": host}).status_code == code
    if code == 421:
        with client_for(api_keys=KEY) as client:  # a key is the guard: any Host
            assert client.get("/api/models", headers={"Host": host, **headers(f"Bearer {KEY}")}).status_code == 200


def test_loopback_names():
    for host in ("127.0.0.1", "::1", "[::1]", "localhost", "LocalHost.", "a.localhost", "127.9.9.9"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.168.1.4", "localhost.evil.example", "10.0.0.1", "[::ffff:1.2.3.4]"):
        assert not is_loopback(host), host


# -- what JSON may carry ---------------------------------------------------------------------------------------------
NON_FINITE_BODIES = [
    b'{"prompt":"x","seed":NaN}',
    b"NaN",
    b'{"prompt":NaN}',
    b'{"prompt":"x","foo":Infinity}',
    b'{"prompt":"x","takes":-Infinity}',
    b'{"prompt":"x","stream":NaN}',
    b'{"prompt":"x","duration":1e999}',
    b"[NaN]",
]


@pytest.mark.parametrize("body", NON_FINITE_BODIES)
@pytest.mark.parametrize("route", ["/api/generate", "/api/jobs"])
def test_nan_and_infinity_are_422_with_json_that_parses(body, route):
    with client_for() as client:
        response = client.post(route, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422
        json.loads(response.text)  # strict: no NaN token in the answer


@pytest.mark.parametrize("body", [b'{"prompt":"x"', b"\xff\xfe{}", b"nul", b'{"prompt":"x",}'])
@pytest.mark.parametrize("route", ["/api/generate", "/api/jobs"])
def test_a_body_that_is_not_json_is_400_as_the_schema_says(body, route):
    with client_for() as client:
        response = client.post(route, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400
        assert response.json()["detail"].startswith("the body is not valid JSON")
        declared = client.get("/openapi.json").json()["paths"][route]["post"]["responses"]
        assert declared["400"]["description"] == "the body is not valid JSON"


@pytest.mark.parametrize("field", ["prompt", "negative_prompt", "model", "format"])
def test_text_that_cannot_be_encoded_is_422_before_anything_is_queued(field):
    body = {"prompt": "x", field: "\ud800 piano"}
    raw = json.dumps(body).encode()  # "\\ud800": what a client sends for a lone surrogate
    with client_for() as client:
        for route in ("/api/generate", "/api/jobs"):
            response = client.post(route, content=raw, headers={"content-type": "application/json"})
            assert response.status_code == 422, response.text
            assert field in {e["loc"][-1] for e in response.json()["detail"]}
        assert client.app.state.board.active() == 0


def test_cli_with_undecodable_bytes_is_a_usage_error(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "ttag_tui", "generate", b"\xff\xfe piano", "-d", "1", "-o", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "prompt: contains an invalid character (lone surrogate U+DCFF)" in done.stderr


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"prompt": "x", "takes": 1.5}, "takes", "must be a whole number (got 1.5)"),
        ({"prompt": "x", "seed": 4294967296}, "seed", "between 0 and 4294967295 (got 4294967296)"),
        ({"prompt": "x", "seed": 10**40}, "seed", "between 0 and 4294967295"),
        ({"prompt": "x", "duration": "5"}, "duration", "must be a number, not text"),
        ({"prompt": 5}, "prompt", "must be text"),
        ({"prompt": "x", "stream": "yes"}, "stream", "must be true or false"),
        ({"prompt": "\u00a0" + "x" * 2000}, "prompt", "too long (2001 characters"),
    ],
)
def test_every_rule_speaks_in_the_same_words(body, field, message):
    with client_for() as client:
        response = client.post("/api/jobs", json=body)
        assert response.status_code == 422
        errors = {e["loc"][-1]: e["msg"] for e in response.json()["detail"]}
        assert message in errors[field]


def test_schema_and_reality_agree_on_the_prompt_length():
    with client_for() as client:
        schema = client.get("/openapi.json").json()["components"]["schemas"]["GenerateBody"]
        limit = schema["properties"]["prompt"]["maxLength"]
        assert client.post("/api/jobs", json={"prompt": "y" * limit, "duration": 0.1}).status_code == 202
        assert client.post("/api/jobs", json={"prompt": " " + "y" * limit}).status_code == 422
        assert schema["properties"]["takes"]["anyOf"][0]["maximum"] == 8


def test_chunked_body_over_the_limit_is_413_like_a_declared_one():
    def chunks():
        for _ in range(MAX_BODY_BYTES // 1024 + 2):
            yield b" " * 1024

    with client_for() as client:
        response = client.post("/api/jobs", content=chunks(), headers={"content-type": "application/json"})
        assert response.status_code == 413
        declared = client.post("/api/jobs", content=b" " * (MAX_BODY_BYTES + 1))
        assert declared.status_code == 413


def test_head_health():
    with client_for() as client:
        response = client.head("/api/health")
        assert response.status_code == 200 and response.content == b""


# -- streams that cannot finish --------------------------------------------------------------------------------------
@pytest.fixture
def uvicorn_server():
    with serve_in_thread(create_app(Config(rate_limit="1000/minute"), registry=REGISTRY)) as base:
        yield base


def test_a_stream_whose_job_fails_is_cut_off_not_ended_short(uvicorn_server):
    body = {"model": "stream-then-crash", "prompt": "x", "duration": 2, "stream": True}
    received = bytearray()
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream("POST", f"{uvicorn_server}/api/generate", json=body, timeout=60) as response,
    ):
        assert response.status_code == 200
        for piece in response.iter_bytes():
            received += piece
    assert 44 < len(received) < 44 + 2 * 8000 * 2, "the header and the streamed half arrived, then the cut"
    assert httpx.get(f"{uvicorn_server}/api/health").status_code == 200


def test_a_whole_stream_still_ends_cleanly(uvicorn_server):
    body = {"model": "tone", "prompt": "x", "duration": 0.5, "seed": 2, "stream": True}
    response = httpx.post(f"{uvicorn_server}/api/generate", json=body, timeout=60)
    assert response.status_code == 200
    assert soundfile.info(io.BytesIO(response.content)).frames == 4000


def test_retention_lets_go_of_the_expired_then_the_oldest_beyond_count_and_bytes():
    from ttag_tui.server.retention import to_drop

    items = [("a", 50.0, 10), ("b", 5.0, 10), ("c", 4.0, 30), ("d", 3.0, 10), ("e", 0.0, 10)]  # oldest first

    def drop(**limits):
        return [name for name, _, _ in to_drop(items, age_s=lambda i: i[1], size_bytes=lambda i: i[2], **limits)]

    assert drop(keep=10, keep_bytes=1000, keep_s=60) == []
    assert drop(keep=10, keep_bytes=1000, keep_s=30) == ["a"]  # too old
    assert drop(keep=2, keep_bytes=1000, keep_s=30) == ["a", "b", "c"]  # then the oldest beyond the count
    assert drop(keep=10, keep_bytes=20, keep_s=30) == ["a", "b", "c"]  # or beyond the bytes (d + e = 20)
    assert drop(keep=0, keep_bytes=0, keep_s=0) == ["a", "b", "c", "d", "e"]


def test_the_take_store_makes_one_folder_when_first_used_from_many_threads_at_once(tmp_path):
    """The loop's thread and worker threads can reach the store first together: one folder, every caller sees it."""
    from ttag_tui.server.jobs import TakeStore

    store = TakeStore(tmp_path)
    start = threading.Barrier(8)

    def first_use() -> Path:
        start.wait()
        return store.root

    with ThreadPoolExecutor(8) as pool:
        roots = set(pool.map(lambda _: first_use(), range(8)))
    assert len(roots) == 1 and list(tmp_path.iterdir()) == [roots.pop()]
    store.close()
    assert list(tmp_path.iterdir()) == []
