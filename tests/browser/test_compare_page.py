"""The compare page in a real Chromium (issue 16): a panel per shared metric with one
line per run in the run's colour on every panel, controls whose state lives in the
URL (a reload restores it), group means, baseline deltas and the config differences."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.browser.conftest import wait_js
from tests.conftest import API, ServerProcess

pytestmark = pytest.mark.browser

SHARED = ["train/loss", "train/lr", "eval.accuracy", "grad_norm", "__proto__", "constructor"]


def make_runs(api: httpx.Client) -> list[str]:
    """Three runs sharing SHARED (the second also has a metric of its own)."""
    ids = []
    for run in range(3):
        body = {
            "name": "twin" if run != 1 else "other",
            "config": {"optim": "adam" if run < 2 else "sgd", "lr": 10 ** -(run + 2), "seed": 1},
            "tags": ["base"],
        }
        created = api.post("/training/jobs", json=body)
        assert created.status_code == 201, created.text
        job_id: str = created.json()["data"]["id"]
        rows = [
            {
                "step": step,
                **{name: (run + 1) * (i + 1) + step * 0.01 for i, name in enumerate(SHARED)},
            }
            for step in range(0, 200, 10)
        ]
        if run == 1:
            rows[0]["own_metric"] = 1.0
        api.post(f"/training/{job_id}/metrics", json=rows).raise_for_status()
        ids.append(job_id)
    return ids


def panel_js(name: str) -> str:
    return f"document.querySelector('[data-panel=' + CSS.escape({json.dumps(name)}) + ']')"


def lines_js(name: str) -> str:
    """JS: ``[[key, role, borderColor, points]]`` of panel ``name``'s chart (null undrawn)."""
    return f"""(() => {{
        const node = {panel_js(name)};
        const canvas = node && node.querySelector('canvas');
        const chart = canvas && Chart.getChart(canvas);
        return chart ? chart.data.datasets.map(d => [d._key, d._role, d.borderColor, d.data.length])
                     : null;
    }})()"""


def draw_all(page: Any, names: list[str]) -> None:
    """Scroll each panel into view and wait for its chart."""
    for name in names:
        page.evaluate(f"{panel_js(name)}.scrollIntoView()")
        wait_js(page, lines_js(name))


def open_compare(page: Any, server: ServerProcess, query: str) -> None:
    page.goto(f"{server.url}{API}/dashboard/compare{query}")
    wait_js(page, "window.trainvis && window.trainvis.grid")


def test_compare_panels_one_line_per_run_and_state_restored_after_reload(
    page: Any, api: httpx.Client, live_server: ServerProcess
) -> None:
    ids = make_runs(api)
    open_compare(page, live_server, f"?jobs={','.join(ids)}")
    placed = page.evaluate(
        "[...document.querySelectorAll('[data-panel]')]"
        ".map(n => [n.dataset.panel, n.closest('[data-group]').dataset.group])"
    )
    assert sorted(placed) == sorted(
        [
            ["train/loss", "train"],
            ["train/lr", "train"],
            ["eval.accuracy", "eval"],
            ["grad_norm", "other"],
            ["__proto__", "other"],
            ["constructor", "other"],
        ]
    )  # fmt: skip  (own_metric belongs to one run only: no panel)
    draw_all(page, SHARED)
    colours: dict[str, set[str]] = {job_id: set() for job_id in ids}
    for name in SHARED:
        lines = page.evaluate(lines_js(name))
        raw = [line for line in lines if line[1] == "raw"]
        assert [line[0] for line in raw] == ids, name  # one line per run, in order
        assert all(line[3] == 20 for line in raw), name
        for key, _, colour, _ in raw:
            colours[key].add(colour)
    assert all(len(found) == 1 for found in colours.values()), colours  # one colour per run
    assert len({next(iter(found)) for found in colours.values()}) == 3
    # labels: repeated names get the job id
    labels = page.evaluate(
        "[...document.querySelectorAll('#run-list li a:not(.run-remove)')].map(a => a.textContent)"
    )
    assert labels == [f"twin ({ids[0]})", "other", f"twin ({ids[2]})"]
    # the config table lists the keys that differ only
    keys = page.evaluate(
        "[...document.querySelectorAll('#config-diff tbody tr')].map(r => r.dataset.key)"
    )
    assert keys == ["lr", "optim"]

    # change every control
    page.fill("input[name='metric-filter']", "/^(train|grad)/")
    page.evaluate(
        """(() => {
            const form = document.getElementById('compare-controls');
            const set = (name, value) => {
                const input = form.elements[name];
                if (input.type === 'checkbox') input.checked = value; else input.value = value;
                input.dispatchEvent(new Event('change', { bubbles: true }));
            };
            set('smoothing', '0.5'); set('x', 'relative_time'); set('group_by', 'config.optim');
            set('band', true);
        })()"""
    )
    page.select_option("select[name='baseline']", ids[1])
    page.click("[data-panel='grad_norm'] [data-action='pin']")
    page.click("[data-panel='train/lr'] [data-action='log']")
    page.evaluate("window.trainvis.grid.onZoom(50, 150)")  # what a drag across a panel calls
    search = page.evaluate("location.search")
    assert search.startswith(f"?jobs={','.join(ids)}&")
    for part in ("smoothing=0.5", "x=relative_time", "group_by=config.optim", "band=1",
                 f"baseline={ids[1]}", "pin=grad_norm", "log_metric=train%2Flr",
                 "start_step=50", "end_step=150"):  # fmt: skip
        assert part in search, (part, search)

    page.reload()
    wait_js(page, "window.trainvis && window.trainvis.grid")
    assert page.evaluate("location.search") == search
    restored = page.evaluate(
        """(() => {
            const form = document.getElementById('compare-controls');
            const grid = window.trainvis.grid;
            const value = (name) => form.elements[name].value;
            return [value('smoothing'), value('x'), value('group_by'),
                    form.elements.band.checked, value('baseline'),
                    document.querySelector("input[name='metric-filter']").value,
                    grid.state.pinned, grid.state.log];
        })()"""
    )
    assert restored == ["0.5", "relative_time", "config.optim", True, ids[1], "/^(train|grad)/",
                        ["grad_norm"], ["train/lr"]]  # fmt: skip
    hidden = page.evaluate(
        "[...document.querySelectorAll('[data-panel]')]"
        ".filter(n => n.hidden).map(n => n.dataset.panel)"
    )
    assert sorted(hidden) == ["__proto__", "constructor", "eval.accuracy"]
    draw_all(page, ["grad_norm", "train/loss"])
    lines = page.evaluate(lines_js("train/loss"))
    roles = [(key, role) for key, role, _, _ in lines]
    for job_id in ids:
        assert (job_id, "raw") in roles and (job_id, "smoothed") in roles
    counts = {count for key, role, _, count in lines if role == "raw" and key in ids}
    assert counts == {11}  # steps 50-150
    assert page.evaluate("document.getElementById('reset-zoom').hidden") is False
    means = [key for key, role, _, _ in lines if role == "raw" and key.startswith("group:")]
    assert means == ['group:"adam"', 'group:"sgd"']
    assert sum(1 for _, role, _, _ in lines if role == "band_min") == 2
    # the baseline's deltas under the panel: the baseline row has none
    deltas = page.evaluate(
        f"[...{panel_js('train/loss')}.querySelectorAll('.deltas tbody tr')]"
        ".map(r => [...r.cells].map(c => c.textContent))"
    )
    assert [row[0] for row in deltas] == [f"twin ({ids[0]})", "other", f"twin ({ids[2]})"]
    assert deltas[1][2] == "—" and deltas[0][2] == "-25.6%" and deltas[2][2] == "+25.6%"
    assert (
        page.evaluate(
            f"Chart.getChart({panel_js('train/lr')}.querySelector('canvas')).options.scales.y.type"
        )
        == "logarithmic"
    )
