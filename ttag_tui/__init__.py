"""ttag: a terminal studio that turns text prompts into audio (CLI, bridge, config and storage; the TUI and server)."""

__version__ = "0.1.0"
