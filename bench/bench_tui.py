"""TUI benchmark: first paint of ``ttag`` against a bare Textual app, and the event loop's lag during generation.

    .venv/bin/python bench/bench_tui.py [--runs 7] [--seconds 300]

First paint: each app is started as a child process on a pseudo-terminal, as in a real terminal, and this process
reads what the terminal receives. Two times are taken from spawning the process: *first paint*, when the first frame
with the app's own content has arrived (the bare app's text; ttag's prompt pane), and *complete*, when the whole
screen is there (the bare app's footer key; ttag's takes pane and footer keys, which are mounted a frame later). The
two kinds alternate so machine noise hits both alike. Goal: ttag's median first paint ≤ 1.3 × the bare app's.
ttag's modules are byte-compiled first, as ``pip install`` does (this machine sets PYTHONDONTWRITEBYTECODE).

Loop lag: ttag runs headless in this process with a 10 ms timer that records how late each tick fires, while a
CPU-heavy ``synth`` job (long takes, streamed) runs in its worker and its takes are written and summarised. Goal:
p99 ≤ 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import os
import pty
import re
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BARE_APP = r"""
from textual.app import App
from textual.widgets import Footer, Static

class Bare(App):
    def compose(self):
        yield Static("hello")
        yield Footer()

Bare().run()
"""
TTAG_APP = "from ttag_tui.app import TtagApp; TtagApp().run()"

# (program, text of its first frame, texts that are all there once the screen is complete)
APPS = {
    "bare": (BARE_APP, "hello", ("palette",)),
    "ttag": (TTAG_APP, "Prompt", ("Takes", "Generate", "palette")),
}
ESCAPES = re.compile(rb"\x1b(\[[0-9;?<>=]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-_])")
QUIT = b"\x11"  # ctrl+q


def paint_times(which: str, home: Path) -> tuple[float, float]:
    """Seconds from spawning the app to its first frame and to its complete screen, read off the terminal."""
    program, first_text, complete_texts = APPS[which]
    env = {
        **os.environ,
        "TERM": "xterm-256color",
        "TTAG_CONFIG_DIR": str(home / "config"),
        "TTAG_DATA_DIR": str(home / "data"),
        "TTAG_OUTPUT_DIR": str(home / "out"),
        "PYTHONPATH": str(ROOT),
    }
    controller, terminal = pty.openpty()
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", program], stdin=terminal, stdout=terminal, stderr=terminal, env=env, cwd=ROOT
    )
    os.close(terminal)
    received = b""
    first = complete = None
    try:
        while complete is None and time.perf_counter() - started < 30:
            ready, _, _ = select.select([controller], [], [], 0.5)
            if not ready:
                continue
            chunk = os.read(controller, 65536)
            now = time.perf_counter() - started
            received += chunk
            text = ESCAPES.sub(b"", received).decode("utf-8", "replace")
            if first is None and first_text in text:
                first = now
            if first is not None and all(part in text for part in complete_texts):
                complete = now
        os.write(controller, QUIT)
        while process.poll() is None:  # keep reading so the app can write its goodbye and exit
            if select.select([controller], [], [], 0.1)[0]:
                os.read(controller, 65536)
    except OSError:
        pass
    finally:
        process.wait(timeout=30)
        os.close(controller)
    if first is None or complete is None:
        raise RuntimeError(f"{which}: the screen never showed {first_text!r} and {complete_texts!r}")
    return first, complete


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
        while not app.screen.panes_ready:
            await pilot.pause(0.01)
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

    compileall.compile_dir(ROOT / "ttag_tui", quiet=1)
    compileall.compile_dir(ROOT / "runners", quiet=1)
    with tempfile.TemporaryDirectory(prefix="ttag-bench-") as folder:
        home = Path(folder)
        paint_times("ttag", home)  # warm the file cache and create the session store once
        paint_times("bare", home)
        firsts: dict[str, list[float]] = {"bare": [], "ttag": []}
        completes: dict[str, list[float]] = {"bare": [], "ttag": []}
        for _ in range(args.runs):
            for which in firsts:
                first, complete = paint_times(which, home)
                firsts[which].append(first)
                completes[which].append(complete)
        for label, times, goal in (("first paint", firsts, " (goal <= 1.3)"), ("complete screen", completes, "")):
            bare, ttag = statistics.median(times["bare"]), statistics.median(times["ttag"])
            print(
                f"{label} (median of {args.runs}, pty 80x24): bare Textual {bare * 1000:.0f} ms, "
                f"ttag {ttag * 1000:.0f} ms, ratio {ttag / bare:.2f}{goal}"
            )
            for which in times:
                print(f"  {which} runs: {', '.join(f'{t * 1000:.0f}' for t in times[which])} ms")

        lags, elapsed = asyncio.run(loop_lag(home, args.seconds))
        print(
            f"event-loop lag of a 10 ms timer during a synth job (2 takes x {args.seconds:g} s, {elapsed:.1f} s, "
            f"{len(lags)} ticks): p99 {percentile(lags, 0.99) * 1000:.1f} ms, max {max(lags) * 1000:.1f} ms, "
            f"median {statistics.median(lags) * 1000:.1f} ms (goal p99 <= 50 ms)"
        )


if __name__ == "__main__":
    main()
