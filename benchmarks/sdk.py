"""SDK benchmark: the cost of ``run.log`` and end-to-end rows/s to a local server.

Usage::

    .venv/bin/python benchmarks/sdk.py [--rows 200000] [--metrics 10] [--url URL]

Without ``--url`` it starts ``python -m trainvis serve`` on a temporary SQLite
file and a free port. Two measurements:

1. per-call cost of ``run.log`` with ``--metrics`` metrics, timed call by call
   (p50/p99/mean, µs) while the sender thread is delivering in the background;
2. end to end: rows logged as fast as possible, then ``finish()``; rows/s is
   rows divided by the time from the first ``log`` until ``finish`` returns
   with every row acknowledged by the server.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

import trainvis

API = "/api/v1/visualization"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(db: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainvis", "serve", "--db", db, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/openapi.json", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not start")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def bench_log_cost(url: str, calls: int, metrics: int) -> dict[str, float]:
    names = [f"metric_{index}" for index in range(metrics)]
    run = trainvis.init(name="bench-log-cost", url=url, monitor_gpu=False)
    samples: list[float] = []
    clock = time.perf_counter_ns
    for step in range(calls):
        values = {name: step * 0.001 + index for index, name in enumerate(names)}
        started = clock()
        run.log(values, step=step)
        samples.append((clock() - started) / 1000)
    left = run.finish(timeout=120)
    assert left == 0, f"{left} rows not delivered"
    return {
        "p50": percentile(samples, 0.50),
        "p99": percentile(samples, 0.99),
        "mean": statistics.fmean(samples),
    }


def bench_throughput(url: str, rows: int, metrics: int) -> dict[str, float]:
    names = [f"metric_{index}" for index in range(metrics)]
    batches = [{name: 0.5 + index for index, name in enumerate(names)} for _ in range(16)]
    run = trainvis.init(name="bench-throughput", url=url, monitor_gpu=False)
    started = time.perf_counter()
    for step in range(rows):
        run.log(batches[step & 15], step=step)
    logged = time.perf_counter() - started
    left = run.finish(timeout=600)
    elapsed = time.perf_counter() - started
    assert left == 0, f"{left} rows not delivered"
    job = httpx.get(f"{url}{API}/training/jobs/{run.id}", timeout=30).json()["data"]
    assert job["point_count"] == rows * metrics, job["point_count"]
    return {"rows_per_s": rows / elapsed, "log_loop_s": logged, "total_s": elapsed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows for the end-to-end run")
    parser.add_argument("--calls", type=int, default=100_000, help="timed log() calls")
    parser.add_argument("--metrics", type=int, default=10, help="metrics per row")
    parser.add_argument("--url", help="an existing server root (default: start one)")
    args = parser.parse_args()
    os.environ.setdefault("TRAINVIS_SPOOL_DIR", tempfile.mkdtemp(prefix="trainvis-spool-"))
    with tempfile.TemporaryDirectory() as tmp:
        proc = None
        url = args.url
        if url is None:
            proc, url = start_server(str(Path(tmp) / "bench.db"))
        try:
            cost = bench_log_cost(url, args.calls, args.metrics)
            flow = bench_throughput(url, args.rows, args.metrics)
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(30)
    python = sys.version.split()[0]
    print(f"\nSDK benchmark ({args.metrics} metrics per row, server {url}, Python {python})")
    print(f"{'measurement':<44} {'value':>12}")
    print("-" * 57)
    print(f"{'run.log() p50 (µs)':<44} {cost['p50']:>12.2f}")
    print(f"{'run.log() p99 (µs)':<44} {cost['p99']:>12.2f}")
    print(f"{'run.log() mean (µs)':<44} {cost['mean']:>12.2f}")
    print(
        f"{'end-to-end rows/s (' + format(args.rows, ',') + ' rows, acked)':<44} "
        f"{flow['rows_per_s']:>12,.0f}"
    )
    print(f"{'  time in the log() loop (s)':<44} {flow['log_loop_s']:>12.2f}")
    print(f"{'  until finish() returned (s)':<44} {flow['total_s']:>12.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
