"""Foundation benchmark: synth's real-time factor, CLI start-up, and the bridge's per-request overhead.

Everything is measured side by side in one run on this machine, so the ratios hold even on a busy box:
- synth: seconds of audio per second of compute, in-process, one thread (the render calls numpy's ufuncs and FFTs,
  no BLAS routine, so it needs no thread settings; nor do the ttag processes below get any): a new seed each run
  (the sounds a take shares with the last one are rendered again; the tables and filters built once per process are
  not), and the same request again (every note's sound is reused from the last run);
- CLI start-up: ``ttag --help`` / ``ttag list-models`` against a bare ``python -c pass``;
- bridge overhead: one synth request through a warm worker against calling the runner in-process;
- synth end to end: its load (imports, in a fresh process) and ``ttag generate PROMPT -m synth -d 10`` as a whole
  process (CLI, worker start, the take written with its sidecar, exit), against a bare ``python -c pass``, with the
  sidecar's own timings (load, generate) as the breakdown.

ttag's modules are byte-compiled first, as ``pip install`` does (this machine sets PYTHONDONTWRITEBYTECODE).
Run: ``.venv/bin/python bench/bench_foundation.py``
"""

from __future__ import annotations

import compileall
import json
import os
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
    assert spec is not None
    runner = SynthRunner(spec)
    runner.load_model(JobContext())

    compileall.compile_dir(ROOT / "ttag_tui", quiet=1)
    compileall.compile_dir(ROOT / "runners", quiet=1)
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.2f}")
    print("\n== synth real-time factor (in-process, one thread, 10 s stereo 44.1 kHz; medians of 5; CPU time too) ==")
    print(f"{'prompt':40} {'new seed each run':>34}   {'the same request again':>34}")
    seeds = iter(range(100, 10_000))
    for prompt in ("lofi hip hop with piano, 85 bpm", "techno 128 bpm with pads", "gentle rain and wind"):
        runner.generate(validate_request({"prompt": prompt, "duration": 10, "seed": 1}, registry), JobContext())
        figures = []
        for fresh in (True, False):
            for clock in (time.perf_counter, time.process_time):

                def take(fresh: bool = fresh, prompt: str = prompt) -> None:
                    seed = next(seeds) if fresh else 1
                    request = validate_request({"prompt": prompt, "duration": 10, "seed": seed}, registry)
                    runner.generate(request, JobContext())

                figures.append(median_time(take, 5, clock=clock))
        print(
            f"{prompt!r:40}"
            + "".join(
                f" {wall * 1000:5.0f} ms {10 / wall:5.1f}× (CPU {cpu * 1000:4.0f} ms {10 / cpu:5.1f}×)"
                for wall, cpu in (figures[0:2], figures[2:4])
            )
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

    print("\n== synth end to end (median of 7, interleaved with python -c pass) ==")
    load = [
        float(subprocess.run([sys.executable, "-c", LOAD], check=True, capture_output=True, text=True, cwd=ROOT).stdout)
        for _ in range(5)
    ]
    print(f"synth load_model (fresh process)  {statistics.median(load) * 1000:6.0f} ms")
    with tempfile.TemporaryDirectory() as out:
        bares: list[float] = []
        whole: list[float] = []
        sidecars: list[dict[str, float]] = []
        for i in range(7):
            bares.append(median_time(lambda: run([sys.executable, "-c", "pass"]), 1))
            target = str(Path(out) / f"take{i}.wav")
            whole.append(median_time(lambda t=target: run([*TTAG, "generate", "house 124 bpm", *GENERATE, t]), 1))
            sidecars.append(json.loads(Path(target).with_suffix(".json").read_text())["timings"])
    b, g = statistics.median(bares), statistics.median(whole)
    load_s = statistics.median(t["load_s"] for t in sidecars)
    generate_s = statistics.median(t["generate_s"] for t in sidecars)
    print(f"python -c pass                    {b * 1000:6.0f} ms")
    print(
        f"ttag generate -m synth -d 10      {g * 1000:6.0f} ms  (+{(g - b) * 1000:.0f} ms over bare python; in the"
        f" worker: load {load_s * 1000:.0f} ms, generate {generate_s * 1000:.0f} ms)"
    )
    print(f"load average after the run: {os.getloadavg()[0]:.2f}")


GENERATE = ["-m", "synth", "-d", "10", "-q", "--seed", "1", "-o"]
LOAD = (
    "import time; from runners.contract import JobContext; from runners.registry import default_registry; "
    "from runners.synth.runner import SynthRunner; r = SynthRunner(default_registry().get('synth')); "
    "t = time.perf_counter(); r.load_model(JobContext()); print(time.perf_counter() - t)"
)


if __name__ == "__main__":
    main()
