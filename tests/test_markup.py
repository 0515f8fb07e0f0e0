"""Brackets are text: install hints (``[musicgen]``), prompts and names like ``[bold] piano`` or ``[/]`` show as typed
in the command line's Rich output and in the TUI, and never crash it as bad markup."""

from __future__ import annotations

import io

from rich.console import Console
from textual.content import Content

from runners import registry
from runners.registry import install_hint
from tests.tui_fakes import make_app, running, wait_for
from ttag_tui import cli
from ttag_tui.screens.ask import AskScreen
from ttag_tui.sessions import SessionStore
from ttag_tui.widgets.settings_pane import SettingsPane
from ttag_tui.widgets.takes import TakesTable

TRICKY = "[bold] piano [/] [red]x"


def words(text: str) -> str:
    """The text without any blanks: Rich wraps long lines where the terminal ends, which must not matter."""
    return "".join(text.split())


def test_list_models_shows_the_install_hint_with_its_extra(monkeypatch, capsys):
    real = registry._importable
    monkeypatch.setattr(registry, "_importable", lambda module: module != "transformers" and real(module))
    assert cli.main(["list-models"]) == 0
    out = capsys.readouterr().out
    assert words(f"missing Python packages: transformers ({install_hint('musicgen')})") in words(out)
    assert "[musicgen]" in install_hint("musicgen")


def test_the_progress_line_shows_a_prompt_with_brackets_as_typed(monkeypatch):
    view = cli._ProgressView(True, TRICKY)
    assert view.progress is not None
    view.progress.stop()
    screen = io.StringIO()
    view.progress.live.console = Console(file=screen, width=200, force_terminal=True, color_system=None)
    view.update("generating", 1, 4, TRICKY)
    view.progress.live.console.print(view.progress.get_renderable())
    assert f"{TRICKY}: generating" in screen.getvalue()


async def test_notices_titles_and_questions_show_brackets_as_text(tmp_path):
    store = SessionStore(tmp_path / "data" / "sessions.sqlite3")
    store.rename_session(store.latest_session().id, TRICKY)
    store.close()
    app = make_app(tmp_path)
    async with running(app, notifications=True) as pilot:
        title = app.screen.query_one(TakesTable).border_title  # Textual hands it back as escaped markup
        assert Content.from_markup(title).plain == f"Takes · {TRICKY}"
        app.screen.notify(f"The file is gone: /music/{TRICKY}.wav", title="x")  # a screen's notify, as ttag calls it
        await wait_for(pilot, lambda: bool(app.query("Toast")), "the notice")
        toast = app.query_one("Toast")
        assert f"/music/{TRICKY}.wav" in str(toast.render())

        await app.push_screen(AskScreen(f"Rename session {TRICKY!r}", TRICKY))
        await pilot.pause()
        assert str(app.screen.query_one("Label").render()) == f"Rename session {TRICKY!r}"
        await pilot.press("escape")

        pane = app.screen.query_one(SettingsPane)
        pane.query_one("#set-duration").value = "[/]"
        await wait_for(pilot, lambda: pane.query_one("#setting-errors").display, "the settings error")
        assert "[/]" in str(pane.query_one("#setting-errors").render())
