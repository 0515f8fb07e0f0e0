"""``--backend`` pointed at an HTTP server that is not ttag (or a ttag of another shape): one clear line, no traceback.

A fake server answers each path with a fixed status, content type and body; the real CLI runs against it.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from runners.registry import default_registry
from tests.live_server import ROOT

HTML_404 = (
    '<!DOCTYPE HTML>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>Error response</title>\n</head>\n'
    "<body>\n<h1>Error response</h1>\n<p>Error code: 404</p>\n<p>Message: File not found.</p>\n</body>\n</html>\n"
)
HTML_200 = "<!DOCTYPE html>\n<html><head><title>My router</title></head>\n<body><h1>Welcome</h1></body></html>\n"
# /api/models as a ttag server answers it: a fake that gets this far fails at a later call
MODELS = json.dumps(
    [{**spec.to_dict(), "runnable": True, "weights_cached": None, "reason": ""} for spec in default_registry()]
)
JSON, TEXT, HTML = "application/json", "text/plain", "text/html; charset=utf-8"

Answer = tuple[int, str, str]  # status, content type, body


@contextmanager
def fake_server(routes: dict[str, Answer], default: Answer) -> Iterator[str]:
    """An HTTP server on a free port answering ``routes[path]`` (``default`` for any other path); its URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def answer(self) -> None:
            status, content_type, body = routes.get(self.path.split("?")[0], default)
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = answer

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


CASES = {
    "not JSON": ({}, (200, JSON, "not json")),
    "an object where a list is expected": ({}, (200, JSON, '{"hello": 1}')),
    "a list of wrong objects": ({}, (200, JSON, '[{"id": "synth"}]')),
    "an empty list of models": ({}, (200, JSON, "[]")),
    "an HTML 404 page": ({}, (404, HTML, HTML_404)),
    "an HTML 200 page": ({}, (200, HTML, HTML_200)),
    "a JSON error without ttag's detail": ({}, (404, JSON, '["not found"]')),
    "a job created with another shape": ({"/api/models": (200, JSON, MODELS)}, (200, JSON, '{"hello": 1}')),
    "a job status of another shape": (
        {"/api/models": (200, JSON, MODELS), "/api/jobs": (200, JSON, '{"id": "j1"}')},
        (200, JSON, '{"state": "running"}'),
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_server_that_is_not_ttag_is_one_clear_line(case, tmp_path):
    routes, default = CASES[case]
    with fake_server(routes, default) as url:
        command = ["--backend", url, "generate", "techno", "-d", "1", "-o", str(tmp_path / "x.wav")]
        result = subprocess.run(
            [sys.executable, "-m", "ttag_tui", *command],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=os.environ,
            timeout=60,
        )
    assert result.returncode == 1, result.stderr  # what an unreachable backend exits with
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("ttag: error: ") and url in line and "does not look like a ttag server" in line, line
    assert "<" not in line and "html" not in line.lower(), line
    assert not (tmp_path / "x.wav").exists()
