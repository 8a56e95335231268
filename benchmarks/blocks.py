"""Storage benchmark for long runs (issue 15): disk, ingest, history, cold charts.

Store level, for SQLite and PostgreSQL (the bench workload: 1 job × 10 metrics
× ``--steps`` steps, written through ``MetricStore.write_metrics`` in 1,000-row
batches):

- bytes per point on disk (SQLite: the file after a checkpoint; PostgreSQL:
  ``pg_total_relation_size`` of every table);
- ingest against raw ``sqlite3`` ``executemany`` of the same points into a
  ``(metric_id, step, value)`` table, one transaction per batch, in the same
  run (ratio = raw seconds / store seconds; higher is better);
- a one-metric 50,000-point history (``iter_rows``) against raw ``sqlite3``'s
  indexed read of the same points (ratio = store seconds / raw seconds).

Server level (a real ``trainvis serve`` on SQLite, data written beforehand):

- the 1M-point smoothed loss chart: the first request after a restart
  (``--restarts`` samples), cold (a second 1M-point job's first chart on that
  warmed-up server: its series read from the database) and warm (p50);
- a third 1M-point job's first ``band=minmax`` chart (drawn from min/max
  tiers where the server keeps them);
- compare: one metric of ``--compare-jobs`` jobs × ``--compare-points`` points
  read cold (``/training/compare`` when the server has it, else one
  ``/series`` request per job, summed);
- a CSV export of the 1M-point job, and the server's peak RSS.

With ``--csv-points N``, also the full CSV export of a job of N points (one
metric, written through the store in 50,000-row batches) from a fresh server:
its seconds and the server's resident set (``VmRSS``) sampled every 20 ms while
the export streams, at each quarter of the rows and at its peak, against the
resident set before the request (constant memory: the quarters stay flat).

    python benchmarks/blocks.py                        # defaults: 100,000 steps, 20 × 100,000
    python benchmarks/blocks.py --compare-points 1000000   # the full 20 × 1M compare
    python benchmarks/blocks.py --steps 20000 --chart-points 200000   # a quick run
    python benchmarks/blocks.py --no-postgres
    python benchmarks/blocks.py --no-postgres --no-server --steps 20000 --csv-points 10000000
"""

from __future__ import annotations

import argparse
import math
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from charts import SPIKES, loss, timed  # noqa: E402
from ingest import API, METRICS, peak_rss_mb, start_server  # noqa: E402
from trainvis.models import JobCreate, MetricRow  # noqa: E402
from trainvis.store import open_store  # noqa: E402
from trainvis.store.base import MetricStore  # noqa: E402

BATCH = 1000
HISTORY_POINTS = 50_000
CSV_BATCH = 50_000
#: Seconds between two samples of the server's resident set during the CSV export.
RSS_EVERY = 0.02
TARGETS = {
    "bytes_per_point": "≤ 8",
    "ingest_ratio": "≥ 0.8×",
    "history_ratio": "≤ 2×",
    "first_ms": "≤ 100",
    "cold_ms": "≤ 100",
    "warm_ms": "≤ 30",
    "compare_s": "≤ 1 (20 × 1M)",
    "rss_mb": "≤ 300",
}


def curves(steps: int) -> np.ndarray:
    """Training-shaped values (``ingest.py``'s): decay towards a floor, with noise."""
    rng = np.random.default_rng(7)
    return np.stack(
        [
            (0.1 + i)
            * (0.2 + 2.0 * np.exp(-np.arange(steps) / (20_000 + 3_000 * i)))
            * (1 + 0.05 * rng.standard_normal(steps))
            for i in range(len(METRICS))
        ]
    )


def bench_batches(steps: int) -> Iterator[list[MetricRow]]:
    values = curves(steps).T.tolist()
    now = time.time()
    for start in range(0, steps, BATCH):
        yield [
            MetricRow(step, dict(zip(METRICS, values[step], strict=True)), step / 1000, now)
            for step in range(start, min(start + BATCH, steps))
        ]


def timed_call(fn: Callable[[], object], repeat: int = 3) -> float:
    """Median seconds of ``repeat`` calls."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


# ---------------------------------------------------------------------- raw sqlite3


def raw_sqlite(path: str, steps: int) -> tuple[float, float]:
    """Seconds to insert the bench workload with ``executemany`` and to read one
    metric's first 50,000 points through the primary-key index."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        "CREATE TABLE points (metric_id INTEGER, step INTEGER, value REAL, "
        "PRIMARY KEY (metric_id, step)) WITHOUT ROWID"
    )
    data = curves(steps)
    started = time.perf_counter()
    for start in range(0, steps, BATCH):
        stop = min(start + BATCH, steps)
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO points VALUES (?, ?, ?)",
            [
                (metric, step, value)
                for metric in range(len(METRICS))
                for step, value in zip(
                    range(start, stop), data[metric, start:stop].tolist(), strict=True
                )
            ],
        )
        conn.execute("COMMIT")
    ingest = time.perf_counter() - started
    last = min(steps, HISTORY_POINTS) - 1
    read = timed_call(
        lambda: conn.execute(
            "SELECT step, value FROM points WHERE metric_id = ? AND step BETWEEN ? AND ? "
            "ORDER BY step",
            (METRICS.index("train_loss"), 0, last),
        ).fetchall()
    )
    conn.close()
    return ingest, read


# ---------------------------------------------------------------------- store level


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    import psycopg

    name = f"trainvis_bench_blocks_{os.getpid()}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def disk_bytes(url: str) -> int:
    if url.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT sum(pg_total_relation_size(oid)) FROM pg_class "
                "WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"
            ).fetchone()
            return int(row[0]) if row else 0
    with sqlite3.connect(url) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return os.path.getsize(url)


def store_level(url: str, steps: int) -> dict[str, float]:
    store: MetricStore = open_store(url)
    try:
        job = store.create_job(JobCreate(name="bench")).id
        batches = list(bench_batches(steps))
        started = time.perf_counter()
        for rows in batches:
            store.write_metrics(job, rows)
        ingest = time.perf_counter() - started
        last = min(steps, HISTORY_POINTS) - 1

        def history() -> None:
            rows = list(store.iter_rows(job, metrics=["train_loss"], end_step=last))
            assert len(rows) == last + 1

        read = timed_call(history)
    finally:
        store.close()
    return {
        "points": steps * len(METRICS),
        "ingest_s": ingest,
        "history_s": read,
        "bytes_per_point": disk_bytes(url) / (steps * len(METRICS)),
    }


# ---------------------------------------------------------------------- server level


def populate_charts(
    db: str, chart_points: int, jobs: int, points: int
) -> tuple[list[str], list[str]]:
    """Three 1M-point loss jobs (``charts.py``'s, spikes included) and the compare jobs."""
    store = open_store(db)
    try:
        charts = [store.create_job(JobCreate(name=f"chart {n}")).id for n in range(3)]
        now = time.time()
        for start in range(0, chart_points, 10_000):
            rows = []
            for step in range(start, min(start + 10_000, chart_points)):
                values = {"train_loss": loss(step)}
                if step % 100 == 0:
                    values["val_loss"] = loss(step) * 1.1
                rows.append(MetricRow(step, values, None, now))
            for chart in charts:
                store.write_metrics(chart, rows)
        compared = []
        for index in range(jobs):
            job = store.create_job(JobCreate(name=f"compare {index}")).id
            for start in range(0, points, 10_000):
                store.write_metrics(
                    job,
                    [
                        MetricRow(step, {"val_loss": 1.0 / (1 + step) + index}, None, now)
                        for step in range(start, min(start + 10_000, points))
                    ],
                )
            compared.append(job)
    finally:
        store.close()
    return charts, compared


def compare_seconds(http: httpx.Client, jobs: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    response = http.get(
        f"{API}/training/compare", params={"jobs": ",".join(jobs), "metric": "val_loss"}
    )
    if response.status_code != 404:
        response.raise_for_status()
        return time.perf_counter() - started, "compare"
    started = time.perf_counter()
    for job in jobs:
        http.get(f"{API}/training/{job}/series", params={"metrics": "val_loss"}).raise_for_status()
    return time.perf_counter() - started, "series × n"


def timed_band(http: httpx.Client, job: str, points: int) -> float:
    """Seconds of a cold ``band=minmax`` chart of ``job`` (drawn from min/max tiers
    where the server has them), checked to keep every spike."""
    started = time.perf_counter()
    response = http.get(f"{API}/training/{job}/loss", params={"band": "minmax", "smooth": "false"})
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    body = response.json()["data"]
    raw = next(d for d in body["data"]["datasets"] if d["label"] == "Train Loss")
    kept = {p["x"] for p in raw["data"] if p["y"] == 25.0}
    assert kept == {s for s in SPIKES if s < points}, "spikes lost"
    return elapsed


def server_level(db: str, args: argparse.Namespace) -> dict[str, float | str]:
    (chart, other, banded), compared = populate_charts(
        db, args.chart_points, args.compare_jobs, args.compare_points
    )
    first: list[float] = []
    cold: list[float] = []
    band: list[float] = []
    warm: list[float] = []
    compare: list[float] = []
    how = ""
    rss = 0.0
    export_s = export_rss = 0.0
    for restart in range(args.restarts):
        proc, url = start_server(db, "--no-health")
        try:
            with httpx.Client(base_url=url, timeout=300) as http:
                # The first request of a fresh process also pays for the app's
                # first-use costs; the second job's first chart is the cold read of
                # a series by a warmed-up server.
                first.append(timed(http, chart, args.chart_points))
                cold.append(timed(http, other, args.chart_points))
                band.append(timed_band(http, banded, args.chart_points))
                warm.extend(timed(http, chart, args.chart_points) for _ in range(10))
                seconds, how = compare_seconds(http, compared)
                compare.append(seconds)
                if restart == 0:
                    before = peak_rss_mb(proc.pid)
                    started = time.perf_counter()
                    with http.stream(
                        "GET", f"{API}/training/{chart}/metrics/history", params={"format": "csv"}
                    ) as response:
                        lines = sum(chunk.count(b"\n") for chunk in response.iter_bytes())
                    export_s = time.perf_counter() - started
                    assert lines == args.chart_points + 1, lines
                    export_rss = peak_rss_mb(proc.pid) - before
            rss = max(rss, peak_rss_mb(proc.pid))
        finally:
            proc.terminate()
            proc.wait(30)
    return {
        "first_ms": statistics.median(first) * 1000,
        "cold_ms": statistics.median(cold) * 1000,
        "band_ms": statistics.median(band) * 1000,
        "warm_ms": statistics.median(warm) * 1000,
        "compare_s": statistics.median(compare),
        "compare_how": how,
        "export_s": export_s,
        "export_rss_growth_mb": export_rss,
        "rss_mb": rss,
    }


# ---------------------------------------------------------------------- CSV export


def rss_mb(pid: int) -> float:
    """The current resident set of ``pid`` (``VmRSS``), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def populate_csv(db: str, points: int) -> str:
    """A job of ``points`` rows, one metric, written through the store."""
    store = open_store(db)
    try:
        job = store.create_job(JobCreate(name="csv export")).id
        now = time.time()
        for start in range(0, points, CSV_BATCH):
            steps = range(start, min(start + CSV_BATCH, points))
            values = (2.0 / (1.0 + np.arange(steps.start, steps.stop) / 1e6)).tolist()
            store.write_metrics(
                job,
                [
                    MetricRow(step, {"train_loss": value}, None, now)
                    for step, value in zip(steps, values, strict=True)
                ],
            )
    finally:
        store.close()
    return job


class RssSampler(threading.Thread):
    """Samples a process's ``VmRSS`` every :data:`RSS_EVERY` seconds until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[float] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(RSS_EVERY):
            self.samples.append(rss_mb(self.pid))


def csv_export(db: str, points: int) -> dict[str, float | list[float]]:
    """Stream the CSV export of a ``points``-row job from a fresh server, sampling
    its resident set; the RSS at each quarter of the rows and the peak."""
    job = populate_csv(db, points)
    proc, url = start_server(db, "--no-health")
    try:
        before = rss_mb(proc.pid)
        sampler = RssSampler(proc.pid)
        quarters: list[float] = []
        lines = 0
        started = time.perf_counter()
        with httpx.Client(base_url=url, timeout=600) as http:
            sampler.start()
            with http.stream(
                "GET", f"{API}/training/{job}/metrics/history", params={"format": "csv"}
            ) as response:
                response.raise_for_status()
                for chunk in response.iter_bytes():
                    lines += chunk.count(b"\n")
                    while len(quarters) < 4 and lines > (len(quarters) + 1) * points / 4:
                        quarters.append(rss_mb(proc.pid))
        seconds = time.perf_counter() - started
        sampler.done.set()
        sampler.join()
        assert lines == points + 1, lines
        quarters += [rss_mb(proc.pid)] * (4 - len(quarters))
        peak = max([*sampler.samples, *quarters])
    finally:
        proc.terminate()
        proc.wait(30)
    return {"seconds": seconds, "before_mb": before, "quarters_mb": quarters, "peak_mb": peak}


def print_csv_export(points: int, r: dict[str, float | list[float]]) -> None:
    before, peak, quarters = r["before_mb"], r["peak_mb"], r["quarters_mb"]
    assert isinstance(before, float) and isinstance(peak, float) and isinstance(quarters, list)
    print(f"\nserver (SQLite): full CSV export of a {points:,}-row job, fresh server")
    print(f"export {r['seconds']:.1f} s; RSS before {before:.1f} MB")
    shown = ", ".join(f"{q:.1f}" for q in quarters)
    print(f"RSS at 25/50/75/100 % of the rows: {shown} MB")
    print(f"RSS peak during the export {peak:.1f} MB (growth {peak - before:+.1f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=100_000, help="bench workload steps")
    parser.add_argument("--chart-points", type=int, default=1_000_000)
    parser.add_argument("--compare-jobs", type=int, default=20)
    parser.add_argument("--compare-points", type=int, default=100_000)
    parser.add_argument("--restarts", type=int, default=3, help="cold samples")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-server", action="store_true", help="no chart/compare server run")
    parser.add_argument(
        "--csv-points", type=int, default=0, help="also: the CSV export of a job of N points"
    )
    args = parser.parse_args()
    import trainvis

    print(f"trainvis from {Path(trainvis.__file__).parent}")
    with tempfile.TemporaryDirectory() as tmp:
        raw_ingest, raw_read = raw_sqlite(str(Path(tmp) / "raw.db"), args.steps)
        results = [("sqlite", store_level(str(Path(tmp) / "store.db"), args.steps))]
        if not args.no_postgres:
            with postgres_database(args.postgres) as url:
                results.append(("postgresql", store_level(url, args.steps)))
        server = None if args.no_server else server_level(str(Path(tmp) / "charts.db"), args)
        export = csv_export(str(Path(tmp) / "csv.db"), args.csv_points) if args.csv_points else None
    points = args.steps * len(METRICS)
    print(f"\nbench workload: 1 job × {len(METRICS)} metrics × {args.steps:,} steps = {points:,}")
    print(
        f"raw sqlite3: ingest {raw_ingest:.2f} s, "
        f"{HISTORY_POINTS:,}-point read {raw_read * 1000:.1f} ms"
    )
    header = ("backend", "bytes/point", "ingest s", "ingest ×raw", "history ms", "history ×raw")
    print("{:<12} {:>12} {:>9} {:>12} {:>11} {:>13}".format(*header))
    for name, r in results:
        print(
            f"{name:<12} {r['bytes_per_point']:>12.2f} {r['ingest_s']:>9.2f} "
            f"{raw_ingest / r['ingest_s']:>12.2f} {r['history_s'] * 1000:>11.1f} "
            f"{r['history_s'] / raw_read:>13.2f}"
        )
    print(
        f"{'target':<12} {TARGETS['bytes_per_point']:>12} {'':>9} {TARGETS['ingest_ratio']:>12} "
        f"{'':>11} {TARGETS['history_ratio']:>13}"
    )
    if export is not None:
        print_csv_export(args.csv_points, export)
    if server is None:
        return
    print(
        f"\nserver (SQLite): loss chart smooth=true on {args.chart_points:,} points; compare of "
        f"{args.compare_jobs} jobs × {args.compare_points:,} points ({server['compare_how']}); "
        f"CSV export of {args.chart_points:,} rows"
    )
    print(f"{'figure':<24} {'value':>10} {'target':>16}")
    for key, label, unit in (
        ("first_ms", "first request p50", "ms"),
        ("cold_ms", "cold chart p50", "ms"),
        ("band_ms", "cold band chart p50", "ms"),
        ("warm_ms", "warm chart p50", "ms"),
        ("compare_s", "compare cold p50", "s"),
        ("export_s", "CSV export", "s"),
        ("export_rss_growth_mb", "CSV export RSS growth", "MB"),
        ("rss_mb", "server peak RSS", "MB"),
    ):
        value = server[key]
        assert isinstance(value, float)
        shown = f"{value:.1f} {unit}" if math.isfinite(value) else "n/a"
        print(f"{label:<24} {shown:>10} {TARGETS.get(key, ''):>16}")


if __name__ == "__main__":
    main()
