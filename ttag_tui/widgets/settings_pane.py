"""The settings pane: only the parameters the selected model takes, checked as they are typed.

Each field is checked by ``runners.request.check_field`` — the very rule ``ttag generate`` applies — so the messages are
the CLI's word for word. An empty field means "not given": the model's default (or a random seed) is used.
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.validation import Failure, ValidationResult, Validator
from textual.widgets import Input, Label, Static

from runners.registry import ModelSpec
from runners.request import check_field

# Every model's own: its parameters as the registry declares them (ParamSpec), in that order; audio files come from
# "continue this take", and the negative prompt lives in the prompt pane.
COMMON_FIELDS = ("duration", "seed", "takes")
IN_PROMPT_PANE = ("negative_prompt",)


def label(name: str) -> str:
    return name.replace("_", "-")


class FieldValidator(Validator):
    """Wraps ``check_field`` so Textual's Input marks a bad value and carries the CLI's message."""

    def __init__(self, name: str, spec: ModelSpec) -> None:
        super().__init__()
        self.field_name = name
        self.spec = spec

    def validate(self, value: str) -> ValidationResult:
        if not value.strip():
            return self.success()
        try:
            check_field(self.field_name, value, self.spec)
        except ValueError as exc:
            return ValidationResult([Failure(self, value, f"{label(self.field_name)} {exc}")])
        return self.success()


def fields_for(spec: ModelSpec) -> list[str]:
    own = (p.name for p in spec.params if p.type != "audio" and p.name not in IN_PROMPT_PANE)
    return [*COMMON_FIELDS, *own]


def placeholder_for(name: str, spec: ModelSpec) -> str:
    if name == "duration":
        return f"{spec.default_duration:g} s ({spec.min_duration:g}–{spec.max_duration:g})"
    if name == "seed":
        return "random"
    if name == "takes":
        return "1"
    param = spec.param(name)
    assert param is not None
    limits = (
        f" ({param.minimum:g}–{param.maximum:g})" if param.minimum is not None and param.maximum is not None else ""
    )
    return f"{param.default}{limits}"


class SettingsPane(VerticalScroll):
    """The generation settings as typed. Values survive a model switch, so switching back restores them."""

    DEFAULT_CSS = """
    SettingsPane {
        .setting-row {
            height: 1;
        }
        .setting-label {
            width: 12;
            color: $text-muted;
        }
        .setting-row Input {
            width: 1fr;
        }
        #last-seed {
            color: $text-muted;
        }
        #setting-errors {
            color: $error;
        }
    }
    """

    can_focus = False  # tab goes from field to field, not to the scrolling box around them

    class Changed(Message):
        """A value changed (the app saves the session state)."""

    def __init__(self, spec: ModelSpec, values: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.values: dict[str, str] = dict(values or {})
        self.last_seed: int | None = None

    def compose(self) -> ComposeResult:
        for name in fields_for(self.spec):
            with Horizontal(classes="setting-row"):
                yield Label(label(name), classes="setting-label")
                field = Input(
                    self.values.get(name, ""),
                    placeholder=placeholder_for(name, self.spec),
                    id=f"set-{name}",
                    compact=True,
                    validators=[FieldValidator(name, self.spec)],
                    valid_empty=True,
                )
                field.cursor_blink = False
                param = self.spec.param(name)
                field.tooltip = param.help if param is not None else None
                yield field
        yield Static(self._seed_line(), id="last-seed")
        yield Static(id="setting-errors", markup=False)  # errors quote what was typed

    def on_mount(self) -> None:
        self._show_errors()

    async def set_model(self, spec: ModelSpec) -> None:
        self.spec = spec
        await self.recompose()
        self._show_errors()

    async def load_values(self, values: dict[str, str], spec: ModelSpec | None = None) -> None:
        self.values = dict(values)
        if spec is not None:
            self.spec = spec
        await self.recompose()
        self._show_errors()

    def _seed_line(self) -> str:
        if self.last_seed is None:
            return "last seed: none yet"
        return f"last seed: {self.last_seed} (ctrl+l pins it)"

    def show_last_seed(self, seed: int) -> None:
        self.last_seed = seed
        self.query_one("#last-seed", Static).update(self._seed_line())

    def pin_seed(self) -> bool:
        """Put the last resolved seed into the seed field; False when there is none yet."""
        if self.last_seed is None:
            return False
        self.query_one("#set-seed", Input).value = str(self.last_seed)
        return True

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        name = (event.input.id or "").removeprefix("set-")
        self.values[name] = event.value
        self._show_errors()
        self.post_message(self.Changed())

    def errors(self) -> list[str]:
        """The messages of every field that is wrong now, in field order."""
        messages = []
        for name in fields_for(self.spec):
            text = self.values.get(name, "").strip()
            if not text:
                continue
            try:
                check_field(name, text, self.spec)
            except ValueError as exc:
                messages.append(f"{label(name)} {exc}")
        return messages

    def _show_errors(self) -> None:
        errors = self.errors()
        box = self.query_one("#setting-errors", Static)
        box.update("\n".join(errors))
        box.display = bool(errors)

    def request_fields(self) -> dict[str, Any]:
        """The fields this model takes that were filled in, as typed (``validate_request`` cleans them)."""
        return {name: self.values[name].strip() for name in fields_for(self.spec) if self.values.get(name, "").strip()}
