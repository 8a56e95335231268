"""The runs table (issue 16) in a real Chromium: sorting by a metric statistic,
columns, config filters, compare picks, state in the URL, 390 px wide."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import PageWatch, open_page, wait_js, wait_ready
from tests.conftest import ServerProcess
from trainvis.demo import simulate

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
#: Where screenshots go when ``TRAINVIS_SHOTS`` names a folder (for review).
SHOTS = os.environ.get("TRAINVIS_SHOTS")
ROWS = "[...document.querySelectorAll('#job-rows tr')].map(tr => tr.dataset.jobId)"


def column_js(key: str) -> str:
    """JS: the texts of a column's cells, top to bottom."""
    return f"[...document.querySelectorAll('td[data-col=\"{key}\"]')].map(td => td.textContent)"


def make_runs(api: httpx.Client) -> dict[str, str]:
    """Four runs: name -> id. val_loss bests 0.3 (b), 0.5 (a), 0.9 (c); d has none."""
    ids = {}
    specs = [
        ("run a", "AdamW", 0.001, [0.8, 0.5, 0.6]),
        ("run b", "SGD", 0.1, [0.7, 0.3]),
        ("run c", "AdamW", 0.01, [0.9]),
        ("run d", "Lion", 0.001, []),
    ]
    for name, optimizer, lr, losses in specs:
        body = {
            "name": name,
            "tags": ["sweep", optimizer.lower()],
            "config": {"optimizer": {"name": optimizer}, "lr": lr, "__proto__": "odd key"},
        }
        job = api.post("/training/jobs", json=body).json()["data"]["id"]
        rows = [{"step": step, "val_loss": value} for step, value in enumerate(losses, 1)]
        if rows:
            api.post(f"/training/{job}/metrics", json=rows).raise_for_status()
        ids[name] = job
    return ids


def dashboard(server: ServerProcess, query: str = "") -> str:
    return f"{server.url}/api/v1/visualization/dashboard{query}"


def add_metric_column(page: Any, name: str, stat: str) -> None:
    page.click("#column-picker summary")
    page.fill("#metric-name", name)
    page.select_option("#metric-stat", stat)
    page.click("#add-metric-column")
    page.click("#column-picker summary")  # close it


def test_runs_table_sorts_by_a_metric_stat_and_restores_from_the_url(
    page: Any, api: httpx.Client, live_server: ServerProcess
) -> None:
    ids = make_runs(api)
    page.goto(dashboard(live_server))
    wait_ready(page)
    add_metric_column(page, "val_loss", "best")
    header = 'th[data-sort="metric.val_loss.best"]'
    cells = column_js("metric.val_loss.best")
    wait_js(page, f"{cells}.includes('0.3')")
    page.click(header)  # ascending, the jobs without a val_loss last
    ascending = [ids["run b"], ids["run a"], ids["run c"], ids["run d"]]
    wait_js(page, f"JSON.stringify({ROWS}) === '{_json(ascending)}'")
    assert page.get_attribute(header, "aria-sort") == "ascending"
    assert page.evaluate(cells) == ["0.3", "0.5", "0.9", "—"]
    page.click(header)  # descending: still last
    descending = [ids["run c"], ids["run a"], ids["run b"], ids["run d"]]
    wait_js(page, f"JSON.stringify({ROWS}) === '{_json(descending)}'")
    assert page.get_attribute(header, "aria-sort") == "descending"
    assert "sort=-metric.val_loss.best" in page.url
    # a config column and a config filter; the "__proto__" config key is a plain column
    page.click("#column-picker summary")
    page.check('#config-columns [data-col="config.optimizer.name"] input')
    page.check('#config-columns [data-col="config.__proto__"] input')
    page.click("#column-picker summary")
    page.fill("#config-key", "optimizer.name")
    page.fill("#config-value", "AdamW")
    page.click("#add-config-filter")
    wait_js(page, f"JSON.stringify({ROWS}) === '{_json([ids['run c'], ids['run a']])}'")
    assert page.evaluate(column_js("config.__proto__")) == ["odd key", "odd key"]
    # picks make a compare link
    for name in ("run a", "run c"):
        page.check(f'tr[data-job-id="{ids[name]}"] .pick-box')
    link = page.get_attribute("#compare-link", "href")
    assert link == f"/api/v1/visualization/dashboard/compare?jobs={ids['run a']},{ids['run c']}"
    # a reload restores sort, columns, filter and picks
    page.reload()
    wait_ready(page)
    wait_js(page, f"JSON.stringify({ROWS}) === '{_json([ids['run c'], ids['run a']])}'")
    assert page.get_attribute(header, "aria-sort") == "descending"
    assert page.locator('th[data-col="config.optimizer.name"]').count() == 1
    assert page.locator('#config-filters [data-config="optimizer.name"]').count() == 1
    assert page.is_checked(f'tr[data-job-id="{ids["run a"]}"] .pick-box')
    assert page.get_attribute("#compare-link", "href") == link


def test_runs_table_filters_by_tag_and_sorts_by_name(
    page: Any, api: httpx.Client, live_server: ServerProcess
) -> None:
    ids = make_runs(api)
    page.goto(dashboard(live_server, "?tag=adamw"))
    wait_ready(page)
    wait_js(page, f"JSON.stringify({ROWS}) === '{_json([ids['run c'], ids['run a']])}'")
    assert page.input_value("#tag-filter") == "adamw"
    page.fill("#tag-filter", "")
    page.click('th[data-sort="name"]')
    by_name = [ids["run a"], ids["run b"], ids["run c"], ids["run d"]]
    wait_js(page, f"JSON.stringify({ROWS}) === '{_json(by_name)}'")
    assert "tag=" not in page.url and "sort=name" in page.url


@pytest.mark.parametrize("width", [390, 1440])
def test_runs_table_screenshot(
    browser: Any, api: httpx.Client, live_server: ServerProcess, width: int, tmp_path: Path
) -> None:
    """At 390 px the table scrolls sideways inside its box; the page itself does not."""
    make_runs(api)
    watch = PageWatch()
    context, page = open_page(browser, watch)
    try:
        page.set_viewport_size({"width": width, "height": 900})
        columns = "col=status&col=metric.val_loss.best&col=config.lr&col=tags"
        query = f"?{columns}&sort=metric.val_loss.best"
        page.goto(dashboard(live_server, query))
        wait_ready(page)
        wait_js(page, "document.querySelectorAll('#job-rows tr').length === 4")
        page_width = page.evaluate("document.documentElement.scrollWidth")
        assert page_width <= width, f"the page scrolls sideways at {width}px ({page_width}px)"
        shots = Path(SHOTS) if SHOTS else tmp_path
        page.screenshot(path=str(shots / f"runs-{width}.png"), full_page=True)
        page.click("#column-picker summary")
        assert page.locator("#column-picker .picker-body").is_visible()
        page.screenshot(path=str(shots / f"runs-{width}-columns.png"))
    finally:
        context.close()
    assert watch.errors == []


def test_runs_table_readme_screenshot(
    page: Any, api: httpx.Client, live_server: ServerProcess, tmp_path: Path
) -> None:
    """A sweep of six simulated runs with metric and config columns, sorted by the
    best val_loss (``TRAINVIS_UPDATE_SCREENSHOT=1`` refreshes docs/screenshot-runs.png)."""
    for index, (lr, batch) in enumerate(
        [(2e-5, 32), (3e-5, 32), (5e-5, 16), (1e-4, 32), (2e-5, 64), (5e-5, 64)]
    ):
        body = {
            "name": f"bert-sst2 lr={lr:g} bs={batch}",
            "model_name": "bert-base-uncased",
            "total_steps": 400,
            "tags": ["sweep", "sst2"],
            "config": {"learning_rate": lr, "batch_size": batch, "optimizer": {"name": "AdamW"}},
        }
        job = api.post("/training/jobs", json=body).json()["data"]["id"]
        rows = list(simulate(200 + 40 * index, eval_every=40, seed=index))
        api.post(f"/training/{job}/metrics", json=rows).raise_for_status()
        if index % 3 == 0:
            api.put(f"/training/jobs/{job}/status", json={"status": "completed"})
    page.set_viewport_size({"width": 1440, "height": 820})
    columns = "&".join(
        f"col={key}"
        for key in (
            "status",
            "progress",
            "spark",
            "metric.val_loss.best",
            "metric.accuracy.best",
            "config.learning_rate",
            "config.batch_size",
            "tags",
            "duration",
        )
    )
    page.goto(dashboard(live_server, f"?{columns}&sort=metric.val_loss.best&pick=job-001"))
    wait_ready(page)
    wait_js(page, "document.querySelectorAll('#job-rows canvas.spark').length === 6")
    page.wait_for_timeout(800)  # sparklines drawn
    target = ROOT / "docs" / "screenshot-runs.png"
    if not os.environ.get("TRAINVIS_UPDATE_SCREENSHOT"):
        target = tmp_path / "runs.png"
    page.screenshot(path=str(target))
    assert target.stat().st_size > 10_000


def _json(values: list[str]) -> str:
    return "[" + ",".join(f'"{value}"' for value in values) + "]"
