"""The web UI (ttag_tui/web) in a real browser: headless Debian Chromium, driven by Playwright, against a real
``ttag server`` on 127.0.0.1.

Chromium is found at /usr/bin/chromium (apt: chromium); Playwright's Python package drives it through
``executable_path`` (never ``playwright install``). Without either, the browser tests skip — unless
``TTAG_REQUIRE_BROWSER=1`` (CI), where they fail. A PNG screenshot per state goes to tests/artifacts/web/.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.live_server import start_server, stop_server
from tests.waiting import wait_until
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
    HAVE_PLAYWRIGHT = True
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_PLAYWRIGHT = False


def _missing() -> str | None:
    if not HAVE_PLAYWRIGHT:
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


CANCEL_RUNNING_JS = """() => {
    const key = localStorage.getItem("ttag.apiKey");
    const headers = key ? { Authorization: "Bearer " + key } : {};
    const live = [...document.querySelectorAll(".job[data-job]")]
        .filter((n) => ["queued", "running"].includes(n.dataset.state));
    return Promise.all(live.map((n) => fetch(`api/jobs/${n.dataset.job}/cancel`, { method: "POST", headers })));
}"""


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
        # Jobs left running would hold the shared server's synth for the next test: cancel them first.
        with contextlib.suppress(Exception):  # a page that is gone has nothing left to cancel
            self.page.evaluate(CANCEL_RUNNING_JS)
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


def stop_live_playback(page: Page) -> None:
    """Pause whatever plays (a take that came from the live stream keeps playing after its job ends)."""
    page.eval_on_selector_all(
        ".take .play[aria-label=Pause], .job .listen[aria-pressed=true]", "buttons => buttons.forEach((b) => b.click())"
    )


def small_targets(page: Page) -> list[str]:
    """Visible controls (buttons, links styled as buttons, selects, toggles) smaller than 44 x 44 CSS px."""
    return page.evaluate(
        """() => [...document.querySelectorAll('button, a.icon-btn, select, label.toggle, input[type=range]')]
            .filter((e) => e.checkVisibility() && !e.closest('[hidden], dialog:not([open])'))
            .map((e) => [e, e.getBoundingClientRect()])
            .filter(([, r]) => r.width > 0 && (r.width < 44 || r.height < 44))
            .map(([e, r]) => {
                const name = e.getAttribute('aria-label') || e.textContent.trim().slice(0, 20);
                const size = `${Math.round(r.width)}x${Math.round(r.height)}`;
                return `${e.tagName.toLowerCase()}.${e.className || e.id} ${name} ${size}`;
            })"""
    )


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
    expect(take.locator(".take-meta")).to_contain_text(re.compile(r"\bseed 7\b"))
    audio = wait_audio_ready(page)
    assert audio["src"].startswith("blob:")  # kept in the browser, not streamed from the server
    assert abs(audio["duration"] - 12) <= 0.05, audio
    # It played while it was generated; the finished take carries on from the live stream: pausing stops it there.
    play = take.locator(".play")
    expect(play).to_have_attribute("aria-label", "Pause")
    play.click()
    expect(play).to_have_attribute("aria-label", "Play")
    assert 0 < audio_state(page)["time"] < 12  # the take's own player picks up where the stream was
    play.click()
    page.wait_for_function("() => !document.querySelector('.take audio').paused")
    start = audio_state(page)["time"]
    page.wait_for_function(f"() => document.querySelector('.take audio').currentTime > {start} + 0.3")
    expect(play).to_have_attribute("aria-label", "Pause")
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


def test_a_cancelled_job_keeps_the_takes_it_finished(web):
    page = web.open()
    generate(page, "techno 128 bpm", duration="600", takes="3")
    job = page.locator(".job").first
    expect(job).to_have_attribute("data-state", "running", timeout=30_000)
    job_id = job.get_attribute("data-job")
    with httpx.Client(base_url=web.base) as http:  # the second take has begun: the first is made
        wait_until(
            lambda: http.get(f"/api/jobs/{job_id}/audio", params={"take": 1}).headers["x-ttag-frames"] != "0",
            120,
            "the second take begun",
        )
    page.keyboard.press("Escape")
    expect(job).to_have_attribute("data-state", "cancelled", timeout=30_000)
    expect(job.locator(".job-status")).to_have_text("cancelled · 1 take kept")
    expect(page.locator(".take")).to_have_count(1)
    expect(page.locator(".take .take-prompt")).to_contain_text("techno 128 bpm")


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

    # A model this server cannot run: listed as unavailable; its reason shows as soon as it is chosen; its own
    # settings appear, and Generate is off, saying why.
    option = page.locator("#model option[value='musicgen-small']")
    expect(option).to_contain_text("unavailable")
    page.select_option("#model", "musicgen-small")
    expect(page.locator("#model-fix")).to_contain_text("weights not downloaded")
    expect(page.locator("#top_k")).to_have_attribute("placeholder", "250")
    expect(page.locator("#temperature")).to_have_attribute("max", "4")
    expect(page.locator("#temperature")).to_have_value("5")  # what was typed stays when the model changes
    expect(page.locator("#temperature-error")).to_contain_text("must be between 0 and 4 (got 5)")  # its limits now
    expect(page.locator("#generate")).to_be_disabled()
    expect(page.locator("#generate-why")).to_contain_text("musicgen-small cannot run on this server")
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
    # a whole word: a new random seed may well start with 42 (4235861470 did once)
    expect(newest.locator(".take-meta")).not_to_contain_text(re.compile(r"\bseed 42\b"))
    expect(newest.locator(".take-meta")).to_contain_text("Temperature 0.5")

    stop_live_playback(page)
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    expect(page.locator(".take")).to_have_count(2)
    starred = page.locator(".take.starred")
    expect(starred).to_have_count(1)
    expect(starred.locator(".take-meta")).to_contain_text(re.compile(r"\bseed 42\b"))
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
        small = small_targets(page)
        assert not small, f"touch targets under 44 x 44 px: {small}"
        web.shot("take")
    finally:
        web.close()
    web.check_stayed_local()


def test_api_key_is_asked_for_kept_and_sent(browser, keyed_server):
    web = Browsing(browser, keyed_server, DESKTOP, "api-key")
    try:
        web.page.add_init_script("window.__ttagRecord = true")
        page = web.open()
        dialog = page.locator("#key-dialog")
        expect(dialog).to_be_visible()
        expect(page.locator("#key-error")).to_contain_text("needs an API key")
        web.shot("asked")
        page.fill("#api-key", "wrong")
        page.click("#key-save")
        expect(page.locator("#key-error")).to_contain_text("refused")
        expect(dialog).to_be_visible()
        page.fill("#api-key", "ключ-неверный")  # a header cannot carry it: said as such, not as the server away
        page.click("#key-save")
        expect(page.locator("#key-error")).to_have_text(
            "That cannot be a key: keys are ASCII letters, digits and symbols, with no spaces or commas."
        )
        expect(page.locator("#server-status")).not_to_contain_text("unreachable")
        assert page.evaluate("() => localStorage.getItem('ttag.apiKey')") == "wrong"
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
        # The job stream took the key as a subprotocol (a browser cannot set headers on a WebSocket).
        transports = page.evaluate("() => Object.values(window.__ttagPlayed).map((r) => r.transport)")
        assert transports == ["websocket"]
        stop_live_playback(page)
        web.shot("generated")
        page.reload()  # the key is remembered: no dialog this time
        page.wait_for_selector("body[data-ready=true]")
        expect(dialog).to_be_hidden()
        expect(page.locator("#model")).to_have_value("synth")
    finally:
        web.close()
    web.check_stayed_local()


# -- the issues "The web page and the synth, as users found them" and "Live: a WebSocket job stream" ----------------

# Contrast of every visible text against what is really behind it (computed styles, backgrounds composited up the
# tree, opacity included), WCAG 2.x: 4.5:1, or 3:1 for large text (24 px, or 18.66 px bold). Disabled controls are
# exempt (WCAG 1.4.3). Inputs are checked for their value and their placeholder.
CONTRAST_JS = """
() => {
  const parse = (text) => {
    let m = text.match(/^rgba?\\(([^)]+)\\)$/);
    if (m) {
      const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
      return [p[0] / 255, p[1] / 255, p[2] / 255, p.length > 3 ? p[3] : 1];
    }
    m = text.match(/^color\\(srgb ([^)]+)\\)$/);
    if (m) {
      const p = m[1].split(/[\\s\\/]+/).filter(Boolean).map(Number);
      return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
    }
    throw new Error("unknown colour " + text);
  };
  const over = (top, bottom) => {
    const a = top[3];
    return [0, 1, 2].map((i) => top[i] * a + bottom[i] * (1 - a)).concat([1]);
  };
  const lum = (c) => {
    const f = (v) => (v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
  };
  const ratio = (a, b) => {
    const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p);
    return (x + 0.05) / (y + 0.05);
  };
  const background = (node) => {
    const layers = [];
    for (let e = node; e; e = e.parentElement) {
      const style = getComputedStyle(e);
      const c = parse(style.backgroundColor);
      if (c[3] > 0) layers.push(c);
      if (c[3] >= 1) break;
    }
    let bg = parse(getComputedStyle(document.documentElement).backgroundColor);
    if (bg[3] < 1) bg = [1, 1, 1, 1];
    for (const layer of layers.reverse()) bg = over(layer, bg);
    return bg;
  };
  const opacity = (node) => {
    let o = 1;
    for (let e = node; e; e = e.parentElement) o *= Number(getComputedStyle(e).opacity);
    return o;
  };
  const failures = [];
  let checked = 0;
  const check = (node, colorText, what) => {
    const style = getComputedStyle(node);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    const bg = background(node);
    const fg = parse(colorText);
    const color = over([fg[0], fg[1], fg[2], fg[3] * opacity(node)], bg);
    const r = ratio(color, bg);
    checked += 1;
    if (r < (large ? 3 : 4.5) - 1e-6) {
      const cls = node.className;
      const classes = typeof cls === "string" && cls ? "." + cls.split(" ").join(".") : "";
      const name = node.tagName.toLowerCase() + (node.id ? "#" + node.id : "") + classes;
      const under = bg.map((v) => Math.round(v * 255));
      failures.push(`${name} ${JSON.stringify(what.slice(0, 40))}: ${r.toFixed(2)} (${colorText} on ${under})`);
    }
  };
  for (const node of document.querySelectorAll("body *")) {
    if (!node.checkVisibility({ opacityProperty: true, visibilityProperty: true })) continue;
    if (node.closest(":disabled, [hidden], .sr-only, svg, canvas, option, optgroup")) continue;
    const rect = node.getBoundingClientRect();
    if (rect.width < 1 || rect.height < 1) continue;
    const text = [...node.childNodes].filter((n) => n.nodeType === 3).map((n) => n.textContent).join("").trim();
    if (text) check(node, getComputedStyle(node).color, text);
    if (node.matches("input:not([type=checkbox]):not([type=range]), textarea, select")) {
      if (node.value) check(node, getComputedStyle(node).color, node.value);
      if (node.placeholder && !node.value) check(node, getComputedStyle(node, "::placeholder").color, node.placeholder);
    }
  }
  // Graphics (3:1): the waveform's bars, played and unplayed, against the take's background.
  const take = document.querySelector(".take");
  if (take) {
    const bg = background(take);
    const root = getComputedStyle(document.documentElement);
    for (const name of ["--wave", "--accent"]) {
      const probe = document.createElement("span");
      probe.style.color = root.getPropertyValue(name);
      document.body.append(probe);
      const r = ratio(over(parse(getComputedStyle(probe).color), bg), bg);
      probe.remove();
      checked += 1;
      if (r < 3) failures.push(`waveform ${name}: ${r.toFixed(2)}`);
    }
  }
  return { failures, checked };
}
"""


def open_at(browser, server: str, viewport: dict[str, int], name: str, scheme: str = "dark") -> Browsing:
    session = Browsing(browser, server, viewport, name, scheme=scheme)
    session.page.add_init_script("window.__ttagRecord = true")  # the live player records what it schedules
    session.open()
    return session


def job_id_of_newest(page: Page) -> str:
    job_id = page.locator(".job").first.get_attribute("data-job")
    assert job_id, "no job card"
    return job_id


@pytest.mark.parametrize("height", [720, 800])
def test_running_job_card_is_in_view_with_its_progress(browser, server, height):
    web = open_at(browser, server, {"width": 1280, "height": height}, f"job-in-view-{height}")
    try:
        page = web.page
        generate(page, "drum and bass, fast", duration="1", takes="2")  # a few takes, so the list is not empty
        expect(page.locator(".take")).to_have_count(2, timeout=60_000)
        stop_live_playback(page)
        # three takes of 600 s: the job still runs after the layout is measured, on a box as loaded as CI's
        generate(page, "cinematic strings and drums, slow", duration="600", takes="3")
        card = page.locator(".job").first
        expect(card).to_have_attribute("data-state", "running", timeout=30_000)
        expect(card.locator(".job-status")).to_have_text(re.compile(r"\d+/\d+"))
        view = page.viewport_size
        for part in (card, card.locator("progress"), card.locator(".job-status"), card.locator(".cancel")):
            box = part.bounding_box()
            assert box and box["y"] >= 0 and box["y"] + box["height"] <= view["height"], (part, box, view)
        # The pinned form fits the window too (it scrolls inside): Generate is never out of reach.
        compose = page.locator("#compose").bounding_box()
        assert compose["y"] + compose["height"] <= view["height"], compose
        generate_button = page.locator("#generate").bounding_box()
        assert generate_button["y"] + generate_button["height"] <= view["height"], generate_button
        # It stands above the takes, where the new take will be.
        assert card.bounding_box()["y"] < page.locator(".take").first.bounding_box()["y"]
        web.shot("running")
        page.keyboard.press("Escape")
        expect(card).to_have_attribute("data-state", "cancelled", timeout=30_000)
    finally:
        web.close()
    web.check_stayed_local()


def test_live_stream_plays_while_generated_and_equals_the_take(browser, server):
    import base64

    import numpy as np
    import soundfile

    web = open_at(browser, server, DESKTOP, "live")
    try:
        page = web.page
        generate(page, "house, 124 bpm, in A minor", duration="30", seed="11")
        job_id = job_id_of_newest(page)
        card = page.locator(f".job[data-job='{job_id}']")
        # While it is generated: the card plays, its waveform grows.
        expect(card).to_have_class(re.compile("playing"), timeout=30_000)
        expect(card.locator(".listen")).to_have_attribute("aria-pressed", "true")
        web.shot("generating")
        take = page.locator(f".take[data-id='{job_id}-0']")
        expect(take).to_be_visible(timeout=60_000)
        record = page.evaluate(
            """id => {
                const r = window.__ttagPlayed[id];
                const chunks = [...r.chunks].sort((a, b) => a.start - b.start);
                const total = chunks.reduce((n, c) => n + c.samples.length, 0);
                const all = new Float32Array(total);
                let at = 0;
                for (const c of chunks) { all.set(c.samples, at); at += c.samples.length; }
                let text = "";
                const bytes = new Uint8Array(all.buffer);
                for (let i = 0; i < bytes.length; i += 0x8000) {
                    text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
                }
                return {
                    transport: r.transport, first: r.firstScheduledAt, done: r.doneAt, playing: r.playingAtDone,
                    rebuffers: r.rebuffers, rate: r.sampleRate, channels: r.channels,
                    chunks: chunks.map((c) => ({ start: c.start, frames: c.frames, when: c.when, offset: c.offset })),
                    samples: btoa(text),
                };
            }""",
            job_id,
        )
        assert record["transport"] == "websocket"
        # Its audio started before the job ended: the first chunk was scheduled before `done`, and the clock had
        # passed the start of the take by then.
        assert record["first"] < record["done"], record
        assert record["playing"] > 0, record
        # Gapless: each chunk starts on the Web Audio clock exactly where the one before ends.
        chunks = record["chunks"]
        rate = record["rate"]
        assert chunks[0]["start"] == 0 and all(c["offset"] == 0 for c in chunks)
        for before, after in itertools.pairwise(chunks):
            assert before["start"] + before["frames"] == after["start"]
            if record["rebuffers"] == 0:
                assert abs(before["when"] + before["frames"] / rate - after["when"]) < 1e-6
        # What it played is the finished take (downloaded as 16-bit WAV: equal within 16-bit precision).
        played = np.frombuffer(base64.b64decode(record["samples"]), dtype="<f4").reshape(-1, record["channels"])
        wav = httpx.get(f"{server}/api/jobs/{job_id}/takes/0", params={"format": "wav"}, timeout=60).content
        import io

        take_audio, take_rate = soundfile.read(io.BytesIO(wav), dtype="float32", always_2d=True)
        assert take_rate == rate and played.shape == take_audio.shape, (played.shape, take_audio.shape)
        assert float(np.max(np.abs(played - take_audio))) <= 1.0 / 32768 + 1e-7
        # The take keeps playing from the stream, as in the TUI; its waveform is the one drawn live.
        expect(take.locator(".play")).to_have_attribute("aria-label", "Pause")
        web.shot("take-playing")
        take.locator(".play").click()
        expect(take.locator(".play")).to_have_attribute("aria-label", "Play")
        assert not web.errors
    finally:
        web.close()
    web.check_stayed_local()


def test_live_stream_falls_back_to_polling(browser, server):
    """When the WebSocket cannot connect (a proxy that drops upgrades), progress and live audio come by polling."""
    web = Browsing(browser, server, DESKTOP, "live-polling")
    try:
        web.page.add_init_script("window.__ttagRecord = true; window.WebSocket = undefined;")
        page = web.open()
        generate(page, "techno, 130 bpm", duration="20", seed="5")
        job_id = job_id_of_newest(page)
        expect(page.locator(f".job[data-job='{job_id}']")).to_have_class(re.compile("playing"), timeout=30_000)
        expect(page.locator(f".take[data-id='{job_id}-0']")).to_be_visible(timeout=60_000)
        record = page.evaluate(
            "id => { const r = window.__ttagPlayed[id]; return {t: r.transport, n: r.chunks.length}; }", job_id
        )
        assert record == {"t": "polling", "n": record["n"]} and record["n"] > 0
        stop_live_playback(page)
        assert not web.errors
    finally:
        web.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_text_meets_wcag_aa_contrast(browser, server, scheme):
    web = open_at(browser, server, DESKTOP, f"contrast-{scheme}", scheme=scheme)
    try:
        page = web.page
        assert page.evaluate("() => document.documentElement.dataset.theme") == scheme
        generate(page, "ambient pad with ocean waves", duration="1", takes="2")
        expect(page.locator(".take")).to_have_count(2, timeout=60_000)
        stop_live_playback(page)
        page.locator(".take").first.locator(".star").click()
        page.locator(".take").nth(1).locator(".delete").click()  # a toast with its Undo button
        expect(page.locator(".toast")).to_be_visible()
        page.fill("#duration", "12abc")  # an error message as typed
        page.select_option("#model", "musicgen-small")  # the unavailable explanation, Generate off
        # Every job state, on the page's own markup and styles.
        page.evaluate(
            """() => {
                for (const [state, text] of [
                    ["queued", "queued — waiting for the model"], ["running", "generating · 3/9"],
                    ["done", "done · 1 take"], ["cancelled", "cancelled"], ["failed", "failed: out of memory"],
                ]) {
                    const node = document.querySelector("#job-template").content.firstElementChild.cloneNode(true);
                    node.dataset.state = state;
                    node.querySelector(".job-prompt").textContent = "a job that is " + state;
                    node.querySelector(".job-model").textContent = "synth · 10 s";
                    node.querySelector(".job-status").textContent = text;
                    document.querySelector("#jobs").append(node);
                }
            }"""
        )
        web.shot("states")
        result = page.evaluate(CONTRAST_JS)
        assert result["checked"] > 60, result
        assert not result["failures"], "\n".join(result["failures"])
    finally:
        web.close()


def test_theme_switch_beside_the_system_default_is_remembered(web):
    page = web.open()  # the context prefers dark
    html = page.locator("html")
    expect(html).to_have_attribute("data-theme", "dark")
    expect(page.locator("#theme")).to_have_value("system")
    dark_bg = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    page.select_option("#theme", "light")
    expect(html).to_have_attribute("data-theme", "light")
    assert page.evaluate("() => getComputedStyle(document.body).backgroundColor") != dark_bg
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    expect(html).to_have_attribute("data-theme", "light")
    expect(page.locator("#theme")).to_have_value("light")
    web.shot("light-chosen")
    page.select_option("#theme", "system")
    expect(html).to_have_attribute("data-theme", "dark")


def test_undo_by_button_for_bulk_deletes_and_after_a_reload(web):
    page = web.open()
    generate(page, "chiptune, happy, 150 bpm", duration="1", takes="4", seed="1")
    takes = page.locator(".take")
    expect(takes).to_have_count(4, timeout=60_000)
    stop_live_playback(page)
    numbers = lambda: page.eval_on_selector_all(".take", "ns => ns.map((n) => n.dataset.number)")  # noqa: E731
    assert numbers() == ["1", "2", "3", "4"]  # one request: side by side, in take order
    page.locator(".take[data-number='3'] .star").click()
    page.check("#starred-only")
    expect(page.locator("#takes-count")).to_have_text("1 of 4")  # the count follows the filter
    page.uncheck("#starred-only")
    expect(page.locator("#takes-count")).to_have_text("4")

    # Delete the oldest: the others keep their numbers (they are names, not positions).
    page.locator(".take[data-number='1'] .delete").click()
    toast = page.locator(".toast")
    expect(toast).to_contain_text("Take #1 deleted")
    assert_toast_covers_no_take_button(page)
    assert numbers() == ["2", "3", "4"]

    # Clear unstarred: one undoable batch, with an Undo button in the toast.
    page.click("#clear-takes")
    expect(takes).to_have_count(1)
    expect(toast).to_contain_text("2 unstarred takes deleted")
    web.shot("cleared")
    toast.get_by_role("button", name="Undo").click()
    expect(takes).to_have_count(3)
    assert numbers() == ["2", "3", "4"]

    # The earlier single delete is still undoable — after a reload too, from the panel's Undo button.
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    undo = page.locator("#undo-delete")
    expect(undo).to_be_visible()
    undo.click()
    expect(takes).to_have_count(4)
    assert numbers() == ["1", "2", "3", "4"]
    expect(undo).to_be_hidden()
    page.locator(".take").first.focus()
    page.keyboard.press("u")
    expect(toast).to_contain_text("Nothing to bring back")
    # New takes never reuse a number.
    page.locator(".take[data-number='4'] .delete").click()
    generate(page, "chiptune, sad", duration="1", seed="2")
    expect(page.locator(".take[data-number='5']")).to_be_visible(timeout=60_000)
    assert not web.errors


def assert_toast_covers_no_take_button(page: Page) -> None:
    toast = page.locator(".toast").bounding_box()
    assert toast, "no toast"
    header = page.locator(".topbar").bounding_box()
    assert header, "no top bar"
    assert header["y"] <= toast["y"] and toast["y"] + toast["height"] <= header["y"] + header["height"]
    for box in page.eval_on_selector_all(
        ".take button, .take a, .job button", "ns => ns.map((n) => n.getBoundingClientRect().toJSON())"
    ):
        apart = (
            box["x"] + box["width"] <= toast["x"]
            or toast["x"] + toast["width"] <= box["x"]
            or box["y"] + box["height"] <= toast["y"]
            or toast["y"] + toast["height"] <= box["y"]
        )
        assert apart, f"the toast {toast} covers a take's button at {box}"


def test_models_grouped_unavailable_explained_and_nothing_above_moves(web):
    page = web.open()
    groups = page.eval_on_selector_all("#model optgroup", "gs => gs.map((g) => [g.label, g.children.length])")
    assert groups[0][0].startswith("Available") and groups[1][0].startswith("Not available"), groups
    assert page.eval_on_selector("#model optgroup", "g => [...g.children].map((o) => o.value)") == ["synth"]
    expect(page.locator("#generate")).to_be_enabled()

    select_box = page.locator("#model").bounding_box()
    page.select_option("#model", "stable-audio-open-1.0")  # adds a negative prompt — below the model
    expect(page.locator("#negative_prompt")).to_be_visible()
    assert page.locator("#model").bounding_box()["y"] == select_box["y"]
    fix = page.locator("#model-fix")
    expect(fix).to_contain_text("weights not downloaded")
    expect(page.locator("#model-run")).to_have_text("ttag models pull stable-audio-open-1.0")
    expect(page.locator("#generate")).to_be_disabled()
    expect(page.locator("#generate-why")).to_contain_text("stable-audio-open-1.0 cannot run on this server")
    web.shot("unavailable")
    page.select_option("#model", "audiogen-medium")
    expect(page.locator("#model-run")).to_have_text("ttag runners setup audiocraft")
    assert page.locator("#model").bounding_box()["y"] == select_box["y"]
    page.keyboard.press("Control+Enter")  # nothing is sent: no job, no second message
    expect(page.locator(".job")).to_have_count(0)
    page.select_option("#model", "synth")
    expect(fix).to_be_hidden()
    expect(page.locator("#generate")).to_be_enabled()
    expect(page.locator("#negative_prompt")).to_be_hidden()
    # Example prompts from the model's kind, one click away.
    page.locator("#examples .example").first.click()
    assert page.input_value("#prompt") != ""


def test_header_follows_reachability(web):
    page = web.open()
    status = page.locator("#server-status")
    expect(status).to_have_attribute("data-state", "ok")
    page.route("**/api/**", lambda route: route.abort())  # the server goes away
    expect(status).to_have_attribute("data-state", "down", timeout=30_000)  # the periodic probe notices
    expect(status).to_contain_text("unreachable")
    web.shot("down")
    page.unroute("**/api/**")
    expect(status).to_have_attribute("data-state", "ok", timeout=30_000)
    # Any failed request marks it down at once, long before the next probe (every 10 s while the server answers).
    page.fill("#prompt", "techno")
    page.route("**/api/**", lambda route: route.abort())
    page.click("#generate")
    expect(status).to_have_attribute("data-state", "down", timeout=5_000)
    expect(page.locator(".toast")).to_contain_text("Cannot reach the server")
    page.unroute("**/api/**")
    expect(status).to_have_attribute("data-state", "ok", timeout=30_000)


def test_fields_validate_as_typed_in_the_servers_words(web):
    page = web.open()
    page.fill("#prompt", "techno")
    page.locator("#duration").press_sequentially("12abc")
    expect(page.locator("#duration")).to_have_value("12abc")  # nothing typed is dropped
    expect(page.locator("#duration-error")).to_have_text("must be a number, not text")
    page.click("#generate")
    expect(page.locator("#duration-error")).to_have_text("must be a number, not text")  # the server agrees
    expect(page.locator(".job")).to_have_count(0)
    page.fill("#duration", "0.1")
    expect(page.locator("#duration-error")).to_have_text("must be between 0.5 and 600 seconds for synth (got 0.1)")
    page.fill("#takes", "1.5")
    expect(page.locator("#takes-error")).to_have_text("must be a whole number (got 1.5)")
    page.fill("#takes", "9")
    expect(page.locator("#takes-error")).to_have_text("must be between 1 and 8 (got 9)")
    web.shot("typed")
    page.fill("#takes", "")
    for field in ("duration", "seed"):  # beyond a double: JSON would send null, and the default would be made
        page.fill(f"#{field}", "1e309")
        expect(page.locator(f"#{field}-error")).to_have_text("must be a finite number")
        page.click("#generate")
        expect(page.locator(f"#{field}-error")).to_have_text("must be a finite number")
        expect(page.locator(f"#{field}")).to_be_focused()
        expect(page.locator(".job")).to_have_count(0)
        page.fill(f"#{field}", "")
    expect(page.locator(".field.invalid")).to_have_count(0)

    # A paste past the limit is kept whole and refused in words (the textarea's maxLength cut it silently); the count
    # is the server's, in characters: 2,000 emoji are 4,000 UTF-16 units, and allowed.
    page.fill("#prompt", "")
    page.focus("#prompt")
    page.keyboard.insert_text("🎹" * 5 + "x" * 2000)
    expect(page.locator("#prompt")).to_have_value("🎹" * 5 + "x" * 2000)
    expect(page.locator("#prompt-error")).to_have_text("is too long (2005 characters; the limit is 2000)")
    page.click("#generate")
    expect(page.locator("#prompt")).to_be_focused()
    expect(page.locator(".job")).to_have_count(0)
    page.fill("#prompt", "🎹" * 2000)
    expect(page.locator("#prompt-error")).to_be_empty()


def test_queued_is_distinct_and_time_left_is_smooth(web):
    page = web.open()
    page.evaluate(
        """() => {
            window.__etas = [];
            new MutationObserver(() => {
                const eta = document.querySelector(".job[data-state=running] .job-eta");
                const value = eta?.dataset.eta;
                if (value && window.__etas.at(-1) !== Number(value)) window.__etas.push(Number(value));
            }).observe(
                document.querySelector("#jobs"),
                { subtree: true, attributes: true, childList: true, characterData: true },
            );
        }"""
    )
    # Four takes of 600 s, the synth's longest: tens of seconds of work even where the synth makes 600 s in five (one
    # take of it once finished before the ETA had been watched), so the job is cancelled while it runs
    generate(page, "dubstep, heavy", duration="600", seed="3", takes="4")
    first = page.locator(f".job[data-job='{job_id_of_newest(page)}']")
    expect(first).to_have_attribute("data-state", "running", timeout=30_000)
    stop_live_playback(page)
    generate(page, "birds and a stream", duration="1")
    queued = page.locator(".job").first
    expect(queued).to_have_attribute("data-state", "queued")
    expect(queued.locator(".job-status")).to_contain_text("queued")
    look = "e => { const s = getComputedStyle(e); return [s.animationName, s.backgroundImage]; }"
    animation, image = queued.locator("progress").evaluate(look)
    assert animation == "none" and "repeating-linear-gradient" in image  # still, hatched
    assert "repeating" not in first.locator("progress").evaluate(look)[1]
    web.shot("queued")
    queued.locator(".cancel").click()  # while the first still runs: a queued job is cancelled without running
    expect(queued).to_have_attribute("data-state", "cancelled", timeout=30_000)
    page.wait_for_function("() => window.__etas.length >= 8", timeout=60_000)
    etas = page.evaluate("() => window.__etas")
    rises = [b - a for a, b in itertools.pairwise(etas) if b > a]
    assert all(rise <= 1 for rise in rises), etas
    first.locator(".cancel").click()
    expect(first).to_have_attribute("data-state", "cancelled", timeout=30_000)


def test_phone_tap_shows_the_whole_prompt(browser, server):
    web = Browsing(browser, server, PHONE, "phone-tap", scheme="dark")
    try:
        page = web.open()
        prompt = "lofi hip hop with rhodes piano, vinyl crackle and gentle rain, 85 bpm, in D dorian"
        generate(page, prompt, duration="1")
        take = page.locator(".take").first
        expect(take).to_be_visible(timeout=60_000)
        stop_live_playback(page)
        title = take.locator(".take-prompt")
        assert title.evaluate("e => e.scrollWidth > e.clientWidth")  # cut at first
        take.locator(".take-title").click()  # a tap
        expect(take.locator(".take-title")).to_have_attribute("aria-expanded", "true")
        assert title.evaluate("e => e.scrollWidth <= e.clientWidth")
        expect(title).to_contain_text(prompt)
        expect(take.locator(".take-details")).to_be_visible()
        expect(take.locator(".take-details")).to_contain_text("44.1 kHz stereo")
        small = small_targets(page)
        assert not small, small
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"the page scrolls sideways ({width} px)"
        take.scroll_into_view_if_needed()
        web.shot("expanded")
        page.locator(".take .delete").click()  # a toast on a phone: in the bar, over no take
        expect(page.locator(".toast")).to_be_visible()
        web.shot("toast")
    finally:
        web.close()
    web.check_stayed_local()


def test_takes_of_one_request_side_by_side(web):
    page = web.open()
    generate(page, "jazz trio, brushes, 100 bpm", duration="1", takes="3", seed="20")
    expect(page.locator(".take")).to_have_count(3, timeout=60_000)
    stop_live_playback(page)
    generate(page, "rain on a window", duration="1", seed="9", takes="1")
    expect(page.locator(".take")).to_have_count(4, timeout=60_000)
    stop_live_playback(page)
    boxes = [t.bounding_box() for t in page.locator(".take").all()]
    seeds = page.eval_on_selector_all(".take .take-meta", "ns => ns.map((n) => n.textContent.match(/seed (\\d+)/)[1])")
    assert seeds == ["9", "20", "21", "22"]  # newest request first; its takes in take order
    single, first, second, third = boxes
    assert single["width"] > first["width"] * 1.8  # a lone take spans the row
    same_row = first["height"] / 2  # side by side: tops within half a card (a finishing layout moves them by < 1 px)
    assert abs(first["y"] - second["y"]) < same_row and first["x"] < second["x"]  # takes 1 and 2 side by side
    assert third["y"] > first["y"] + same_row
    web.shot("grouped")


def test_a_parameter_declared_in_the_registry_gets_a_control(browser, tmp_path):
    """One declaration: the page builds a model's controls from /api/models and the schema, nothing hard-coded."""
    from runners.registry import ParamSpec
    from tests.fake_runners import fake_registry, spec
    from tests.live_server import serve_in_thread
    from ttag_tui.config import Config

    registry = fake_registry()
    registry.add(spec("warm", "ToneRunner", params=(ParamSpec("warmth", "float", 0.5, 0.0, 1.0, help="How warm."),)))
    app = create_app(Config(rate_limit="1000/minute", default_model="warm"), registry=registry)
    with serve_in_thread(app) as base:
        page = browser.new_page(viewport=DESKTOP)
        try:
            page.goto(base)
            page.select_option("#model", "warm")
            expect(page.locator("[data-field=warmth] input")).to_be_visible()
            expect(page.locator("[data-field=warmth]")).to_contain_text("0–1")
            page.select_option("#model", "tone")
            expect(page.locator("[data-field=warmth]")).to_have_count(0)
        finally:
            page.close()


def _audio_file(fmt: str, seconds: float) -> bytes:
    import io

    import numpy as np
    import soundfile

    t = np.arange(round(seconds * 16000)) / 16000
    buffer = io.BytesIO()
    soundfile.write(buffer, (0.4 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), 16000, format=fmt)
    return buffer.getvalue()


DROP_JS = """([selector, name, data]) => {
    const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
    const transfer = new DataTransfer();
    transfer.items.add(new File([bytes], name, { type: "audio/flac" }));
    const zone = document.querySelector(selector);
    zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: transfer, bubbles: true, cancelable: true }));
    zone.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
}"""


def test_upload_a_melody_generate_and_the_runner_hears_it(browser):
    """A model that follows a melody gets a file control (choose or drop); the upload shows its name and length
    without moving anything; Generate sends its id, and the runner reads that very file."""
    import base64
    import json

    from runners.registry import Registry
    from tests.fake_runners import audio_input_specs, fake_registry
    from tests.live_server import serve_in_thread
    from ttag_tui.config import Config

    registry = Registry([*fake_registry(), *audio_input_specs()])
    app = create_app(Config(rate_limit="1000/minute", default_model="fake-melody"), registry=registry)
    with serve_in_thread(app) as base:
        web = Browsing(browser, base, DESKTOP, "upload-melody")
        try:
            page = web.open()
            page.select_option("#model", "fake-melody")
            field = page.locator("[data-field=melody]")
            expect(field.locator(".drop")).to_be_visible()
            expect(page.locator("[data-field=audio_prompt]")).to_have_count(0)
            expect(page.locator("#settings-grid [data-field=melody]")).to_have_count(0)  # no text box for a path
            model_box = page.locator("#model").bounding_box()
            drop_box = field.locator(".drop").bounding_box()
            label_box = field.locator("label").bounding_box()

            page.set_input_files(
                "#melody-file", files=[{"name": "tune.wav", "mimeType": "audio/wav", "buffer": _audio_file("WAV", 2.5)}]
            )
            expect(field.locator(".upload-name")).to_have_text("tune.wav")
            expect(field.locator(".upload-length")).to_have_text("0:02 · mono · 16 kHz")
            assert page.locator("#model").bounding_box() == model_box
            assert field.locator(".drop").bounding_box() == drop_box  # the same box, the same size
            assert field.locator("label").bounding_box() == label_box
            web.shot("chosen")

            generate(page, "follow the tune", duration="0.5", seed="3")
            expect(page.locator(".take")).to_have_count(1, timeout=60_000)
            expect(page.locator(".take-meta")).to_contain_text("Melody tune.wav")  # its name, not its id
            job_id = page.locator(".take").first.get_attribute("data-id").rsplit("-", 1)[0]
            take = httpx.get(f"{base}/api/jobs/{job_id}/takes/0", timeout=30)
            melody = json.loads(take.headers["x-ttag-metadata"])["inputs"]["melody"]
            assert melody["duration"] == 2.5 and melody["channels"] == 1

            # Not audio: one line under the control, the file chosen before stays.
            page.set_input_files(
                "#melody-file", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not audio" * 50}]
            )
            expect(page.locator("#melody-error")).to_have_text(re.compile(r"^notes\.txt: not an audio file"))
            expect(field.locator(".upload-name")).to_have_text("tune.wav")
            # Dropped onto the control: uploaded the same way; then removed.
            flac = base64.b64encode(_audio_file("FLAC", 1.2)).decode()
            page.evaluate(DROP_JS, ["[data-field=melody] .drop", "dropped.flac", flac])
            expect(field.locator(".upload-name")).to_have_text("dropped.flac")
            assert field.locator(".drop").bounding_box() == drop_box
            field.locator(".remove").click()
            expect(field.locator(".drop")).to_have_attribute("data-state", "empty")
            expect(page.locator("#melody")).to_be_focused()

            # A continuation model gets its own control; a model that takes no file gets none.
            page.select_option("#model", "fake-continue")
            expect(page.locator("[data-field=audio_prompt] .drop")).to_be_visible()
            expect(page.locator("[data-field=melody]")).to_have_count(0)
            page.select_option("#model", "fake-plain")
            expect(page.locator(".audio-field")).to_have_count(0)
            # The one console line is the browser's own note of the refused upload's 422; no script error.
            assert all("status of 422" in e for e in web.errors), web.errors
        finally:
            web.close()
        web.check_stayed_local()


def test_every_take_of_a_job_is_heard_live_one_after_the_other(browser, server):
    """A job of several takes plays them all while they are generated, on one timeline: take 1 starts exactly where
    take 0 ends; the take being heard shows it (Pause), the one before goes back to Play."""
    web = open_at(browser, server, DESKTOP, "live-takes")
    try:
        page = web.page
        generate(page, "house, 124 bpm, in A minor", duration="5", takes="3", seed="21")
        job_id = job_id_of_newest(page)
        expect(page.locator(f".job[data-job='{job_id}']")).to_have_class(re.compile("playing"), timeout=30_000)
        second = page.locator(f".take[data-id='{job_id}-1'] .play")
        expect(second).to_have_attribute("aria-label", "Pause", timeout=60_000)  # heard live, from the stream
        expect(page.locator(f".take[data-id='{job_id}-0'] .play")).to_have_attribute("aria-label", "Play")
        web.shot("second-take-heard")
        expect(page.locator(f".take[data-id='{job_id}-2'] .play")).to_have_attribute(
            "aria-label", "Pause", timeout=60_000
        )
        record = page.evaluate(
            """id => { const r = window.__ttagPlayed[id];
                return { rate: r.sampleRate, rebuffers: r.rebuffers,
                         chunks: r.chunks.map((c) => ({ take: c.take, start: c.start, frames: c.frames, when: c.when }))
                }; }""",
            job_id,
        )
        chunks = sorted(record["chunks"], key=lambda c: (c["take"], c["start"]))
        assert {c["take"] for c in chunks} == {0, 1, 2}
        total = round(5 * record["rate"])
        assert sum(c["frames"] for c in chunks) == 3 * total  # every frame of every take scheduled, once
        for before, after in itertools.pairwise(chunks):
            end = before["take"] * total + before["start"] + before["frames"]
            assert end == after["take"] * total + after["start"]  # one gapless timeline
            if record["rebuffers"] == 0:
                assert abs(before["when"] + before["frames"] / record["rate"] - after["when"]) < 1e-6
        # Pausing the take being heard stops the stream there; its own player carries on from that point.
        second_take = page.locator(f".take[data-id='{job_id}-2']")
        second_take.locator(".play").click()
        expect(second_take.locator(".play")).to_have_attribute("aria-label", "Play")
        assert page.eval_on_selector(f".take[data-id='{job_id}-2'] audio", "a => a.currentTime") > 0
        assert not web.errors
    finally:
        web.close()
    web.check_stayed_local()
