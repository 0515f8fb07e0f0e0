"""The server's job board: a bounded queue in front of the bridge, and what each job is doing right now.

Memory stays bounded: at most ``max_queue`` jobs wait or run (more get 503), and at most ``keep_finished`` finished
jobs are kept for download, each for at most ``keep_s`` seconds.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runners.contract import Clip
from runners.request import GenerationRequest
from ttag_tui.bridge import Bridge, Chunk, Done, Failed, Job, Progress, Started


class QueueFull(Exception):
    """Too many jobs waiting; the client should retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the queue is full; retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass
class JobRecord:
    id: str
    job: Job
    created: float = field(default_factory=time.time)
    state: str = "queued"  # queued | running | done | failed | cancelled
    phase: str | None = None
    step: int = 0
    total: int = 0
    eta_s: float | None = None
    error: dict[str, str] | None = None
    clips: list[Clip] = field(default_factory=list)
    finished_at: float | None = None
    chunks: dict[int, list[Chunk]] = field(default_factory=dict)  # streamed audio per take, for stream jobs

    def streamed_audio(self, take: int, start: int) -> tuple[np.ndarray, int]:
        """Frames of ``take`` from ``start`` on, as far as they have arrived: (channels, frames), sample rate."""
        spec = self.job.spec
        pieces = [
            c.audio[:, max(0, start - c.start) :]
            for c in self.chunks.get(take, ())
            if c.start + c.audio.shape[1] > start
        ]
        if not pieces:
            return np.zeros((spec.channels, 0), np.float32), spec.sample_rate
        return np.concatenate(pieces, axis=1), self.chunks[take][0].sample_rate

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    def to_dict(self) -> dict[str, Any]:
        request = self.job.request
        return {
            "id": self.id,
            "state": self.state,
            "model": request.model,
            "prompt": request.prompt,
            "seed": request.seed,
            "takes": request.takes,
            "progress": {"phase": self.phase, "step": self.step, "total": self.total, "eta_s": self.eta_s},
            "error": self.error,
            "created": self.created,
            "finished_at": self.finished_at,
            "results": [
                {
                    "take": k,
                    "seed": clip.metadata.get("seed"),
                    "duration": clip.duration,
                    "sample_rate": clip.sample_rate,
                    "channels": clip.channels,
                    "url": f"/api/jobs/{self.id}/takes/{k}",
                }
                for k, clip in enumerate(self.clips)
            ],
        }


class JobBoard:
    def __init__(self, bridge: Bridge, *, max_queue: int = 16, keep_finished: int = 32, keep_s: float = 1800) -> None:
        self.bridge = bridge
        self.max_queue = max_queue
        self.keep_finished = keep_finished
        self.keep_s = keep_s
        self._records: OrderedDict[str, JobRecord] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()

    def active(self) -> int:
        return sum(not r.finished for r in self._records.values())

    def submit(self, request: GenerationRequest, *, stream: bool = False) -> JobRecord:
        """Queue a validated request; must be called on the event loop."""
        self._evict()
        if self.active() >= self.max_queue:
            raise QueueFull(retry_after=max(1, min(60, 2 * self.active())))
        record = JobRecord(id=secrets.token_hex(8), job=self.bridge.submit(request, stream=stream))
        self._records[record.id] = record
        task = asyncio.get_running_loop().create_task(self._follow(record))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return record

    def get(self, job_id: str) -> JobRecord | None:
        self._evict()
        return self._records.get(job_id)

    async def _follow(self, record: JobRecord) -> None:
        async for event in record.job.aevents():
            if isinstance(event, Started):
                record.state = "running"
            elif isinstance(event, Progress):
                record.phase, record.step, record.total, record.eta_s = (
                    event.phase,
                    event.step,
                    event.total,
                    event.eta_s,
                )
            elif isinstance(event, Chunk):
                record.chunks.setdefault(event.take, []).append(event)
            elif isinstance(event, Done):
                record.clips = event.clips
                record.state = "done"
            elif isinstance(event, Failed):
                record.state = "cancelled" if event.kind == "cancelled" else "failed"
                record.error = {"kind": event.kind, "message": event.message}
        record.finished_at = time.time()

    def _evict(self) -> None:
        now = time.time()
        finished = [r for r in self._records.values() if r.finished and r.finished_at is not None]
        expired = {r.id for r in finished if now - r.finished_at > self.keep_s}
        surplus = len(finished) - len(expired) - self.keep_finished
        if surplus > 0:
            oldest = sorted((r for r in finished if r.id not in expired), key=lambda r: r.finished_at)
            expired.update(r.id for r in oldest[:surplus])
        for job_id in expired:
            del self._records[job_id]

    def close(self) -> None:
        for record in self._records.values():
            record.job.cancel()
        for task in self._tasks:
            task.cancel()
