"""Pages users notice (issue 16): offline /docs, the HTML 404 page, dark mode, 390 px."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.browser.conftest import PageWatch, wait_js, wait_ready
from tests.conftest import API, ServerProcess

pytestmark = pytest.mark.browser
#: Screenshots for a person to look at (not compared): TRAINVIS_SHOTS=<dir> keeps them.
SHOTS = os.environ.get("TRAINVIS_SHOTS")
NOT_FOUND_LINE = (
    "console.error: Failed to load resource: the server responded with a status of 404 (Not Found)"
)


def shot(page: Any, tmp_path: Path, name: str) -> None:
    target = Path(SHOTS) if SHOTS else tmp_path
    target.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target / f"{name}.png"), full_page=True)


def offline(context: Any, server: ServerProcess) -> list[str]:
    """Abort every request that is not for ``server``; returns the aborted URLs."""
    host = urlsplit(server.url).netloc
    blocked: list[str] = []

    def route(request_route: Any) -> None:
        if urlsplit(request_route.request.url).netloc == host:
            request_route.continue_()
        else:
            blocked.append(request_route.request.url)
            request_route.abort()

    context.route("**/*", route)
    return blocked


def test_docs_render_their_operations_offline(
    browser: Any, watch: PageWatch, live_server: ServerProcess
) -> None:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    blocked = offline(context, live_server)
    page = context.new_page()
    watch.attach(page)
    try:
        page.goto(f"{live_server.url}/docs")
        count = wait_js(
            page,
            "document.querySelectorAll('.opblock').length > 10 && "
            "document.querySelectorAll('.opblock').length",
            timeout=20,
        )
        assert count > 10
        assert "trainvis" in page.inner_text(".information-container")
    finally:
        context.close()
    assert blocked == []  # nothing it needs lives elsewhere
    assert watch.errors == []


def seeded_job(api: httpx.Client, name: str = "dark run", tags: list[str] | None = None) -> str:
    job = api.post("/training/jobs", json={"name": name, "tags": tags or ["a", "b"]}).json()
    job_id: str = job["data"]["id"]
    rows = [
        {
            "step": s,
            "epoch": s // 50,
            "train_loss": 2.0 / (1 + s / 40),
            "val_loss": 2.2 / (1 + s / 45) if s % 20 == 0 else None,
            "learning_rate": 3e-3 * (1 - s / 400),
            "gpu_utilization": 80 + (s % 7),
            "accuracy": s / 400,
        }
        for s in range(1, 300)
    ]
    assert api.post(f"/training/{job_id}/metrics", json=rows).status_code in (200, 201)
    return job_id


def luminance(page: Any, selector: str) -> float:
    """Relative brightness (0 black … 1 white) of an element's computed background."""
    rgb = page.evaluate(
        f"getComputedStyle(document.querySelector({selector!r})).backgroundColor"
        ".match(/\\d+(\\.\\d+)?/g).slice(0, 3).map(Number)"
    )
    r, g, b = (c / 255 for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


@pytest.mark.parametrize("scheme", ["dark", "light"])
def test_every_page_follows_the_colour_scheme(
    browser: Any,
    watch: PageWatch,
    live_server: ServerProcess,
    api: httpx.Client,
    tmp_path: Path,
    scheme: str,
) -> None:
    job_id = seeded_job(api)
    context = browser.new_context(viewport={"width": 1440, "height": 900}, color_scheme=scheme)
    page = context.new_page()
    watch.attach(page)
    dark = scheme == "dark"
    try:
        for name, path in (
            ("list", f"{API}/dashboard"),
            ("job", f"{API}/dashboard/job/{job_id}"),
            ("login", f"{API}/login"),
            ("404", f"{API}/dashboard/job/no-such-job"),
        ):
            page.goto(live_server.url + path)
            if name in ("list", "job"):
                wait_ready(page)
            for selector in ("html", ".panel"):  # the page background is on :root
                assert (luminance(page, selector) < 0.2) == dark, (name, selector)
            ink = page.evaluate("getComputedStyle(document.body).color")
            assert (ink != "rgb(17, 24, 39)") == dark, name
            if name == "job":
                wait_js(
                    page, "Chart.getChart(document.querySelector('canvas[data-chart=\"loss\"]'))"
                )
                # Tick labels, legend text and grid lines come from the CSS variables.
                theme = page.evaluate(
                    "(() => { const c = Chart.getChart(document.querySelector("
                    "'canvas[data-chart=\"loss\"]')); const css = getComputedStyle("
                    "document.documentElement); return [c.options.color, "
                    "c.options.plugins.legend.labels.color, css.getPropertyValue('--muted').trim(),"
                    " css.getPropertyValue('--ink').trim(), c.scales.y.options.grid.color,"
                    " css.getPropertyValue('--chart-grid').trim()]; })()"
                )
                assert theme[0] == theme[2] and theme[1] == theme[3] and theme[4] == theme[5]
            shot(page, tmp_path, f"polish-{scheme}-{name}")
            # The 404 page's own status is the one console line Chromium logs.
            assert watch.errors == ([NOT_FOUND_LINE] if name == "404" else []), name
            watch.errors.clear()
    finally:
        context.close()
