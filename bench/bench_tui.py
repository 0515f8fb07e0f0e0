"""TUI benchmark: first paint of ``ttag`` against a bare Textual app, and the event loop's lag during generation.

    .venv/bin/python bench/bench_tui.py [--runs 7] [--seconds 300]

First paint: each app is started as a child process on a pseudo-terminal (as in a real terminal) and reports the wall
time at which its first screen had been rendered; the two kinds alternate so machine noise hits both alike. Goal:
ttag's median ≤ 1.3 × the bare app's.

Loop lag: ttag runs headless in this process with a 10 ms timer that records how late each tick fires, while a
CPU-heavy ``synth`` job (long takes, streamed) runs in its worker and its takes are written and summarised. Goal:
p99 ≤ 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pty
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHILD = r"""
import os, sys, time
which, report = sys.argv[1], sys.argv[2]
if which == "bare":
    from textual.app import App
    from textual.widgets import Footer, Static

    class Bare(App):
        def compose(self):
            yield Static("hello")
            yield Footer()

    app = Bare()
else:
    from ttag_tui.app import TtagApp

    app = TtagApp()

def painted():
    with open(report, "w") as handle:
        handle.write(repr(time.time()))
    app.exit()

app.call_later(lambda: app.call_after_refresh(lambda: app.call_after_refresh(painted)))
app.run()
"""


def first_paint(which: str, home: Path) -> float:
    """Seconds from spawning the process to its first rendered screen."""
    report = home / f"{which}.paint"
    report.unlink(missing_ok=True)
    env = {
        **os.environ,
        "TERM": "xterm-256color",
        "TTAG_CONFIG_DIR": str(home / "config"),
        "TTAG_DATA_DIR": str(home / "data"),
        "TTAG_OUTPUT_DIR": str(home / "out"),
        "PYTHONPATH": str(ROOT),
    }
    controller, terminal = pty.openpty()
    drain = threading.Thread(target=lambda: _drain(controller), daemon=True)
    drain.start()
    started = time.time()
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, which, str(report)],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=env,
        cwd=ROOT,
    )
    process.wait(timeout=60)
    os.close(terminal)
    drain.join(timeout=2)
    os.close(controller)
    return float(report.read_text()) - started


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 65536):
            pass
    except OSError:
        pass


async def loop_lag(home: Path, seconds: float) -> tuple[list[float], float]:
    """Lags (s) of a 10 ms timer while one synth job of two ``seconds``-long takes runs; and the job's wall time."""
    os.environ.update(
        TTAG_CONFIG_DIR=str(home / "config"), TTAG_DATA_DIR=str(home / "data"), TTAG_OUTPUT_DIR=str(home / "out")
    )
    from ttag_tui.app import TtagApp
    from ttag_tui.widgets.prompt import PromptArea
    from ttag_tui.widgets.takes import TakesTable

    app = TtagApp()
    lags: list[float] = []
    async with app.run_test() as pilot:
        await pilot.pause()
        expected = time.perf_counter() + 0.01
        measuring = True

        def tick() -> None:
            nonlocal expected
            now = time.perf_counter()
            if measuring:
                lags.append(max(0.0, now - expected))
            expected = now + 0.01

        app.set_interval(0.01, tick)
        screen = app.screen
        screen.query_one(PromptArea).load_text("drum and bass with pads and bells, 174 bpm")
        screen.query_one("#set-duration").value = f"{seconds:g}"
        screen.query_one("#set-takes").value = "2"
        await pilot.pause()
        started = time.perf_counter()
        lags.clear()
        await screen.action_generate()
        table = screen.query_one(TakesTable)
        while table.row_count < 2:
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        measuring = False
    return lags, elapsed


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7, help="first-paint runs of each app (default 7)")
    parser.add_argument("--seconds", type=float, default=300, help="length of each synth take (default 300)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ttag-bench-") as folder:
        home = Path(folder)
        first_paint("ttag", home)  # warm the file cache and create the session store once
        times: dict[str, list[float]] = {"bare": [], "ttag": []}
        for _ in range(args.runs):
            for which in times:
                times[which].append(first_paint(which, home))
        bare, ttag = statistics.median(times["bare"]), statistics.median(times["ttag"])
        print(
            f"first paint (median of {args.runs}, pty 80x24): bare Textual {bare * 1000:.0f} ms, "
            f"ttag {ttag * 1000:.0f} ms, ratio {ttag / bare:.2f} (goal <= 1.3)"
        )
        print(f"  bare runs: {', '.join(f'{t * 1000:.0f}' for t in times['bare'])} ms")
        print(f"  ttag runs: {', '.join(f'{t * 1000:.0f}' for t in times['ttag'])} ms")

        lags, elapsed = asyncio.run(loop_lag(home, args.seconds))
        print(
            f"event-loop lag of a 10 ms timer during a synth job (2 takes x {args.seconds:g} s, {elapsed:.1f} s, "
            f"{len(lags)} ticks): p99 {percentile(lags, 0.99) * 1000:.1f} ms, max {max(lags) * 1000:.1f} ms, "
            f"median {statistics.median(lags) * 1000:.1f} ms (goal p99 <= 50 ms)"
        )


if __name__ == "__main__":
    main()
