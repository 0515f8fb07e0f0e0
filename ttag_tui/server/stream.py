"""``GET /api/jobs/{id}/events``: a job's events and audio over a WebSocket, as they happen (protocol in the README).

Each connection has its own bounded queue between the job's feed and the socket: a client that reads slowly stops
getting audio (it is told once, with ``audio_dropped``) instead of growing the server's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from fastapi import HTTPException, WebSocket, WebSocketDisconnect
from starlette.types import Receive, Scope, Send

from ttag_tui.backend import wire
from ttag_tui.backend.events import Chunk
from ttag_tui.server.jobs import JobBoard, JobRecord
from ttag_tui.server.security import Guard

MAX_UNSENT_AUDIO_BYTES = 16 << 20  # 45 s of 44.1 kHz stereo: a client that lags through a whole take still hears it


async def serve_events(websocket: WebSocket, job_id: str, board: JobBoard, guard: Guard) -> None:
    """Authenticate, then stream the job's feed from the start (a late client catches up), then close."""
    if not guard.origin_allowed(websocket.headers.get("origin")):
        await refuse(websocket.scope, websocket.receive, websocket.send, wire.POLICY_VIOLATION, "origin not allowed")
        return
    try:
        guard.throttle(guard.authenticate(websocket), "events")
    except HTTPException as exc:
        code = wire.REFUSED_WITH.get(exc.status_code, wire.POLICY_VIOLATION)
        await refuse(websocket.scope, websocket.receive, websocket.send, code, str(exc.detail))
        return
    record = board.get(job_id)
    if record is None:
        code = wire.REFUSED_WITH[404]
        await refuse(websocket.scope, websocket.receive, websocket.send, code, f"no job {job_id}")
        return
    offered = websocket.scope.get("subprotocols", [])
    await websocket.accept(subprotocol=wire.SUBPROTOCOL if wire.SUBPROTOCOL in offered else None)
    record.readers += 1
    outbox = Outbox()
    sender = asyncio.create_task(outbox.send_all(websocket))
    listener = asyncio.create_task(_listen(websocket, record))
    feeder = asyncio.create_task(_feed(record, outbox))
    try:
        await asyncio.wait({sender, listener}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (feeder, listener, sender):
            task.cancel()
        record.readers -= 1
        record.release_audio()
    if sender.done() and not sender.cancelled() and sender.exception() is None:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close(code=1000)


async def refuse(scope: Scope, receive: Receive, send: Send, code: int, reason: str) -> None:
    """Complete the handshake, then close with ``code``: a socket closed before it is accepted reaches the client as
    a bare HTTP 403 (uvicorn's answer), so neither a browser nor any other client would learn why.

    A browser also drops a handshake whose answer names none of the subprotocols it offered, so the answer names
    ttag's own, or else the first offered (the client's own words back: a ``bearer.`` key it sent is no secret to it).
    """
    message = await receive()
    if message["type"] != "websocket.connect":  # the client left already
        return
    offered = list(scope.get("subprotocols", []))
    chosen = wire.SUBPROTOCOL if wire.SUBPROTOCOL in offered else next(iter(offered), None)
    await send({"type": "websocket.accept", "subprotocol": chosen})
    await send({"type": "websocket.close", "code": code, "reason": reason[:120]})


class Outbox:
    """What waits to go out on one connection, with a count of the audio bytes in it."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self.audio_bytes = 0

    def put(self, item: dict[str, Any] | bytes | None) -> None:
        if isinstance(item, bytes):
            self.audio_bytes += len(item)
        self._queue.put_nowait(json.dumps(item) if isinstance(item, dict) else item)

    async def next(self) -> str | bytes | None:
        """The next frame to send; ``None`` at the end."""
        item = await self._queue.get()
        if isinstance(item, bytes):
            self.audio_bytes -= len(item)
        return item

    async def send_all(self, websocket: WebSocket) -> None:
        """Until ``None`` (the end) is taken out."""
        while (item := await self.next()) is not None:
            if isinstance(item, bytes):
                await websocket.send_bytes(item)
            else:
                await websocket.send_text(item)


async def _feed(record: JobRecord, outbox: Outbox) -> None:
    """Move the record's feed into this connection's outbox; audio stops once too much of it waits unsent."""
    outbox.put({"type": "status", **record.to_dict()})
    if record.ended.is_set():  # an ended job: its status and how it ended; its takes are downloads
        outbox.put(record.end_event())
        outbox.put(None)
        return
    seen = 0
    dropped = False
    while True:
        await record.wait_beyond(seen)
        items, seen = record.feed[seen:], len(record.feed)
        for item in items:
            if isinstance(item, Chunk):
                if dropped:
                    continue
                if outbox.audio_bytes > MAX_UNSENT_AUDIO_BYTES:
                    dropped = True
                    reason = "the client reads more slowly than audio is made; takes come as downloads"
                    outbox.put({"type": "audio_dropped", "reason": reason})
                    continue
                outbox.put(wire.encode_audio(item.take, item.start, item.audio, item.sample_rate))
            elif item is not None:
                outbox.put(item)
        if record.ended.is_set() and seen >= len(record.feed):
            outbox.put(None)
            return


async def _listen(websocket: WebSocket, record: JobRecord) -> None:
    """``{"cancel": true}`` cancels the job; anything else is ignored. Returns when the client goes."""
    while True:
        try:
            message: Any = await websocket.receive_json()
        except (WebSocketDisconnect, RuntimeError):
            return
        except ValueError:
            continue
        if isinstance(message, dict) and message.get("cancel") is True:
            record.cancel()
