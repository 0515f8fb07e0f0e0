"""Foundation benchmark: synth's real-time factor, CLI start-up, and the bridge's per-request overhead.

Everything is measured side by side in one run on this machine, so the ratios hold even on a busy box:
- synth: seconds of audio per second of compute, in-process, one thread;
- CLI start-up: ``ttag --help`` / ``ttag list-models`` against a bare ``python -c pass``;
- bridge overhead: one synth request through a warm worker against calling the runner in-process;
- synth end to end: its load (imports, in a fresh process) and ``ttag generate PROMPT -m synth -d 10`` as a whole
  process, against a bare ``python -c pass``.

Run: ``.venv/bin/python bench/bench_foundation.py``
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runners.contract import JobContext
from runners.registry import default_registry
from runners.request import validate_request

ROOT = Path(__file__).resolve().parent.parent
TTAG = [sys.executable, "-m", "ttag_tui"]


def median_time(fn, repeat: int, clock=time.perf_counter) -> float:
    times = []
    for _ in range(repeat):
        started = clock()
        fn()
        times.append(clock() - started)
    return statistics.median(times)


def run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)


def main() -> None:
    from runners.synth.runner import SynthRunner
    from ttag_tui.bridge import Bridge

    registry = default_registry()
    spec = registry.get("synth")
    runner = SynthRunner(spec)
    runner.load_model(JobContext())

    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print("\n== synth real-time factor (in-process, one thread; wall clock, and CPU time for a shared box) ==")
    for prompt in ("lofi hip hop with piano, 85 bpm", "techno 128 bpm with pads", "gentle rain and wind"):
        request = validate_request({"prompt": prompt, "duration": 10, "seed": 1}, registry)
        seconds = median_time(lambda r=request: runner.generate(r, JobContext()), 5)
        cpu = median_time(lambda r=request: runner.generate(r, JobContext()), 5, clock=time.process_time)
        print(
            f"{prompt!r:40} 10 s of audio in {seconds * 1000:6.0f} ms  →  {10 / seconds:6.1f}× real time"
            f"  (CPU {cpu * 1000:4.0f} ms → {10 / cpu:5.1f}×)"
        )

    print("\n== CLI start-up (median of 7) ==")
    bare = median_time(lambda: run([sys.executable, "-c", "pass"]), 7)
    print(f"python -c pass            {bare * 1000:6.0f} ms")
    for args in (["--help"], ["list-models"]):
        seconds = median_time(lambda a=args: run([*TTAG, *a]), 7)
        print(
            f"ttag {' '.join(args):20} {seconds * 1000:6.0f} ms  ({seconds / bare:.1f}× bare python,"
            f" +{(seconds - bare) * 1000:.0f} ms)"
        )

    print("\n== bridge overhead per request (synth, 1 s clip, 20 interleaved pairs, medians) ==")
    request = validate_request({"prompt": "house 124 bpm", "duration": 1, "seed": 3}, registry)
    direct, warm = [], []
    with Bridge(registry) as bridge:
        bridge.generate(request)  # start the worker and load the model
        for _ in range(20):  # interleaved, so a busy machine slows both sides alike
            direct.append(median_time(lambda: runner.generate(request, JobContext()), 1))
            warm.append(median_time(lambda: bridge.generate(request), 1))
    d, w = statistics.median(direct), statistics.median(warm)
    print(f"in-process runner         {d * 1000:6.1f} ms")
    print(f"through the warm worker   {w * 1000:6.1f} ms  (overhead {(w - d) * 1000:+.1f} ms, {w / d:.2f}×)")

    print("\n== synth end to end (median of 5, interleaved with python -c pass) ==")
    load = [
        float(subprocess.run([sys.executable, "-c", LOAD], check=True, capture_output=True, text=True, cwd=ROOT).stdout)
        for _ in range(5)
    ]
    print(f"synth load_model (fresh process)  {statistics.median(load) * 1000:6.0f} ms")
    with tempfile.TemporaryDirectory() as out:
        bare, whole = [], []
        for _ in range(5):
            bare.append(median_time(lambda: run([sys.executable, "-c", "pass"]), 1))
            whole.append(median_time(lambda: run([*TTAG, "generate", "house 124 bpm", *GENERATE, out]), 1))
    b, g = statistics.median(bare), statistics.median(whole)
    print(f"python -c pass                    {b * 1000:6.0f} ms")
    print(f"ttag generate -m synth -d 10      {g * 1000:6.0f} ms  (+{(g - b) * 1000:.0f} ms over bare python)")


GENERATE = ["-m", "synth", "-d", "10", "-q", "--seed", "1", "-o"]
LOAD = (
    "import time; from runners.contract import JobContext; from runners.registry import default_registry; "
    "from runners.synth.runner import SynthRunner; r = SynthRunner(default_registry().get('synth')); "
    "t = time.perf_counter(); r.load_model(JobContext()); print(time.perf_counter() - t)"
)


if __name__ == "__main__":
    main()
