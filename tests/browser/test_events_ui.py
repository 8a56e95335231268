"""Health alerts and notes in the web UI: chart markers, the events list, the list badge."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.browser.conftest import wait_js, wait_ready
from tests.browser.test_dashboard_ui import chart_js, job_url, make_job
from tests.conftest import ServerProcess

pytestmark = pytest.mark.browser
WARNING_RGB = (217, 119, 6)  # the marker colour of a warning (annotations.js)


def markers_js(kind: str) -> str:
    return f"(({chart_js(kind)} || {{}}).$trainvisMarkers || []).map(m => [m.kind, m.step])"


def marker_pixels_js(kind: str, step: int, rgb: tuple[int, int, int]) -> str:
    """JS: how many pixels of the marker's colour the canvas has in the column of ``step``."""
    red, green, blue = rgb
    return f"""(() => {{
        const chart = {chart_js(kind)};
        const ratio = chart.currentDevicePixelRatio;
        const x = Math.round(chart.scales.x.getPixelForValue({step}) * ratio);
        const top = Math.round(chart.chartArea.top * ratio);
        const height = Math.round((chart.chartArea.bottom - chart.chartArea.top) * ratio);
        const data = chart.ctx.getImageData(x - 1, top, 3, height).data;
        let hits = 0;
        for (let i = 0; i < data.length; i += 4) {{
            if (Math.abs(data[i] - {red}) < 40 && Math.abs(data[i + 1] - {green}) < 40
                && Math.abs(data[i + 2] - {blue}) < 40) hits++;
        }}
        return hits;
    }})()"""


def listed_js() -> str:
    return (
        "[...document.querySelectorAll('#events-list li')]"
        ".map(li => [li.dataset.kind, Number(li.dataset.step)])"
    )


def test_alerts_and_notes_are_drawn_on_the_charts_and_listed(
    page: Any, api: httpx.Client, live_server: ServerProcess
) -> None:
    job = make_job(api, "health", steps=300)  # the simulated run's spike is at step 135
    note = api.post(
        f"/training/{job}/events", json={"message": "restarted <b>here</b>", "step": 200}
    )
    assert note.status_code == 201
    page.goto(job_url(live_server, job))
    wait_ready(page)
    wait_js(page, f"{markers_js('loss')}.length === 2")
    assert page.evaluate(markers_js("loss")) == [["spike", 135], ["note", 200]]
    assert page.evaluate(markers_js("gpu")) == [["note", 200]]  # notes mark every chart
    assert page.evaluate(marker_pixels_js("loss", 135, WARNING_RGB)) > 20
    assert page.evaluate(listed_js()) == [["note", 200], ["spike", 135]]
    first = page.locator("#events-list li").first
    assert first.locator(".event-message").text_content() == "restarted <b>here</b>"  # escaped
    assert page.locator("#events-count").text_content() == "(2)"
    assert page.locator("#no-events").is_hidden()

    # Live: a NaN arrives over SSE as an alert; list and chart follow without a reload.
    page.evaluate("window.notReloaded = true")
    rows = json.dumps([{"step": 301, "train_loss": float("nan")}])
    api.post(
        f"/training/{job}/metrics", content=rows, headers={"Content-Type": "application/json"}
    ).raise_for_status()
    wait_js(page, f"{listed_js()}.length === 3")
    assert page.evaluate(listed_js())[0] == ["nonfinite", 301]
    assert page.locator("#events-list li .sev").first.text_content() == "critical"
    wait_js(page, f"{markers_js('loss')}.some(m => m[0] === 'nonfinite' && m[1] === 301)")
    assert page.evaluate("window.notReloaded") is True


def test_hovering_a_marker_shows_its_message(
    page: Any, api: httpx.Client, live_server: ServerProcess
) -> None:
    job = make_job(api, "hover", steps=300)
    page.goto(job_url(live_server, job))
    wait_ready(page)
    wait_js(page, f"{markers_js('loss')}.length === 1")
    box = page.locator('canvas[data-chart="loss"]').bounding_box()
    x = page.evaluate(f"{chart_js('loss')}.$trainvisMarkers[0].x")
    y = page.evaluate(
        f"({chart_js('loss')}.chartArea.top + {chart_js('loss')}.chartArea.bottom) / 2"
    )
    page.mouse.move(box["x"] + x, box["y"] + y)
    hovered = f"{chart_js('loss')}.$trainvisHover"
    assert wait_js(page, f"{hovered} || null") == page.evaluate(
        f"{chart_js('loss')}.$trainvisMarkers[0].id"
    )
    page.mouse.move(box["x"] + 5, box["y"] + 5)
    wait_js(page, f"!{hovered}")


def test_the_job_list_shows_a_badge_for_warnings_and_critical_alerts(
    page: Any, api: httpx.Client, live_server: ServerProcess
) -> None:
    alerted = make_job(api, "spiky", steps=300)
    quiet = api.post("/training/jobs", json={"name": "quiet"}).json()["data"]["id"]
    api.post(f"/training/{quiet}/events", json={"message": "a note is no alert"})
    page.goto(f"{live_server.url}/api/v1/visualization/dashboard")
    wait_ready(page)
    badge = page.locator(f'tr[data-job-id="{alerted}"] .alert-badge')
    assert badge.is_visible() and badge.text_content() == "⚠ 1"
    assert badge.get_attribute("title") == "1 alert (0 critical)"
    assert page.locator(f'tr[data-job-id="{quiet}"] .alert-badge').is_hidden()
    rows = json.dumps([{"step": 400, "train_loss": float("inf")}])
    api.post(
        f"/training/{alerted}/metrics", content=rows, headers={"Content-Type": "application/json"}
    ).raise_for_status()
    selector = f'tr[data-job-id="{alerted}"] .alert-badge'
    wait_js(page, f"document.querySelector('{selector}').textContent === '⚠ 2'", timeout=6)
    assert "critical" in (badge.get_attribute("class") or "")
