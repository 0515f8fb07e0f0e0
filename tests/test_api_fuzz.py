"""An API fuzz run against a real ``ttag server``: what schemathesis cannot send, and the longest audio in every format.

Every field gets NaN, ±Infinity, lone surrogates, empty and separator-only text, huge and negative numbers and wrong
JSON types; bodies come malformed, deeply nested and at the size limit ± 1; query parameters go out of range; the
longest take each runnable model allows is downloaded in every format by 8 clients at once while ``/api/health`` is
polled. The bar: no 5xx, the server process alive with no traceback in its log, health p99 ≤ 100 ms.
"""

from __future__ import annotations

import functools
import io
import json
import statistics
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import soundfile

from runners.request import FORMATS
from tests.live_server import start_server, stop_server
from ttag_tui.server.app import MAX_BODY_BYTES

pytestmark = pytest.mark.slow

# Raw JSON values (text, so NaN, Infinity and escaped lone surrogates go out exactly as a hostile client sends them).
HOSTILE_VALUES = [
    "NaN",
    "Infinity",
    "-Infinity",
    '"\\ud800"',
    '"\\udfff piano"',
    '"\\u0000"',
    '""',
    '" "',
    '","',
    '" , "',
    "1e308",
    "-1e308",
    "1" + "0" * 40,
    "-1",
    "0",
    "1.5",
    "true",
    "null",
    "[]",
    "{}",
    '"' + "x" * 2001 + '"',
    '"\u00a0' + "x" * 2000 + '"',
]
BASE = {"prompt": '"fuzz"', "duration": "1"}


def body_with(field: str, value: str) -> bytes:
    members = {**BASE, field: value}
    return ("{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in members.items()) + "}").encode()


def padded_body(size: int) -> bytes:
    """A valid body of exactly ``size`` bytes (white space is JSON too)."""
    core = b'{"prompt":"fuzz","duration":1}'
    return core[:-1] + b" " * (size - len(core)) + b"}"


BODY_CASES = [
    b"NaN",
    b"Infinity",
    b"[]",
    b"null",
    b'"fuzz"',
    b"{",
    b"",
    b'{"prompt":"\xff\xfe"}',
    b"[" * 30_000,
    b'{"prompt":' * 5_000,
    padded_body(MAX_BODY_BYTES - 1),
    padded_body(MAX_BODY_BYTES),
    padded_body(MAX_BODY_BYTES + 1),
]

QUERY_CASES = [
    "/api/jobs/{job}/takes/{take}?format={fmt}",
    "/api/jobs/{job}/audio?take={take}&start={start}",
    "/api/health?detail={fmt}",
]
TAKES = ["0", "-1", "8", "99999999999999999999", "NaN", "%ED%A0%80", "1e3"]
QUERY_FORMATS = ["wav", "WAV", "aiff", "", "NaN", "%ED%A0%80", "..%2F..%2Fetc%2Fpasswd"]
STARTS = ["0", "-1", str(2**63), "NaN", "Infinity"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("fuzz-server")
    base, process = start_server(home, TTAG_MAX_QUEUE="10000", TTAG_RATE_LIMIT="100000/minute")
    yield base, process
    stop_server(process)
    log = (home / "server.log").read_text()
    assert "Traceback" not in log, log[-3000:]


class Tally:
    """Status codes per case family; every 5xx is kept with what caused it."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.server_errors: list[str] = []
        self.lock = threading.Lock()

    def record(self, family: str, response: httpx.Response, what: object) -> None:
        with self.lock:
            self.counts[family] = self.counts.get(family, 0) + 1
            if response.status_code >= 500:
                self.server_errors.append(f"{family}: {what!r} → {response.status_code} {response.text[:200]}")


def test_hostile_input_never_gets_a_5xx_and_never_kills_the_server(server):
    base, process = server
    tally = Tally()
    with httpx.Client(base_url=base, timeout=120) as http:
        schema = http.get("/openapi.json").json()["components"]["schemas"]["GenerateBody"]
        fields = [*schema["properties"], "no_such_field"]
        created = []
        for field in fields:
            for value in HOSTILE_VALUES:
                for route in ("/api/jobs", "/api/generate"):
                    body = body_with(field, value)
                    response = http.post(route, content=body, headers={"content-type": "application/json"})
                    tally.record("field", response, (route, body[:80]))
                    assert response.headers.get("content-type", "").startswith(("application/json", "audio/")), body
                    if response.status_code == 202:
                        created.append(response.json()["id"])
                    if response.headers["content-type"] == "application/json":
                        json.loads(response.text)  # strict JSON: no NaN token, no broken escape
        for body in BODY_CASES:
            for content_type in ("application/json", "text/plain"):
                response = http.post("/api/jobs", content=body, headers={"content-type": content_type})
                tally.record("body", response, body[:40])
                if response.status_code == 202:
                    created.append(response.json()["id"])
        sizes = {
            len(b): http.post("/api/jobs", content=b, headers={"content-type": "application/json"}).status_code
            for b in BODY_CASES[-3:]
        }
        assert sizes == {MAX_BODY_BYTES - 1: 202, MAX_BODY_BYTES: 202, MAX_BODY_BYTES + 1: 413}
        created.append(http.post("/api/jobs", json={"prompt": "q", "duration": 1}).json()["id"])
        for job in [created[-1], "0123456789abcdef", "nothex"]:
            for template in QUERY_CASES:
                for take in TAKES:
                    for fmt in QUERY_FORMATS:
                        for start in STARTS[:2] if fmt != "wav" else STARTS:
                            url = template.format(job=job, take=take, fmt=fmt, start=start)
                            tally.record("query", http.get(url), url)
        for job in created:
            http.post(f"/api/jobs/{job}/cancel")
    total = sum(tally.counts.values())
    print(f"fuzz cases: {tally.counts} = {total} requests, {len(tally.server_errors)} × 5xx")
    assert tally.server_errors == []
    assert process.poll() is None, "the server is alive"
    assert total > 1500


def longest_runnable(http: httpx.Client) -> list[dict]:
    return [m for m in http.get("/api/models").json() if m["runnable"] and m["weights_cached"] is not False]


POLLER = """
import json, select, sys, time, httpx
latencies = []
with httpx.Client(base_url=sys.argv[1], timeout=10) as client:
    print("ready", flush=True)
    while not select.select([sys.stdin], [], [], 0.02)[0]:  # every 20 ms, until the test writes "stop"
        started = time.perf_counter()
        assert client.get("/api/health").status_code == 200
        latencies.append(time.perf_counter() - started)
print(json.dumps(latencies), flush=True)
"""


def health_latencies_while(base: str, work) -> tuple[object, list[float]]:
    """Run ``work()`` while another process polls /api/health (its own GIL: the latencies are the server's, not this
    busy test process's); the result and the sorted health latencies (s)."""
    poller = subprocess.Popen(
        [sys.executable, "-c", POLLER, base],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert poller.stdout.readline().strip() == "ready"
    try:
        result = work()
    finally:
        out, _ = poller.communicate("stop\n", timeout=60)
    return result, sorted(json.loads(out))


def download(base: str, job: str, fmt: str, folder) -> tuple[str, int, float]:
    path = folder / f"{fmt}-{threading.get_ident()}.{fmt}"
    with (
        httpx.Client(base_url=base, timeout=600) as client,
        client.stream("GET", f"/api/jobs/{job}/takes/0", params={"format": fmt}) as response,
        open(path, "wb") as sink,
    ):
        for piece in response.iter_bytes(1 << 20):
            sink.write(piece)
    return fmt, response.status_code, round(soundfile.info(path).duration)


def download_all(base: str, job: str, folder, formats: list[str]) -> list[tuple[str, int, float]]:
    """Every format at once, one client each."""
    with ThreadPoolExecutor(len(formats)) as pool:
        return list(pool.map(functools.partial(download, base, job, folder=folder), formats))


def test_longest_take_in_every_format_by_eight_clients_while_health_answers(server, tmp_path):
    base, process = server
    with httpx.Client(base_url=base, timeout=600) as http:
        models = longest_runnable(http)
    assert [m["id"] for m in models] == ["synth"], "what this offline box can run"
    for model in models:
        seconds = round(model["max_duration"])
        # The request that used to segfault the server: the longest take, as OGG, in one go.
        body = {"prompt": "rain and piano, 90 bpm", "model": model["id"], "duration": seconds, "format": "ogg"}
        made = httpx.post(f"{base}/api/generate", json=body, timeout=600)
        assert made.status_code == 200, made.text
        assert round(soundfile.info(io.BytesIO(made.content)).duration) == seconds
        job = made.headers["x-ttag-job"]
        formats = [*FORMATS, *FORMATS]
        results, latencies = health_latencies_while(base, functools.partial(download_all, base, job, tmp_path, formats))
        assert results == [(fmt, 200, seconds) for fmt in formats]
        p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)]
        print(
            f"{model['id']} {seconds} s × {len(results)} downloads: health polled {len(latencies)} times, "
            f"median {statistics.median(latencies) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"
        )
        assert len(latencies) >= 20 and p99 <= 0.100
    assert process.poll() is None
