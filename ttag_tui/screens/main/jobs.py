"""Following jobs: each submitted request gets a row in the jobs list and an async Textual worker that awaits the
job's events (``Job.aevents``; the bridge wakes it from its threads), so the screen stays live.

Each finished take is written to disk (in a thread) and recorded in the session store at once; nothing waits for the
job to end. The first take's audio also streams into the row's ``live`` source, to listen to while it is made.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from ttag_tui.playback import AudioSource
from ttag_tui.widgets.prompt import PromptArea

if TYPE_CHECKING:
    from runners.contract import Clip
    from runners.request import GenerationRequest
    from ttag_tui.screens.main.screen import MainScreen
    from ttag_tui.widgets.jobs import JobItem

TITLE_CHARS = 40


def short(text: str, limit: int = TITLE_CHARS) -> str:
    """One line of at most ``limit`` characters, with an ellipsis when cut."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class JobFollower:
    def __init__(self, screen: MainScreen) -> None:
        self.screen = screen
        self.last_request: GenerationRequest | None = None  # what ctrl+r runs again (per session)

    async def submit(self, request: GenerationRequest) -> JobItem:
        """Record the job, show it, and follow it in a background worker."""
        from ttag_tui.widgets.jobs import JobItem

        screen = self.screen
        store = screen.ttag.store
        self.last_request = request
        store.add_prompt(screen.session.id, request.prompt, request.negative_prompt or "")
        screen.query_one(PromptArea).set_history(store.prompt_history(None))
        screen.settings_pane.show_last_seed(int(request.seed or 0))
        record_id = store.add_job(screen.session.id, request.to_dict())
        item = JobItem(record_id, short(request.prompt))
        spec = screen.ttag.registry.get(request.model)
        assert spec is not None
        expected = int((request.duration or spec.default_duration) * spec.sample_rate)
        live = AudioSource(spec.sample_rate, spec.channels, f"live: {short(request.prompt, 24)}", expected)
        item.live = live
        await screen.jobs_list.add_job(item)
        screen.state.changed()
        screen.run_worker(self._follow(request, item, live, screen.session.id), group="jobs", exit_on_error=False)
        return item

    async def _follow(self, request: GenerationRequest, item: JobItem, live: AudioSource, session_id: int) -> None:
        """Await the job's events and show each as it comes."""
        from ttag_tui.backend.events import Chunk, ClipReady, JobState, JobStatus, Progress, fold

        screen = self.screen
        store = screen.ttag.store
        try:
            job = await asyncio.to_thread(screen.ttag.bridge.submit, request, stream=True)
            item.job = job
            if item.status == "cancelled":  # cancelled while the bridge was starting
                job.cancel()
            status = JobStatus()
            async for event in job.aevents():
                before, status = status.state, fold(status, event)
                if isinstance(event, Progress):
                    item.set_progress(event.phase, event.step, event.total, event.eta_s)
                elif isinstance(event, Chunk):
                    if event.take == 0:
                        live.write(event.start, event.audio)
                elif isinstance(event, ClipReady):
                    if event.clip.metadata.get("take", 0) == 0:
                        live.write(0, event.clip.audio)
                        live.finish()
                    await self._keep_clip(event.clip, item.record_id, session_id)
                if status.state == before:
                    continue
                store.set_job_status(item.record_id, status.state.value, status.error_message or "")
                if status.state is JobState.RUNNING:
                    item.set_status("running", "starting")
                elif status.state is JobState.DONE:
                    item.set_status("done")
                    await self.forget(item)
                else:
                    item.set_status(status.state.value, status.error_message or "")
                    if status.state is JobState.FAILED:
                        screen.notify(
                            status.error_message or "",
                            title=f"Job #{item.record_id} failed ({status.error_kind})",
                            severity="error",
                            timeout=10,
                        )
        except Exception as exc:  # a bug or a full disk must not take the app down; say what happened
            message = f"{type(exc).__name__}: {exc}"
            store.set_job_status(item.record_id, "failed", message)
            item.set_status("failed", message)
            screen.notify(message, title=f"Job #{item.record_id} failed", severity="error", timeout=10)
        finally:
            screen.models.refresh_statuses()

    async def _keep_clip(self, clip: Clip, job_id: int, session_id: int) -> None:
        """Write the take (atomically, in a thread), record it, show it."""
        from ttag_tui.output import write_clip
        from ttag_tui.widgets.waveform import summarize

        screen = self.screen
        config = screen.ttag.config

        def write() -> tuple[Path, list[float]]:
            return write_clip(clip, config.resolved_output_dir(), config.format), summarize(clip.audio)

        path, summary = await asyncio.to_thread(write)
        parameters = {**clip.metadata.get("parameters", {}), "seed": clip.metadata.get("seed"), "takes": 1}
        take = screen.ttag.store.add_take(
            session_id,
            path=str(path),
            prompt=parameters.get("prompt", ""),
            model=clip.metadata.get("model", ""),
            seed=int(clip.metadata.get("seed", 0)),
            duration=clip.duration,
            parameters=parameters,
            waveform=summary,
            job_id=job_id,
        )
        if session_id == screen.session.id:
            table = screen.takes_table
            table.add_take(take)
            if not table.has_focus:
                table.select_take(take.id)

    async def forget(self, item: JobItem) -> None:
        """Take a finished job off the list (for good: an interrupted one does not come back on the next start)."""
        self.screen.ttag.store.dismiss_job(item.record_id)
        if item.parent is not None:
            await self.screen.jobs_list.remove_job(item)

    async def cancel(self, item: JobItem) -> None:
        """Cancel a running job (the bridge kills its worker in a thread), or dismiss a finished one."""
        if item.finished:
            await self.forget(item)
            return
        item.set_status("cancelled", "cancelling…")
        if item.job is not None:
            await asyncio.to_thread(item.job.cancel)

    def listen(self, item: JobItem) -> None:
        """Play what the job has made so far; the transport waits for the rest as it streams in."""
        from ttag_tui.widgets.waveform import FLAT_SUMMARY

        if item.live is None or (item.finished and item.status != "done"):
            self.screen.notify("This job made no audio to listen to.", severity="warning")
            return
        self.screen.transport_control.play_source(item.live, FLAT_SUMMARY, None)

    async def show_interrupted(self) -> None:
        """Jobs that were running when ttag last stopped: shown as interrupted, to dismiss or run again."""
        from ttag_tui.widgets.jobs import JobItem

        screen = self.screen
        for record in screen.ttag.store.interrupted_jobs(screen.session.id):
            item = JobItem(
                record.id, short(record.request.get("prompt", "")), status="interrupted", message=record.message
            )
            await screen.jobs_list.add_job(item)

    async def drop_finished(self) -> None:
        """Clear the finished rows (a session switch): running jobs stay, their takes go to their own session."""
        jobs_list = self.screen.jobs_list
        for item in jobs_list.items():
            if item.finished:
                await jobs_list.remove_job(item)
