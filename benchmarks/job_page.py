"""The job page of a wide job in Chromium: first screen of metric panels, warm and cold.

A job of 500 metrics x 20,000 steps (10,000,000 points) is written straight to
the store, then a real ``trainvis serve`` is measured in Debian's Chromium:

- *first screen*: from navigation start until every metric panel in the
  viewport is drawn (the page is opened at ``#metrics``, so the first screen is
  panels). *Cold* is the first visit to a fresh server process (every series
  read from the database); *warm* is a later visit (series cached, the usual
  case for a run being watched).
- *in flight*: the most ``/series`` requests open at once while the page is
  scrolled through all 500 panels, counted from the browser's network events
  (target: at most 6), with the number of requests and panels drawn.

    python benchmarks/job_page.py                 # SQLite in a temp dir
    python benchmarks/job_page.py --metrics 100 --steps 5000   # a quick run
    python benchmarks/job_page.py --db /tmp/wide.db   # kept: a second run skips writing
    python benchmarks/job_page.py --db postgresql://postgres@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from ingest import API, start_server  # noqa: E402
from trainvis.models import JobCreate, MetricRow  # noqa: E402
from trainvis.store import open_store  # noqa: E402
from trainvis.store.base import JobFilter  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
BATCH_ROWS = 1_000
TARGETS = {"warm": 1.5, "cold": 3.0}
MAX_IN_FLIGHT = 6

# JS: ms from navigation start at which every panel in the viewport was drawn
# (null while one is still missing).
FIRST_SCREEN_JS = """(() => {
  const panels = [...document.querySelectorAll('[data-panel]')];
  if (!panels.length) return null;
  const inView = panels.filter((n) => {
    const r = n.getBoundingClientRect();
    return r.bottom > 0 && r.top < innerHeight && r.height > 0;
  });
  if (!inView.length || inView.some((n) => !n.dataset.drawn)) return null;
  return Math.max(...inView.map((n) => Number(n.dataset.drawnAt)));
})()"""
# JS: no panel in the viewport is waiting to be drawn (true with none in view).
SCREEN_DRAWN_JS = """[...document.querySelectorAll('[data-panel]')].every((n) => {
  const r = n.getBoundingClientRect();
  return n.dataset.drawn || !(r.bottom > 0 && r.top < innerHeight && r.height > 0);
})"""


def metric_names(count: int) -> list[str]:
    """Realistic names: per-layer norms, train/* and val/* metrics."""
    names = [f"layers/{i}/grad_norm" for i in range(count // 2)]
    names += [f"train/m{i}" for i in range(count // 4)]
    names += [f"val/m{i}" for i in range(count - len(names))]
    return names


def write_job(db: str, metrics: int, steps: int) -> tuple[str, float]:
    """The wide job, written through the store (or found there, from an earlier run
    on the same ``--db``); returns (job id, seconds spent writing)."""
    names = metric_names(metrics)
    name = f"{metrics} metrics x {steps} steps"
    started = time.perf_counter()
    store = open_store(db)
    try:
        found, _ = store.list_jobs(filters=JobFilter(q=name), limit=1)
        if found and found[0].name == name and found[0].point_count == metrics * steps:
            return found[0].id, 0.0
        job = store.create_job(JobCreate(name=name))
        for start in range(0, steps, BATCH_ROWS):
            rows = [
                MetricRow(
                    step=step,
                    timestamp=1_700_000_000.0 + step,
                    values={
                        name: 1.0 / (1 + step / 1000) + 0.01 * (i % 7) + 0.001 * math.sin(step)
                        for i, name in enumerate(names)
                    },
                )
                for step in range(start, min(steps, start + BATCH_ROWS))
            ]
            store.write_metrics(job.id, rows)
        return job.id, time.perf_counter() - started
    finally:
        store.close()


def wait(page: Any, expression: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = page.evaluate(expression)
        if value:
            return value
        time.sleep(0.01)
    raise SystemExit(f"timed out waiting for: {expression}")


def first_screen(browser: Any, url: str) -> tuple[float, int]:
    """Open the page at its panels; (ms to the first screen drawn, panels on it)."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url + "#metrics")
    ms = float(wait(page, FIRST_SCREEN_JS, 60))
    drawn = int(page.evaluate("document.querySelectorAll('[data-panel][data-drawn]').length"))
    context.close()
    if errors:
        raise SystemExit(f"page errors: {errors}")
    return ms, drawn


def scroll_through(browser: Any, url: str) -> tuple[int, int, int, float]:
    """Scroll through every panel, a screen at a time (each screen drawn before the
    next), then fling back to the top; (max /series in flight, requests, panels
    drawn, seconds)."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    open_now = 0
    peak = 0
    requests = 0

    def opened(request: Any) -> None:
        nonlocal open_now, peak, requests
        if "/series?" in request.url:
            open_now += 1
            requests += 1
            peak = max(peak, open_now)

    def closed(request: Any) -> None:
        nonlocal open_now
        if "/series?" in request.url:
            open_now -= 1

    page.on("request", opened)
    page.on("requestfinished", closed)
    page.on("requestfailed", closed)
    page.goto(url + "#metrics")
    wait(page, FIRST_SCREEN_JS, 60)
    started = time.perf_counter()
    while not page.evaluate("innerHeight + scrollY >= document.body.scrollHeight - 2"):
        page.mouse.wheel(0, 850)
        wait(page, SCREEN_DRAWN_JS, 60)
    drawn = int(page.evaluate("document.querySelectorAll('[data-panel][data-drawn]').length"))
    # A fast fling back up to the first panels: requests queue, never pile up.
    while page.evaluate("document.getElementById('metrics').getBoundingClientRect().top < 0"):
        page.mouse.wheel(0, -1500)
        time.sleep(0.02)
    wait(page, FIRST_SCREEN_JS, 60)
    seconds = time.perf_counter() - started
    context.close()
    return peak, requests, drawn, seconds


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="database URL (default: SQLite in a temp dir)")
    parser.add_argument("--metrics", type=int, default=500)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5, help="warm visits")
    parser.add_argument("--cold-runs", type=int, default=3, help="fresh server processes")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or str(Path(tmp) / "bench.db")
        job_id, write_s = write_job(db, args.metrics, args.steps)
        points = args.metrics * args.steps
        print(f"job: {args.metrics} metrics x {args.steps:,} steps = {points:,} points")
        print(f"written through the store in {write_s:.1f} s", flush=True)
        rows: list[tuple[str, str, str, str]] = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
            )
            try:
                cold: list[float] = []
                for run in range(args.cold_runs):
                    proc, url = start_server(db)  # cold: a fresh server process
                    page_url = f"{url}{API}/dashboard/job/{job_id}"
                    try:
                        ms, drawn = first_screen(browser, page_url)
                        cold.append(ms)
                        print(f"cold visit {run + 1}: {ms:,.0f} ms", flush=True)
                        if run < args.cold_runs - 1:
                            continue
                        warm = sorted(first_screen(browser, page_url)[0] for _ in range(args.runs))
                        peak, requests, total, seconds = scroll_through(browser, page_url)
                    finally:
                        proc.terminate()
                        proc.wait(15)
            finally:
                browser.close()
        cold.sort()
        rows = [
            (
                "first screen, cold",
                f"{median(cold):,.0f} ms",
                f"median of {len(cold)}, max {cold[-1]:,.0f} ms, {drawn} panels",
                f"<= {TARGETS['cold']:g} s",
            ),
            (
                "first screen, warm",
                f"{median(warm):,.0f} ms",
                f"median of {len(warm)}, max {warm[-1]:,.0f} ms",
                f"<= {TARGETS['warm']:g} s",
            ),
            (
                "/series in flight (max)",
                str(peak),
                f"{requests} requests for {total} panels, scrolled in {seconds:.1f} s",
                f"<= {MAX_IN_FLIGHT}",
            ),
        ]
        width = max(len(r[0]) for r in rows)
        detail = max(len(r[2]) for r in rows)
        print(f"{'measure':<{width}}  {'value':>8}  {'detail':<{detail}}  target")
        for name, value, note, target in rows:
            print(f"{name:<{width}}  {value:>8}  {note:<{detail}}  {target}")


if __name__ == "__main__":
    main()
