"""The config screen: device, output folder, defaults, theme and key overrides, saved to config.toml with tomli-w.

The form's values go through ``ttag_tui.config``'s own loader before anything is written, so a bad value gets the
same message ``ttag config set`` would give and the file is never left half-valid.
"""

from __future__ import annotations

import tempfile
from dataclasses import fields
from pathlib import Path
from typing import Any

import tomli_w
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import Input, Label, Select

from ttag_tui import config as config_module
from ttag_tui import keymap
from ttag_tui.config import Config, ConfigError
from ttag_tui.screens.dialog import Dialog

TEXT_FIELDS = ("default_duration", "output_dir", "threads", "cache_dir", "idle_unload_s")
HELP = {
    "default_model": "model selected in a new session",
    "default_duration": "seconds; 0 = the model's default",
    "output_dir": "where takes are written; empty = ~/Music/ttag",
    "format": "audio format of new takes",
    "device": "where models run",
    "dtype": "number precision of model weights",
    "threads": "CPU threads for a model; 0 = automatic",
    "cache_dir": "model weights cache; empty = Hugging Face's",
    "idle_unload_s": "unload an idle model after this many seconds",
    "theme": "colours (also from the command palette)",
    "keys": "key overrides: action=key, action=key (ids in the help screen)",
}


def parse_keys(text: str) -> dict[str, str]:
    """``generate=f5, star=asterisk`` → {"generate": "f5", "star": "asterisk"}; ValueError names a bad entry."""
    overrides: dict[str, str] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        action, sep, key = (piece.strip() for piece in entry.partition("="))
        if not sep or not action or not key:
            raise ValueError(f"keys: {entry!r} should look like action=key")
        overrides[action] = key
    unknown = keymap.unknown_actions(overrides)
    if unknown:
        raise ValueError(f"keys: no action called {', '.join(unknown)} (see the help screen for the ids)")
    return overrides


def config_from_form(base: Config, values: dict[str, Any]) -> Config:
    """The config the form describes, checked by the config module's own loader; ConfigError/ValueError say why."""
    data = {f.name: getattr(base, f.name) for f in fields(Config)}
    data.update(values)
    data["keys"] = parse_keys(values.get("keys", ""))
    with tempfile.TemporaryDirectory(prefix="ttag-config-check-") as folder:
        check = Path(folder) / "config.toml"
        check.write_text(tomli_w.dumps({k: v for k, v in data.items() if v is not None}), encoding="utf-8")
        try:
            return config_module.load(check, environment=False)
        except ConfigError as exc:
            raise ValueError(exc.setting) from None  # not the check file's path and line: the user never saw it


class ConfigScreen(Dialog[Config | None]):
    """Dismisses with the saved config, or None when closed without saving."""

    DEFAULT_CSS = """
    ConfigScreen {
        .setting-row {
            height: 1;
        }
        .setting-label {
            width: 18;
            color: $text-muted;
        }
        .setting-row Input, .setting-row Select {
            width: 1fr;
        }
    }
    """

    BINDINGS = [Binding("escape", "close", "Close"), Binding("ctrl+s", "save", "Save", priority=True)]

    def __init__(self, config: Config, models: list[str], themes: list[str]) -> None:
        super().__init__()
        self.config = config
        self.models = models
        self.themes = themes

    def _row(self, name: str, widget: Input | Select[str]) -> Horizontal:
        widget.id = f"cfg-{name}"
        widget.tooltip = HELP[name]
        return Horizontal(Label(name.replace("_", " "), classes="setting-label"), widget, classes="setting-row")

    def compose(self) -> ComposeResult:
        config = self.config
        with Vertical(id="config-box", classes="dialog"):
            yield Label("Configuration · ctrl+s save · escape close")
            with VerticalScroll():
                yield self._row(
                    "default_model",
                    Select(
                        [(m, m) for m in self.models],
                        value=config.default_model if config.default_model in self.models else Select.NULL,
                        compact=True,
                    ),
                )
                yield self._row("default_duration", Input(f"{config.default_duration:g}", compact=True))
                yield self._row(
                    "output_dir", Input(config.output_dir, placeholder=str(config.resolved_output_dir()), compact=True)
                )
                yield self._row(
                    "format",
                    Select(
                        [(f, f) for f in config_module.FORMATS], value=config.format, allow_blank=False, compact=True
                    ),
                )
                yield self._row(
                    "device",
                    Select(
                        [(d, d) for d in config_module.DEVICES], value=config.device, allow_blank=False, compact=True
                    ),
                )
                yield self._row(
                    "dtype",
                    Select([(d, d) for d in config_module.DTYPES], value=config.dtype, allow_blank=False, compact=True),
                )
                yield self._row("threads", Input(str(config.threads), compact=True))
                yield self._row("idle_unload_s", Input(f"{config.idle_unload_s:g}", compact=True))
                yield self._row("cache_dir", Input(config.cache_dir, placeholder="Hugging Face default", compact=True))
                themes = sorted(set(self.themes) | {config.theme})
                yield self._row(
                    "theme", Select([(t, t) for t in themes], value=config.theme, allow_blank=False, compact=True)
                )
                keys = ", ".join(f"{action}={key}" for action, key in config.keys.items())
                yield self._row("keys", Input(keys, placeholder="e.g. generate=f5, star=asterisk", compact=True))
            yield Label("", id="config-message", classes="hint")

    def on_mount(self) -> None:
        for widget in self.query(Input):
            widget.cursor_blink = False

    def form_values(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for widget in self.query(Input):
            values[(widget.id or "").removeprefix("cfg-")] = widget.value.strip()
        for select in self.query(Select):
            name = (select.id or "").removeprefix("cfg-")
            values[name] = select.value if isinstance(select.value, str) else getattr(self.config, name)
        return values

    def action_save(self) -> None:
        try:
            config = config_from_form(self.config, self.form_values())
            path = config_module.save(config)
        except (ValueError, OSError) as exc:
            self.query_one("#config-message", Label).update(Content.styled(f"not saved: {exc}", "red"))
            return
        self.notify(f"saved {path}", timeout=3)
        self.dismiss(config)

    def action_close(self) -> None:
        self.dismiss(None)
