"""Ingest and history benchmark against a real `trainvis serve` process.

W1: 1,000,000 points (10 metrics × 100,000 steps) posted as 1,000-row batches
    over one keep-alive HTTP connection; points/second end to end (request
    bodies are serialized before the clock starts: that cost is the client's).
W2: the full history of one metric (100,000 points) as JSON; seconds: the first
    read after ingest ("cold") and the median of the following ones.
RSS: the server's peak resident set (VmHWM).

    python benchmarks/ingest.py                      # SQLite in a temp dir
    python benchmarks/ingest.py --db postgresql://postgres@127.0.0.1:5432/bench
    python benchmarks/ingest.py --steps 20000        # a quicker run
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
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import orjson

API = "/api/v1/visualization"
METRICS = [f"metric_{i}" for i in range(8)] + ["train_loss", "val_loss"]


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0–1) of ``values``: the nearest rank, no interpolation."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


@contextmanager
def pg_database(admin_url: str) -> Iterator[str]:
    """A fresh database on the server of ``admin_url`` (its URL), dropped afterwards."""
    import psycopg

    name = f"trainvis_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(db: str, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trainvis",
            "serve",
            "--db",
            db,
            "--port",
            str(port),
            "--log-level",
            "warning",
            *extra,
        ],
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(url + "/openapi.json", timeout=1)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def batches(steps: int, batch: int) -> list[bytes]:
    """Training-shaped values: each metric decays towards a floor, with noise."""
    rng = np.random.default_rng(7)
    curves = [
        (0.1 + i)
        * (0.2 + 2.0 * np.exp(-np.arange(steps) / (20_000 + 3_000 * i)))
        * (1 + 0.05 * rng.standard_normal(steps))
        for i in range(len(METRICS))
    ]
    columns = [curve.tolist() for curve in curves]
    bodies = []
    for start in range(0, steps, batch):
        rows = [
            {"step": s, "epoch": s / 1000, **{m: columns[i][s] for i, m in enumerate(METRICS)}}
            for s in range(start, min(start + batch, steps))
        ]
        bodies.append(orjson.dumps(rows))
    return bodies


def run(db: str, steps: int, batch: int, reads: int, *extra: str) -> dict[str, float]:
    proc, url = start_server(db, *extra)
    try:
        with httpx.Client(base_url=url, timeout=120) as http:
            job = http.post(f"{API}/training/jobs", json={"name": "bench"}).json()["data"]["id"]
            bodies = batches(steps, batch)
            headers = {"Content-Type": "application/json"}
            started = time.perf_counter()
            for body in bodies:
                response = http.post(f"{API}/training/{job}/metrics", content=body, headers=headers)
                response.raise_for_status()
            w1 = time.perf_counter() - started
            points = steps * len(METRICS)
            timings = []
            for _ in range(reads):
                started = time.perf_counter()
                response = http.get(
                    f"{API}/training/{job}/metrics/history", params={"metrics": "train_loss"}
                )
                timings.append(time.perf_counter() - started)  # whole body received
                response.raise_for_status()
                assert len(orjson.loads(response.content)["data"]) == steps
            return {
                "points": points,
                "w1_seconds": w1,
                "w1_points_per_s": points / w1,
                "w2_cold": timings[0],
                "w2_seconds": statistics.median(timings[1:] or timings),
                "rss_mb": peak_rss_mb(proc.pid),
            }
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--db", action="append", help="database URL or path (repeatable); default: temp SQLite"
    )
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--reads", type=int, default=5, help="W2 repetitions (median reported)")
    parser.add_argument(
        "--no-health", action="store_true", help="serve with the health detectors off"
    )
    args = parser.parse_args()
    extra = ["--no-health"] if args.no_health else []
    with tempfile.TemporaryDirectory() as tmp:
        targets = args.db or [os.path.join(tmp, "bench.db")]
        results = [(db, run(db, args.steps, args.batch, args.reads, *extra)) for db in targets]
    print(f"\nhealth detectors: {'off' if args.no_health else 'on'}")
    header = ("backend", "points", "W1 s", "W1 points/s", "W2 cold s", "W2 s", "peak RSS MB")
    print("{:<12} {:>10} {:>8} {:>13} {:>10} {:>8} {:>12}".format(*header))
    for db, r in results:
        backend = "postgresql" if db.startswith("postgres") else "sqlite"
        print(
            f"{backend:<12} {r['points']:>10,.0f} {r['w1_seconds']:>8.2f} "
            f"{r['w1_points_per_s']:>13,.0f} {r['w2_cold']:>10.3f} {r['w2_seconds']:>8.3f} "
            f"{r['rss_mb']:>12.0f}"
        )


if __name__ == "__main__":
    main()
