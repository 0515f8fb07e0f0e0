"""The model pane: the registry as a list with each model's status, and the highlighted model's details."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from runners.registry import Availability, ModelSpec, Registry

SIDEBAR_WIDTH = 30  # app.tcss; the list is 4 narrower (borders, scroll bar) until its first layout says otherwise
# The list's column is narrow: short words there, the full status in the details below.
SHORT_LABELS = {"weights cached": "cached", "needs download": "download", "runner environment missing": "no env"}
STATUS_WIDTH = 8  # the longest short status word
STATUS_STYLES = {
    "loaded": "bold green",
    "ready": "green",
    "weights cached": "green",
    "needs download": "yellow",
    "runner environment missing": "red",
    "checking": "dim",
}


@dataclass(frozen=True)
class ModelStatus:
    label: str  # ready | loaded | weights cached | needs download | runner environment missing | checking
    advice: str = ""  # what to do about it, for a model that cannot run yet

    @classmethod
    def from_availability(cls, availability: Availability, loaded: bool) -> ModelStatus:
        if loaded:
            return cls("loaded")
        if not availability.runnable:
            return cls("runner environment missing", availability.reason)
        if availability.weights_cached is False:
            return cls("needs download", availability.reason)
        if availability.weights_cached:
            return cls("weights cached")
        return cls("ready")


def fit_id(model_id: str, room: int) -> str:
    """Shorten an id to ``room`` characters by cutting its leading words to their initials, one at a time from the
    left: the last words tell models apart (``audiocraft-musicgen-stereo-small`` → ``a-m-stereo-small``)."""
    words = model_id.split("-")
    for index in range(len(words) - 1):
        if len("-".join(words)) <= room:
            break
        words[index] = words[index][0]
    short = "-".join(words)
    return short if len(short) <= room else short[: room - 1] + "…"


def _name_room(list_width: int) -> int:
    """Columns a row has for the id (and kind): what the status word leaves."""
    return max(8, list_width - STATUS_WIDTH - 1)


def _kind_short(kind: str) -> str:
    return {"music and sound": "mix", "sound effects": "sfx"}.get(kind, kind)


def describe(spec: ModelSpec, status: ModelStatus, *, with_id: bool = False) -> Text:
    """The details block: the id when the list had to shorten it, the status and what to do about it (first: the
    block is a few lines high), then description, sample rate, limits, parameters."""
    text = Text()
    if with_id:
        text.append(spec.id + "\n", style="bold")
    text.append("status: ")
    text.append(status.label, style=STATUS_STYLES.get(status.label, ""))
    if status.advice:
        text.append(f"\n→ {status.advice}", style="yellow")
    text.append("\n" + spec.description)
    channels = "stereo" if spec.channels == 2 else "mono" if spec.channels == 1 else f"{spec.channels} ch"
    text.append(
        f"\n{spec.sample_rate} Hz {channels} · {spec.min_duration:g}–{spec.max_duration:g} s "
        f"(default {spec.default_duration:g} s)"
    )
    if spec.params:
        text.append("\nparameters: " + ", ".join(p.name for p in spec.params), style="dim")
    if spec.understands:
        text.append(f"\nunderstands: {spec.understands}", style="dim")
    return text


class ModelPane(Vertical):
    """Pick the model; its status says whether it can run and, when not, what to do."""

    DEFAULT_CSS = """
    ModelPane {
        #model-list {
            height: auto;
            max-height: 4;
            border: none;
            padding: 0;
        }
        #model-details {
            padding: 0 1;
            height: auto;
            max-height: 5;
            color: $text-muted;
        }
    }
    """

    class Chosen(Message):
        def __init__(self, model_id: str) -> None:
            super().__init__()
            self.model_id = model_id

    def __init__(self, registry: Registry, selected: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.registry = registry
        self.selected = selected if selected in registry else next(iter(registry.ids()), "")
        self.statuses: dict[str, ModelStatus] = {spec.id: ModelStatus("checking") for spec in registry}
        self._list_width = SIDEBAR_WIDTH - 4

    def compose(self) -> ComposeResult:
        rows = [Option(self._row(spec, self._list_width), id=spec.id) for spec in self.registry]
        options = OptionList(*rows, id="model-list")
        yield options
        yield Static(id="model-details")

    def on_mount(self) -> None:
        self.select(self.selected, announce=False)

    def _row(self, spec: ModelSpec, width: int) -> Text:
        """The model's id (what ``ttag generate -m`` takes; shortened by ``fit_id`` only when it cannot fit, and then
        shown whole in the details), its kind when there is room, and its status in a word."""
        status = self.statuses[spec.id]
        label = SHORT_LABELS.get(status.label, status.label)
        room = _name_room(width)
        kind = f"{_kind_short(spec.kind):<6}"
        name = fit_id(spec.id, room)
        show_kind = len(spec.id) + 1 + len(kind) <= room
        return Text.assemble(
            (f"{name:<{room - len(kind) if show_kind else room}}", "bold"),
            (kind if show_kind else "", "dim"),
            " ",
            (f"{label:<{STATUS_WIDTH}}", STATUS_STYLES.get(status.label, "")),
            no_wrap=True,
            overflow="ellipsis",
        )

    def _redraw_rows(self) -> None:
        options = self.query_one(OptionList)
        self._list_width = options.scrollable_content_region.width or SIDEBAR_WIDTH - 4
        for spec in self.registry:
            options.replace_option_prompt(spec.id, self._row(spec, self._list_width))
        self._show_details(self.selected)

    def _fits(self, spec: ModelSpec) -> bool:
        return len(spec.id) <= _name_room(self._list_width)

    def on_resize(self) -> None:
        self.call_after_refresh(self._fit_rows)  # once the list inside has its new width

    def _fit_rows(self) -> None:
        if self.query_one(OptionList).scrollable_content_region.width != self._list_width:
            self._redraw_rows()

    def add_model(self, spec: ModelSpec, status: ModelStatus) -> None:
        """A model that joined the registry after start-up (a local checkpoint folder): listed last."""
        self.statuses[spec.id] = status
        self.query_one(OptionList).add_option(Option(self._row(spec, self._list_width), id=spec.id))

    def set_statuses(self, statuses: dict[str, ModelStatus]) -> None:
        self.statuses.update(statuses)
        self._redraw_rows()

    def select(self, model_id: str, *, announce: bool = True) -> None:
        if model_id not in self.registry:
            return
        options = self.query_one(OptionList)
        options.highlighted = options.get_option_index(model_id)
        self._choose(model_id, announce)

    def _choose(self, model_id: str, announce: bool) -> None:
        changed = model_id != self.selected
        self.selected = model_id
        self._show_details(model_id)
        if announce and changed:
            self.post_message(self.Chosen(model_id))

    def _show_details(self, model_id: str) -> None:
        spec = self.registry.get(model_id)
        if spec is not None:
            details = describe(spec, self.statuses[model_id], with_id=not self._fits(spec))
            self.query_one("#model-details", Static).update(details)

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        if event.option.id:
            self._choose(event.option.id, announce=True)
