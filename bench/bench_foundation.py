"""Foundation benchmark: synth's real-time factor, CLI start-up, and the bridge's per-request overhead.

Everything is measured side by side in one run on this machine, so the ratios hold even on a busy box:
- synth: seconds of audio per second of compute, in-process, one thread (the render calls numpy's ufuncs and FFTs,
  no BLAS routine, so it needs no thread settings; nor do the ttag processes below get any): a new seed each run
  (the sounds a take shares with the last one are rendered again; the tables and filters built once per process are
  not), and the same request again (every note's sound is reused from the last run);
- CLI start-up: ``ttag --help`` / ``ttag list-models`` against a bare ``python -c pass``;
- bridge overhead: one synth request through a warm worker against calling the runner in-process;
- synth end to end: its load (imports, in a fresh process) and ``ttag generate PROMPT -m synth -d 10`` as a whole
  process (CLI, worker start, the take written with its sidecar, exit), against a bare ``python -c pass``: wall and
  CPU time (the CLI and the worker it waits for), when the CLI spawns its worker, and the sidecar's own timings (load,
  generate); with ``--against DIR``, also another ttag's tree (say the last release's) interleaved with this one.

ttag's modules are byte-compiled first, as ``pip install`` does (this machine sets PYTHONDONTWRITEBYTECODE).
Run: ``.venv/bin/python bench/bench_foundation.py [--end-to-end | --synth] [--against DIR]``
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
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


def machine() -> str:
    """The machine and how fast it is right now: a shared box's speed moves by a third within the hour with nothing of
    ours on it, so every run says what it ran on (10⁷ pure-Python additions in a function: 0.38–0.5 s on the 2-core
    box of BENCHMARKS.md when it is quiet, 0.7 and more when it is not)."""
    started = time.perf_counter()
    total = 0
    for i in range(10**7):
        total += i
    return (
        f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.2f}, "
        f"10⁷ pure-Python additions in {time.perf_counter() - started:.2f} s"
    )


def run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--against",
        type=Path,
        metavar="DIR",
        help="also time the whole process with the ttag_tui and runners in DIR (e.g. `git archive REV ttag_tui runners`"
        " unpacked there), interleaved with this one",
    )
    parser.add_argument("--end-to-end", action="store_true", help="only the whole-process figures")
    parser.add_argument(
        "--synth",
        action="store_true",
        help="only the in-process synth figures (of the runners first on PYTHONPATH: run it with another tree's there,"
        " interleaved, for before/after pairs)",
    )
    options = parser.parse_args()
    if options.end_to_end:
        print(machine())
        end_to_end(options.against)
        return
    import runners
    from runners.synth.runner import SynthRunner
    from ttag_tui.bridge import Bridge

    registry = default_registry()
    spec = registry.get("synth")
    assert spec is not None
    runner = SynthRunner(spec)
    runner.load_model(JobContext())

    compileall.compile_dir(ROOT / "ttag_tui", quiet=1)
    compileall.compile_dir(ROOT / "runners", quiet=1)
    print(machine())
    print("\n== synth real-time factor (in-process, one thread, 10 s stereo 44.1 kHz; medians of 5; CPU time too) ==")
    print(f"runners from {Path(runners.__file__ or '?').parent.parent}, synth version {SynthRunner.version}")
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

    if options.synth:
        return

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

    end_to_end(options.against)


def end_to_end(against: Path | None) -> None:
    """The whole ``ttag generate`` process against ``python -c pass``, interleaved (and against another tree's ttag when
    ``against`` names one), wall and CPU time (the process and its worker, which it waits for), and when its worker
    was spawned."""
    print("\n== synth end to end (median of 7, interleaved with python -c pass; CPU: the CLI and its worker) ==")
    load = [
        float(subprocess.run([sys.executable, "-c", LOAD], check=True, capture_output=True, text=True, cwd=ROOT).stdout)
        for _ in range(5)
    ]
    print(f"synth load_model (fresh process)  {statistics.median(load) * 1000:6.0f} ms")
    trees = {"ttag": ROOT, **({f"ttag in {against}": against} if against else {})}
    for tree in trees.values():
        compileall.compile_dir(tree / "ttag_tui", quiet=1)
        compileall.compile_dir(tree / "runners", quiet=1)
    with tempfile.TemporaryDirectory() as out:
        bare: list[tuple[float, float]] = []
        whole: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
        spawned: dict[str, list[float]] = {name: [] for name in trees}
        sidecars: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        for i in range(7):
            bare.append(timed([sys.executable, "-c", "pass"], ROOT))
            for name, tree in trees.items() if i % 2 else reversed(trees.items()):  # neither always goes first
                target = Path(out) / f"{i}-{len(whole[name])}-{tree.name}.wav"
                whole[name].append(timed([*TTAG, "generate", "house 124 bpm", *GENERATE, str(target)], tree))
                sidecars[name].append(json.loads(target.with_suffix(".json").read_text())["timings"])
                spawn = subprocess.run(
                    [sys.executable, "-c", SPAWN_AT, str(target.with_name(f"spawn-{target.name}"))],
                    check=True,
                    capture_output=True,
                    text=True,
                    cwd=tree,
                )
                spawned[name].append(float(spawn.stderr.splitlines()[-1]))
    b_wall, b_cpu = (statistics.median(x) for x in zip(*bare, strict=True))
    width = max(33, *(len(f"{name} generate -m synth -d 10") for name in whole))
    print(f"{'python -c pass':{width}} {b_wall * 1000:6.0f} ms (CPU {b_cpu * 1000:4.0f} ms)")
    for name, runs in whole.items():
        wall, cpu = (statistics.median(x) for x in zip(*runs, strict=True))
        load_s = statistics.median(t["load_s"] for t in sidecars[name])
        generate_s = statistics.median(t["generate_s"] for t in sidecars[name])
        label = f"{name} generate -m synth -d 10"
        print(
            f"{label:{width}} {wall * 1000:6.0f} ms (CPU {cpu * 1000:4.0f} ms; +{(wall - b_wall) * 1000:.0f} ms over"
            f" bare python)\n{'':{width}}   worker spawned {statistics.median(spawned[name]) * 1000:.0f} ms into the"
            f" CLI (after the interpreter's own start); in the worker: load {load_s * 1000:.0f} ms, generate"
            f" {generate_s * 1000:.0f} ms"
        )
    print(f"load average after the run: {os.getloadavg()[0]:.2f}")


def timed(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """Wall and CPU seconds of ``cmd`` and the children it waited for (the worker), run from ``cwd`` (so ``-m`` finds
    that tree's ttag first, and so does the worker it starts)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=cwd)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


GENERATE = ["-m", "synth", "-d", "10", "-q", "--seed", "1", "-o"]
LOAD = (
    "import time; from runners.contract import JobContext; from runners.registry import default_registry; "
    "from runners.synth.runner import SynthRunner; r = SynthRunner(default_registry().get('synth')); "
    "t = time.perf_counter(); r.load_model(JobContext()); print(time.perf_counter() - t)"
)
# `ttag generate` in-process, printing how long after its start it spawned the worker (the first Popen).
SPAWN_AT = f"""
import subprocess, sys, time
started = time.perf_counter()
popen = subprocess.Popen.__init__
def spawn(self, *args, **kwargs):
    subprocess.Popen.__init__ = popen
    spawned = time.perf_counter() - started
    popen(self, *args, **kwargs)
    print(spawned, file=sys.stderr)
subprocess.Popen.__init__ = spawn
from ttag_tui.cli import main
main(["generate", "house 124 bpm", *{GENERATE!r}, sys.argv[1]])
"""


if __name__ == "__main__":
    main()
