"""Compare latency: one metric of 20 runs x 100,000 steps, against a real `trainvis serve`.

Each run has 100,000 `train_loss` points with one spike at a step of its own.
The requests are `GET /training/compare?jobs=<20 ids>&metric=train_loss`, plain
and with `smooth=true`. "cold" is the first request after a server (re)start
(every series read from the database); "warm" are the following ones (series
served from the in-memory cache, refreshed by sequence number, and each run's
downsampled part from the compare memo); "new opts" are warm requests whose
options change every time (another `max_points`: the memo cannot answer, the
series cache does). Each response is checked to hold 20 runs and every run's
spike. Targets (issue 16): cold <= 1 s, warm <= 100 ms.

    python benchmarks/compare.py [--runs 20] [--steps 100000] [--requests 20] [--db URL]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).parent))
from ingest import API, pct, start_server  # noqa: E402

BATCH = 10_000
SPIKE = 50.0
QUERIES: dict[str, dict[str, Any]] = {
    "plain": {},
    "smooth=true": {"smooth": "true", "smooth_factor": 0.1},
}


def spike_step(run: int, steps: int) -> int:
    return (run * 7_919 + 4_999) % steps


def loss(run: int, step: int) -> float:
    return (1.0 + run / 20) * math.exp(-step / 40_000) + 0.02 * math.sin(step / 30 + run)


def populate(url: str, runs: int, steps: int) -> list[str]:
    """``runs`` jobs of ``steps`` train_loss points each; their ids."""
    ids = []
    headers = {"Content-Type": "application/json"}
    with httpx.Client(base_url=url, timeout=120) as http:
        for run in range(runs):
            body = {"name": f"run-{run}", "config": {"lr": 10 ** -(run % 4 + 2)}}
            job = http.post(f"{API}/training/jobs", json=body).json()["data"]["id"]
            spike = spike_step(run, steps)
            for start in range(0, steps, BATCH):
                rows = [
                    {"step": s, "train_loss": SPIKE if s == spike else loss(run, s)}
                    for s in range(start, min(start + BATCH, steps))
                ]
                http.post(
                    f"{API}/training/{job}/metrics", content=orjson.dumps(rows), headers=headers
                ).raise_for_status()
            ids.append(str(job))
    return ids


def timed(http: httpx.Client, ids: list[str], steps: int, params: dict[str, Any]) -> float:
    """Seconds for one compare request (the body is checked)."""
    query = {"jobs": ",".join(ids), "metric": "train_loss", **params}
    started = time.perf_counter()
    response = http.get(f"{API}/training/compare", params=query)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    raw = [d for d in response.json()["data"]["data"]["datasets"] if d["role"] == "raw"]
    assert [d["job_id"] for d in raw] == ids
    for run, dataset in enumerate(raw):
        kept = {p["x"] for p in dataset["data"] if p["y"] == SPIKE}
        assert kept == {spike_step(run, steps)}, f"run {run}: spike lost"
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--db", help="database URL (default: SQLite in a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or str(Path(tmp) / "compare.db")
        proc, url = start_server(db)
        try:
            ids = populate(url, args.runs, args.steps)
        finally:
            proc.terminate()
            proc.wait(30)
        times: dict[tuple[str, str], list[float]] = {}
        for name, params in QUERIES.items():
            for _ in range(args.restarts):  # each restart: one cold sample
                proc, url = start_server(db)
                try:
                    with httpx.Client(base_url=url, timeout=120) as http:
                        cold = timed(http, ids, args.steps, params)
                        times.setdefault((name, "cold"), []).append(cold)
                        warm = [timed(http, ids, args.steps, params) for _ in range(args.requests)]
                        times.setdefault((name, "warm"), []).extend(warm)
                        fresh = [
                            timed(http, ids, args.steps, {**params, "max_points": 1500 + i})
                            for i in range(args.requests)
                        ]
                        times.setdefault((name, "new opts"), []).extend(fresh)
                finally:
                    proc.terminate()
                    proc.wait(30)
    store = "PostgreSQL" if db.startswith("postgres") else "SQLite"
    print(f"\ncompare, {args.runs} runs x {args.steps:,} steps of train_loss ({store})")
    print(f"{'query':<12} {'':<8} {'n':>4} {'p50 ms':>8} {'p95 ms':>8} {'target ms':>9}")
    for (name, kind), values in times.items():
        p50, p95 = statistics.median(values) * 1000, pct(values, 0.95) * 1000
        target = 1000 if kind == "cold" else 100
        print(f"{name:<12} {kind:<8} {len(values):>4} {p50:>8.1f} {p95:>8.1f} {target:>9}")


if __name__ == "__main__":
    main()
