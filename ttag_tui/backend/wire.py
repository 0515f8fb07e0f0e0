"""The job stream's wire format, shared by the server that sends it and every client that reads it (README: "The job
stream"): the WebSocket path and subprotocol, and binary audio frames."""

from __future__ import annotations

import struct

import numpy as np

EVENTS_PATH = "/api/jobs/{job}/events"
SUBPROTOCOL = "ttag.v1"
# A refused stream is accepted, then closed with one of these before any event (README: "Closing"): by the HTTP status
# the same refusal has on the REST API (a key, no such job, a rate limit), and 1008 for a Host or Origin refused.
REFUSED_WITH = {401: 4401, 404: 4404, 429: 4429}
POLICY_VIOLATION = 1008
REFUSALS = frozenset({*REFUSED_WITH.values(), POLICY_VIOLATION})
# take, channels, sample rate, first frame — then float32 little-endian samples, channels interleaved.
AUDIO_HEADER = struct.Struct("<HHIQ")


def encode_audio(take: int, start: int, audio: np.ndarray, sample_rate: int) -> bytes:
    """A binary frame for ``audio`` shaped (channels, frames)."""
    return AUDIO_HEADER.pack(take, audio.shape[0], sample_rate, start) + audio.T.astype("<f4").tobytes()


def decode_audio(frame: bytes) -> tuple[int, int, np.ndarray, int]:
    """(take, start frame, audio shaped (channels, frames), sample rate) from a binary frame."""
    take, channels, sample_rate, start = AUDIO_HEADER.unpack_from(frame)
    samples = np.frombuffer(frame, "<f4", offset=AUDIO_HEADER.size).reshape(-1, channels)
    return take, start, samples.T.copy(), sample_rate
