"""A wide job: 10,000 metric names. Time and size of its overview charts and dashboard JSON.

One job gets ``--metrics`` names (default 10,000, the per-job limit) over
``--steps`` steps, posted through a real `trainvis serve`. Then, for each
server build, ``GET /training/{id}/metrics/chart`` and ``GET
/dashboard/job/{id}?format=json`` are timed (the first request, then the
median of ``--reads`` more) and their body sizes printed. Before issue 16 the
metrics chart drew every metric (70.8 MB, 7 s); now it draws the first 20 and
``meta.metrics_omitted`` counts the rest.

``--before SRC`` also runs a server from another checkout's ``src`` (for
example the main branch) on the same database, for a before/after table.

    python benchmarks/wide_job.py                                   # SQLite, this checkout
    python benchmarks/wide_job.py --before ../main/src              # and the other code
    python benchmarks/wide_job.py --pg postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).parent))
from ingest import API, free_port, pg_database  # noqa: E402

HERE_SRC = Path(__file__).resolve().parent.parent / "src"


@contextmanager
def server(db: str, src: Path) -> Iterator[str]:
    """`trainvis serve` with ``src`` first on the import path; yields its URL."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(src)}
    cmd = [sys.executable, "-m", "trainvis", "serve", "--db", db, "--port", str(port)]
    proc = subprocess.Popen([*cmd, "--log-level", "warning"], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(url + "/openapi.json", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise SystemExit("server did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def ingest(url: str, metrics: int, steps: int) -> str:
    """Create the wide job and post its rows (a few steps per request); its id."""
    names = [f"layer{i // 100:03d}/param{i % 100:02d}.grad_norm" for i in range(metrics)]
    with httpx.Client(base_url=url, timeout=600) as http:
        job = http.post(f"{API}/training/jobs", json={"name": "wide"}).json()["data"]["id"]
        per_request = max(1, 100_000 // metrics)
        for start in range(0, steps, per_request):
            rows = [
                {"step": s, **{name: (i + s) % 97 / 97 for i, name in enumerate(names)}}
                for s in range(start, min(steps, start + per_request))
            ]
            body = orjson.dumps(rows)
            response = http.post(
                f"{API}/training/{job}/metrics",
                content=body,
                headers={"Content-Type": "application/json"},
            )
            response.raise_for_status()
    return str(job)


def measure(url: str, path: str, reads: int) -> tuple[float, float, float]:
    """First-request ms, median ms of ``reads`` more, and body MB."""
    times: list[float] = []
    size = 0
    with httpx.Client(base_url=url, timeout=600) as http:
        for _ in range(reads + 1):
            started = time.perf_counter()
            response = http.get(path, headers={"Accept": "application/json"})
            times.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
            size = len(response.content)
    return times[0], statistics.median(times[1:]), size / 1e6


def run(store: str, db: str, args: argparse.Namespace) -> None:
    with server(db, HERE_SRC) as url:
        started = time.perf_counter()
        job = ingest(url, args.metrics, args.steps)
        took = time.perf_counter() - started
        print(f"# {store}: ingested {args.metrics:,} metrics × {args.steps} steps in {took:.0f} s")
    builds = (
        [("before", Path(args.before)), ("after", HERE_SRC)]
        if args.before
        else [("after", HERE_SRC)]
    )
    paths = {
        "metrics/chart": f"{API}/training/{job}/metrics/chart",
        "dashboard JSON": f"{API}/dashboard/job/{job}?format=json",
    }
    for build, src in builds:
        with server(db, src) as url:
            for label, path in paths.items():
                first, warm, mb = measure(url, path, args.reads)
                print(f"{store:<10} {build:<7} {label:<15} {first:>9.0f} {warm:>9.0f} {mb:>9.3f}")


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--reads", type=int, default=3)
    parser.add_argument("--before", help="another checkout's src directory to compare with")
    parser.add_argument("--pg", help="PostgreSQL admin URL: also run on a fresh database there")
    args = parser.parse_args()
    print(f"{'store':<10} {'code':<7} {'endpoint':<15} {'first ms':>9} {'warm ms':>9} {'MB':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        run("SQLite", str(Path(tmp) / "wide.db"), args)
    if args.pg:
        with pg_database(args.pg) as url:
            run("PostgreSQL", url, args)


if __name__ == "__main__":
    main()
