"""``GET /api/jobs/{id}/events``: a job's events and audio over a WebSocket, as they happen (protocol in the README).

Every connection walks the job's one feed (:class:`~ttag_tui.server.jobs.JobRecord`) at the pace its client reads:
a send waits while the socket's buffer is full, so a slow client holds nothing but its place in the feed, and a fast
or late one gets every chunk while the job runs. Once the job has ended its audio leaves memory: a client a little
behind (a fast generator finishes ahead of any reader) is sent the rest from the takes on disk; one further behind
than :data:`MAX_CATCH_UP_BYTES`, or behind on a take that was never finished, is told once, with ``audio_dropped``,
and gets the end at once — the takes are downloads, and minutes of audio nobody will hear live would only delay it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from fastapi import HTTPException, WebSocket, WebSocketDisconnect
from starlette.types import Receive, Scope, Send

from ttag_tui.backend import wire
from ttag_tui.server.jobs import AudioSpan, JobBoard, JobRecord
from ttag_tui.server.security import Guard

MAX_CATCH_UP_BYTES = 16 << 20  # 45 s of 44.1 kHz stereo: how far behind the newest audio a client may fall


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
    sender = asyncio.create_task(_send_feed(websocket, record))
    listener = asyncio.create_task(_listen(websocket, record))
    try:
        await asyncio.wait({sender, listener}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (listener, sender):
            task.cancel()
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


async def _send_feed(websocket: WebSocket, record: JobRecord) -> None:
    """The job's status, then its feed from the start (a late client catches up) until the job's end event."""
    ended = record.ended.is_set()  # as of the status: the job may end while the client takes it
    backlog, sent = record.audio_bytes, 0  # what was made before this client came, and what it has been sent
    await websocket.send_text(json.dumps({"type": "status", **record.to_dict()}))
    if ended:  # an ended job: its status and how it ended; its takes are downloads
        await websocket.send_text(json.dumps(record.end_event()))
        return
    seen = 0
    lost = False  # this client will hear no more audio: what would follow is not contiguous, or not worth waiting for
    weighed = False  # whether what it had left to hear when the job ended has been weighed
    while True:
        await record.wait_beyond(seen)
        while seen < len(record.feed):
            index, item = seen, record.feed[seen]
            seen += 1
            if isinstance(item, dict):
                await websocket.send_text(json.dumps(item))
                continue
            if lost:
                continue
            if not weighed and record.ended.is_set():
                weighed = True
                left = sum(span.size_bytes for span in record.feed[index:] if isinstance(span, AudioSpan))
                lost = left > MAX_CATCH_UP_BYTES
            # Behind by more than the bound on what was made since it came (a late client first catches up on what
            # was made before): it reads more slowly than audio is made, and would learn of progress and the end late.
            lost = lost or (record.audio_bytes - backlog) - max(0, sent - backlog) > MAX_CATCH_UP_BYTES
            frame = None if lost else await record.frame(index)
            if frame is not None:
                await websocket.send_bytes(frame)
                sent += len(frame) - wire.AUDIO_HEADER.size
            else:
                lost = True
                reason = "this client was behind the job, which makes audio faster; its finished takes are downloads"
                await websocket.send_text(json.dumps({"type": "audio_dropped", "reason": reason}))
        if record.ended.is_set() and seen >= len(record.feed):
            return


async def _listen(websocket: WebSocket, record: JobRecord) -> None:
    """``{"cancel": true}`` cancels the job; anything else (other JSON, text that is not JSON, binary frames) is
    ignored. Returns when the client goes."""
    while True:
        try:
            message = await websocket.receive()
        except RuntimeError:  # received after the disconnect message
            return
        if message["type"] == "websocket.disconnect":
            return
        try:
            said: Any = json.loads(message.get("text") or "null")
        except ValueError:
            continue
        if isinstance(said, dict) and said.get("cancel") is True:
            record.cancel()
