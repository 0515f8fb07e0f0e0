"""End to end as a person over SSH would use it: the real ``ttag`` in tmux, driven with send-keys, read with
capture-pane. Uses the real ``synth`` model and a real worker process; nothing in the app is replaced."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from ttag_tui.sessions import SessionStore

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("tmux") is None and os.environ.get("TTAG_REQUIRE_TMUX") != "1",
        reason="tmux is not installed (apt-get install tmux); TTAG_REQUIRE_TMUX=1 makes this a failure",
    ),
]
TTAG = Path(sys.executable).with_name("ttag")


def shows(screen: str, text: str) -> bool:
    """Whether ``text`` is on a line of the screen, case and runs of blanks aside.

    Only fragments that fit one line of a pane or toast can be looked for: where the app wraps a sentence depends on
    the terminal's width and the message's length, and joined lines would interleave side-by-side panes.
    """
    wanted = " ".join(text.lower().split())
    return any(wanted in " ".join(line.lower().split()) for line in screen.splitlines())


class Tmux:
    def __init__(self, env: dict[str, str]) -> None:
        self.socket = f"ttag-test-{uuid.uuid4().hex[:8]}"
        self.env = env

    def tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], check=True, capture_output=True, text=True, env=self.env
        ).stdout

    def start(self, command: str) -> None:
        self.tmux("new-session", "-d", "-x", "100", "-y", "30", command)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", *keys)

    def wait_for(self, *texts: str, timeout: float = 30) -> str:
        """The screen once any of ``texts`` is on it (see :func:`shows`); polls, never a fixed wait."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if any(shows(screen, text) for text in texts):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"none of {texts!r} appeared; the screen was:\n{screen}")
            time.sleep(0.1)

    def alive(self) -> bool:
        return (
            subprocess.run(["tmux", "-L", self.socket, "has-session"], capture_output=True, env=self.env).returncode
            == 0
        )

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, env=self.env)

    def new_terminal(self) -> None:
        """Close this terminal and use a fresh one (a new server: reusing a socket right after a kill races)."""
        self.kill()
        self.socket = f"ttag-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def tmux(tmp_path):
    assert TTAG.exists(), f"{TTAG} is not installed (pip install -e .)"
    env = {
        **os.environ,
        "TTAG_CONFIG_DIR": str(tmp_path / "config"),
        "TTAG_DATA_DIR": str(tmp_path / "data"),
        "TTAG_OUTPUT_DIR": str(tmp_path / "out"),
        "TERM": "xterm-256color",
    }
    session = Tmux(env)
    yield session
    session.kill()


def test_generate_listen_quit_and_come_back_over_ssh(tmux, tmp_path):
    # A shell stays behind the app so the pane survives ttag exiting and can be read.
    tmux.start(f"{TTAG}; echo TTAG-EXITED-$?; sleep 60")
    tmux.wait_for("ctrl+g generate")
    # Like a person: look at the screen before the next key. (Keys that arrive in one read all go to the widget
    # focused before them, so a burst of "move focus, then type" would not be what a person does anyway.)
    tmux.keys("-l", "rain on a tin roof")
    tmux.wait_for("rain on a tin roof")
    tmux.keys("C-g")
    screen = tmux.wait_for("✓")  # the take's row, its file written
    assert shows(screen, "rain on a")

    tmux.keys("C-t")
    tmux.wait_for("s Star")  # the footer shows the takes' keys once the table has the focus
    tmux.keys("Space")
    # With a device it plays; without one (the usual SSH case) a "No audio" notice and the transport say so. Which
    # one depends on this box (PortAudio, a sound server): both are fine unless CI says there must be sound.
    if os.environ.get("TTAG_REQUIRE_AUDIO") == "1":
        tmux.wait_for("▶")
    else:
        tmux.wait_for("▶", "no audio")

    tmux.keys("C-q")
    tmux.wait_for("TTAG-EXITED-0")
    files = sorted((tmp_path / "out").glob("*.wav"))
    assert len(files) == 1 and files[0].with_suffix(".json").exists()
    store = SessionStore(tmp_path / "data" / "sessions.sqlite3")
    [take] = store.takes(store.latest_session().id)
    assert take.path == str(files[0]) and take.duration == pytest.approx(10.0, abs=0.05)  # synth's default
    store.close()

    tmux.new_terminal()
    tmux.start(f"{TTAG}; sleep 60")
    screen = tmux.wait_for("✓")  # the session came back: its take ...
    assert str(take.seed) in screen and "10.0s" in screen
    assert shows(screen, "rain on a tin roof")  # ... and the prompt


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _gone(pid: int, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
                return True  # a zombie has stopped; only its parent's wait is missing
        except FileNotFoundError:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("how", ["terminal closed", "kill -9"])
def test_killed_mid_generation_the_finished_take_stays_and_the_job_says_interrupted(tmux, tmp_path, how):
    # Two long synth takes (about 10 s of work each here): the first lands, then ttag dies while the second renders.
    store = SessionStore(tmp_path / "data" / "sessions.sqlite3")
    prompt = "rain on a tin roof with piano"
    store.save_state(store.latest_session().id, {"prompt": prompt, "settings": {"duration": "300", "takes": "2"}})
    store.close()
    tmux.start(f"exec {TTAG}")
    tmux.wait_for("ctrl+g generate")
    tmux.keys("C-g")
    tmux.wait_for("✓", timeout=300)  # take 1 written and shown; take 2 is being made (slow on a loaded box)
    ttag_pid = int(tmux.tmux("display-message", "-p", "#{pane_pid}").strip())
    workers = _children(ttag_pid)
    assert workers, "the generation runs in a worker process"
    if how == "kill -9":
        os.kill(ttag_pid, 9)
    else:
        tmux.kill()  # the SSH connection drops: the terminal goes away under the app
    assert _gone(ttag_pid)
    # No orphan burning the CPU (or a GPU): the worker stops its job at the next step (the second take would take
    # several more seconds) and exits.
    assert all(_gone(pid, timeout=3) for pid in workers), "a worker outlived the app"

    store = SessionStore(tmp_path / "data" / "sessions.sqlite3")
    takes = store.takes(store.latest_session().id)
    store.close()
    assert len(takes) == 1 and Path(takes[0].path).is_file()
    kept = {Path(takes[0].path).name, Path(takes[0].path).with_suffix(".json").name}
    half_written = [p for p in (tmp_path / "out").iterdir() if p.name not in kept]
    assert all(p.name.startswith(".ttag-") and p.name.endswith(".tmp") for p in half_written)  # never a take name
    for path in half_written:  # ten minutes later: nobody is writing it any more
        os.utime(path, (time.time() - 601, time.time() - 601))

    tmux.new_terminal()
    tmux.start(f"{TTAG}; sleep 60")
    screen = tmux.wait_for("interrupted")
    assert str(takes[0].seed) in screen and "5:00" in screen  # the finished take, 300 s long
    deadline = time.monotonic() + 10
    while any(p.exists() for p in half_written) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert {p.name for p in (tmp_path / "out").iterdir()} == kept  # the half-written file is tidied away
