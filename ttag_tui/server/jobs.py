"""The server's job board: a bounded queue in front of the bridge, what each job is doing, and its takes on disk.

Memory stays bounded: at most ``max_queue`` jobs wait or run (more get 503). A finished take is written to the
:class:`TakeStore` (a folder of this server process under the data dir) as soon as the runner hands it over, and the
job's audio leaves memory when the job ends; at most ``keep_finished`` finished jobs, ``keep_bytes`` of takes, are kept
for download, each for at most ``keep_s`` seconds, their files deleted with them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from runners.contract import Clip
from runners.registry import ModelSpec
from runners.request import GenerationRequest
from ttag_tui.backend import Backend, wire
from ttag_tui.backend.events import Chunk, ClipReady, Failed, Job, JobState, JobStatus, Progress, Started, fold
from ttag_tui.output import write_atomically, write_audio
from ttag_tui.paths import data_dir
from ttag_tui.server import retention
from ttag_tui.server.uploads import link_into

# Disk for finished takes (float32): 4 GiB holds 8 takes of 10 minutes of 44.1 kHz stereo, 2.5 times over.
KEEP_BYTES = 4 << 30
# What /api/jobs/{id}/audio sends at most per call (clients ask again from where they got to): ~47 s at 44.1 kHz.
MAX_AUDIO_FRAMES = 1 << 21


class QueueFull(Exception):
    """Too many jobs waiting; the client should retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the queue is full; retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class StoredTake:
    """A finished take on disk (32-bit float WAV: exactly the runner's samples) and what the API says about it."""

    path: Path
    seed: int | None
    sample_rate: int
    channels: int
    frames: int
    metadata: dict[str, Any]

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate

    @property
    def size_bytes(self) -> int:
        return self.frames * self.channels * 4

    def read(self, start: int, frames: int) -> np.ndarray:
        """(channels, n) float32 frames from ``start`` on; blocking file I/O, so call it off the event loop."""
        import soundfile

        with soundfile.SoundFile(self.path) as source:
            source.seek(min(start, source.frames))
            return source.read(frames, dtype="float32", always_2d=True).T


class TakeStore:
    """One folder per job under this server process's own folder in ``parent`` (default: the data dir's ``server``),
    made on first use; folders left by servers that are gone (killed) are removed then."""

    def __init__(self, parent: Path | None = None) -> None:
        self._parent = parent
        self._root: Path | None = None
        self._making_root = threading.Lock()  # first use can come from two threads (the loop's and a worker's)

    @property
    def root(self) -> Path:
        with self._making_root:
            return self._root or self._make_root()

    def _make_root(self) -> Path:
        """This process's folder, made on first use; folders of servers that are gone are removed then."""
        parent = self._parent or data_dir() / "server"
        parent.mkdir(parents=True, exist_ok=True)
        for stale in parent.iterdir():
            pid = stale.name.partition("-")[0]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(stale, ignore_errors=True)
        root = parent / f"{os.getpid()}-{secrets.token_hex(4)}"
        root.mkdir()
        self._root = root
        return root

    def folder(self, job_id: str) -> Path:
        folder = self.root / job_id
        folder.mkdir(exist_ok=True)
        return folder

    def save(self, job_id: str, clip: Clip) -> StoredTake:
        folder = self.folder(job_id)
        take = int(clip.metadata.get("take", 0))
        path = write_atomically(
            folder / f"take{take}.wav",
            lambda p: write_audio(p, clip.audio, clip.sample_rate, "wav", subtype="FLOAT"),
        )
        return StoredTake(
            path=path,
            seed=clip.metadata.get("seed"),
            sample_rate=clip.sample_rate,
            channels=clip.channels,
            frames=clip.audio.shape[1],
            metadata={k: v for k, v in clip.metadata.items() if k != "parameters"},
        )

    def drop(self, job_id: str) -> None:
        if self._root is not None:
            shutil.rmtree(self._root / job_id, ignore_errors=True)

    def close(self) -> None:
        with self._making_root:
            if self._root is not None:
                shutil.rmtree(self._root, ignore_errors=True)
                self._root = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class AudioSpan:
    """Where a streamed chunk lies in its take, kept once the chunk's samples have left memory (the job ended): a
    client still behind is sent them from the take on disk."""

    take: int
    start: int
    frames: int
    channels: int

    @classmethod
    def of(cls, chunk: Chunk) -> AudioSpan:
        return cls(chunk.take, chunk.start, chunk.audio.shape[1], chunk.audio.shape[0])

    @property
    def size_bytes(self) -> int:
        return self.frames * self.channels * 4


# How many of the latest chunks' binary frames are kept: clients that keep up all send the same few, so each is
# encoded once for all of them; a client far behind encodes its own.
RECENT_FRAMES = 8


@dataclass
class JobRecord:
    id: str
    request: GenerationRequest
    spec: ModelSpec
    job: Job | None  # dropped when the job ends, and with it every sample the job held in memory
    created: float = field(default_factory=time.time)
    status: JobStatus = field(default_factory=JobStatus)
    takes: list[StoredTake] = field(default_factory=list)
    finished_at: float | None = None
    # What the job's WebSocket clients are sent, in order: JSON events and streamed audio, one copy for all clients,
    # each sent it at the pace it reads. The audio leaves memory when the job ends (spans on disk remain).
    feed: list[dict[str, Any] | Chunk | AudioSpan] = field(default_factory=list)
    audio_bytes: int = 0  # of all the audio published so far
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _recent_frames: OrderedDict[int, bytes] = field(default_factory=OrderedDict)

    def publish(self, item: dict[str, Any] | Chunk) -> None:
        if isinstance(item, Chunk):
            self.audio_bytes += item.audio.size * 4
        self.feed.append(item)
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_beyond(self, seen: int) -> None:
        """Until the feed has more than ``seen`` items or the job has ended."""
        while len(self.feed) <= seen and not self.ended.is_set():
            await self._changed.wait()  # the end event is published too, so the end wakes this

    def release_audio(self) -> None:
        """When the job has ended: its audio leaves memory (the takes are on disk)."""
        self.feed = [
            AudioSpan(item.take, item.start, item.audio.shape[1], item.audio.shape[0])
            if isinstance(item, Chunk)
            else item
            for item in self.feed
        ]
        self._recent_frames.clear()

    async def frame(self, index: int) -> bytes | None:
        """Feed item ``index`` (audio) as a binary frame of the job stream. After the job's end, read back from its
        take on disk (off the loop); None when that take was never finished (the job failed or was cancelled first)
        or has been dropped since."""
        item = self.feed[index]
        if isinstance(item, Chunk):
            frame = self._recent_frames.get(index)
            if frame is None:
                frame = wire.encode_audio(item.take, item.start, item.audio, item.sample_rate)
                self._recent_frames[index] = frame
                if len(self._recent_frames) > RECENT_FRAMES:
                    self._recent_frames.popitem(last=False)
            return frame
        assert isinstance(item, AudioSpan)
        stored = next((t for t in self.takes if t.metadata.get("take", 0) == item.take), None)
        if stored is None:
            return None
        try:
            audio = await asyncio.to_thread(stored.read, item.start, item.frames)
        except (OSError, RuntimeError):  # its job was dropped meanwhile, and the file with it (libsndfile's error)
            return None
        return wire.encode_audio(item.take, item.start, audio, stored.sample_rate)

    def streamed_audio(self, take: int, start: int) -> tuple[np.ndarray, int]:
        """Frames of ``take`` from ``start`` on, as far as they have arrived (at most MAX_AUDIO_FRAMES):
        (channels, frames), sample rate. Once the take is on disk, read it from there (blocking: off the loop)."""
        stored = next((t for t in self.takes if t.metadata.get("take", 0) == take), None)
        if stored is not None:
            return stored.read(start, MAX_AUDIO_FRAMES), stored.sample_rate
        chunks = [c for c in self.feed if isinstance(c, Chunk) and c.take == take]
        pieces = [c.audio[:, max(0, start - c.start) :] for c in chunks if c.start + c.audio.shape[1] > start]
        if not pieces:
            return np.zeros((self.spec.channels, 0), np.float32), self.spec.sample_rate
        return np.concatenate(pieces, axis=1)[:, :MAX_AUDIO_FRAMES], chunks[0].sample_rate

    @property
    def finished(self) -> bool:
        return self.status.state.finished

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def to_dict(self) -> dict[str, Any]:
        request = self.request
        return {
            "id": self.id,
            "state": self.status.state.value,
            "model": request.model,
            "prompt": request.prompt,
            "seed": request.seed,
            "takes": request.takes,
            "progress": {
                "phase": self.status.phase,
                "step": self.status.step,
                "total": self.status.total,
                "eta_s": self.status.eta_s,
            },
            "error": self.status.error,
            "created": self.created,
            "finished_at": self.finished_at,
            "results": self._results(),
        }

    def _results(self) -> list[dict[str, Any]]:
        """The takes ready to download: all of a done job's; a cancelled or failed job's finished ones (a take is
        kept as soon as it is made)."""
        return [self.take_info(k) for k in range(len(self.takes))] if self.status.state.finished else []

    def take_info(self, k: int) -> dict[str, Any]:
        take = self.takes[k]
        return {
            "take": k,
            "seed": take.seed,
            "duration": take.duration,
            "sample_rate": take.sample_rate,
            "channels": take.channels,
            "url": f"/api/jobs/{self.id}/takes/{k}",
        }

    def end_event(self) -> dict[str, Any]:
        """The last event of a job that has ended: done with its results, failed or cancelled."""
        state = self.status.state
        if state is JobState.DONE:
            return {"type": "done", "results": self._results()}
        if state is JobState.CANCELLED:
            return {"type": "cancelled", "message": self.status.error_message, "results": self._results()}
        return {
            "type": "failed",
            "kind": self.status.error_kind,
            "message": self.status.error_message,
            "results": self._results(),
        }


class JobBoard:
    def __init__(
        self,
        bridge: Backend,
        store: TakeStore,
        *,
        max_queue: int = 16,
        keep_finished: int = 32,
        keep_s: float = 1800,
        keep_bytes: int = KEEP_BYTES,
    ) -> None:
        self.bridge = bridge
        self.store = store
        self.max_queue = max_queue
        self.keep_finished = keep_finished
        self.keep_s = keep_s
        self.keep_bytes = keep_bytes
        self._records: OrderedDict[str, JobRecord] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()

    def active(self) -> int:
        return sum(not r.finished for r in self._records.values())

    def submit(
        self, request: GenerationRequest, *, stream: bool = False, inputs: Mapping[str, Path] | None = None
    ) -> JobRecord:
        """Queue a validated request; must be called on the event loop. ``inputs`` (parameter → an upload's file) are
        linked into the job's own folder and the request points there: the job keeps them as long as its takes."""
        self._evict()
        if self.active() >= self.max_queue:
            raise QueueFull(retry_after=max(1, min(60, 2 * self.active())))
        job_id = secrets.token_hex(8)
        if inputs:
            folder = self.store.folder(job_id)
            own = {name: str(link_into(path, folder / f"{name}{path.suffix}")) for name, path in inputs.items()}
            request = replace(request, params={**request.params, **own})
        try:
            job = self.bridge.submit(request, stream=stream)
        except BaseException:
            self.store.drop(job_id)
            raise
        record = JobRecord(id=job_id, request=job.request, spec=job.spec, job=job)
        self._records[record.id] = record
        task = asyncio.get_running_loop().create_task(self._follow(record, job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return record

    def get(self, job_id: str) -> JobRecord | None:
        self._evict()
        return self._records.get(job_id)

    async def _follow(self, record: JobRecord, job: Job) -> None:
        try:
            async for event in job.aevents():
                if isinstance(event, ClipReady):  # on disk before it is announced or the job can read as done
                    record.takes.append(await asyncio.to_thread(self.store.save, record.id, event.clip))
                    record.takes.sort(key=lambda t: t.metadata.get("take", 0))
                record.status = fold(record.status, event)
                if isinstance(event, Chunk):
                    record.publish(event)
                elif isinstance(event, Started):
                    record.publish({"type": "started"})
                elif isinstance(event, Progress):
                    record.publish({"type": "progress", **record.to_dict()["progress"]})
                elif isinstance(event, ClipReady):
                    take = event.clip.metadata.get("take", len(record.takes) - 1)
                    record.publish({"type": "take", **record.take_info(take)})
        except OSError as exc:  # the disk is full or gone: the job fails, the server lives on
            job.cancel()
            record.status = fold(record.status, Failed(job.id, "storage", f"cannot keep the take: {exc}"))
        finally:
            record.finished_at = time.time()
            record.job = None
            record.publish(record.end_event())
            record.ended.set()
            record.release_audio()

    def _evict(self) -> None:
        """Drop finished jobs past ``keep_s``, then the oldest beyond ``keep_finished`` or ``keep_bytes`` on disk."""
        now = time.time()
        finished = sorted(
            (r for r in self._records.values() if r.finished and r.finished_at is not None),
            key=lambda r: r.finished_at or now,
        )
        for record in retention.to_drop(
            finished,
            age_s=lambda r: now - (r.finished_at or now),
            size_bytes=lambda r: sum(t.size_bytes for t in r.takes),
            keep=self.keep_finished,
            keep_bytes=self.keep_bytes,
            keep_s=self.keep_s,
        ):
            del self._records[record.id]
            self.store.drop(record.id)

    def close(self) -> None:
        for record in self._records.values():
            record.cancel()
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(OSError):
            self.store.close()
