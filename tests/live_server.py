"""A real ``ttag server`` in a child process, as a user starts it, for tests that talk to it over loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path, **env: str) -> tuple[str, subprocess.Popen]:
    """Start it with config, data and output under ``home``; (base URL, process) once /api/health answers."""
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    log = home / "server.log"  # a file, not a pipe: a busy server must never block on a full pipe
    environment = {
        **os.environ,
        "TTAG_CONFIG_DIR": str(home / "config"),
        "TTAG_DATA_DIR": str(home / "data"),
        "TTAG_OUTPUT_DIR": str(home / "out"),
        "TTAG_RATE_LIMIT": "10000/minute",
        "HF_HUB_CACHE": str(home / "hub"),  # an empty weights cache, whatever this machine's ~/.cache holds
        **env,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "ttag_tui", "server", "--port", str(port)],
        cwd=ROOT,
        env=environment,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(log.read_text())
        try:
            return httpx.get(f"{base}/api/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(answers, 60, "the server answering")
    except AssertionError:
        process.kill()
        raise AssertionError(log.read_text()) from None
    return base, process


def stop_server(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


@contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """``app`` under a real uvicorn in a thread of this process (test doubles and all): its base URL. What a client
    sees on the wire — chunked bodies cut off, WebSocket back-pressure — which TestClient does not show."""
    import threading

    import uvicorn

    from ttag_tui.server import uvicorn_config

    port = free_port()
    server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), 30, "uvicorn started")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
