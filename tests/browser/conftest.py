"""Browser fixtures: Debian's Chromium driven by Playwright against a live server.

Never downloads a browser: ``/usr/bin/chromium`` (``apt-get install chromium``)
is launched through Playwright's ``executable_path``. Without it (or without the
``playwright`` package) the browser tests skip with the reason, except under
``CI=true``, where they fail.

Pages serve a strict Content-Security-Policy (no ``unsafe-eval``), so waiting is
done by polling ``page.evaluate`` (which the CSP allows), not ``wait_for_function``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.conftest import API, ServerProcess, require_service

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def launch_chromium(playwright: Any, extra_args: list[str] | None = None) -> Any:
    """Launch Debian's Chromium headless (skips/fails when it is missing)."""
    if not os.path.exists(CHROMIUM):
        require_service("Chromium", f"{CHROMIUM} not found (apt-get install chromium)")
    return playwright.chromium.launch(
        executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *(extra_args or [])]
    )


@pytest.fixture(scope="module")
def playwright_instance() -> Iterator[Any]:
    """Module-scoped: Playwright's sync API keeps an event loop running on this
    thread while it lives, which would break tests that call ``asyncio.run``
    if it outlived the browser tests on an xdist worker."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require_service(
            "Playwright", "the playwright package is not installed (pip install -e '.[dev]')"
        )
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def browser(playwright_instance: Any) -> Iterator[Any]:
    chromium = launch_chromium(playwright_instance)
    try:
        yield chromium
    finally:
        chromium.close()


@dataclass
class PageWatch:
    """Console errors, uncaught exceptions and dialogs seen by one page."""

    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on("dialog", self._dialog)

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(f"console.error: {message.text}")

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()


@pytest.fixture
def watch() -> PageWatch:
    return PageWatch()


def open_page(browser: Any, watch: PageWatch) -> tuple[Any, Any]:
    """A new context (1280x900) and page whose console errors and dialogs ``watch`` records."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    new_page = context.new_page()
    watch.attach(new_page)
    return context, new_page


@pytest.fixture
def page(browser: Any, watch: PageWatch, live_server: ServerProcess) -> Iterator[Any]:
    """A fresh page on which the test fails for any console error or dialog.

    It depends on ``live_server`` so that it closes before the server stops (an
    open EventSource would otherwise log a refused reconnect).
    """
    context, new_page = open_page(browser, watch)
    try:
        yield new_page
    finally:
        context.close()
    assert watch.errors == [], "console errors in the browser"
    assert watch.dialogs == [], "a dialog opened"


@pytest.fixture
def api(live_server: ServerProcess) -> Iterator[httpx.Client]:
    """An HTTP client on the live server's API base path."""
    with httpx.Client(base_url=live_server.url + API, timeout=30.0) as client:
        yield client


def wait_js(page: Any, expression: str, *, timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll a JS expression until it is truthy; returns its value (AssertionError on timeout)."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = page.evaluate(expression)
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for: {expression} (last {value!r})")


def wait_ready(page: Any, *, timeout: float = 15.0) -> float:
    """Wait until the dashboard page says it is ready; returns its ``performance.now()``."""
    wait_js(page, "document.body && document.body.dataset.ready === '1'", timeout=timeout)
    return float(page.evaluate("window.trainvisReadyAt || performance.now()"))
