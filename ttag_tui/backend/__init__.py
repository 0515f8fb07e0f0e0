"""How jobs get run: the :class:`Backend` protocol that local workers (``ttag_tui.bridge.Bridge``) and a ttag server
(``ttag_tui.remote.RemoteBridge``) both implement, and :func:`open_backend`, the one place that picks between them.

The CLI, the TUI and the server only ever talk to a ``Backend``; the events a job produces are declared once in
:mod:`ttag_tui.backend.events`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Self

if TYPE_CHECKING:
    from runners.registry import Availability, ModelSpec, Registry
    from runners.request import GenerationRequest
    from ttag_tui.backend.events import Job
    from ttag_tui.config import Config


class Backend(Protocol):
    """Runs validated requests somewhere and reports each as a :class:`Job` of events."""

    def registry(self) -> Registry:
        """The models this backend can be asked for (validate requests against it)."""
        ...

    def availability(self, spec: ModelSpec) -> Availability:
        """Whether ``spec`` can run on this backend, and if not, why in words."""
        ...

    def submit(self, request: GenerationRequest, *, stream: bool = False) -> Job:
        """Queue a validated request; returns at once. ``stream``: audio chunks as they are made."""
        ...

    def loaded_models(self) -> list[str]: ...

    def unload(self, model: str | None = None) -> None: ...

    def close(self) -> None: ...

    def new_job(self, request: GenerationRequest, stream: bool) -> Job:
        """The Job for a validated request of a model this backend knows: what every ``submit`` starts with."""
        from ttag_tui.backend.events import Job

        spec = self.registry().get(request.model)
        if spec is None:
            raise KeyError(f"unknown model {request.model!r}")
        if request.seed is None:
            raise ValueError("validate the request first (it has no seed)")
        return Job(request, spec, stream)

    def __enter__(self) -> Self:  # the implementations inherit these two: a backend closes itself on exit
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_backend(config: Config, url: str | None = None) -> Backend:
    """A ttag server when ``url`` (or config ``backend``) names one, else worker processes on this machine."""
    url = url or config.backend
    if url:
        from ttag_tui.remote import RemoteBridge

        return RemoteBridge(url, api_key=config.backend_api_key)
    from runners.registry import default_registry
    from ttag_tui.bridge import Bridge, BridgeSettings

    return Bridge(default_registry(), BridgeSettings.from_config(config))
