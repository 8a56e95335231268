"""Access control in a real browser: the sign-in form, the cookie-authenticated
live stream, and a cross-origin EventSource once its origin is listed."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import PageWatch, open_page, wait_js, wait_ready
from tests.conftest import API, ServerProcess, free_port

pytestmark = pytest.mark.browser
READ, WRITE = "read-token-1234567", "write-token-4567890"


@pytest.fixture
def locked_server(tmp_path: Path) -> Iterator[ServerProcess]:
    env = {"TRAINVIS_READ_TOKEN": READ, "TRAINVIS_API_TOKEN": WRITE}
    with ServerProcess(str(tmp_path / "locked.db"), env=env, args=["--sse-heartbeat", "1"]) as s:
        yield s


def test_sign_in_then_live_stream_over_the_cookie(
    browser: Any, locked_server: ServerProcess
) -> None:
    write = {"Authorization": f"Bearer {WRITE}"}
    with httpx.Client(base_url=locked_server.url + API, headers=write) as api:
        job = api.post("/training/jobs", json={"name": "locked run"}).json()["data"]["id"]
        api.post(
            f"/training/{job}/metrics", json=[{"step": s, "train_loss": 1.0} for s in range(5)]
        )
    watch = PageWatch()
    context, page = open_page(browser, watch)
    try:
        page.goto(f"{locked_server.url}{API}/dashboard/job/{job}")
        assert "/login" in page.url
        page.fill("#login-token", "wrong")
        page.click("#login-submit")
        assert "error=1" in page.url and page.locator("#login-error").is_visible()
        page.fill("#login-token", READ)
        page.click("#login-submit")
        wait_ready(page)
        assert page.url.endswith(f"/dashboard/job/{job}")
        assert "read-token" not in page.evaluate("document.cookie")  # HttpOnly
        cookie = next(c for c in context.cookies() if c["name"] == "trainvis_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert READ not in cookie["value"] and cookie["value"].startswith("v1.read.")  # issue 13
        assert cookie["expires"] > 0  # a session that lapses, not a stored token
        with httpx.Client(base_url=locked_server.url + API, headers=write) as api:
            api.post(f"/training/{job}/metrics", json={"step": 99, "train_loss": 0.25})
        loss = "Chart.getChart(document.querySelector('canvas[data-chart=\"loss\"]'))"
        wait_js(
            page,
            f"{loss}.data.datasets.some(d => d.data.some(p => p.x === 99 && p.y === 0.25))",
            timeout=5,
        )
    finally:
        context.close()
    assert watch.errors == [] and watch.dialogs == []


def test_sign_in_form_says_to_wait_after_too_many_failures(
    browser: Any, locked_server: ServerProcess
) -> None:
    """issue 13: failed sign-ins are rate limited; the form says so instead of
    accepting more guesses (the right token included)."""
    watch = PageWatch()
    context, page = open_page(browser, watch)
    try:
        page.goto(f"{locked_server.url}{API}/dashboard")
        for attempt in range(5):
            page.fill("#login-token", f"wrong-{attempt}")
            page.click("#login-submit")
            page.wait_for_url("**error=1**")
        page.fill("#login-token", READ)
        page.click("#login-submit")
        page.wait_for_url("**error=limited**")
        assert page.locator("#login-limited").is_visible()
        assert not page.locator("#login-error").is_visible()
        assert not [c for c in context.cookies() if c["name"] == "trainvis_session"]
    finally:
        context.close()
    assert watch.errors == [] and watch.dialogs == []


SEED_PAGE = """<!doctype html><html><head><meta charset="utf-8">
<script src="seed.js"></script></head><body>seed</body></html>"""
SEED_SCRIPT = """window.received = [];
window.messages = [];
const eventSource = new EventSource('%s');

eventSource.onmessage = (event) => {
  const data = JSON.parse(event.data);
  console.log('New metrics:', data);
  window.messages.push(data);
};

eventSource.addEventListener('metrics', (event) => {
  const metrics = JSON.parse(event.data);
  window.received.push(metrics);
});
"""


@pytest.fixture
def other_origin(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A plain static server on another port: another origin."""
    root = tmp_path / "site"
    root.mkdir()
    port = free_port()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}", root
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize("listed", [True, False])
def test_cross_origin_event_source_needs_the_origin_listed(
    browser: Any, tmp_path: Path, other_origin: tuple[str, Path], listed: bool
) -> None:
    origin, root = other_origin
    env = {"TRAINVIS_CORS_ORIGINS": origin} if listed else {}
    with ServerProcess(str(tmp_path / "cors.db"), env=env) as server:
        with httpx.Client(base_url=server.url + API) as api:
            job = api.post("/training/jobs", json={"name": "cors"}).json()["data"]["id"]
            (root / "index.html").write_text(SEED_PAGE)
            (root / "seed.js").write_text(SEED_SCRIPT % f"{server.url}{API}/training/{job}/stream")
            watch = PageWatch()
            context, page = open_page(browser, watch)
            try:
                page.goto(f"{origin}/index.html")
                if listed:
                    wait_js(page, "window.messages.length > 0")
                    assert page.evaluate("window.messages[0].type") == "snapshot"
                    api.post(f"/training/{job}/metrics", json={"step": 7, "train_loss": 0.5})
                    wait_js(page, "window.received.length > 0")
                    assert page.evaluate("window.received[0].step") == 7
                else:
                    page.wait_for_timeout(1500)
                    assert page.evaluate("window.messages.length") == 0
                    assert any(
                        "CORS" in error or "Access-Control" in error for error in watch.errors
                    )
            finally:
                context.close()
