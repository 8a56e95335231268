"""Runs-table page latency over 10,000 jobs, against a real `trainvis serve`.

Each job has a config (optimizer, learning rate, batch size, seed) and a
val_loss metric (20 points; a tenth of the jobs have none). The request is
the runs table's: `GET /training/jobs?sort=metric.val_loss.best&stats=val_loss`,
50 jobs a page, at the first, middle and last page, plus a page sorted by a
config value with a config filter. The jobs are written through the store
(the HTTP write path has its own benchmark, ingest.py); every page is read
over HTTP and checked to be in order. `min` is there because on a shared
machine the median measures the neighbours as much as the server.

    python benchmarks/runs_table.py [--jobs 10000] [--requests 20]
        [--db PATH] [--pg postgresql://postgres@127.0.0.1:5432/postgres]
    (--pg names a server on which a scratch database is created and dropped;
    --no-pg skips PostgreSQL)
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from ingest import API, pct, pg_database, start_server  # noqa: E402
from trainvis.models import JobCreate, MetricRow  # noqa: E402
from trainvis.store import open_store  # noqa: E402

OPTIMIZERS = ("AdamW", "SGD", "Adafactor", "Lion")
PAGE = 50


def populate(db: str, jobs: int) -> None:
    """``jobs`` jobs with configs and (for nine in ten) a val_loss curve."""
    store = open_store(db)
    try:
        for index in range(jobs):
            job = store.create_job(
                JobCreate(
                    name=f"run-{index:05d}",
                    total_steps=2000,
                    tags=["sweep", f"group-{index % 7}"],
                    config={
                        "optimizer": {"name": OPTIMIZERS[index % 4], "betas": [0.9, 0.999]},
                        "lr": [1e-4, 3e-4, 1e-3][index % 3],
                        "batch_size": 32 << (index % 3),
                        "seed": index,
                    },
                )
            )
            if index % 10 == 9:
                continue
            floor = 0.2 + (index * 7919 % 1000) / 1000
            rows = [
                MetricRow(step=step, values={"val_loss": floor + 2.0 * math.exp(-step / 400)})
                for step in range(100, 2001, 100)
            ]
            store.write_metrics(job.id, rows)
    finally:
        store.close()


def check_order(data: list[dict[str, object]]) -> None:
    """Best val_loss ascending, jobs without one last."""
    bests = [
        job["stats"]["val_loss"]["best"] if job["stats"] else math.inf  # type: ignore[index]
        for job in data
    ]
    assert bests == sorted(bests), "page out of order"


def timed(http: httpx.Client, params: dict[str, object]) -> float:
    started = time.perf_counter()
    response = http.get(f"{API}/training/jobs", params=params)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    body = response.json()
    assert len(body["data"]) == min(PAGE, body["meta"]["total"] - int(str(params["offset"])))
    if params.get("sort") == "metric.val_loss.best":
        check_order(body["data"])
    return elapsed


def measure(db: str, jobs: int, requests: int) -> list[tuple[str, list[float]]]:
    """Per request kind, the seconds of ``requests`` requests (after one warm-up)."""
    best = {"sort": "metric.val_loss.best", "stats": "val_loss", "limit": PAGE}
    kinds: list[tuple[str, dict[str, object]]] = [
        ("best, first page", {**best, "offset": 0}),
        ("best, middle page", {**best, "offset": jobs // 2}),
        ("best, last page", {**best, "offset": jobs - PAGE}),
        (
            "config.lr, filtered",
            {"sort": "-config.lr", "config.optimizer.name": "AdamW", "limit": PAGE, "offset": 0},
        ),
        ("default (newest)", {"limit": PAGE, "offset": 0}),
    ]
    proc, url = start_server(db)
    try:
        with httpx.Client(base_url=url, timeout=120) as http:
            results = []
            for name, params in kinds:
                timed(http, params)
                results.append((name, [timed(http, params) for _ in range(requests)]))
            return results
    finally:
        proc.terminate()
        proc.wait(30)


def run_store(label: str, db: str, args: argparse.Namespace, out: Callable[[str], None]) -> None:
    started = time.perf_counter()
    populate(db, args.jobs)
    out(f"\n{label}: {args.jobs:,} jobs written in {time.perf_counter() - started:.0f} s")
    out(f"{'request (50 jobs a page)':<24} {'n':>4} {'min ms':>8} {'p50 ms':>8} {'p95 ms':>8}")
    for name, values in measure(db, args.jobs, args.requests):
        low, p50, p95 = (
            min(values) * 1000,
            statistics.median(values) * 1000,
            pct(values, 0.95) * 1000,
        )
        out(f"{name:<24} {len(values):>4} {low:>8.1f} {p50:>8.1f} {p95:>8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--db", help="SQLite file (default: a temporary one)")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--no-pg", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_store("SQLite", args.db or str(Path(tmp) / "runs.db"), args, print)
    if not args.no_pg:
        with pg_database(args.pg) as url:
            run_store("PostgreSQL", url, args, print)


if __name__ == "__main__":
    main()
