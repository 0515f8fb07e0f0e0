"""Audio a client uploads for a job to follow (a melody) or continue (an audio prompt): ``POST /api/uploads``.

A client never names a file on the server. It sends the audio as the request body; the server writes it to its own
folder under a random id (never the client's file name), checks in a worker thread that libsndfile can decode every
frame of it (no NaN or infinity, not empty, at most ``max_seconds``), and answers with the id. A job body then names the
upload by that id, and :meth:`UploadStore.path_of` is the only way from an id to a path.

Bounded: at most ``keep`` uploads and ``keep_bytes`` on disk (the oldest go first), each kept ``keep_s`` seconds; a job
gets its own hard link to the file when it is queued, so an upload that expires never pulls audio from under a job. The
folder is the take store's, so it is deleted on shutdown with the takes (and left-overs of a killed server on the
next start).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runners.request import MAX_AUDIO_INPUT_SECONDS
from ttag_tui.server import retention

UPLOAD_ID_PATTERN = r"^[0-9a-f]{32}$"
_UPLOAD_ID = re.compile(UPLOAD_ID_PATTERN)
MAX_UPLOAD_BYTES = 128 << 20  # 10 minutes of 48 kHz stereo 16-bit WAV (115 MB) fit; compressed formats far more
KEEP_UPLOADS = 32
KEEP_UPLOAD_BYTES = 1 << 30
KEEP_UPLOAD_S = 1800.0  # as long as the job board keeps a finished job
# libsndfile's format names → the suffix the stored file gets (every runner's reader then sees a familiar name).
SUFFIXES = {"WAV": "wav", "WAVEX": "wav", "FLAC": "flac", "OGG": "ogg", "MP3": "mp3", "MPEG": "mp3", "AIFF": "aiff"}
READ_BLOCK_FRAMES = 1 << 16
WRITE_BATCH_BYTES = 1 << 20


class UploadRejected(Exception):
    """An upload that is not kept: ``status`` for the HTTP answer, the message in one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class UnknownUpload(ValueError):
    """A job names an upload that is not (or no longer) here, or something that is not an upload id."""


@dataclass(frozen=True)
class Upload:
    id: str
    path: Path
    frames: int
    sample_rate: int
    channels: int
    size_bytes: int
    created: float

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "duration": self.duration,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "size_bytes": self.size_bytes,
        }


def probe(path: Path, max_seconds: float) -> tuple[int, int, int, str]:
    """Decode every frame of ``path`` (blocking: run it in a thread): (frames, sample rate, channels, suffix), or
    :class:`UploadRejected` saying what is wrong with it. Memory stays flat: blocks are read and dropped."""
    import soundfile

    try:
        source = soundfile.SoundFile(path)
    except Exception:  # libsndfile's LibsndfileError, RuntimeError or OSError: not audio it knows
        raise UploadRejected(422, "not an audio file ttag can read (send WAV, FLAC, OGG or MP3)") from None
    with source:
        rate, channels = source.samplerate, source.channels
        limit = int(max_seconds * rate)
        frames = 0
        try:
            for block in source.blocks(READ_BLOCK_FRAMES, dtype="float32", always_2d=True):
                if not np.isfinite(block).all():
                    raise UploadRejected(422, "the audio contains invalid samples (NaN or infinity)")
                frames += len(block)
                if frames > limit:
                    raise UploadRejected(422, f"the audio is longer than {max_seconds:g} seconds")
        except UploadRejected:
            raise
        except Exception as exc:  # a file that starts well and breaks further in
            raise UploadRejected(422, f"the audio cannot be decoded to its end ({exc})") from None
        suffix = SUFFIXES.get(source.format, source.format.lower())
    if frames == 0:
        raise UploadRejected(422, "the audio file has no audio in it")
    return frames, rate, channels, suffix


class UploadStore:
    """The uploads of one server process, in ``folder()`` (made on first use)."""

    def __init__(
        self,
        folder: Callable[[], Path],
        *,
        executor: Executor | None = None,  # where uploads are decoded (CPU-bound); None: asyncio's default
        max_bytes: int = MAX_UPLOAD_BYTES,
        max_seconds: float = MAX_AUDIO_INPUT_SECONDS,
        keep: int = KEEP_UPLOADS,
        keep_bytes: int = KEEP_UPLOAD_BYTES,
        keep_s: float = KEEP_UPLOAD_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._folder = folder
        self._executor = executor
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.keep = keep
        self.keep_bytes = keep_bytes
        self.keep_s = keep_s
        self.clock = clock
        self._uploads: OrderedDict[str, Upload] = OrderedDict()

    def folder(self) -> Path:
        path = self._folder()
        path.mkdir(exist_ok=True)
        return path

    async def receive(self, body: AsyncIterator[bytes], declared_length: int | None) -> Upload:
        """Write ``body`` to a new upload, check it decodes, keep it; UploadRejected (nothing kept) otherwise."""
        if declared_length is not None and declared_length > self.max_bytes:
            raise UploadRejected(413, f"the upload is over {self.max_bytes} bytes")
        loop = asyncio.get_running_loop()
        upload_id = secrets.token_hex(16)
        partial = await asyncio.to_thread(self._start, upload_id)
        try:
            size = await self._write(body, partial)
            if size == 0:
                raise UploadRejected(422, "the upload is empty: send the audio file as the request body")
            frames, rate, channels, suffix = await loop.run_in_executor(
                self._executor, probe, partial, self.max_seconds
            )
            path = partial.with_name(f"{upload_id}.{suffix}")
            await asyncio.to_thread(partial.rename, path)
        except BaseException:
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
            raise
        upload = Upload(upload_id, path, frames, rate, channels, size, self.clock())
        self._uploads[upload_id] = upload
        self._evict()
        return upload

    def _start(self, upload_id: str) -> Path:
        partial = self.folder() / f".{upload_id}.part"
        partial.touch(exist_ok=False)
        return partial

    async def _write(self, body: AsyncIterator[bytes], path: Path) -> int:
        """The body into ``path`` as it arrives, each write in a thread (not the decoders': a long encode there must not
        stall an upload); its size, or 413 past the limit."""
        size = 0
        pending = bytearray()  # the server's chunks are small: written a batch at a time, few thread hops
        with open(path, "wb") as file:  # opening an existing file is a metadata call: no data moves on the loop
            async for chunk in body:
                size += len(chunk)
                if size > self.max_bytes:
                    raise UploadRejected(413, f"the upload is over {self.max_bytes} bytes")
                pending += chunk
                if len(pending) >= WRITE_BATCH_BYTES:
                    await asyncio.to_thread(file.write, pending)
                    pending = bytearray()
            await asyncio.to_thread(file.write, pending)
        return size

    def get(self, upload_id: str) -> Upload | None:
        self._evict()
        return self._uploads.get(upload_id)

    def path_of(self, upload_id: str) -> Path:
        """The file of upload ``upload_id``; :class:`UnknownUpload` for anything else (a path is never opened)."""
        if not _UPLOAD_ID.fullmatch(upload_id):
            raise UnknownUpload("must be the id of an upload (from POST /api/uploads), not a path or a name")
        upload = self.get(upload_id)
        if upload is None:
            raise UnknownUpload(
                f"no upload {upload_id} (uploads are kept {self.keep_s / 60:g} minutes; upload the file again)"
            )
        return upload.path

    def _evict(self) -> None:
        """Drop uploads past ``keep_s``, then the oldest beyond ``keep`` or ``keep_bytes``."""
        now = self.clock()
        for upload in retention.to_drop(
            list(self._uploads.values()),
            age_s=lambda u: now - u.created,
            size_bytes=lambda u: u.size_bytes,
            keep=self.keep,
            keep_bytes=self.keep_bytes,
            keep_s=self.keep_s,
        ):
            self._drop(upload)

    def _drop(self, upload: Upload) -> None:
        del self._uploads[upload.id]
        with contextlib.suppress(OSError):
            upload.path.unlink(missing_ok=True)

    def __len__(self) -> int:
        return len(self._uploads)


def link_into(source: Path, target: Path) -> Path:
    """``target`` as a hard link to ``source`` (a copy where the file system has no links): a job's own reference
    to an upload, so the upload can expire while the job still waits."""
    try:
        os.link(source, target)
    except OSError:
        import shutil

        shutil.copyfile(source, target)
    return target
