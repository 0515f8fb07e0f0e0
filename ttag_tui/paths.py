"""Where ttag keeps things, from platformdirs. ``TTAG_CONFIG_DIR`` / ``TTAG_DATA_DIR`` move them (tests, portable)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "ttag"


def config_dir() -> Path:
    return Path(os.environ.get("TTAG_CONFIG_DIR") or platformdirs.user_config_dir(APP))


def config_file() -> Path:
    return config_dir() / "config.toml"


def data_dir() -> Path:
    return Path(os.environ.get("TTAG_DATA_DIR") or platformdirs.user_data_dir(APP))


def user_themes_dir() -> Path:
    return config_dir() / "themes"


def default_output_dir() -> Path:
    """A ``ttag`` folder in the user's music directory."""
    return platformdirs.user_music_path() / APP
