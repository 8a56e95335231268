"""The web dashboard in a real Chromium: job list, job page, live updates, escaping."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import PageWatch, wait_js, wait_ready
from tests.conftest import ServerProcess
from trainvis.demo import simulate

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "screenshot-job.png"
KINDS = ("loss", "gpu", "metrics", "learning_rate")


def make_job(api: httpx.Client, name: str = "BERT Fine-tuning", *, steps: int = 300) -> str:
    """A running job with a simulated run of ``steps`` steps (every chart has data)."""
    created = api.post(
        "/training/jobs",
        json={
            "name": name,
            "model_name": "bert-base-uncased",
            "total_epochs": 6,
            "total_steps": steps * 2,
            "config": {"learning_rate": 2e-5, "batch_size": 32},
            "tags": ["demo", "bert"],
        },
    )
    assert created.status_code == 201, created.text
    job_id: str = created.json()["data"]["id"]
    rows = list(simulate(steps, eval_every=50, seed=7))
    for start in range(0, len(rows), 1000):
        api.post(f"/training/{job_id}/metrics", json=rows[start : start + 1000]).raise_for_status()
    api.put(f"/training/jobs/{job_id}/status", json={"status": "running"}).raise_for_status()
    return job_id


def job_url(server: ServerProcess, job_id: str) -> str:
    return f"{server.url}/api/v1/visualization/dashboard/job/{job_id}"


def chart_js(kind: str) -> str:
    return f"Chart.getChart(document.querySelector('canvas[data-chart=\"{kind}\"]'))"


def is_blank_js(kind: str, selector: str | None = None) -> str:
    """JS: does the chart's canvas equal an empty canvas of the same size?"""
    selector = selector or f'canvas[data-chart="{kind}"]'
    return f"""(() => {{
        const canvas = document.querySelector('{selector}');
        const empty = document.createElement('canvas');
        empty.width = canvas.width; empty.height = canvas.height;
        return canvas.width === 0 || canvas.toDataURL() === empty.toDataURL();
    }})()"""


def loss_points_js(metric: str = "train_loss") -> str:
    return f"""(() => {{
        const chart = {chart_js("loss")};
        const ds = chart && chart.data.datasets.find(
            d => d.metric === '{metric}' && d.role === 'raw');
        return ds ? ds.data.map(p => [p.x, p.y]) : null;
    }})()"""


def test_dashboard_lists_jobs_without_console_errors(
    page: Any, api: httpx.Client, live_server: ServerProcess
) -> None:
    job_id = make_job(api, "list me", steps=120)
    page.goto(f"{live_server.url}/api/v1/visualization/dashboard")
    wait_ready(page)
    row = page.locator(f'tr[data-job-id="{job_id}"]')
    assert row.locator(".job-link").text_content() == "list me"
    assert row.locator(".badge").text_content() == "running"
    assert row.locator(".model").text_content() == "bert-base-uncased"
    assert row.locator(".latest-loss").text_content() != "—"
    spark = f'tr[data-job-id="{job_id}"] canvas.spark'
    wait_js(page, f"!{is_blank_js('', spark)}")
    running = "document.querySelector('#counts [data-status=running] b').textContent"
    assert page.evaluate(running) == "1"


def test_list_updates_live_on_new_jobs_and_status_changes(
    page: Any, api: httpx.Client, live_server: ServerProcess
) -> None:
    first = make_job(api, "first", steps=20)
    page.goto(f"{live_server.url}/api/v1/visualization/dashboard")
    wait_ready(page)
    page.evaluate("window.notReloaded = true")
    second = api.post("/training/jobs", json={"name": "arrives later"}).json()["data"]["id"]
    wait_js(page, f"document.querySelector('tr[data-job-id=\"{second}\"]') !== null", timeout=6)
    api.put(f"/training/jobs/{first}/status", json={"status": "failed"}).raise_for_status()
    badge = f"document.querySelector('tr[data-job-id=\"{first}\"] .badge').textContent"
    wait_js(page, f"{badge} === 'failed'", timeout=6)
    assert page.evaluate("window.notReloaded") is True


def test_list_filters_by_status_and_text(
    page: Any, api: httpx.Client, live_server: ServerProcess
) -> None:
    running = make_job(api, "alpha run", steps=10)
    pending = api.post("/training/jobs", json={"name": "beta run"}).json()["data"]["id"]
    page.goto(f"{live_server.url}/api/v1/visualization/dashboard")
    wait_ready(page)
    rows = "[...document.querySelectorAll('#job-rows tr')].map(tr => tr.dataset.jobId)"
    page.select_option("#status-filter", "pending")
    wait_js(page, f"JSON.stringify({rows}) === JSON.stringify(['{pending}'])")
    page.select_option("#status-filter", "")
    page.fill("#text-filter", "ALPHA")
    wait_js(page, f"JSON.stringify({rows}) === JSON.stringify(['{running}'])")


def test_job_page_draws_four_charts_and_details(
    page: Any, api: httpx.Client, live_server: ServerProcess, tmp_path: Path
) -> None:
    job_id = make_job(api, "BERT Fine-tuning (sst2)", steps=600)
    page.goto(job_url(live_server, job_id))
    wait_ready(page)
    for kind in KINDS:
        assert page.locator(f'canvas[data-chart="{kind}"]').is_visible()
        assert page.evaluate(f"{chart_js(kind)}.data.datasets.length") > 0, kind
        assert page.evaluate(is_blank_js(kind)) is False, f"{kind} chart is blank"
    assert page.locator("#job-name").text_content() == "BERT Fine-tuning (sst2)"
    assert page.locator("#status-badge").text_content() == "running"
    assert [t.text_content() for t in page.locator("#job-tags .tag").all()] == ["demo", "bert"]
    assert '"batch_size": 32' in (page.locator("#job-config").text_content() or "")
    csv_href = page.locator("#csv-link").get_attribute("href")
    assert csv_href == f"/api/v1/visualization/training/{job_id}/metrics/history?format=csv"
    csv = httpx.get(live_server.url + csv_href)
    assert csv.status_code == 200 and csv.text.startswith("step,")
    page.wait_for_timeout(300)
    # The README's picture: refreshed on request so a test run leaves the tree clean.
    target = SCREENSHOT if os.environ.get("TRAINVIS_UPDATE_SCREENSHOT") else tmp_path / "job.png"
    target.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 10_000


def test_posted_row_appears_in_loss_chart_within_2s(
    page: Any, api: httpx.Client, live_server: ServerProcess
) -> None:
    job_id = make_job(api, steps=100)
    page.goto(job_url(live_server, job_id))
    wait_ready(page)
    wait_js(page, "document.getElementById('live-state').textContent.includes('live')")
    page.evaluate("window.notReloaded = true")
    started = time.monotonic()
    api.post(f"/training/{job_id}/metrics", json={"step": 100_000, "train_loss": 0.123})
    last = f"(() => {{ const p = {loss_points_js()}; return p && p[p.length - 1]; }})()"
    wait_js(page, f"(() => {{ const p = {last}; return p && p[0] === 100000; }})()", timeout=2.0)
    elapsed = time.monotonic() - started
    assert page.evaluate(last) == [100_000, 0.123]
    assert page.evaluate("window.notReloaded") is True
    print(f"\nrow visible in the loss chart after {elapsed * 1000:.0f} ms")


def test_status_badge_changes_on_status_put(
    page: Any, api: httpx.Client, live_server: ServerProcess
) -> None:
    job_id = make_job(api, steps=20)
    page.goto(job_url(live_server, job_id))
    wait_ready(page)
    wait_js(page, "document.getElementById('live-state').textContent.includes('live')")
    body = {"status": "completed", "message": "done <b>well</b>"}
    api.put(f"/training/jobs/{job_id}/status", json=body).raise_for_status()
    wait_js(page, "document.getElementById('status-badge').textContent === 'completed'", timeout=2)
    assert page.locator("#status-badge").get_attribute("data-status") == "completed"
    wait_js(page, "document.getElementById('job-message').textContent === 'done <b>well</b>'")


def test_controls_rerequest_charts(
    page: Any, api: httpx.Client, live_server: ServerProcess
) -> None:
    job_id = make_job(api, steps=400)
    page.goto(job_url(live_server, job_id))
    wait_ready(page)
    loss = chart_js("loss")
    # smoothing slider -> smoothed datasets (smooth=true&smooth_factor=1-slider)
    page.evaluate(
        "(() => { const s = document.getElementById('smoothing'); s.value = '0.6';"
        " s.dispatchEvent(new Event('input')); })()"
    )
    wait_js(page, f"{loss}.data.datasets.some(d => d.role === 'smoothed')")
    factor = page.evaluate("window.trainvis.charts.meta.loss.smoothing.smooth_factor")
    assert factor == pytest.approx(0.4)
    # log scale
    page.check("#log-scale")
    wait_js(page, f"{loss}.options.scales.y.type === 'logarithmic'")
    # x axis choice
    page.select_option("#x-axis", "epoch")
    wait_js(page, f"{loss}.options.scales.x.title.text.toLowerCase().includes('epoch')")
    page.select_option("#x-axis", "time")  # needs the vendored date adapter
    wait_js(page, f"{loss}.options.scales.x.type === 'time'")
    assert page.evaluate(is_blank_js("loss")) is False
    page.select_option("#x-axis", "step")
    wait_js(page, f"{loss}.options.scales.x.title.text.toLowerCase().includes('step')")
    # zoom to a step range: full resolution inside it
    page.fill("#start-step", "100")
    page.fill("#end-step", "150")
    page.click("#zoom")
    wait_js(page, "window.trainvis.charts.meta.loss.points_total < 200")
    xs = page.evaluate(f"(() => {loss_points_js()})().map(p => p[0])")
    assert xs == list(range(100, 151))
    page.click("#reset-zoom")
    wait_js(page, "window.trainvis.charts.meta.loss.points_total >= 400")


def test_compare_overlays_one_metric_of_several_jobs(
    page: Any, api: httpx.Client, live_server: ServerProcess
) -> None:
    first = make_job(api, "run A", steps=80)
    second = make_job(api, "run B", steps=120)
    page.goto(f"{live_server.url}/api/v1/visualization/dashboard")
    wait_ready(page)
    for job_id in (first, second):
        page.check(f'tr[data-job-id="{job_id}"] .pick-box')
    wait_js(page, "[...document.querySelectorAll('#compare-metric option')].length > 3")
    page.select_option("#compare-metric", "val_loss")
    chart = "Chart.getChart(document.getElementById('compare-chart'))"
    labels = f"{chart} && {chart}.data.datasets.map(d => d.label + ':' + d.data.length)"
    title = f"{chart}.options.plugins.title.text"
    wait_js(page, f"{chart} && {chart}.data.datasets.length === 2 && {title} === 'val_loss'")
    assert sorted(page.evaluate(labels)) == [f"run A ({first}):2", f"run B ({second}):3"]
    assert page.evaluate(is_blank_js("compare")) is False


def test_job_name_with_markup_shows_as_text(
    page: Any, api: httpx.Client, live_server: ServerProcess, watch: PageWatch
) -> None:
    name = "<img src=x onerror=alert(1)>"
    created = api.post(
        "/training/jobs",
        json={"name": name, "model_name": name, "tags": [name], "config": {name: name}},
    )
    job_id = created.json()["data"]["id"]
    api.post(f"/training/{job_id}/metrics", json={"step": 1, "train_loss": 1.0}).raise_for_status()
    page.goto(f"{live_server.url}/api/v1/visualization/dashboard")
    wait_ready(page)
    row = page.locator(f'tr[data-job-id="{job_id}"]')
    assert row.locator(".job-link").text_content() == name
    assert row.locator(".model").text_content() == name
    assert page.locator("img").count() == 0
    page.goto(job_url(live_server, job_id))
    wait_ready(page)
    assert page.locator("#job-name").text_content() == name
    assert page.locator("#job-tags .tag").text_content() == name
    assert page.locator("img").count() == 0
    page.wait_for_timeout(300)
    assert watch.dialogs == []


def test_charts_of_a_new_job_fill_in_live(
    page: Any, api: httpx.Client, live_server: ServerProcess
) -> None:
    job_id = api.post("/training/jobs", json={"name": "fresh"}).json()["data"]["id"]
    page.goto(job_url(live_server, job_id))
    wait_ready(page)
    wait_js(page, "document.getElementById('live-state').textContent.includes('live')")
    rows = list(simulate(60, eval_every=20, seed=3))
    for start in range(0, 60, 10):
        api.post(f"/training/{job_id}/metrics", json=rows[start : start + 10]).raise_for_status()
        time.sleep(0.15)
    wait_js(page, f"(() => {{ const p = {loss_points_js()}; return p && p.length === 60; }})()")
    assert page.evaluate(f"(() => {loss_points_js()})().map(p => p[0])") == list(range(1, 61))
    for kind in KINDS:
        wait_js(page, f"{chart_js(kind)} && {chart_js(kind)}.data.datasets.length > 0")
    wait_js(page, f"!{is_blank_js('metrics')}")
