"""``ttag server``: the REST API (FastAPI) over the same request type, validation and bridge as the CLI and TUI.

Security defaults (details in ``ttag_tui.server.security``): Bearer API keys from config (``api_keys``); no key → the
server refuses a non-loopback address (see ``ttag_tui.server.serve``) and answers loopback ``Host`` names only; rate
limits per key or client address; a request-body size limit; no CORS; clients never name a file on the server
(``audio_prompt``/``melody`` take the id of an upload, see ``ttag_tui.server.uploads``). Takes live on disk, encoding
and decoding run in worker threads.
"""

import asyncio
import contextlib
import json
import os
import struct
import threading
import typing
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, create_model

from runners.registry import ModelSpec, Registry, default_registry
from runners.request import (
    AUDIO_FORMATS,
    CORE_FIELD_HELP,
    CORE_FIELDS,
    FORMATS,
    MAX_PROMPT_CHARS,
    MAX_SEED,
    MAX_TAKES,
    FieldError,
    GenerationRequest,
    RequestInvalid,
    validate_request,
)
from ttag_tui import __version__
from ttag_tui.backend import Backend, wire
from ttag_tui.backend.errors import BackendBusy
from ttag_tui.backend.events import Chunk, Failed, Job, JobState
from ttag_tui.bridge import Bridge, BridgeSettings
from ttag_tui.config import Config, parse_rate_limit
from ttag_tui.runner_envs import availability
from ttag_tui.server.downloads import SharedEncodes, SharedFileResponse
from ttag_tui.server.jobs import MAX_AUDIO_FRAMES, JobBoard, JobRecord, QueueFull, TakeStore
from ttag_tui.server.security import Guard
from ttag_tui.server.stream import refuse, serve_events
from ttag_tui.server.uploads import UPLOAD_ID_PATTERN, UnknownUpload, UploadRejected, UploadStore

MAX_BODY_BYTES = 64 * 1024
ENCODER_THREADS = 2  # downloads encoded at once; more wait their turn (each is CPU-bound: more would not be faster)
JOB_ID = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", description="job id")]
UPLOADS_PATH = "/api/uploads"  # its body is streamed to disk under its own limit, not read whole by BodyLimitMiddleware


# Limits that hold for every model, shown in the schema; runners.request enforces them (and the per-model ones).
SCHEMA_LIMITS: dict[str, dict[str, Any]] = {
    "prompt": {"minLength": 1, "maxLength": MAX_PROMPT_CHARS},
    "duration": {"exclusiveMinimum": 0},
    "seed": {"minimum": 0, "maximum": MAX_SEED},
    "takes": {"minimum": 1, "maximum": MAX_TAKES},
    "format": {"enum": list(FORMATS)},
}


def _types(hint: Any) -> tuple[Any, ...]:
    """``float | None`` → (float, NoneType); ``str`` → (str,)."""
    return typing.get_args(hint) or (hint,)


def _json_schema(hint: Any) -> dict[str, Any]:
    """The JSON type of a GenerationRequest field's hint (``float | None`` → number)."""
    names = {str: "string", int: "integer", float: "number", bool: "boolean"}
    types = [names[t] for t in _types(hint) if t in names]
    return {"type": types[0]} if len(types) == 1 else {"type": types}


PARAM_TYPES = {"float": "number", "int": "integer", "str": "string"}  # ParamSpec types a JSON body can carry


def _build_body_model(registry: Registry) -> type[BaseModel]:
    """The JSON body: GenerationRequest's common fields and every parameter a model in ``registry`` declares (so the
    API cannot drift from either), plus ``stream``. Audio-file parameters take the id of an upload, never a path.

    The schema states each field's JSON type and limits; the body model itself accepts any JSON value, so that every
    rule and its message is ``validate_request``'s (``_check_json_types`` adds the JSON-only ones).
    """
    hints = typing.get_type_hints(GenerationRequest)
    body_fields: dict[str, Any] = {
        "prompt": (
            Annotated[Any, WithJsonSchema({**_json_schema(hints["prompt"]), **SCHEMA_LIMITS["prompt"]})],
            Field(..., description=CORE_FIELD_HELP["prompt"], examples=["lofi hip hop, 85 bpm"]),
        )
    }
    for name in CORE_FIELDS[1:]:
        schema = {**_json_schema(hints[name]), **SCHEMA_LIMITS.get(name, {})}
        body_fields[name] = (
            Annotated[Any, WithJsonSchema({"anyOf": [schema, {"type": "null"}]})],
            Field(None, description=CORE_FIELD_HELP[name]),
        )
    for name in registry.param_names():
        declared = min(registry.params_named(name), key=lambda p: len(p.help))
        if declared.type == "audio":
            schema = {"type": "string", "pattern": UPLOAD_ID_PATTERN}
            what = f"{declared.help} The id POST /api/uploads answered with (the server never opens a path)."
        elif declared.type in PARAM_TYPES:
            schema = {"type": PARAM_TYPES[declared.type]}
            what = declared.help
        else:
            continue
        body_fields[name] = (
            Annotated[Any, WithJsonSchema({"anyOf": [schema, {"type": "null"}]})],
            Field(None, description=f"{what} Models that take it: see /api/models; default: the model's."),
        )
    body_fields["stream"] = (
        Annotated[Any, WithJsonSchema({"type": "boolean"})],
        Field(False, description="audio as it is generated: a WAV body (/api/generate) or /api/jobs/{id}/audio"),
    )
    return create_model("GenerateBody", __config__=ConfigDict(extra="forbid"), **body_fields)


def _text_fields(registry: Registry) -> set[str]:
    core = {n for n in CORE_FIELDS if str in _types(typing.get_type_hints(GenerationRequest)[n])}
    return core | {n for n in registry.param_names() if registry.params_named(n)[0].type in ("str", "audio")}


def _audio_fields(registry: Registry) -> set[str]:
    return {n for n in registry.param_names() if registry.params_named(n)[0].type == "audio"}


def _check_json_types(data: dict[str, Any], text_fields: set[str]) -> list[FieldError]:
    """What JSON adds to validate_request: text fields take strings only, number fields never take strings."""
    errors = []
    for name, value in data.items():
        if name == "stream":
            if not isinstance(value, bool):
                errors.append(FieldError(name, "must be true or false"))
        elif name in text_fields and not isinstance(value, str):
            errors.append(FieldError(name, "must be text"))
        elif name not in text_fields and isinstance(value, str):
            errors.append(FieldError(name, "must be a number, not text"))
    return errors


class ErrorDetail(BaseModel):
    kind: str
    message: str


class ErrorResponse(BaseModel):
    detail: str | ErrorDetail


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "missing or wrong API key"},
    413: {"model": ErrorResponse, "description": "request body too large"},
    429: {"model": ErrorResponse, "description": "rate limit exceeded (see Retry-After)"},
}
BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "the body is not valid JSON"},
    413: ERRORS[413],
}
AUDIO_CONTENT = {
    media: {"schema": {"type": "string", "format": "binary"}}
    for media in {f.media_type for f in AUDIO_FORMATS.values()}
}


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413, whether announced by Content-Length or sent chunked.

    The body is read whole (it is small) before the app sees it, so the answer never depends on where the app was
    when the limit was crossed. ``streamed`` paths (uploads) pass through: their route writes the body to disk as it
    comes, after the caller is authenticated, and holds it to its own limit.
    """

    def __init__(self, app: Any, max_bytes: int = MAX_BODY_BYTES, streamed: tuple[str, ...] = ()) -> None:
        self.app, self.max_bytes, self.streamed = app, max_bytes, streamed

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in self.streamed:
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await _send_json(send, 413, f"request body over {self.max_bytes} bytes")
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await _send_json(send, 413, f"request body over {self.max_bytes} bytes")
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class HostGuardMiddleware:
    """With no API key, answer only requests whose ``Host`` is a loopback name or a configured one (DNS rebinding)."""

    def __init__(self, app: Any, guard: Guard) -> None:
        self.app, self.guard = app, guard

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            if not self.guard.host_allowed(host):
                if scope["type"] == "http":
                    await _send_json(send, 421, "this server answers on loopback names only; see allowed_hosts")
                else:
                    await refuse(
                        scope, receive, send, wire.POLICY_VIOLATION, "this server answers on loopback names only"
                    )
                return
        await self.app(scope, receive, send)


class StreamAborted(Exception):
    """A streamed body cannot be finished (its job failed): the response is cut off, never ended as if whole."""


class AbortStreamsMiddleware:
    """Turn :class:`StreamAborted` into a dropped connection: the chunked body lacks its last chunk, so every HTTP
    client reports the transfer as incomplete instead of handing over a short file."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        try:
            await self.app(scope, receive, send)
        except StreamAborted:
            return  # the server closes the connection without the closing chunk


async def _send_json(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _invalid(errors: list[FieldError]) -> HTTPException:
    return HTTPException(422, [{"loc": ["body", e.field], "msg": e.message, "type": "value_error"} for e in errors])


def _lower_priority() -> None:
    """Encoding threads yield the CPU to the event loop: a 10-minute MP3 must not slow /api/health or a progress poll.
    (On Linux a thread has its own nice value; elsewhere this changes nothing.)"""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


def _wav_header(channels: int, sample_rate: int, frames: int) -> bytes:
    """A 16-bit PCM WAV header for a stream whose exact length is known up front (the contract makes it exact)."""
    data = frames * channels * 2
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * channels * 2, channels * 2, 16)
        + b"data"
        + struct.pack("<I", data)
    )


def _pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio.T, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def create_app(
    config: Config | None = None,
    *,
    registry: Registry | None = None,
    bridge: Backend | None = None,
    check_host: bool = True,
) -> FastAPI:
    """The API over ``bridge`` (a fresh one for ``config`` when None). ``check_host=False`` only for a server the user
    deliberately opened to the network without a key (``--insecure-no-key``)."""
    config = config or Config()
    registry = registry or default_registry()
    owns_bridge = bridge is None
    bridge = bridge or Bridge(registry, BridgeSettings.from_config(config))
    board = JobBoard(bridge, TakeStore(), max_queue=config.max_queue)
    encoders = ThreadPoolExecutor(ENCODER_THREADS, "ttag-encode", initializer=_lower_priority)
    uploads = UploadStore(lambda: board.store.root / "uploads", executor=encoders, keep_s=board.keep_s)
    downloads = SharedEncodes(encoders, lambda: board.store.root)
    guard = Guard(config.api_key_list, parse_rate_limit(config.rate_limit), config.allowed_host_list)
    keys = guard.keys
    GenerateBody = _build_body_model(registry)
    text_fields = _text_fields(registry)
    audio_fields = _audio_fields(registry)
    bearer = HTTPBearer(auto_error=False, description="an API key from the server's config (api_keys)")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        board.close()
        if owns_bridge:
            bridge.close()

    app = FastAPI(
        title="ttag",
        version=__version__,
        lifespan=lifespan,
        description="Turn text prompts into audio. The same requests as `ttag generate`.",
    )
    app.state.board = board
    app.state.uploads = uploads
    app.add_middleware(BodyLimitMiddleware, streamed=(UPLOADS_PATH,))
    if check_host:
        app.add_middleware(HostGuardMiddleware, guard=guard)
    app.add_middleware(AbortStreamsMiddleware)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        """422 naming each field, without echoing the input: it may be NaN, or text JSON cannot carry. A body that is
        not JSON at all is 400, as the schema says."""
        errors = exc.errors()
        unparsable = next((e for e in errors if e["type"] == "json_invalid"), None)
        if unparsable is not None:
            where = unparsable["loc"][-1]
            at = f" (at byte {where})" if isinstance(where, int) else ""
            return JSONResponse({"detail": f"the body is not valid JSON{at}"}, status_code=400)
        detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]
        return JSONResponse({"detail": detail}, status_code=422)

    async def identify(request: Request) -> str:
        return guard.authenticate(request)

    async def authenticate(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
    ) -> str:
        # ``credentials`` is only there so the schema shows the Bearer scheme; Guard reads the header itself.
        return guard.authenticate(request)

    caller = authenticate if keys else identify  # the schema only claims auth when it is enforced

    async def throttle_generation(identity: Annotated[str, Depends(caller)]) -> None:
        guard.throttle(identity, "generation")

    async def throttle_uploads(identity: Annotated[str, Depends(caller)]) -> None:
        guard.throttle(identity, "uploads")

    authorized = [Depends(authenticate)] if keys else []
    generation = [Depends(throttle_generation)]

    async def to_request(body: BaseModel) -> tuple[GenerationRequest, dict[str, str]]:
        """The validated request, and the uploads it names (parameter → upload id). An upload id is swapped for the
        upload's file before validation; anything else in an audio field is refused without being opened."""
        data = {k: v for k, v in body.model_dump(exclude={"stream"}).items() if v is not None}
        type_errors = _check_json_types({**data, "stream": body.stream}, text_fields)  # type: ignore[attr-defined]
        if type_errors:
            raise _invalid(type_errors)
        data.setdefault("model", config.default_model)
        model = registry.get(data["model"]) if isinstance(data["model"], str) else None
        named: dict[str, str] = {}
        upload_errors: list[FieldError] = []
        for name in audio_fields & data.keys():
            if model is None or model.param(name) is None:
                continue  # validate_request says the model takes no such file, without opening anything
            try:
                path = uploads.path_of(data[name])
            except UnknownUpload as exc:
                upload_errors.append(FieldError(name, str(exc)))
                del data[name]
            else:
                named[name], data[name] = data[name], str(path)
        try:
            # A named upload's header is read (validate_request checks audio files): off the event loop.
            request = (
                await asyncio.to_thread(validate_request, data, registry) if named else validate_request(data, registry)
            )
        except RequestInvalid as exc:
            raise _invalid(upload_errors + exc.errors) from None
        if upload_errors:
            raise _invalid(upload_errors)
        spec = registry.get(request.model)
        assert spec is not None
        status = availability(spec, config)
        if not status.runnable or status.weights_cached is False:
            raise _invalid([FieldError("model", f"{spec.id} cannot run on this server: {status.reason}")])
        return request, named

    def queue(request: GenerationRequest, named: dict[str, str], *, stream: bool = False) -> JobRecord:
        inputs = {}
        for name, upload_id in named.items():  # again, with no await since: an upload that expired meanwhile is named
            try:
                inputs[name] = uploads.path_of(upload_id)
            except UnknownUpload as exc:
                raise _invalid([FieldError(name, str(exc))]) from None
        try:
            return board.submit(request, stream=stream, inputs=inputs)
        except (QueueFull, BackendBusy) as exc:
            raise HTTPException(503, str(exc), headers={"Retry-After": str(exc.retry_after)}) from None

    async def audio_response(record: JobRecord, take: int, fmt: str) -> Response:
        """A take encoded as ``fmt`` in a worker thread into a temp file (shared by the requests for it meanwhile),
        then streamed from disk: the event loop never encodes, and memory stays flat for any length."""
        stored = record.takes[take]
        headers = {
            "X-Ttag-Job": record.id,
            "X-Ttag-Seed": str(stored.seed),
            "X-Ttag-Metadata": json.dumps(stored.metadata, ensure_ascii=True),
            "Content-Disposition": f'attachment; filename="ttag-{record.id}-take{take + 1}.{fmt}"',
        }
        key = (record.id, take, fmt)
        encoded = await downloads.open(key, stored.path)  # nothing may fail between this and the response's start
        return SharedFileResponse(downloads, key, encoded, media_type=AUDIO_FORMATS[fmt].media_type, headers=headers)

    @app.get("/api/health", tags=["server"], responses={401: ERRORS[401]})
    async def health(request: Request, detail: bool = False) -> dict[str, Any]:
        """Liveness; with ``detail=true`` (an API key needed when keys are set): models loaded, queue, device, and
        memory: per device the budget, what ttag's models use and what is free, and each warm model's bytes (a cluster
        reports that per replica, under its nodes)."""
        result: dict[str, Any] = {"status": "ok", "version": __version__}
        if detail and keys:
            guard.authenticate(request)
        if detail:
            result.update(
                loaded_models=await asyncio.to_thread(bridge.loaded_models),  # a cluster asks its nodes
                queue_depth=board.active(),
                max_queue=board.max_queue,
                device=config.device,
                models=len(registry),
            )
            if hasattr(bridge, "memory_status"):  # local workers
                result["memory"] = await asyncio.to_thread(bridge.memory_status)
            if hasattr(bridge, "nodes"):  # a cluster: its nodes, or that it is down
                result["cluster"] = await asyncio.to_thread(bridge.nodes)
        return result

    app.add_api_route("/api/health", health, methods=["HEAD"], include_in_schema=False)  # monitors probe with HEAD

    @app.get("/api/models", tags=["models"], dependencies=authorized, responses={401: ERRORS[401]})
    async def models() -> list[dict[str, Any]]:
        """Every model with its limits, parameters and whether it can run on this server."""
        listed = []
        for spec in registry:
            avail = availability(spec, config)
            listed.append(
                {
                    **spec.to_dict(),
                    "available": avail.available,
                    "runnable": avail.runnable,
                    "weights_cached": avail.weights_cached,
                    "reason": avail.reason,
                }
            )
        return listed

    @app.post(
        "/api/generate",
        tags=["generate"],
        dependencies=generation,
        responses={
            200: {"content": AUDIO_CONTENT, "description": "the audio of one take"},
            500: {"model": ErrorResponse, "description": "generation failed"},
            503: {"model": ErrorResponse, "description": "queue full (see Retry-After)"},
            **ERRORS,
            **BODY_ERRORS,
        },
    )
    async def generate(body: GenerateBody) -> Response:  # type: ignore[valid-type]
        """Generate one take and answer with its audio; ``stream: true`` sends WAV audio as it is made (a job that
        fails mid-stream cuts the connection: the transfer is incomplete, never a short file that looks whole)."""
        gen, named = await to_request(body)
        if gen.takes != 1:
            raise _invalid([FieldError("takes", "POST /api/generate returns one take; use POST /api/jobs for more")])
        if body.stream and gen.format != "wav":  # type: ignore[attr-defined]
            raise _invalid([FieldError("format", "streaming sends WAV; leave format out or set it to wav")])
        record = queue(gen, named, stream=body.stream)  # type: ignore[attr-defined]
        if body.stream and record.job is not None:  # type: ignore[attr-defined]
            return StreamingResponse(
                _stream_wav(record.job, record.spec, gen),
                media_type="audio/wav",
                headers={"X-Ttag-Job": record.id, "X-Ttag-Seed": str(gen.seed)},
            )
        await record.ended.wait()
        if record.status.state is not JobState.DONE:
            raise HTTPException(500, record.status.error or {"kind": "internal", "message": "the job ended empty"})
        return await audio_response(record, 0, gen.format)

    @app.post(
        "/api/jobs",
        tags=["jobs"],
        status_code=202,
        dependencies=generation,
        responses={
            503: {"model": ErrorResponse, "description": "queue full (see Retry-After)"},
            **ERRORS,
            **BODY_ERRORS,
        },
    )
    async def create_job(body: GenerateBody) -> JSONResponse:  # type: ignore[valid-type]
        """Queue a job (any number of takes); poll ``GET /api/jobs/{id}``, then download each take."""
        record = queue(*await to_request(body), stream=body.stream)  # type: ignore[attr-defined]
        return JSONResponse(record.to_dict(), status_code=202, headers={"Location": f"/api/jobs/{record.id}"})

    @app.post(
        UPLOADS_PATH,
        tags=["uploads"],
        status_code=201,
        dependencies=[Depends(throttle_uploads)],
        responses={
            201: {"description": "kept: its id (for a job's melody or audio_prompt), duration, sample rate, channels"},
            413: {"model": ErrorResponse, "description": "the file is over the upload limit"},
            415: {"model": ErrorResponse, "description": "a form was sent: send the file itself as the body"},
            422: {"model": ErrorResponse, "description": "not audio, empty, too long, or NaN/infinite samples"},
            **ERRORS,
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "description": f"the audio file itself (WAV, FLAC, OGG or MP3), at most {uploads.max_bytes} bytes "
                f"and {uploads.max_seconds:g} seconds",
                "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
            }
        },
    )
    async def upload_audio(request: Request) -> JSONResponse:
        """Upload an audio file for a job to follow (``melody``) or continue (``audio_prompt``); kept for a while."""
        if request.headers.get("content-type", "").startswith(("multipart/", "application/x-www-form-urlencoded")):
            raise HTTPException(415, "send the audio file itself as the request body, not a form")
        length = request.headers.get("content-length")
        declared = int(length) if length is not None and length.isdigit() else None
        try:
            upload = await uploads.receive(request.stream(), declared)
        except UploadRejected as exc:
            raise HTTPException(exc.status, str(exc)) from None
        return JSONResponse(upload.to_dict(), status_code=201)

    def find(job_id: str) -> JobRecord:
        record = board.get(job_id)
        if record is None:
            raise HTTPException(404, f"no job {job_id} (finished jobs are kept for a while, then dropped)")
        return record

    @app.get(
        "/api/jobs/{job_id}",
        tags=["jobs"],
        dependencies=authorized,
        responses={404: {"model": ErrorResponse, "description": "no such job"}, **ERRORS},
    )
    async def job_status(job_id: JOB_ID) -> dict[str, Any]:
        """State, progress with ETA, error, and download links once done."""
        return find(job_id).to_dict()

    @app.post(
        "/api/jobs/{job_id}/cancel",
        tags=["jobs"],
        status_code=202,
        dependencies=authorized,
        responses={404: {"model": ErrorResponse, "description": "no such job"}, **ERRORS},
    )
    async def cancel_job(job_id: JOB_ID) -> dict[str, Any]:
        """Ask a job to stop (a queued job never starts)."""
        record = find(job_id)
        record.cancel()
        return record.to_dict()

    @app.get(
        "/api/jobs/{job_id}/takes/{take}",
        tags=["jobs"],
        dependencies=authorized,
        responses={
            200: {"content": AUDIO_CONTENT, "description": "the take's audio"},
            404: {"model": ErrorResponse, "description": "no such job or take"},
            409: {"model": ErrorResponse, "description": "the take is not made yet"},
            **ERRORS,
        },
    )
    async def job_take(
        job_id: JOB_ID,
        take: Annotated[int, Path(ge=0, le=MAX_TAKES - 1)],
        format: Annotated[Literal[FORMATS] | None, Query()] = None,  # type: ignore[valid-type]
    ) -> Response:
        """One finished take as an audio file (the job's format unless ``format`` is given)."""
        record = find(job_id)
        if take >= len(record.takes):  # a take can be fetched as soon as it is made (the stream's "take" event)
            if not record.finished:
                raise HTTPException(409, f"job {job_id} is {record.status.state}; take {take} is not made yet")
            raise HTTPException(404, f"job {job_id} has {len(record.takes)} take(s)")
        return await audio_response(record, take, format or record.request.format)

    @app.get(
        "/api/jobs/{job_id}/audio",
        tags=["jobs"],
        dependencies=authorized,
        responses={
            200: {
                "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
                "description": "little-endian float32 frames (interleaved channels) from `start` on, as far as "
                f"generated and at most {MAX_AUDIO_FRAMES}; headers X-Ttag-Start, X-Ttag-Frames, X-Ttag-Channels, "
                "X-Ttag-Sample-Rate",
            },
            404: {"model": ErrorResponse, "description": "no such job, or no such take in it"},
            **ERRORS,
        },
    )
    async def job_audio(
        job_id: JOB_ID,
        take: Annotated[int, Query(ge=0, le=MAX_TAKES - 1)] = 0,
        start: Annotated[int, Query(ge=0, le=2**40)] = 0,
    ) -> Response:
        """The audio streamed so far by a job created with ``stream: true`` (poll with ``start`` = frames received)."""
        record = find(job_id)
        if take >= record.request.takes:  # a poller waiting for frames that can never come would poll forever
            raise HTTPException(404, f"no take {take} in job {job_id} (it makes {record.request.takes})")
        audio, sample_rate = await asyncio.to_thread(record.streamed_audio, take, start)
        headers = {
            "X-Ttag-Start": str(start),
            "X-Ttag-Frames": str(audio.shape[1]),
            "X-Ttag-Channels": str(audio.shape[0]),
            "X-Ttag-Sample-Rate": str(sample_rate),
        }
        return Response(audio.T.astype("<f4").tobytes(), media_type="application/octet-stream", headers=headers)

    @app.websocket(wire.EVENTS_PATH.replace("{job}", "{job_id}"))
    async def job_events(websocket: WebSocket, job_id: str) -> None:
        """A job's events and audio as they happen (see the README: "The job stream")."""
        await serve_events(websocket, job_id, board, guard)

    # The web UI (ttag_tui/web) answers what no API route matches, so /api/... keeps its JSON 404s and its 405s
    # with Allow (a mount at "/" would match those first); it is not in the OpenAPI schema.
    from fastapi.staticfiles import StaticFiles

    app.router.default = StaticFiles(packages=[("ttag_tui", "web")], html=True)

    return app


async def _stream_wav(job: Job, spec: ModelSpec, request: GenerationRequest) -> AsyncIterator[bytes]:
    """WAV bytes as chunks arrive; a client that leaves cancels the job; a job that fails aborts the response."""
    frames = round((request.duration or spec.default_duration) * spec.sample_rate)
    yield _wav_header(spec.channels, spec.sample_rate, frames)
    sent = 0
    try:
        async for event in job.aevents():
            if isinstance(event, Chunk) and event.take == 0:
                sent += event.audio.shape[1]
                yield _pcm16(event.audio)
            elif isinstance(event, Failed):
                raise StreamAborted(event.message)
    finally:
        if not job.finished:
            job.cancel()
    if sent < frames:  # a runner that streams less than promised: pad so the header stays true
        yield b"\x00" * ((frames - sent) * spec.channels * 2)
