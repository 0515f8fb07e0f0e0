"""The main screen: its layout and wiring (``screen.py``) and what it does, one concern per module — saving the
session's state (``state.py``), the model probe and local folders (``models.py``), the request from the panes
(``generate.py``), following jobs (``jobs.py``), take actions and the trash (``takes.py``), playback and the transport
(``transport.py``), switching sessions (``sessions.py``)."""

from ttag_tui.screens.main.screen import MainScreen

__all__ = ["MainScreen"]
