"""Themes as data: TOML files in the project's ``themes/`` folder and the user's themes folder become Textual themes.

The project's ``themes/`` folder is installed as the package ``ttag_themes`` (see ``pyproject.toml``), so an editable
clone and a wheel find the shipped themes the same way, through ``importlib.resources``.

A theme file holds the arguments of :class:`textual.theme.Theme` (``name``, ``primary``, ``dark``, …, and an optional
``[variables]`` table). A broken file is skipped with a message, never fatal: the app says which file and why.
"""

from __future__ import annotations

import importlib.resources
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path

from textual.color import Color, ColorParseError
from textual.theme import Theme

from ttag_tui import paths

SHIPPED_THEMES_DIR = Path(str(importlib.resources.files("ttag_themes")))  # ttag is never imported from a zip
_COLOR_FIELDS = (
    "primary",
    "secondary",
    "warning",
    "error",
    "success",
    "accent",
    "foreground",
    "background",
    "surface",
    "panel",
    "boost",
)
_ALLOWED = {f.name for f in fields(Theme)}


@dataclass(frozen=True)
class ThemeProblem:
    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def theme_from_file(path: Path) -> Theme:
    """One theme; ValueError says what is wrong with the file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read it ({exc})") from None
    unknown = sorted(set(data) - _ALLOWED)
    if unknown:
        raise ValueError(f"unknown keys {', '.join(unknown)} (known: {', '.join(sorted(_ALLOWED))})")
    if not isinstance(data.get("name"), str) or not data["name"].strip():
        raise ValueError("needs a name")
    if not isinstance(data.get("primary"), str):
        raise ValueError("needs a primary colour")
    for key in _COLOR_FIELDS:
        if key in data:
            try:
                Color.parse(data[key])
            except (ColorParseError, TypeError):
                raise ValueError(f"{key}: {data[key]!r} is not a colour") from None
    variables = data.get("variables", {})
    if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
        raise ValueError("variables must be a table of text values")
    return Theme(**data)


def load_themes(folders: Iterable[Path] | None = None) -> tuple[list[Theme], list[ThemeProblem]]:
    """Every ``*.toml`` theme of the folders, in order; a later folder's theme replaces an earlier one of that name."""
    folders = list(folders) if folders is not None else [SHIPPED_THEMES_DIR, paths.user_themes_dir()]
    themes: dict[str, Theme] = {}
    problems: list[ThemeProblem] = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.toml")):
            try:
                theme = theme_from_file(path)
            except ValueError as exc:
                problems.append(ThemeProblem(path, str(exc)))
                continue
            themes[theme.name] = theme
    return list(themes.values()), problems
