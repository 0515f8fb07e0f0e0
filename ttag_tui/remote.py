"""A remote backend: the bridge's surface (``submit`` → :class:`~ttag_tui.bridge.Job`) over a ttag server's REST API.

This is the GPU-box workflow: ``ttag server`` runs there, ``ssh -L 8000:localhost:8000 gpu-box``, and the CLI or TUI
here runs with ``--backend http://localhost:8000``. Jobs give the same events as local ones (progress, clips, typed
errors); a server that goes away mid-job becomes a failed job, never a hang. A request's audio files (a melody, audio
to continue) are uploaded first (``POST /api/uploads``) and the job names them by the ids the server gave.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import soundfile

from runners.contract import Clip
from runners.registry import Availability, ModelSpec, Registry
from runners.request import GenerationRequest
from ttag_tui.backend import Backend, wire
from ttag_tui.backend.events import Job

POLL_S = 0.2  # the polling fallback, when the job stream's WebSocket cannot be opened
UPLOAD_TIMEOUT_S = 600.0  # a long file over a slow tunnel
UPLOAD_BLOCK_BYTES = 1 << 16
SHAPE_ERRORS = (LookupError, TypeError, ValueError, AttributeError)  # what reading JSON of an unexpected shape raises

T = TypeVar("T")


class RemoteError(ConnectionError):
    """The server could not be reached or refused; the message says which, in words."""


def _detail(body: Any) -> str:
    """A ttag error answer's ``detail`` in words: a message, a dict with a message, or validation errors."""
    detail = body["detail"]
    if isinstance(detail, list):
        return "; ".join(f"{'.'.join(map(str, d.get('loc', [])[1:]))}: {d.get('msg')}" for d in detail)
    if isinstance(detail, dict):
        return str(detail.get("message", detail))
    return str(detail)


def _models(entries: Any) -> tuple[Registry, dict[str, Availability]]:
    """``/api/models``: the server's registry, and whether each model can run there."""
    if not (isinstance(entries, list) and entries):  # a ttag server always has models (synth is built in)
        raise ValueError("no list of models")
    names = set(ModelSpec.__dataclass_fields__)
    registry = Registry(ModelSpec.from_dict({k: v for k, v in m.items() if k in names}) for m in entries)
    availability = {m["id"]: Availability(m["runnable"], m["weights_cached"], m.get("reason", "")) for m in entries}
    return registry, availability


def _id(body: Any) -> str:
    """The id the server gave a job or an upload."""
    return str(body["id"])


class RemoteBridge(Backend):
    def __init__(self, base_url: str, *, api_key: str = "", timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._socket_base = "ws" + self.base_url.removeprefix("http")  # http → ws, https → wss
        self.transport = "websocket"  # how the last job was followed: "websocket", or "polling" as the fallback
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s)
        self._remote_ids: dict[str, str] = {}
        self._registry: Registry | None = None
        self._availability: dict[str, Availability] = {}

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise RemoteError(f"cannot reach the ttag server at {self.base_url}: {exc}") from None
        if response.status_code >= 400:
            retry = response.headers.get("retry-after")
            hint = f" (retry in {retry} s)" if retry else ""
            raise RemoteError(f"server answered {response.status_code}: {self._read(response, _detail)}{hint}")
        return response

    def _read(self, response: httpx.Response, read: Callable[[Any], T]) -> T:
        """``read`` applied to the answer's JSON. A body that is not JSON (an HTML page), or JSON that ``read`` cannot
        take, comes from a server that is not ttag, or not this ttag's version: one line that says so, naming the
        URL, and never the body itself (a whole web page) or a traceback."""
        answered = f"{response.request.method} {response.request.url.path} answered {response.status_code}"
        try:
            body = response.json()
        except ValueError:
            raise RemoteError(self._not_ttag(f"{answered} with a body that is not JSON")) from None
        try:
            return read(body)
        except SHAPE_ERRORS:
            raise RemoteError(self._not_ttag(f"{answered} with JSON of another shape")) from None

    def _not_ttag(self, what: str) -> str:
        return f"{self.base_url} does not look like a ttag server ({what}); is it the address of `ttag server`?"

    def registry(self) -> Registry:
        """The server's models (validation runs against them, as the server will)."""
        if self._registry is None:
            self._registry, self._availability = self._read(self._call("GET", "/api/models"), _models)
        return self._registry

    def availability(self, spec: ModelSpec) -> Availability:
        """Whether the model can run on the server (as the server reported it)."""
        self.registry()
        return self._availability.get(spec.id, Availability(False, None, "the server does not know this model"))

    def submit(self, request: GenerationRequest, *, stream: bool = False) -> Job:
        job = self.new_job(request, stream)
        job.attach(self.cancel)
        threading.Thread(target=self._follow, args=(job,), name=f"ttag-remote-{job.id}", daemon=True).start()
        return job

    def generate(self, request: GenerationRequest, timeout: float | None = None) -> list[Clip]:
        return self.submit(request).result(timeout)

    def cancel(self, job: Job) -> None:
        remote_id = self._remote_ids.get(job.id)
        if remote_id is None:
            return  # not created yet: _follow sees cancel_requested and cancels right after creating it
        try:
            self._call("POST", f"/api/jobs/{remote_id}/cancel")
        except RemoteError:
            job.fail("cancelled", "cancelled (the server could not be told)")

    def loaded_models(self) -> list[str]:
        try:
            health = self._call("GET", "/api/health", params={"detail": "true"})
            return self._read(health, lambda body: list(body.get("loaded_models", [])))
        except RemoteError:
            return []

    def unload(self, model: str | None = None) -> None:
        """The server manages its own models; nothing to do from here."""

    def close(self) -> None:
        self._client.close()

    def _upload(self, path: Path) -> str:
        """Send a local audio file to the server; the id it keeps it under."""

        def blocks() -> Iterator[bytes]:
            with path.open("rb") as file:
                while block := file.read(UPLOAD_BLOCK_BYTES):
                    yield block

        try:
            size = path.stat().st_size
        except OSError as exc:
            raise RemoteError(f"cannot read {path.name}: {exc}") from None
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        try:
            response = self._call("POST", "/api/uploads", content=blocks(), headers=headers, timeout=UPLOAD_TIMEOUT_S)
        except RemoteError as exc:
            raise RemoteError(f"{path.name}: {exc}") from None
        return self._read(response, _id)

    def _body(self, job: Job) -> dict[str, Any]:
        """The job's JSON body: its request, with each audio file uploaded and named by its upload id."""
        body = job.request.to_dict()
        for param in job.spec.params:
            if param.type == "audio" and body.get(param.name):
                body[param.name] = self._upload(Path(body[param.name]))
        body["stream"] = job.stream
        return body

    def _follow(self, job: Job) -> None:
        try:
            body = self._body(job)
            remote_id = self._remote_ids[job.id] = self._read(self._call("POST", "/api/jobs", json=body), _id)
            if job.cancel_requested:
                self.cancel(job)
            if not self._follow_socket(job, remote_id):
                self._follow_polling(job, remote_id)
        except RemoteError as exc:
            job.fail("connection", str(exc))
        except SHAPE_ERRORS as exc:  # an event, a status or a take's headers not of ttag's shape
            job.fail("connection", self._not_ttag(f"it sent something unexpected: {type(exc).__name__}: {exc}"))
        except Exception as exc:  # anything else from the network stack: a failed job, never a job that hangs
            job.fail("connection", f"lost the ttag server at {self.base_url}: {type(exc).__name__}: {exc}")

    def _follow_socket(self, job: Job, remote_id: str) -> bool:
        """Follow the job over its WebSocket; False when the socket cannot be opened (e.g. a proxy that refuses the
        upgrade), and the caller polls instead."""
        from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
        from websockets.sync.client import connect
        from websockets.typing import Subprotocol

        url = self._socket_base + wire.EVENTS_PATH.format(job=remote_id)
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        try:
            socket = connect(
                url, additional_headers=headers, subprotocols=[Subprotocol(wire.SUBPROTOCOL)], max_size=None
            )
        except (InvalidHandshake, InvalidURI, OSError, TimeoutError):
            return False
        except ConnectionClosed as exc:  # the server went away during the handshake
            job.fail("connection", f"cannot reach the ttag server at {self.base_url}: {exc}")
            return True
        added: set[int] = set()
        heard = False
        with socket:
            try:
                for message in socket:
                    heard, self.transport = True, "websocket"
                    if isinstance(message, bytes):
                        job.chunk(*wire.decode_audio(message))
                    elif self._on_event(job, json.loads(message), added):
                        return True
            except ConnectionClosed as exc:
                if not heard and exc.rcvd is not None and exc.rcvd.code in wire.REFUSALS:
                    return False  # refused before any event (a key, a limit): polling's HTTP answers say why
                job.fail(
                    "connection", f"cannot reach the ttag server at {self.base_url}: the job stream broke off ({exc})"
                )
                return True
        job.fail("connection", f"the ttag server at {self.base_url} closed the job stream before the job ended")
        return True

    def _on_event(self, job: Job, event: dict[str, Any], added: set[int]) -> bool:
        """Turn one server event into the job's own; True at the job's end."""
        kind = event["type"]
        if kind in ("started", "status") and event.get("state", "running") != "queued" and not job.started:
            job.start()
        elif kind == "progress" and event["phase"]:
            job.progress(event["phase"], event["step"], event["total"])
        elif kind == "take":
            added.add(event["take"])
            job.add_clip(self._download(job, event))
        elif kind in ("done", "failed", "cancelled"):
            for result in event.get("results", []):  # takes made before this client connected (kept if it failed)
                if result["take"] not in added:
                    job.add_clip(self._download(job, result))
            if kind == "done":
                job.done({})
            else:
                job.fail(event.get("kind") or kind, event.get("message") or kind)
            return True
        return False

    def _follow_polling(self, job: Job, remote_id: str) -> None:
        self.transport = "polling"
        received: dict[int, int] = {}  # take → frames of streamed audio received
        last_progress = None
        while True:
            status = self._call("GET", f"/api/jobs/{remote_id}").json()
            if status["state"] != "queued" and not job.started:
                job.start()
            progress = status["progress"]
            if progress["phase"] and (progress["phase"], progress["step"]) != last_progress:
                last_progress = (progress["phase"], progress["step"])
                job.progress(progress["phase"], progress["step"], progress["total"])
            if job.stream:
                self._fetch_streamed(job, remote_id, received)
            if status["state"] in ("done", "failed", "cancelled"):
                for result in status["results"]:  # a failed or cancelled job's are the takes it finished first
                    job.add_clip(self._download(job, result))
                if status["state"] == "done":
                    job.done({})
                else:
                    error = status.get("error") or {}
                    job.fail(error.get("kind", status["state"]), error.get("message", status["state"]))
                return
            time.sleep(POLL_S)

    def _fetch_streamed(self, job: Job, remote_id: str, received: dict[int, int]) -> None:
        """Turn the audio the server streamed since the last poll into Chunk events, take by take."""
        for take in range(job.request.takes):
            start = received.get(take, 0)
            response = self._call("GET", f"/api/jobs/{remote_id}/audio", params={"take": take, "start": start})
            frames = int(response.headers["x-ttag-frames"])
            if frames:
                channels = int(response.headers["x-ttag-channels"])
                audio = np.frombuffer(response.content, dtype="<f4").reshape(frames, channels).T.copy()
                job.chunk(take, start, audio, int(response.headers["x-ttag-sample-rate"]))
                received[take] = start + frames

    def _download(self, job: Job, result: dict[str, Any]) -> Clip:
        """A finished take in the request's format, kept as the server encoded it (the server encodes the runner's own
        float samples, as a local run does, so the file written here is the one a local run writes); decoded too, for
        what needs samples (the waveform, playback)."""
        fmt = job.request.format
        response = self._call("GET", result["url"], params={"format": fmt})
        audio, sample_rate = soundfile.read(io.BytesIO(response.content), dtype="float32", always_2d=True)
        metadata = json.loads(response.headers.get("x-ttag-metadata", "{}"))
        metadata["parameters"] = job.request.to_dict()
        metadata["backend"] = self.base_url
        return Clip(audio=audio.T.copy(), sample_rate=sample_rate, metadata=metadata, encoded=(fmt, response.content))
