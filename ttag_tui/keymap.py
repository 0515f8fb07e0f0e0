"""Every key binding of the app as data: one table that the widgets, the footer, the help screen and the config share.

Each binding has a stable id (the action's name); ``[keys]`` in config.toml maps ids to other keys and is applied with
Textual's own keymap (``App.set_keymap``), so an override changes the key everywhere, footer and help included.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from textual.binding import Binding

Scope = Literal["app", "main", "takes", "jobs"]


@dataclass(frozen=True)
class KeySpec:
    id: str  # also the action name (``action_<id>``) on the widget of its scope
    key: str  # Textual key names, comma separated for alternatives
    description: str
    scope: Scope
    show: bool = True  # in the footer
    priority: bool = False  # works even while typing in a text field
    help: str = ""  # a longer line for the help screen


KEYS: tuple[KeySpec, ...] = (
    # Anywhere, even while typing a prompt.
    KeySpec("generate", "ctrl+g", "Generate", "app", priority=True, help="Generate from the prompt and settings"),
    KeySpec(
        "regenerate", "ctrl+r", "Regenerate", "app", priority=True, help="Run the last request again with a new seed"
    ),
    KeySpec(
        "pin_seed",
        "ctrl+l",
        "Pin seed",
        "app",
        show=False,
        priority=True,
        help="Put the last resolved seed into the seed field (fixed seed)",
    ),
    KeySpec("history", "ctrl+o", "History", "app", show=False, priority=True, help="Pick an earlier prompt"),
    KeySpec("focus_prompt", "ctrl+b", "Prompt", "app", show=False, priority=True, help="Move to the prompt"),
    KeySpec("focus_takes", "ctrl+t", "Takes", "app", show=False, priority=True, help="Move to the takes"),
    KeySpec("help", "f1", "Help", "app", help="All keys and how ttag works"),
    KeySpec("config", "f2", "Config", "app", show=False, help="Edit the configuration"),
    KeySpec("sessions", "f3", "Sessions", "app", help="Create, rename, switch and delete sessions"),
    # The main screen, when the focus is not in a text field.
    KeySpec("play_pause", "space", "Play/Pause", "main", help="Play the selected take, or pause/resume"),
    KeySpec("stop", "x", "Stop", "main", show=False, help="Stop playback"),
    KeySpec("loop", "o", "Loop", "main", show=False, help="Loop playback on or off"),
    KeySpec("seek_back", "left", "-5 s", "main", show=False, help="Seek back 5 seconds"),
    KeySpec("seek_forward", "right", "+5 s", "main", show=False, help="Seek forward 5 seconds"),
    KeySpec("volume_up", "plus,equals_sign", "Vol+", "main", show=False, help="Volume up"),
    KeySpec("volume_down", "minus", "Vol-", "main", show=False, help="Volume down"),
    # The takes table.
    KeySpec("play_take", "enter", "Play", "takes", show=False, help="Play the take from the start"),
    KeySpec("star", "s", "Star", "takes", help="Star or unstar the take"),
    KeySpec("rename", "n", "Rename", "takes", show=False, help="Give the take a name"),
    KeySpec("delete", "d,delete", "Delete", "takes", help="Move the take to the trash"),
    KeySpec("undo_delete", "u", "Undo", "takes", show=False, help="Bring back the last deleted take"),
    KeySpec("copy_path", "c", "Copy path", "takes", show=False, help="Copy the take's file path"),
    KeySpec("use_settings", "l", "Use settings", "takes", help="Load the take's prompt and settings into the panes"),
    KeySpec("regen_new_seed", "r", "Again", "takes", help="Same settings, new seed"),
    KeySpec("regen_same_seed", "R", "Same seed", "takes", show=False, help="Same settings, same seed"),
    KeySpec("continue_take", "e", "Continue", "takes", show=False, help="Continue this take (models that can)"),
    # The jobs list.
    KeySpec("cancel_job", "c,delete", "Cancel", "jobs", help="Cancel the job (or dismiss a finished one)"),
    KeySpec("play_live", "enter", "Listen", "jobs", show=False, help="Listen while the job is still generating"),
)

SCOPE_TITLES: dict[Scope, str] = {
    "app": "Anywhere",
    "main": "Main screen (outside text fields)",
    "takes": "Takes",
    "jobs": "Jobs",
}


def bindings(scope: Scope) -> list[Binding]:
    """Textual bindings of one scope, each with its id so that ``App.set_keymap`` can move it."""
    return [
        Binding(
            spec.key, spec.id, spec.description, show=spec.show, priority=spec.priority, id=spec.id, tooltip=spec.help
        )
        for spec in KEYS
        if spec.scope == scope
    ]


def unknown_actions(overrides: Mapping[str, str]) -> list[str]:
    """Ids in a ``[keys]`` table that name no binding (typos), so the app can say so instead of ignoring them."""
    known = {spec.id for spec in KEYS}
    return sorted(name for name in overrides if name not in known)


def effective_key(spec: KeySpec, overrides: Mapping[str, str]) -> str:
    return overrides.get(spec.id, spec.key)


def help_table(overrides: Mapping[str, str]) -> str:
    """All keys as Markdown tables, one per scope, with the user's overrides applied."""
    lines: list[str] = []
    for scope, title in SCOPE_TITLES.items():
        specs = [spec for spec in KEYS if spec.scope == scope]
        if not specs:
            continue
        lines += [f"### {title}", "", "| Key | Action | id |", "| :- | :- | :- |"]
        for spec in specs:
            keys = " / ".join(f"`{k}`" for k in effective_key(spec, overrides).split(","))
            lines.append(f"| {keys} | {spec.help or spec.description} | {spec.id} |")
        lines.append("")
    return "\n".join(lines)
