"""A real ``ttag server`` in a child process, as a user starts it, for tests that talk to it over loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

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
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(log.read_text())
        try:
            if httpx.get(f"{base}/api/health", timeout=1).status_code == 200:
                return base, process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError(log.read_text())


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

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
