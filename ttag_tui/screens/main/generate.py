"""Generating from the main screen: the request the panes describe, checked by the CLI's own rules, then submitted.

Generation never runs here: a request is validated with ``runners.request.validate_request`` and handed to the job
follower (``jobs.py``), which submits it to the bridge and follows its events in a background worker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runners.request import GenerationRequest
    from ttag_tui.screens.main.screen import MainScreen


class Generator:
    def __init__(self, screen: MainScreen) -> None:
        self.screen = screen

    def form_fields(self) -> dict[str, Any]:
        """The request the panes describe, as typed."""
        screen, config = self.screen, self.screen.ttag.config
        prompt = screen.prompt_pane
        data: dict[str, Any] = {"prompt": prompt.prompt, "model": screen.model_id, "format": config.format}
        data.update(screen.settings_pane.request_fields())
        if "duration" not in data and config.default_duration:
            data["duration"] = config.default_duration
        if prompt.negative.strip() and screen.spec.param("negative_prompt") is not None:
            data["negative_prompt"] = prompt.negative
        return data

    def validated(self, data: dict[str, Any]) -> GenerationRequest | None:
        """The request, or None after saying in a notice why it cannot run."""
        from runners.request import RequestInvalid, validate_request

        screen, ttag = self.screen, self.screen.ttag
        try:
            request = validate_request(data, ttag.registry)
        except RequestInvalid as exc:
            screen.notify(
                "\n".join(str(error) for error in exc.errors), title="Not generated", severity="error", timeout=8
            )
            return None
        from ttag_tui.bridge import Bridge

        bridge, spec = ttag.bridge, ttag.registry.get(request.model)
        if isinstance(bridge, Bridge) and spec is not None:  # a ttag server decides for itself
            status = bridge.availability(spec)  # probed now (milliseconds): a model pulled since start-up is welcome
            if not status.available:  # said now, not after a worker has imported torch
                screen.notify(status.refusal(spec), title="Not generated", severity="error")
                return None
        return request

    async def run(self, data: dict[str, Any]) -> None:
        """Validate the fields and, if they make a request, submit it."""
        request = self.validated(data)
        if request is not None:
            await self.screen.jobs.submit(request)

    async def generate(self) -> None:
        await self.run(self.form_fields())

    async def regenerate(self) -> None:
        """The last request again, with a new seed."""
        last = self.screen.jobs.last_request
        if last is None:
            self.screen.notify("Nothing to regenerate yet: ctrl+g generates from the prompt.", severity="warning")
            return
        await self.run({**last.to_dict(), "seed": None})
