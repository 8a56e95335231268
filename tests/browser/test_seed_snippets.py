"""SEED.md's three front-end snippets, run as written in a page served with the app.

The test page ``/test-pages/seed.html`` loads the snippets from
``tests/browser/pages/`` (verbatim; the Recharts one compiled from JSX with only
``width``/``height`` added). The package does not ship or serve these pages
(issue 14): the test server (:mod:`tests.browser.seed_server`) is ``trainvis
serve`` plus one route for that folder, so they run same-origin against the API.
The seed's EventSource URL is
``http://localhost:8000/.../job-001/stream``: Chromium is told to resolve
``localhost:8000`` to the test server (``--host-resolver-rules``), and the page
itself is opened from ``http://localhost:8000``, so the URL works unchanged on a
free port, and ``job-001`` is the first job of the fresh store.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.browser.conftest import PageWatch, launch_chromium, open_page, wait_js
from tests.browser.seed_server import PAGES_DIR, PAGES_PATH
from tests.conftest import API, ServerProcess

pytestmark = pytest.mark.browser

SEED_ORIGIN = "http://localhost:8000"
SEED_PAGE = f"{SEED_ORIGIN}{PAGES_PATH}/seed.html"
TEST_DIR = PAGES_DIR

SEED_RECHARTS = """\
function LossChart({ data }) {
  return (
    <LineChart data={data.data.datasets[0].data} width={800} height={300}>
      {data.data.datasets.map((dataset, index) => (
        <Line
          key={index}
          dataKey={dataset.label}
          stroke={dataset.borderColor}
        />
      ))}
    </LineChart>
  );
}"""
SEED_CHARTJS = """\
async function loadLossChart(jobId) {
  const response = await fetch(`/api/v1/visualization/training/${jobId}/loss`);
  const { data } = await response.json();
  
  new Chart(ctx, {
    type: data.type,
    data: data.data,
    options: data.options
  });
}"""
SEED_SSE = """\
const eventSource = new EventSource('http://localhost:8000/api/v1/visualization/training/job-001/stream');

eventSource.onmessage = (event) => {
  const data = JSON.parse(event.data);
  console.log('New metrics:', data);"""


class SeedServer(ServerProcess):
    """``trainvis serve`` with the test pages under ``/test-pages/``."""

    module = "tests.browser.seed_server"


@pytest.fixture(scope="module")
def seed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose first job ``job-001`` has train and val loss (smoothing off)."""
    db = tmp_path_factory.mktemp("seed") / "seed.db"
    with SeedServer(str(db), args=["--sse-heartbeat", "1"]) as server:
        api = f"{server.url}{API}"
        body = {
            "name": "BERT Fine-tuning",
            "model_name": "bert-base-uncased",
            "total_epochs": 10,
            "total_steps": 10000,
        }
        assert httpx.post(f"{api}/training/jobs", json=body).json()["data"]["id"] == "job-001"
        rows = [
            {"step": s, "epoch": s // 100, "train_loss": 2.0 / (1 + s / 50)}
            | ({"val_loss": 2.2 / (1 + s / 60)} if s % 100 == 0 else {})
            for s in range(1, 501)
        ]
        httpx.post(f"{api}/training/job-001/metrics", json=rows).raise_for_status()
        yield server


@pytest.fixture(scope="module")
def seed_browser(playwright_instance: Any, seed_server: ServerProcess) -> Iterator[Any]:
    rule = f"--host-resolver-rules=MAP localhost:8000 127.0.0.1:{seed_server.port}"
    chromium = launch_chromium(playwright_instance, [rule])
    try:
        yield chromium
    finally:
        chromium.close()


@pytest.fixture
def seed_page(seed_browser: Any, watch: PageWatch) -> Iterator[Any]:
    context, page = open_page(seed_browser, watch)
    try:
        yield page
    finally:
        context.close()
    assert watch.errors == [], "console errors in the browser"


def loss_chart(server: ServerProcess, query: str = "") -> dict[str, Any]:
    response = httpx.get(f"{server.url}{API}/training/job-001/loss{query}")
    response.raise_for_status()
    data: dict[str, Any] = response.json()["data"]
    return data


def test_snippet_files_are_the_seed_as_written() -> None:
    assert SEED_RECHARTS in (TEST_DIR / "seed-recharts.jsx").read_text()
    assert SEED_CHARTJS in (TEST_DIR / "seed-chartjs.js").read_text()
    assert SEED_SSE in (TEST_DIR / "seed-eventsource.js").read_text()
    compiled = (TEST_DIR / "seed-recharts.js").read_text()
    assert "width: 800, height: 300" in compiled and "dataKey: dataset.label" in compiled


def test_seed_chartjs_load_loss_chart(seed_page: Any, seed_server: ServerProcess) -> None:
    seed_page.goto(SEED_PAGE)
    seed_page.evaluate("loadLossChart('job-001')")
    chart = "Chart.getChart(document.getElementById('seed-chartjs'))"
    wait_js(seed_page, f"{chart} !== undefined")
    expected = loss_chart(seed_server)["data"]["datasets"]
    drawn = seed_page.evaluate(f"{chart}.data.datasets.map(d => [d.label, d.data.length])")
    assert drawn == [[d["label"], len(d["data"])] for d in expected]
    assert drawn == [["Train Loss", 500], ["Val Loss", 5]]
    assert seed_page.evaluate(f"{chart}.config.type") == "line"


def test_seed_eventsource_metrics_listener_fires(
    seed_page: Any, seed_server: ServerProcess
) -> None:
    seed_page.goto(SEED_PAGE + "?sse=1")
    wait_js(seed_page, "window.seedEvents && window.seedEvents.messages.length > 0")
    snapshot = seed_page.evaluate("window.seedEvents.messages[0]")
    assert snapshot["type"] == "snapshot" and snapshot["job"]["id"] == "job-001"
    row = {"step": 10_001, "train_loss": 0.0123, "accuracy": 0.91}
    response = httpx.post(f"{seed_server.url}{API}/training/job-001/metrics", json=row)
    response.raise_for_status()
    wait_js(seed_page, "window.seedEvents.metrics.length > 0", timeout=5)
    received = seed_page.evaluate("window.seedEvents.metrics[0]")
    assert received["step"] == 10_001
    assert received["train_loss"] == 0.0123 and received["accuracy"] == 0.91


def test_seed_recharts_loss_chart_draws_every_series(
    seed_page: Any, seed_server: ServerProcess
) -> None:
    seed_page.goto(SEED_PAGE)
    seed_page.evaluate("renderSeedRecharts('job-001')")
    expected = loss_chart(seed_server, "?format=recharts&smooth=true")["data"]["datasets"]
    plain = loss_chart(seed_server, "?format=recharts")["data"]["datasets"]
    assert len(expected) == 4  # the smoothed shape has raw + smoothed per series
    wait_js(seed_page, f"document.querySelectorAll('.recharts-line').length === {len(plain)}")
    lines = seed_page.evaluate(
        """[...document.querySelectorAll('.recharts-line path.recharts-line-curve')]
            .map(p => [p.getAttribute('stroke'), (p.getAttribute('d') || '').length])"""
    )
    assert [stroke for stroke, _ in lines] == [d["borderColor"] for d in plain]
    assert all(length > 5 for _, length in lines), lines
    # With smoothing every series (raw and smoothed) is drawn as well.
    seed_page.evaluate(
        """(async () => {
            const url = '/api/v1/visualization/training/job-001/loss';
            const r = await fetch(url + '?format=recharts&smooth=true');
            const { data } = await r.json();
            const box = document.createElement('div'); box.id = 'smoothed';
            document.body.append(box);
            ReactDOM.createRoot(box).render(React.createElement(LossChart, { data }));
        })()"""
    )
    wait_js(seed_page, "document.querySelectorAll('#smoothed .recharts-line').length === 4")
