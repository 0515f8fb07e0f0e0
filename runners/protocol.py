"""The bridge ⇄ worker wire protocol (version 2).

A worker is a child process; it reads messages on stdin and writes them on stdout (its own prints and library chatter
are moved to stderr, so stdout carries nothing else). Each message is a frame::

    uint32 big-endian N | N bytes of UTF-8 JSON header | header["nbytes"] bytes of payload (absent when 0)

The payload, when present, is a little-endian float32 array of shape ``header["shape"]`` (channels, samples).

Worker → bridge:
  ``hello``     {protocol, runner, pid, python}                      first message, once the runner module imported
  ``progress``  {job, phase, step, total}                            phase: loading | generating | decoding
  ``loaded``    {job, model, bytes, device, free_bytes, total_bytes}  a model loaded; bytes: what loading used
  ``chunk``     {job, take, start, sample_rate} + payload            streamed audio (stream jobs only)
  ``clip``      {job, take, metadata} + payload                      one finished take
  ``done``      {job, timings}                                       the job finished; all clips were sent
  ``error``     {job, kind, message}                                 the job failed (kind: see runners.contract)
  ``unloaded``  {model, reason}                                      a model was dropped (asked, or idle)
  ``fatal``     {kind, message}                                      the worker cannot serve at all (then exits)
  ``memory``    {device, free_bytes, total_bytes}                    the answer to ``probe``

Bridge → worker:
  ``generate``  {job, spec, request, stream}                         spec: ModelSpec.to_dict(); request: validated
  ``cancel``    {job}
  ``unload``    {model | null}                                       null: every model
  ``probe``     {spec}                                               which device would serve spec; its memory now
  ``shutdown``  {}
"""

from __future__ import annotations

import json
import struct
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where audio is framed: the CLI starts its worker before it pays for numpy
    import numpy as np

PROTOCOL_VERSION = 2
_LENGTH = struct.Struct(">I")
MAX_HEADER_BYTES = 16 * 1024 * 1024


class ProtocolError(Exception):
    """The other side sent something that is not a valid frame."""


def write_message(stream: IO[bytes], header: dict[str, Any], audio: np.ndarray | None = None) -> None:
    """Write one frame. Not thread-safe: callers hold a lock when several threads write."""
    payload = b""
    if audio is not None:
        import numpy as np

        array = np.ascontiguousarray(audio, dtype="<f4")
        header = {**header, "shape": list(array.shape), "nbytes": array.nbytes}
        payload = array.tobytes()
    data = json.dumps(header, separators=(",", ":")).encode()
    stream.write(_LENGTH.pack(len(data)) + data)
    if payload:
        stream.write(payload)
    stream.flush()


def _read_exactly(stream: IO[bytes], n: int) -> bytes | None:
    chunks = []
    remaining = n
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            if remaining == n:
                return None
            raise ProtocolError(f"stream ended inside a frame ({n - remaining} of {n} bytes)")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_message(stream: IO[bytes]) -> tuple[dict[str, Any], np.ndarray | None] | None:
    """Read one frame; ``None`` at a clean end of stream."""
    prefix = _read_exactly(stream, _LENGTH.size)
    if prefix is None:
        return None
    (length,) = _LENGTH.unpack(prefix)
    if length > MAX_HEADER_BYTES:
        raise ProtocolError(f"header of {length} bytes is too large")
    raw = _read_exactly(stream, length)
    if raw is None:
        raise ProtocolError("stream ended before the header")
    try:
        header = json.loads(raw)
    except ValueError as exc:
        raise ProtocolError(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict) or "type" not in header:
        raise ProtocolError("header has no type")
    nbytes = int(header.get("nbytes", 0))
    if not nbytes:
        return header, None
    payload = _read_exactly(stream, nbytes)
    if payload is None:
        raise ProtocolError("stream ended before the payload")
    import numpy as np

    audio = np.frombuffer(payload, dtype="<f4").reshape(header["shape"]).astype(np.float32, copy=False)
    return header, audio
