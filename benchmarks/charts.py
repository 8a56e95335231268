"""Loss-chart latency on a 1,000,000-point job, against a real `trainvis serve`.

The job has 1,000,000 train_loss points (with spikes) and 10,000 val_loss
points. The request is the seed's: `/loss?smooth=true&smooth_factor=0.1`.
"cold" is the first request after a server (re)start (series read from the
database); "warm" are the following ones (series served from the in-memory
cache, refreshed by sequence number). Each response is checked to contain
every spike.

    python benchmarks/charts.py [--points 1000000] [--requests 20] [--db URL]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).parent))
from ingest import API, pct, start_server  # noqa: E402

SPIKES = (123_457, 500_001, 876_543)


def loss(step: int) -> float:
    if step % 1_000_000 in SPIKES:
        return 25.0
    return 2.0 * math.exp(-step / 300_000) + 0.05 * math.sin(step / 50)


def populate(url: str, points: int) -> str:
    with httpx.Client(base_url=url, timeout=120) as http:
        job = http.post(f"{API}/training/jobs", json={"name": "chart-bench"}).json()["data"]["id"]
        headers = {"Content-Type": "application/json"}
        for start in range(0, points, 10_000):
            rows = [
                {"step": s, "train_loss": loss(s)}
                for s in range(start, min(start + 10_000, points))
            ]
            for row in rows:
                if row["step"] % 100 == 0:
                    row["val_loss"] = loss(row["step"]) * 1.1
            http.post(
                f"{API}/training/{job}/metrics", content=orjson.dumps(rows), headers=headers
            ).raise_for_status()
    return str(job)


def timed(http: httpx.Client, job: str, points: int) -> float:
    started = time.perf_counter()
    response = http.get(
        f"{API}/training/{job}/loss", params={"smooth": "true", "smooth_factor": 0.1}
    )
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    raw = next(d for d in response.json()["data"]["data"]["datasets"] if d["label"] == "Train Loss")
    steps = {p["x"] for p in raw["data"] if p["y"] == 25.0}
    expected = {s for s in SPIKES if s < points}
    assert steps == expected, f"spikes lost: {expected - steps}"
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--db")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or str(Path(tmp) / "charts.db")
        proc, url = start_server(db)
        try:
            job = populate(url, args.points)
        finally:
            proc.terminate()
            proc.wait(30)
        cold: list[float] = []
        warm: list[float] = []
        for _ in range(3):  # three restarts: three cold samples
            proc, url = start_server(db)
            try:
                with httpx.Client(base_url=url, timeout=120) as http:
                    cold.append(timed(http, job, args.points))
                    warm.extend(timed(http, job, args.points) for _ in range(args.requests))
            finally:
                proc.terminate()
                proc.wait(30)
    print(f"\nloss chart, smooth=true, {args.points:,} train_loss points (+ val_loss)")
    print(f"{'':<6} {'n':>4} {'p50 ms':>8} {'p95 ms':>8}")
    for name, values in (("cold", cold), ("warm", warm)):
        p50, p95 = statistics.median(values) * 1000, pct(values, 0.95) * 1000
        print(f"{name:<6} {len(values):>4} {p50:>8.1f} {p95:>8.1f}")


if __name__ == "__main__":
    main()
