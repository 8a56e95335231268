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


def test_edit_name_and_tags_then_delete_from_the_job_page(
    browser: Any, live_server: ServerProcess, api: httpx.Client, tmp_path: Path
) -> None:
    job_id = seeded_job(api, name="before", tags=["old"])
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    errors: list[str] = []  # PageWatch would dismiss the confirm dialogs this test answers
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    confirms: list[str] = []
    answers = iter([False, True])  # the first delete is cancelled, the second confirmed

    def on_dialog(dialog: Any) -> None:
        confirms.append(dialog.message)
        dialog.accept() if next(answers) else dialog.dismiss()

    try:
        page.on("dialog", on_dialog)
        page.goto(f"{live_server.url}{API}/dashboard/job/{job_id}")
        wait_ready(page)
        page.click("#edit-job")
        wait_js(page, "!document.getElementById('job-edit').hidden")
        assert page.input_value("#edit-name") == "before"
        assert page.input_value("#edit-tags") == "old"
        shot(page, tmp_path, "polish-job-edit")
        page.fill("#edit-name", "<b>after</b> & co")
        page.fill("#edit-tags", " baseline, lr=3e-4 ,, baseline, __proto__")
        page.click("#edit-save")
        wait_js(page, "document.getElementById('job-edit').hidden")
        stored = api.get(f"/training/jobs/{job_id}").json()["data"]
        assert stored["name"] == "<b>after</b> & co"
        assert stored["tags"] == ["baseline", "lr=3e-4", "__proto__"]
        assert page.inner_text("#job-name") == "<b>after</b> & co"  # text, never markup
        assert page.locator("#job-tags .tag").all_inner_texts() == stored["tags"]
        assert page.title().startswith("<b>after</b> & co")

        page.click("#delete-job")  # dismissed: nothing happens
        assert api.get(f"/training/jobs/{job_id}").status_code == 200
        page.click("#delete-job")
        page.wait_for_url(f"**{API}/dashboard")
        wait_ready(page)
        assert api.get(f"/training/jobs/{job_id}").status_code == 404
        assert len(confirms) == 2 and "<b>after</b> & co" in confirms[0]
    finally:
        context.close()
    assert errors == []


def test_a_write_token_server_asks_for_the_token_before_saving(
    browser: Any, watch: PageWatch, tmp_path: Path
) -> None:
    token = "write-token-4567890"
    env = {"TRAINVIS_API_TOKEN": token}
    with ServerProcess(str(tmp_path / "w.db"), env=env) as server:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=server.url + API, headers=headers) as api:
            job_id = seeded_job(api, name="guarded")
            context = browser.new_context(viewport={"width": 1440, "height": 900})
            page = context.new_page()
            watch.attach(page)
            try:
                page.goto(f"{server.url}{API}/dashboard/job/{job_id}")
                wait_ready(page)
                page.click("#edit-job")
                wait_js(page, "!document.getElementById('job-edit').hidden")
                page.fill("#edit-name", "renamed")
                page.click("#edit-save")
                wait_js(page, "!document.getElementById('write-auth').hidden")
                assert "write token" in page.inner_text("#write-auth-why")
                shot(page, tmp_path, "polish-job-write-token")
                page.fill("#write-token", "not-the-token")
                page.click("#write-auth-submit")
                wait_js(
                    page,
                    "document.getElementById('write-auth-why').textContent"
                    ".includes('cannot change jobs')",
                )
                assert api.get(f"/training/jobs/{job_id}").json()["data"]["name"] == "guarded"
                page.fill("#write-token", token)
                page.click("#write-auth-submit")  # retries the pending save
                wait_js(page, "document.getElementById('write-auth').hidden")
                assert api.get(f"/training/jobs/{job_id}").json()["data"]["name"] == "renamed"
                assert page.inner_text("#job-name") == "renamed"
                assert token not in page.evaluate(
                    "JSON.stringify(sessionStorage) + "
                    "JSON.stringify(localStorage) + document.cookie"
                )
            finally:
                context.close()
    # The two refused saves are the only console lines (Chromium logs failed responses).
    assert [e for e in watch.errors if "401 (Unauthorized)" not in e] == []
    assert len(watch.errors) == 2


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_pages_fit_a_390px_phone(
    browser: Any,
    watch: PageWatch,
    live_server: ServerProcess,
    api: httpx.Client,
    tmp_path: Path,
    scheme: str,
) -> None:
    job_id = seeded_job(api, name="a run with a rather long name to wrap on a phone")
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, color_scheme=scheme, is_mobile=True
    )
    page = context.new_page()
    watch.attach(page)
    try:
        for name, path in (
            ("list", f"{API}/dashboard"),
            ("job", f"{API}/dashboard/job/{job_id}"),
            ("login", f"{API}/login"),
        ):
            page.goto(live_server.url + path)
            if name != "login":
                wait_ready(page)
            shot(page, tmp_path, f"polish-390-{scheme}-{name}")
            # The page itself never scrolls sideways (wide tables scroll in their panel).
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, (name, width)
            topbar = page.evaluate(
                "(() => { const r = document.querySelector('.topbar').getBoundingClientRect();"
                " return [r.left, r.right]; })()"
            )
            assert topbar[0] >= 0 and topbar[1] <= 390, name
    finally:
        context.close()
    assert watch.errors == []


def test_charts_follow_a_theme_change_without_a_reload(
    browser: Any, watch: PageWatch, live_server: ServerProcess, api: httpx.Client
) -> None:
    job_id = seeded_job(api)
    context = browser.new_context(viewport={"width": 1440, "height": 900}, color_scheme="light")
    page = context.new_page()
    watch.attach(page)
    grid = (
        "Chart.getChart(document.querySelector('canvas[data-chart=\"loss\"]'))"
        ".scales.y.options.grid.color"
    )
    try:
        page.goto(f"{live_server.url}{API}/dashboard/job/{job_id}")
        wait_ready(page)
        wait_js(page, "Chart.getChart(document.querySelector('canvas[data-chart=\"loss\"]'))")
        light = page.evaluate(grid)
        page.emulate_media(color_scheme="dark")
        dark = wait_js(page, f"{grid} !== {light!r} && {grid}")
        css = "getComputedStyle(document.documentElement).getPropertyValue"
        assert dark == page.evaluate(f"{css}('--chart-grid').trim()")
        ticks = grid.replace("grid.color", "ticks.color")
        assert page.evaluate(ticks) == page.evaluate(f"{css}('--muted').trim()")
        legend = grid.replace("scales.y.options.grid.color", "options.plugins.legend.labels.color")
        assert page.evaluate(legend) == page.evaluate(f"{css}('--ink').trim()")
    finally:
        context.close()
    assert watch.errors == []
