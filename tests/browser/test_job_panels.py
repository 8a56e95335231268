"""The job page's metric panels in a real Chromium (issue 16): one panel per metric,
grouped by prefix, filtered, drawn lazily, live over the page's stream, and user
metric names such as ``__proto__`` treated as ordinary names."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from tests.browser.conftest import wait_js, wait_ready
from tests.conftest import ServerProcess

pytestmark = pytest.mark.browser

TRICKY = ["__proto__", "constructor", "toString", "hasOwnProperty", "valueOf"]


def wide_names() -> list[str]:
    """300 names in four groups: layers (/), attn (.), train (/) and other (no separator)."""
    return (
        [f"layers/{i}/grad_norm" for i in range(100)]
        + [f"attn.{i}.entropy" for i in range(100)]
        + [f"train/m{i}" for i in range(99)]
        + ["samples_per_sec"]
    )


def prefix_of(name: str) -> str:
    match = re.search(r"[/.]", name)
    return name[: match.start()] if match and match.start() > 0 else "other"


def make_job(api: httpx.Client, names: list[str], *, steps: int = 20) -> str:
    created = api.post("/training/jobs", json={"name": "wide job"})
    assert created.status_code == 201, created.text
    job_id: str = created.json()["data"]["id"]
    rows = [
        {"step": step, **{name: (i + 1) * 0.01 + step * 0.001 for i, name in enumerate(names)}}
        for step in range(steps)
    ]
    api.post(f"/training/{job_id}/metrics", json=rows).raise_for_status()
    return job_id


def open_job(page: Any, server: ServerProcess, job_id: str, *, hash_: str = "") -> None:
    page.goto(f"{server.url}/api/v1/visualization/dashboard/job/{job_id}{hash_}")
    wait_ready(page)
    wait_js(page, "window.trainvis && window.trainvis.panels")


def panel_js(name: str) -> str:
    return f"document.querySelector('[data-panel=' + CSS.escape({json.dumps(name)}) + ']')"


def panel_points_js(name: str) -> str:
    """JS: the [x, y] points of the raw line of panel ``name`` (null when undrawn)."""
    return f"""(() => {{
        const node = {panel_js(name)};
        const chart = node && Chart.getChart(node.querySelector('canvas'));
        const set = chart && chart.data.datasets.find(d => d._role === 'raw');
        return set ? set.data.map(p => [p.x, p.y]) : null;
    }})()"""


VISIBLE_PANELS_JS = (
    "[...document.querySelectorAll('[data-panel]')].filter(n => n.offsetParent !== null).length"
)


def test_wide_job_shows_a_panel_per_metric_grouped_by_prefix_and_filtered(
    page: Any, api: httpx.Client, live_server: ServerProcess
) -> None:
    names = wide_names()
    job_id = make_job(api, names)
    open_job(page, live_server, job_id, hash_="#metrics")
    placed = page.evaluate(
        """[...document.querySelectorAll('[data-panel]')].map(
            n => [n.dataset.panel, n.closest('[data-group]').dataset.group])"""
    )
    assert len(placed) == 300
    assert {name for name, _ in placed} == set(names)
    assert all(group == prefix_of(name) for name, group in placed)
    groups = page.evaluate(
        "[...document.querySelectorAll('[data-group]')].map(n => n.dataset.group)"
    )
    assert groups == ["other", "attn", "layers", "train"]

    # Lazy: the first screen is drawn, most of the 300 are not.
    wait_js(page, "document.querySelectorAll('[data-panel][data-drawn]').length >= 3")
    assert page.evaluate("document.querySelectorAll('[data-panel][data-drawn]').length") < 100
    assert page.evaluate("window.trainvis.panels.stats.maxInFlight") <= 6

    box = page.locator('input[name="metric-filter"]')
    box.fill("grad_norm")
    wait_js(page, f"{VISIBLE_PANELS_JS} === 100")
    assert page.evaluate(
        "[...document.querySelectorAll('[data-group]')].filter(n => !n.hidden)"
        ".map(n => n.dataset.group)"
    ) == ["layers"]
    box.fill(r"/^(attn\.1\d\.|samples)/")
    wait_js(page, f"{VISIBLE_PANELS_JS} === 11")
    assert page.locator(".filter-count").text_content() == "11 of 300 metrics"
    box.fill("/([/")  # a bad regex: a message, every panel shown, no exception
    wait_js(page, "!document.querySelector('.filter-error').hidden")
    assert "regular expression" in page.locator(".filter-error").text_content()
    wait_js(page, f"{VISIBLE_PANELS_JS} === 300")
    box.fill("")

    # Scrolled into view, the last panel is drawn with its data.
    last = page.locator('[data-panel="samples_per_sec"]')
    last.scroll_into_view_if_needed()
    points = wait_js(page, panel_points_js("samples_per_sec"))
    assert points[0] == [0, pytest.approx(3.0)]
    assert page.evaluate("window.trainvis.panels.stats.maxInFlight") <= 6


def test_panel_line_updates_live_within_2s_of_a_post(
    page: Any, api: httpx.Client, live_server: ServerProcess
) -> None:
    job_id = make_job(api, ["train/loss", "val/loss", "layers/0/grad_norm"])
    open_job(page, live_server, job_id)
    page.locator('[data-panel="layers/0/grad_norm"]').scroll_into_view_if_needed()
    wait_js(page, panel_points_js("layers/0/grad_norm"))
    api.post(
        f"/training/{job_id}/metrics", json=[{"step": 500, "layers/0/grad_norm": 7.25}]
    ).raise_for_status()
    points = wait_js(
        page,
        f"(() => {{ const p = {panel_points_js('layers/0/grad_norm')}; "
        "return p && p.some(([x, y]) => x === 500 && y === 7.25) && p; })()",
        timeout=2.0,
    )
    assert points[-1] == [500, 7.25]
    assert page.locator('[data-panel="layers/0/grad_norm"] .panel-last').text_content() == "7.25"


def test_object_key_names_are_ordinary_panels(
    page: Any, api: httpx.Client, live_server: ServerProcess
) -> None:
    job_id = make_job(api, [*TRICKY, "constructor/x"], steps=3)
    open_job(page, live_server, job_id, hash_="#metrics")
    panels = page.evaluate(
        "[...document.querySelectorAll('[data-panel]')].map("
        "n => [n.dataset.panel, n.closest('[data-group]').dataset.group])"
    )
    expected = [*[(name, "other") for name in TRICKY], ("constructor/x", "constructor")]
    assert sorted(map(tuple, panels)) == sorted(expected)
    for i, name in enumerate(TRICKY):
        page.locator(f'[data-panel="{name}"]').scroll_into_view_if_needed()
        points = wait_js(page, panel_points_js(name))
        assert [x for x, _ in points] == [0, 1, 2]
        assert points[0][1] == pytest.approx((i + 1) * 0.01)
    page.locator('input[name="metric-filter"]').fill("constructor")
    wait_js(page, f"{VISIBLE_PANELS_JS} === 2")
    page.locator('input[name="metric-filter"]').fill("")
    api.post(f"/training/{job_id}/metrics", json=[{"step": 9, "__proto__": 4.5}]).raise_for_status()
    wait_js(page, f"({panel_points_js('__proto__')} || []).length === 4")


def test_pin_expand_log_and_downloads(
    page: Any, api: httpx.Client, live_server: ServerProcess
) -> None:
    job_id = make_job(api, ["train/loss", "val/loss", "val/acc"])
    open_job(page, live_server, job_id, hash_="#metrics")
    panel = page.locator('[data-panel="val/acc"]')
    panel.locator('[data-action="pin"]').click()
    assert page.evaluate(f"!!{panel_js('val/acc')}.closest('[data-pinned]')")
    panel.locator('[data-action="expand"]').click()
    assert "expanded" in (panel.get_attribute("class") or "")
    wait_js(page, panel_points_js("val/acc"))
    panel.locator('[data-action="log"]').click()
    chart = f"Chart.getChart({panel_js('val/acc')}.querySelector('canvas'))"
    assert page.evaluate(f"{chart}.scales.y.type") == "logarithmic"

    with page.expect_download() as csv_download:
        panel.locator('[data-action="csv"]').click()
    csv_path = csv_download.value.path()
    with open(csv_path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    assert lines[0].split(",")[0] == "step" and "val/acc" in lines[0]
    assert len(lines) == 21  # header + 20 steps
    with page.expect_download() as png_download:
        panel.locator('[data-action="png"]').click()
    with open(png_download.value.path(), "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"

    # Pins, expansion and log scale survive a reload (localStorage, per job).
    page.reload()
    wait_ready(page)
    wait_js(page, f"{panel_js('val/acc')} && {panel_js('val/acc')}.closest('[data-pinned]')")
    assert "expanded" in (panel.get_attribute("class") or "")
    wait_js(page, panel_points_js("val/acc"))
    assert page.evaluate(f"{chart}.scales.y.type") == "logarithmic"


def test_panels_follow_smoothing_and_x_axis_controls(
    page: Any, api: httpx.Client, live_server: ServerProcess
) -> None:
    created = api.post("/training/jobs", json={"name": "controls"}).json()["data"]["id"]
    rows = [{"step": s, "epoch": s / 10, "val/acc": 0.5 + (s % 3) * 0.1} for s in range(30)]
    api.post(f"/training/{created}/metrics", json=rows).raise_for_status()
    open_job(page, live_server, created, hash_="#metrics")
    chart = f"Chart.getChart({panel_js('val/acc')}.querySelector('canvas'))"
    wait_js(page, panel_points_js("val/acc"))
    page.evaluate(
        "(() => { const s = document.getElementById('smoothing'); s.value = '0.6';"
        " s.dispatchEvent(new Event('input')); })()"
    )
    wait_js(page, f"{chart} && {chart}.data.datasets.some(d => d._role === 'smoothed')")
    page.select_option("#x-axis", "epoch")
    wait_js(
        page,
        f"(() => {{ const p = {panel_points_js('val/acc')}; return p && p[1][0] === 0.1; }})()",
    )
    assert page.evaluate("window.trainvis.panels.stats.maxInFlight") <= 6


def legend_js(kind: str, label: str) -> str:
    return (
        f"[...document.querySelectorAll('[data-legend=\"{kind}\"] .legend-item')]"
        f".find(b => b.textContent === {json.dumps(label)})"
    )


def test_legend_choice_survives_controls_and_reload(
    page: Any, api: httpx.Client, live_server: ServerProcess
) -> None:
    job_id = api.post("/training/jobs", json={"name": "legend"}).json()["data"]["id"]
    rows = [
        {"step": s, "train_loss": 1 / (s + 1), "val_loss": 1.2 / (s + 1), "learning_rate": 1e-3}
        for s in range(50)
    ]
    api.post(f"/training/{job_id}/metrics", json=rows).raise_for_status()
    open_job(page, live_server, job_id)
    hidden_js = (
        "Chart.getChart(document.querySelector('canvas[data-chart=\"loss\"]'))"
        ".data.datasets.filter(d => d.metric === 'val_loss').every(d => d.hidden)"
    )
    wait_js(page, legend_js("loss", "Val Loss"))
    page.evaluate(f"{legend_js('loss', 'Val Loss')}.click()")
    assert page.evaluate(hidden_js)
    assert page.evaluate(f"{legend_js('loss', 'Val Loss')}.getAttribute('aria-pressed')") == "false"
    page.evaluate(
        "(() => { const s = document.getElementById('smoothing'); s.value = '0.5';"
        " s.dispatchEvent(new Event('input')); })()"
    )
    wait_js(page, "window.trainvis.charts.meta.loss.smoothing !== null")
    wait_js(page, hidden_js)  # raw and smoothed val_loss hidden after the reload
    page.reload()
    wait_ready(page)
    wait_js(page, hidden_js)
    assert (
        page.evaluate(f"{legend_js('loss', 'Train Loss')}.getAttribute('aria-pressed')") == "true"
    )


def test_tick_labels_differ_on_narrow_ranges(
    page: Any, api: httpx.Client, live_server: ServerProcess
) -> None:
    job_id = api.post("/training/jobs", json={"name": "ticks"}).json()["data"]["id"]
    rows = [
        {"step": s, "learning_rate": 3e-3 + 1e-6 * s, "train_loss": 10 ** (-4 + s / 25)}
        for s in range(100)
    ]
    api.post(f"/training/{job_id}/metrics", json=rows).raise_for_status()
    open_job(page, live_server, job_id)
    labels_js = (
        "Chart.getChart(document.querySelector('canvas[data-chart=\"{kind}\"]'))"
        ".scales.y.ticks.map(t => t.label)"
    )
    lr = wait_js(page, labels_js.format(kind="learning_rate"))
    assert len(lr) >= 3 and len(set(lr)) == len(lr), lr
    assert all(label for label in lr)
    page.check("#log-scale")
    wait_js(page, "window.trainvis.charts.meta.loss.log_scale === true")
    shown = [label for label in page.evaluate(labels_js.format(kind="loss")) if label]
    assert len(shown) >= 3 and len(set(shown)) == len(shown), shown
    assert "1e-4" in shown or "0.0001" in shown, shown


def test_gpu_aggregate_toggle_requests_aggregate_and_persists(
    page: Any, api: httpx.Client, live_server: ServerProcess
) -> None:
    job_id = api.post("/training/jobs", json={"name": "gpus"}).json()["data"]["id"]
    rows = [
        {"step": s, "gpus": [{"index": i, "utilization": 50.0 + i + s} for i in range(4)]}
        for s in range(20)
    ]
    api.post(f"/training/{job_id}/metrics", json=rows).raise_for_status()
    open_job(page, live_server, job_id)
    toggle = page.locator("#gpu-aggregate")
    assert toggle.is_visible()
    with page.expect_request(lambda r: "/gpu?" in r.url and "aggregate=true" in r.url):
        toggle.check()
    page.reload()
    wait_ready(page)
    assert page.locator("#gpu-aggregate").is_checked()
