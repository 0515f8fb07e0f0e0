"""The web UI (ttag_tui/web) in a real browser: headless Debian Chromium, driven by Playwright, against a real
``ttag server`` on 127.0.0.1.

Chromium is found at /usr/bin/chromium (apt: chromium); Playwright's Python package drives it through
``executable_path`` (never ``playwright install``). Without either, the browser tests skip — unless
``TTAG_REQUIRE_BROWSER=1`` (CI), where they fail. A PNG screenshot per state goes to tests/artifacts/web/.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.live_server import start_server, stop_server
from ttag_tui.server.app import create_app

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "ttag_tui" / "web"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "web"
# Read at import: the autouse fixture in conftest.py clears TTAG_* variables before each test runs.
REQUIRE_BROWSER = os.environ.get("TTAG_REQUIRE_BROWSER") == "1"
CHROMIUM = os.environ.get("TTAG_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    # Root in a container, no GPU, nothing leaves the machine (see shared/notes/browser.md).
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    # Let the tests start playback without a click; with no sound card Chromium still plays (clock advances).
    "--autoplay-policy=no-user-gesture-required",
    "--mute-audio",
]
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}

try:
    from playwright.sync_api import Page, expect, sync_playwright

    expect.set_options(timeout=20_000)  # assertions wait for states; a busy 2-core CI box needs more than 5 s
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None


def _missing() -> str | None:
    if sync_playwright is None:
        return "the Python package 'playwright' is not installed (pip install playwright; no 'playwright install')"
    if not os.path.isfile(CHROMIUM) or not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


MISSING = _missing()


# -- no browser needed: the page is served, the API still wins, nothing points outside ----------------------------


def test_server_serves_the_web_ui_and_api_routes_still_win():
    with TestClient(create_app(), base_url="http://127.0.0.1:8000") as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert '<script type="module" src="app.js">' in page.text
        script = client.get("/app.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        assert client.get("/app.css").headers["content-type"].startswith("text/css")
        assert client.get("/api/health").json()["status"] == "ok"
        missing = client.get("/api/no-such-route")
        assert missing.status_code == 404 and missing.json() == {"detail": "Not Found"}
        assert client.get("/no-such-file.js").status_code == 404
        wrong_method = client.request("OPTIONS", "/api/generate")  # the API's own 405, not the web UI's
        assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
        assert client.get("/api/jobs").headers["allow"] == "POST"
        assert all(path.startswith("/api/") for path in client.get("/openapi.json").json()["paths"])


def test_web_files_name_no_outside_url():
    """No CDN, no fonts, no analytics: the only absolute URL allowed is the SVG namespace."""
    files = sorted(WEB.iterdir())
    assert {f.name for f in files} >= {"index.html", "app.css", "app.js"}
    for file in files:
        text = file.read_text()
        urls = set(re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}[^\s\"')]*", text, flags=re.I))
        assert urls <= {"http://www.w3.org/2000/svg"}, f"{file.name} names {urls}"
        assert "@import" not in text and "@font-face" not in text


# -- the browser --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if MISSING:
        if REQUIRE_BROWSER:
            pytest.fail(f"TTAG_REQUIRE_BROWSER=1 but {MISSING}")
        pytest.skip(MISSING)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(browser, tmp_path_factory) -> Iterator[str]:
    base, process = start_server(tmp_path_factory.mktemp("web-server"))
    yield base
    stop_server(process)


@pytest.fixture(scope="module")
def keyed_server(browser, tmp_path_factory) -> Iterator[str]:
    base, process = start_server(tmp_path_factory.mktemp("web-keyed"), TTAG_API_KEYS="s3cret-key")
    yield base
    stop_server(process)


class Browsing:
    """One fresh browser context (its own IndexedDB and localStorage) and page; records every request it makes."""

    def __init__(self, browser, base: str, viewport: dict[str, int], name: str, scheme: str = "dark") -> None:
        self.base, self.name = base, name
        self.context = browser.new_context(viewport=viewport, color_scheme=scheme)
        self.context.set_default_timeout(20_000)
        self.page: Page = self.context.new_page()
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)

    def open(self) -> Page:
        self.page.goto(self.base + "/")
        self.page.wait_for_selector("body[data-ready=true]")
        return self.page

    def shot(self, state: str) -> None:
        self.page.evaluate("() => window.scrollTo(0, 0)")  # a full-page shot of a scrolled page repeats the sticky bar
        self.page.wait_for_timeout(150)  # let transitions settle
        self.page.screenshot(path=str(ARTIFACTS / f"{self.name}-{state}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()

    def check_stayed_local(self) -> None:
        outside = [u for u in self.requests if not u.startswith((self.base, "blob:", "data:"))]
        assert not outside, f"the page asked for {outside}"


@pytest.fixture
def web(browser, server, request) -> Iterator[Browsing]:
    session = Browsing(browser, server, DESKTOP, request.node.name.removeprefix("test_"))
    yield session
    session.close()
    session.check_stayed_local()


def audio_state(page: Page, take_selector: str = ".take") -> dict:
    return page.eval_on_selector(
        f"{take_selector} audio",
        "a => ({duration: a.duration, time: a.currentTime, paused: a.paused, ready: a.readyState, src: a.src})",
    )


def wait_audio_ready(page: Page, take_selector: str = ".take") -> dict:
    page.wait_for_function(
        "sel => { const a = document.querySelector(sel + ' audio'); return a && a.readyState >= 1; }",
        arg=take_selector,
    )
    return audio_state(page, take_selector)


def generate(page: Page, prompt: str, **settings: str) -> None:
    page.fill("#prompt", prompt)
    for name, value in settings.items():
        page.fill(f"#{name}", value)
    page.keyboard.press("Control+Enter")


def test_generate_shows_progress_then_a_take_that_plays(web):
    page = web.open()
    expect(page.locator("#model")).to_have_value("synth")
    expect(page.locator("#temperature")).to_be_visible()  # synth's own parameter
    expect(page.locator("#top_k")).to_have_count(0)  # not synth's
    web.shot("ready")
    generate(page, "lofi hip hop with piano and rain, 85 bpm", duration="12", seed="7")
    job = page.locator(".job").first
    expect(job.locator("progress")).to_be_visible()
    expect(job).to_have_attribute("data-state", re.compile("queued|running|done"))
    web.shot("progress")
    take = page.locator(".take").first
    expect(take).to_be_visible(timeout=60_000)
    expect(take.locator(".take-meta")).to_contain_text("seed 7")
    audio = wait_audio_ready(page)
    assert audio["src"].startswith("blob:")  # kept in the browser, not streamed from the server
    assert abs(audio["duration"] - 12) <= 0.05, audio
    take.locator(".play").click()
    page.wait_for_function("() => document.querySelector('.take audio').currentTime > 0.3")
    assert not audio_state(page)["paused"]
    expect(take.locator(".play")).to_have_attribute("aria-label", "Pause")
    web.shot("playing")
    take.focus()
    page.keyboard.press(" ")
    page.wait_for_function("() => document.querySelector('.take audio').paused")
    assert take.locator(".download").get_attribute("download").endswith("-7.wav")
    page.keyboard.press("?")
    expect(page.locator("#help-dialog")).to_be_visible()
    expect(page.locator("#help-dialog")).to_contain_text("Generate from the prompt")
    web.shot("help")
    page.keyboard.press("Escape")
    expect(page.locator("#help-dialog")).to_be_hidden()
    assert not web.errors


def test_cancel_a_long_job_even_after_a_reload(web):
    page = web.open()
    generate(page, "cinematic strings and drums, slow", duration="600", takes="2")
    job = page.locator(".job").first
    expect(job).to_have_attribute("data-state", "running", timeout=30_000)
    job_id = job.get_attribute("data-job")
    page.reload()  # the page picks the job up again from localStorage
    page.wait_for_selector("body[data-ready=true]")
    job = page.locator(f".job[data-job='{job_id}']")
    expect(job).to_have_attribute("data-state", "running", timeout=30_000)
    expect(job.locator(".job-status")).to_have_text(re.compile(r"\d+/\d+"))  # step k of n
    web.shot("running")
    page.keyboard.press("Escape")  # Esc cancels the newest job, even from the prompt field
    expect(job).to_have_attribute("data-state", "cancelled", timeout=30_000)
    expect(job.locator(".job-status")).to_have_text("cancelled")
    web.shot("cancelled")
    expect(page.locator(".take")).to_have_count(0)


def test_validation_errors_show_next_to_their_fields(web):
    page = web.open()
    page.fill("#duration", "9999")
    page.click("#generate")  # the prompt is empty too: the server reports both
    duration_error = page.locator("#duration-error")
    expect(duration_error).to_contain_text("must be between 0.5 and 600 seconds for synth")
    expect(page.locator("#prompt-error")).to_contain_text("is empty")
    expect(page.locator(".field[data-field=duration]")).to_have_class(re.compile("invalid"))
    expect(page.locator("#duration")).to_have_attribute("aria-invalid", "true")
    web.shot("validation")
    page.fill("#temperature", "5")
    page.fill("#duration", "2")
    page.fill("#prompt", "techno")
    expect(duration_error).to_be_empty()  # typing clears a field's message
    page.click("#generate")
    expect(page.locator("#temperature-error")).to_contain_text("must be between 0 and 2")
    expect(page.locator(".job")).to_have_count(0)

    # A model this server cannot run: listed as unavailable with the reason; its own settings appear.
    option = page.locator("#model option[value='musicgen-small']")
    expect(option).to_contain_text("unavailable")
    page.select_option("#model", "musicgen-small")
    expect(page.locator("#model-info")).to_contain_text("weights not downloaded")
    expect(page.locator("#top_k")).to_have_attribute("placeholder", "250")
    expect(page.locator("#temperature")).to_have_attribute("max", "4")
    expect(page.locator("#temperature")).to_have_value("5")  # what was typed stays when the model changes
    page.fill("#temperature", "")
    page.click("#generate")
    expect(page.locator("#model-error")).to_contain_text("cannot run on this server")
    web.shot("unavailable-model")


def test_star_loop_use_settings_regenerate_and_reload(web):
    page = web.open()
    generate(page, "house, 124 bpm, in A minor", duration="2", seed="42", temperature="0.5")
    take = page.locator(".take").first
    expect(take).to_be_visible(timeout=60_000)
    take.focus()
    page.keyboard.press("s")  # star, as in the TUI
    expect(take.locator(".star")).to_have_attribute("aria-pressed", "true")
    take.locator(".loop").click()
    expect(take.locator(".loop")).to_have_attribute("aria-pressed", "true")
    assert page.eval_on_selector(".take audio", "a => a.loop")

    # Change the form, then take the settings back from the take.
    page.fill("#prompt", "something else")
    page.fill("#seed", "")
    page.fill("#duration", "9")
    page.fill("#temperature", "")
    take.locator(".use").click()
    expect(page.locator("#prompt")).to_have_value("house, 124 bpm, in A minor")
    expect(page.locator("#seed")).to_have_value("42")
    expect(page.locator("#duration")).to_have_value("2")
    expect(page.locator("#temperature")).to_have_value("0.5")
    web.shot("use-settings")

    # Regenerate: the last request, a new seed.
    page.click("#regenerate")
    expect(page.locator(".take")).to_have_count(2, timeout=60_000)
    newest = page.locator(".take").first
    expect(newest.locator(".take-meta")).not_to_contain_text("seed 42")
    expect(newest.locator(".take-meta")).to_contain_text("Temperature 0.5")

    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    expect(page.locator(".take")).to_have_count(2)
    starred = page.locator(".take.starred")
    expect(starred).to_have_count(1)
    expect(starred.locator(".take-meta")).to_contain_text("seed 42")
    expect(starred.locator(".loop")).to_have_attribute("aria-pressed", "true")
    audio = wait_audio_ready(page, ".take.starred")
    assert abs(audio["duration"] - 2) <= 0.05
    starred.locator(".play").click()
    page.wait_for_function("() => document.querySelector('.take.starred audio').currentTime > 0.2")
    expect(page.locator("#prompt")).to_have_value("house, 124 bpm, in A minor")  # the draft survives too
    web.shot("after-reload")
    page.check("#starred-only")
    expect(page.locator(".take")).to_have_count(1)
    page.uncheck("#starred-only")

    # The TUI's keys on the selected take: d deletes, u brings it back, o loops, l loads its settings.
    newest = page.locator(".take").first
    newest.focus()
    page.keyboard.press("o")
    expect(newest.locator(".loop")).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("d")
    expect(page.locator(".take")).to_have_count(1)
    page.keyboard.press("u")
    expect(page.locator(".take")).to_have_count(2)
    page.locator(".take").first.focus()
    page.keyboard.press("l")
    expect(page.locator("#seed")).not_to_have_value("42")
    assert not web.errors


def test_phone_width(browser, server):
    web = Browsing(browser, server, PHONE, "phone", scheme="light")  # the light theme gets its screenshots here
    try:
        page = web.open()
        web.shot("ready")
        generate(page, "ambient pad with ocean waves", duration="3")
        expect(page.locator(".take")).to_be_visible(timeout=60_000)
        page.locator(".take").scroll_into_view_if_needed()
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"the page scrolls sideways ({width} px)"
        box = page.locator(".take .play").bounding_box()
        assert box["width"] >= 40 and box["height"] >= 40  # a finger-sized target
        web.shot("take")
    finally:
        web.close()
    web.check_stayed_local()


def test_api_key_is_asked_for_kept_and_sent(browser, keyed_server):
    web = Browsing(browser, keyed_server, DESKTOP, "api-key")
    try:
        page = web.open()
        dialog = page.locator("#key-dialog")
        expect(dialog).to_be_visible()
        expect(page.locator("#key-error")).to_contain_text("needs an API key")
        web.shot("asked")
        page.fill("#api-key", "wrong")
        page.click("#key-save")
        expect(page.locator("#key-error")).to_contain_text("refused")
        expect(dialog).to_be_visible()
        page.fill("#api-key", "s3cret-key")
        page.click("#key-save")
        expect(dialog).to_be_hidden()
        expect(page.locator("#model")).to_have_value("synth")
        assert page.evaluate("() => localStorage.getItem('ttag.apiKey')") == "s3cret-key"
        page.select_option("#format", "flac")
        generate(page, "drum and bass, fast", duration="1.5")
        expect(page.locator(".take")).to_be_visible(timeout=60_000)
        assert abs(wait_audio_ready(page)["duration"] - 1.5) <= 0.05
        assert page.locator(".take .download").get_attribute("download").endswith(".flac")
        web.shot("generated")
        page.reload()  # the key is remembered: no dialog this time
        page.wait_for_selector("body[data-ready=true]")
        expect(dialog).to_be_hidden()
        expect(page.locator("#model")).to_have_value("synth")
    finally:
        web.close()
    web.check_stayed_local()
