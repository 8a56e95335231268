"""One-point write latency on jobs with many metric names (issue 13).

A job first gets N distinct metric names (one row); then one-point rows are
posted one request at a time, alternately to a known metric and to a new one
(only while the job has room under ``max_metrics_per_job``), against a real
`trainvis serve`. The per-job metric limit is checked inside the write
transaction on the batch's new names only, so the latency should not grow
with N (it was 139 ms per write at 10,000 names when every write loaded all
names).

    python benchmarks/many_metrics.py                 # SQLite in a temp dir
    python benchmarks/many_metrics.py --db postgresql://postgres@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from ingest import API, start_server  # noqa: E402


def measure(url: str, names: int, writes: int) -> tuple[float, float]:
    """Median and p95 milliseconds of one-point writes on a job with ``names`` metrics."""
    with httpx.Client(base_url=url, timeout=60) as http:
        job = http.post(f"{API}/training/jobs", json={"name": f"m{names}"}).json()["data"]["id"]
        first = {"step": 0, **{f"metric_{i}": 1.0 for i in range(names - 1)}}
        http.post(f"{API}/training/{job}/metrics", json=first).raise_for_status()
        times: list[float] = []
        for step in range(1, writes + 1):
            name = "metric_0" if step % 2 or names > 9_000 else f"new_{step}"
            started = time.perf_counter()
            response = http.post(f"{API}/training/{job}/metrics", json={"step": step, name: 0.5})
            times.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
        times.sort()
        return statistics.median(times), times[int(len(times) * 0.95) - 1]


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="database URL (default: SQLite in a temp dir)")
    parser.add_argument("--writes", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or str(Path(tmp) / "bench.db")
        proc, url = start_server(db)
        try:
            print(f"store: {'PostgreSQL' if db.startswith('postgres') else 'SQLite'}")
            print(f"{'metric names':>12}  {'median ms':>9}  {'p95 ms':>7}")
            for names in (10, 1_000, 10_000):
                median, p95 = measure(url, names, args.writes)
                print(f"{names:>12,}  {median:>9.2f}  {p95:>7.2f}")
        finally:
            proc.terminate()
            proc.wait(15)


if __name__ == "__main__":
    main()
