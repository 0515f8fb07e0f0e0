"""``ttag server``: the REST API (FastAPI) over the same request type, validation and bridge as the CLI and TUI.

Security defaults: Bearer API keys from config (``api_keys``); no key → the server refuses a non-loopback address
(see ``ttag_tui.server.serve``); per-client rate limits (slowapi); a request-body size limit; no CORS; clients never
name a file on the server (``audio_prompt``/``melody`` are not accepted here).
"""

import dataclasses
import hmac
import json
import struct
import typing
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, create_model
from slowapi import Limiter
from slowapi.errors import RateLimitExceeded
from slowapi.util import get_remote_address

from runners.registry import Registry, default_registry
from runners.request import (
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
from ttag_tui.bridge import Bridge, BridgeSettings, Chunk, Done, Failed
from ttag_tui.config import Config
from ttag_tui.output import MEDIA_TYPES, encode_clip
from ttag_tui.runner_envs import availability
from ttag_tui.server.jobs import JobBoard, JobRecord, QueueFull

MAX_BODY_BYTES = 64 * 1024
SERVER_SIDE_FIELDS = {"audio_prompt", "melody"}  # file paths: a client never chooses a path on the server
JOB_ID = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", description="job id")]


# Limits that hold for every model, shown in the schema; runners.request enforces them (and the per-model ones).
SCHEMA_LIMITS: dict[str, dict[str, Any]] = {
    "prompt": {"minLength": 1, "maxLength": MAX_PROMPT_CHARS},
    "duration": {"exclusiveMinimum": 0},
    "seed": {"minimum": 0, "maximum": MAX_SEED},
    "takes": {"minimum": 1, "maximum": MAX_TAKES},
    "format": {"enum": list(FORMATS)},
}


def _build_body_model() -> type[BaseModel]:
    """The JSON body: GenerationRequest's own fields (so the API cannot drift from it), plus ``stream``.

    Pydantic only checks JSON types here (strictly); the rules and their messages are ``validate_request``'s.
    """
    hints = typing.get_type_hints(GenerationRequest)
    body_fields: dict[str, Any] = {}
    for f in dataclasses.fields(GenerationRequest):
        if f.name in SERVER_SIDE_FIELDS:
            continue
        limits = SCHEMA_LIMITS.get(f.name)
        if f.name == "prompt":
            body_fields["prompt"] = (
                str,
                Field(..., description="what to make", examples=["lofi hip hop, 85 bpm"], json_schema_extra=limits),
            )
        else:
            body_fields[f.name] = (
                hints[f.name] | None,
                Field(None, description=f"default: the model's {f.name}", json_schema_extra=limits),
            )
    body_fields["stream"] = (
        bool,
        Field(False, description="audio as it is generated: a WAV body (/api/generate) or /api/jobs/{id}/audio"),
    )
    return create_model("GenerateBody", __config__=ConfigDict(extra="forbid", strict=True), **body_fields)


GenerateBody = _build_body_model()


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
AUDIO_CONTENT = {media: {"schema": {"type": "string", "format": "binary"}} for media in MEDIA_TYPES.values()}


class BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` (by Content-Length, or while reading a chunked body)."""

    def __init__(self, app: Any, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._refuse(send)
            return
        seen = 0
        started = False

        async def limited_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Any) -> None:
        body = json.dumps({"detail": f"request body over {self.max_bytes} bytes"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _invalid(errors: list[FieldError]) -> HTTPException:
    return HTTPException(422, [{"loc": ["body", e.field], "msg": e.message, "type": "value_error"} for e in errors])


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
    config: Config | None = None, *, registry: Registry | None = None, bridge: Bridge | None = None
) -> FastAPI:
    config = config or Config()
    registry = registry or default_registry()
    owns_bridge = bridge is None
    bridge = bridge or Bridge(registry, BridgeSettings.from_config(config))
    board = JobBoard(bridge, max_queue=config.max_queue)
    keys = [k.strip() for k in config.api_keys.split(",") if k.strip()]
    bearer = HTTPBearer(auto_error=False, description="an API key from the server's config (api_keys)")

    def client_key(request: Request) -> str:
        auth = request.headers.get("authorization", "")
        return auth[-16:] if auth else get_remote_address(request)

    limiter = Limiter(key_func=client_key, headers_enabled=True, storage_uri="memory://")

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
    app.state.limiter = limiter
    app.state.board = board
    app.add_middleware(BodyLimitMiddleware)

    @app.exception_handler(RateLimitExceeded)
    async def rate_limited(request: Request, exc: RateLimitExceeded) -> JSONResponse:
        response = JSONResponse({"detail": f"rate limit exceeded: {exc.detail}"}, status_code=429)
        return request.app.state.limiter._inject_headers(response, request.state.view_rate_limit)

    async def require_key(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if not keys:
            return
        given = credentials.credentials if credentials else ""
        if not any(hmac.compare_digest(given.encode(), k.encode()) for k in keys):
            raise HTTPException(401, "missing or wrong API key", headers={"WWW-Authenticate": "Bearer"})

    authorized = [Depends(require_key)] if keys else []  # the schema only claims auth when it is enforced

    def to_request(body: BaseModel) -> GenerationRequest:
        data = {k: v for k, v in body.model_dump(exclude={"stream"}).items() if v is not None}
        data.setdefault("model", config.default_model)
        try:
            request = validate_request(data, registry)
        except RequestInvalid as exc:
            raise _invalid(exc.errors) from None
        spec = registry.get(request.model)
        status = availability(spec, config)
        if not status.runnable or status.weights_cached is False:
            raise _invalid([FieldError("model", f"{spec.id} cannot run on this server: {status.reason}")])
        return request

    def queue(request: GenerationRequest, *, stream: bool = False) -> JobRecord:
        try:
            return board.submit(request, stream=stream)
        except QueueFull as exc:
            raise HTTPException(503, str(exc), headers={"Retry-After": str(exc.retry_after)}) from None

    def audio_response(record: JobRecord, take: int, fmt: str) -> Response:
        clip = record.clips[take]
        headers = {
            "X-Ttag-Job": record.id,
            "X-Ttag-Seed": str(clip.metadata.get("seed")),
            "X-Ttag-Metadata": json.dumps(
                {k: v for k, v in clip.metadata.items() if k != "parameters"}, ensure_ascii=True
            ),
            "Content-Disposition": f'attachment; filename="ttag-{record.id}-take{take + 1}.{fmt}"',
        }
        return Response(encode_clip(clip, fmt), media_type=MEDIA_TYPES[fmt], headers=headers)

    @app.get("/api/health", tags=["server"], responses={401: ERRORS[401]})
    async def health(request: Request, detail: bool = False) -> dict[str, Any]:
        """Liveness; with ``detail=true`` (an API key needed when keys are set): models loaded, queue, device."""
        result: dict[str, Any] = {"status": "ok", "version": __version__}
        if detail and keys:
            await require_key(await bearer(request))
        if detail:
            result.update(
                loaded_models=bridge.loaded_models(),
                queue_depth=board.active(),
                max_queue=board.max_queue,
                device=config.device,
                models=len(registry),
            )
        return result

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
        dependencies=authorized,
        responses={
            200: {"content": AUDIO_CONTENT, "description": "the audio of one take"},
            500: {"model": ErrorResponse, "description": "generation failed"},
            503: {"model": ErrorResponse, "description": "queue full (see Retry-After)"},
            **ERRORS,
            **BODY_ERRORS,
        },
    )
    @limiter.shared_limit(config.rate_limit, scope="generation")
    async def generate(request: Request, body: GenerateBody) -> Response:  # type: ignore[valid-type]
        """Generate one take and answer with its audio; ``stream: true`` sends WAV audio as it is made."""
        gen = to_request(body)
        if gen.takes != 1:
            raise _invalid([FieldError("takes", "POST /api/generate returns one take; use POST /api/jobs for more")])
        if body.stream and gen.format != "wav":
            raise _invalid([FieldError("format", "streaming sends WAV; leave format out or set it to wav")])
        record = queue(gen, stream=body.stream)
        if body.stream:
            return StreamingResponse(
                _stream_wav(record, registry, gen),
                media_type="audio/wav",
                headers={"X-Ttag-Job": record.id, "X-Ttag-Seed": str(gen.seed)},
            )
        async for event in record.job.aevents():
            if isinstance(event, Failed):
                raise HTTPException(500, {"kind": event.kind, "message": event.message})
            if isinstance(event, Done):
                record.clips = event.clips
        return audio_response(record, 0, gen.format)

    @app.post(
        "/api/jobs",
        tags=["jobs"],
        status_code=202,
        dependencies=authorized,
        responses={
            503: {"model": ErrorResponse, "description": "queue full (see Retry-After)"},
            **ERRORS,
            **BODY_ERRORS,
        },
    )
    @limiter.shared_limit(config.rate_limit, scope="generation")
    async def create_job(request: Request, body: GenerateBody) -> JSONResponse:  # type: ignore[valid-type]
        """Queue a job (any number of takes); poll ``GET /api/jobs/{id}``, then download each take."""
        record = queue(to_request(body), stream=body.stream)
        return JSONResponse(record.to_dict(), status_code=202, headers={"Location": f"/api/jobs/{record.id}"})

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
        record.job.cancel()
        return record.to_dict()

    @app.get(
        "/api/jobs/{job_id}/takes/{take}",
        tags=["jobs"],
        dependencies=authorized,
        responses={
            200: {"content": AUDIO_CONTENT, "description": "the take's audio"},
            404: {"model": ErrorResponse, "description": "no such job or take"},
            409: {"model": ErrorResponse, "description": "the job has not finished"},
            **ERRORS,
        },
    )
    async def job_take(
        job_id: JOB_ID,
        take: Annotated[int, Path(ge=0, le=7)],
        format: Annotated[str | None, Query(pattern="^(wav|flac|ogg|mp3)$")] = None,
    ) -> Response:
        """One finished take as an audio file (the job's format unless ``format`` is given)."""
        record = find(job_id)
        if record.state != "done":
            raise HTTPException(409, f"job {job_id} is {record.state}")
        if take >= len(record.clips):
            raise HTTPException(404, f"job {job_id} has {len(record.clips)} take(s)")
        return audio_response(record, take, format or record.job.request.format)

    @app.get(
        "/api/jobs/{job_id}/audio",
        tags=["jobs"],
        dependencies=authorized,
        responses={
            200: {
                "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
                "description": "little-endian float32 frames (interleaved channels) from `start` on, as far as "
                "generated; headers X-Ttag-Start, X-Ttag-Frames, X-Ttag-Channels, X-Ttag-Sample-Rate",
            },
            404: {"model": ErrorResponse, "description": "no such job"},
            **ERRORS,
        },
    )
    async def job_audio(
        job_id: JOB_ID,
        take: Annotated[int, Query(ge=0, le=7)] = 0,
        start: Annotated[int, Query(ge=0, le=2**40)] = 0,
    ) -> Response:
        """The audio streamed so far by a job created with ``stream: true`` (poll with ``start`` = frames received)."""
        record = find(job_id)
        audio, sample_rate = record.streamed_audio(take, start)
        headers = {
            "X-Ttag-Start": str(start),
            "X-Ttag-Frames": str(audio.shape[1]),
            "X-Ttag-Channels": str(audio.shape[0]),
            "X-Ttag-Sample-Rate": str(sample_rate),
        }
        return Response(audio.T.astype("<f4").tobytes(), media_type="application/octet-stream", headers=headers)

    # The web UI (ttag_tui/web) answers what no API route matches, so /api/... keeps its JSON 404s and its 405s
    # with Allow (a mount at "/" would match those first); it is not in the OpenAPI schema.
    from fastapi.staticfiles import StaticFiles

    app.router.default = StaticFiles(packages=[("ttag_tui", "web")], html=True)

    return app


async def _stream_wav(record: JobRecord, registry: Registry, request: GenerationRequest) -> AsyncIterator[bytes]:
    """WAV bytes as chunks arrive; a client that leaves cancels the job."""
    spec = registry.get(request.model)
    frames = round(request.duration * spec.sample_rate)
    yield _wav_header(spec.channels, spec.sample_rate, frames)
    sent = 0
    try:
        async for event in record.job.aevents():
            if isinstance(event, Chunk) and event.take == 0:
                sent += event.audio.shape[1]
                yield _pcm16(event.audio)
            elif isinstance(event, Failed):
                return  # the body ends short; the client sees a truncated stream
    finally:
        if not record.job.finished:
            record.job.cancel()
    if sent < frames:  # a runner that streams less than promised: pad so the header stays true
        yield b"\x00" * ((frames - sent) * spec.channels * 2)
