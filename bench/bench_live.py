"""The job stream, measured: how long a streamed chunk takes from the worker to a client, and time to first audio.

    .venv/bin/python bench/bench_live.py [--chunks 200] [--musicgen-seconds 4] [--repeats 3]

1. Delivery latency: a test runner stamps each chunk with the wall clock as the worker sends it; the client reads the
   stamp when the chunk arrives. Side by side in one run: the local bridge (worker → this process), ``--backend`` over
   the WebSocket (worker → server → client on loopback), and ``--backend`` with the polling fallback it replaces.
2. Time to first audio with MusicGen (random weights, tests/tiny_musicgen.py's ``small`` sizes: musicgen-small's
   architecture), warm model, local bridge vs ``--backend`` over loopback: submit → first streamed chunk.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TTAG_DATA_DIR", tempfile.mkdtemp(prefix="ttag-bench-data-"))

from runners.registry import Registry  # noqa: E402
from runners.request import validate_request  # noqa: E402
from tests.fake_runners import fake_registry  # noqa: E402
from tests.live_server import serve_in_thread  # noqa: E402
from ttag_tui.backend import Backend  # noqa: E402
from ttag_tui.backend.events import Chunk  # noqa: E402
from ttag_tui.bridge import Bridge, BridgeSettings  # noqa: E402
from ttag_tui.config import Config  # noqa: E402
from ttag_tui.remote import RemoteBridge  # noqa: E402
from ttag_tui.server.app import create_app  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def delivery_latencies(backend: Backend, registry: Registry, chunks: int) -> list[float]:
    request = validate_request({"prompt": "x", "model": "clock", "duration": chunks * 0.05, "steps": chunks}, registry)
    latencies = []
    for event in backend.submit(request, stream=True).events(timeout=120):
        if isinstance(event, Chunk):
            latencies.append(((time.time() % 100) - float(event.audio[0, 0])) % 100)
    return latencies


def first_audio_s(backend: Backend, registry: Registry, seconds: float) -> float:
    request = validate_request({"prompt": "lofi piano", "model": "tiny", "duration": seconds, "seed": 1}, registry)
    started = time.perf_counter()
    job = backend.submit(request, stream=True)
    for event in job.events(timeout=600):
        if isinstance(event, Chunk):
            elapsed = time.perf_counter() - started
            job.cancel()
            return elapsed
    raise RuntimeError("no audio was streamed")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--musicgen-seconds", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    registry = fake_registry()
    config = Config(rate_limit="100000/minute")
    print(f"1. Delivery latency of {args.chunks} streamed chunks, worker → client (ms)")
    print(f"{'path':<34}{'p50':>8}{'p95':>8}{'max':>8}")
    with Bridge(registry, BridgeSettings()) as local, serve_in_thread(create_app(config, registry=registry)) as base:
        remote = RemoteBridge(base)
        polling = RemoteBridge(base)
        polling._socket_base = "ws://127.0.0.1:1"  # nothing listens there: the client falls back to polling
        for name, backend in (
            ("local bridge", local),
            ("--backend, WebSocket", remote),
            ("--backend, polling", polling),
        ):
            delivery_latencies(backend, registry, 4)  # warm the worker
            values = [v * 1000 for v in delivery_latencies(backend, registry, args.chunks)]
            row = f"{name:<34}{percentile(values, 0.5):8.1f}{percentile(values, 0.95):8.1f}{max(values):8.1f}"
            print(row, f"({getattr(backend, 'transport', 'pipes')})")
        remote.close()
        polling.close()

    import tiny_musicgen

    from runners.musicgen import MODELS

    folder = tiny_musicgen.build_musicgen(Path(tempfile.mkdtemp(prefix="ttag-bench-")) / "small", size="small")
    musicgen = Registry([replace(MODELS[0], id="tiny", hub_repo=str(folder))])
    settings = BridgeSettings(runner=replace(BridgeSettings().runner, threads=1))
    print(f"\n2. Time to first audio, MusicGen small-sized random weights, warm, {args.musicgen_seconds:g} s asked (s)")
    with Bridge(musicgen, settings) as local:
        app = create_app(config, registry=musicgen, bridge=Bridge(musicgen, settings))
        with serve_in_thread(app) as base, RemoteBridge(base) as remote:
            results: dict[str, list[float]] = {"local bridge": [], "--backend over loopback": []}
            for backend in (local, remote):
                first_audio_s(backend, musicgen, args.musicgen_seconds)  # load the model
            for _ in range(args.repeats):
                results["local bridge"].append(first_audio_s(local, musicgen, args.musicgen_seconds))
                results["--backend over loopback"].append(first_audio_s(remote, musicgen, args.musicgen_seconds))
    for name, values in results.items():
        print(f"{name:<34}{statistics.median(values):8.2f}   (runs: {', '.join(f'{v:.2f}' for v in values)})")
    ratio = statistics.median(results["--backend over loopback"]) / statistics.median(results["local bridge"])
    print(f"{'ratio remote / local':<34}{ratio:8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
