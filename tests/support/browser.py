"""Headless Chromium (Debian's package, driven by Playwright's Python package with `executable_path`: no
browser of Playwright's own is ever downloaded or used)
for checking report pages as a person's browser shows them: every request the page makes, its console
errors, what plotly drew, and a screenshot to look at.

`.ci/system-deps` installs Chromium. Without it the browser tests skip, naming that script; with
REQUIRE_SYSTEM_DEPS=1 (CI) they fail instead.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Frame, Page, sync_playwright

# As root with no network: no sandbox (it needs user namespaces), and none of the background calls
# Chromium would otherwise make to Google's services.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
OUTPUT_DIR = Path(os.environ.get("TEST_OUTPUT_DIR", Path(__file__).resolve().parents[1] / ".output"))
LOCAL = re.compile(r"^(https?://(127\.0\.0\.1|localhost)(:\d+)?/|about:|data:|blob:)")


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def require_chromium() -> str:
    """The Chromium executable, or a skip (a failure with REQUIRE_SYSTEM_DEPS=1) naming .ci/system-deps."""
    path = chromium_path()
    if path is None:
        reason = "Chromium is not installed: run .ci/system-deps (it apt-installs Debian's chromium)"
        if os.environ.get("REQUIRE_SYSTEM_DEPS") == "1":
            pytest.fail(f"{reason}; REQUIRE_SYSTEM_DEPS=1 makes this a failure")
        pytest.skip(reason)
    return path


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium with a fresh profile (Playwright's launch gives each browser a new one)."""
    path = require_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class PageLog:
    """What a page did: every request's URL, console errors and uncaught exceptions."""

    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def outside_requests(self) -> list[str]:
        """Requests to any host but this machine (or to no host at all: about:, data:, blob:)."""
        return [url for url in self.requests if not LOCAL.match(url)]


@contextmanager
def page(browser: Browser, headers: dict[str, str] | None = None) -> Iterator[tuple[Page, PageLog]]:
    """A page in its own browser context (its own cookies and cache), sending `headers` with every request
    it makes (the API key), with its requests and errors recorded."""
    context = browser.new_context(
        extra_http_headers=headers or {}, viewport={"width": 1280, "height": 900}, service_workers="block"
    )
    log = PageLog()
    tab = context.new_page()
    tab.on("request", lambda request: log.requests.append(request.url))
    tab.on(
        "console",
        lambda message: log.console_errors.append(message.text) if message.type == "error" else None,
    )
    tab.on("pageerror", lambda error: log.page_errors.append(str(error)))
    try:
        yield tab, log
    finally:
        context.close()


def wait_rendered(tab: Page | Frame, timeout_ms: float = 60_000) -> None:
    """Wait until the report page says it drew every chart; fail with its own message if it could not."""
    # A function, not an expression: Playwright evals an expression in the page, which the report's
    # Content-Security-Policy (no 'unsafe-eval') refuses.
    tab.wait_for_function(
        "() => document.documentElement.getAttribute('data-rendered') !== 'false'", timeout=timeout_ms
    )
    state = tab.evaluate("document.documentElement.getAttribute('data-rendered')")
    if state != "true":
        raise AssertionError(f"the report did not render: {tab.inner_text('#report-error')}")


# Per chart on the page (its data-chart key): each trace's type, name and how many points plotly holds.
_CHART_DATA = """
() => Array.from(document.querySelectorAll('.js-plotly-plot')).map((el) => ({
  key: el.closest('figure').getAttribute('data-chart'),
  downsampled: el.closest('figure').getAttribute('data-downsampled') === 'true',
  traces: el._fullData.map((t) => ({
    type: t.type,
    name: t.name,
    points: t.type === 'heatmap' ? (t.z || []).length
      : (t._length !== undefined ? t._length : (t.x || []).length),
  })),
  drawn: el.querySelectorAll('.trace, .point, path.js-line, g.heatmaplayer image').length,
}))
"""


def charts(tab: Page | Frame) -> dict[str, dict[str, Any]]:
    """What plotly holds for each chart on the page, by chart key."""
    return {chart["key"]: chart for chart in tab.evaluate(_CHART_DATA)}


def screenshot(tab: Page, name: str) -> Path:
    """A full-page screenshot under tests/.output/ (or TEST_OUTPUT_DIR), for a person to look at."""
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUTPUT_DIR / f"{name}.png"
    tab.screenshot(path=str(path), full_page=True)
    return path
