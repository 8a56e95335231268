"""Cost of the training-health detectors next to the write they follow.

Writes the simulated demo run (14 metrics a row, 7 watched) to a temp SQLite
store in 1,000-row batches and times ``HealthMonitor.observe`` on each batch.

    python benchmarks/health.py [--steps 20000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from trainvis.demo import simulate
from trainvis.health.detectors import DetectorConfig
from trainvis.health.monitor import HealthMonitor
from trainvis.models import JobCreate, JobStatus, parse_metric_rows
from trainvis.store import open_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(str(Path(tmp) / "health.db"))
        job = store.create_job(JobCreate(name="health-bench")).id
        store.set_status(job, JobStatus.RUNNING)
        monitor = HealthMonitor(store, DetectorConfig())
        rows = parse_metric_rows(list(simulate(args.steps, seed=9)), max_rows=10**7)
        observe, write = [], []
        for start in range(0, len(rows), 1000):
            part = rows[start : start + 1000]
            began = time.perf_counter()
            store.write_metrics(job, part)
            middle = time.perf_counter()
            monitor.observe(job, part)
            write.append(middle - began)
            observe.append(time.perf_counter() - middle)
        store.close()
    detectors, writes = statistics.median(observe) * 1e3, statistics.median(write) * 1e3
    print(f"\n{'per 1,000-row batch':<22} {'median ms':>10}")
    print(f"{'write (SQLite)':<22} {writes:>10.2f}")
    print(f"{'health detectors':<22} {detectors:>10.2f}")
    print(f"{'detectors / write':<22} {detectors / writes:>10.1%}")


if __name__ == "__main__":
    main()
