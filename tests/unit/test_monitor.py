"""The health monitor: detectors applied to committed writes, findings stored as events."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.healthy_runs import healthy_run
from trainvis.config import Settings
from trainvis.demo import simulate
from trainvis.events import EventKind, JobEvent, Severity
from trainvis.health.detectors import DetectorConfig
from trainvis.health.monitor import HealthMonitor, detector_config
from trainvis.models import JobCreate, JobStatus, MetricRow, parse_metric_rows
from trainvis.store import open_store
from trainvis.store.base import MetricStore


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[MetricStore]:
    store = open_store(str(tmp_path / "health.db"))
    yield store
    store.close()


def new_job(store: MetricStore, *, running: bool = True) -> str:
    job = store.create_job(JobCreate(name="health")).id
    if running:
        store.set_status(job, JobStatus.RUNNING)
    return job


def ingest(
    store: MetricStore, monitor: HealthMonitor, job: str, rows: list[MetricRow], batch: int
) -> list[JobEvent]:
    """Write and observe like the ingest route does, ``batch`` rows per request."""
    found: list[JobEvent] = []
    for start in range(0, len(rows), batch):
        part = rows[start : start + batch]
        store.write_metrics(job, part)
        found += monitor.observe(job, part)
    return found


def parsed(raw: list[dict[str, object]]) -> list[MetricRow]:
    return parse_metric_rows(raw, max_rows=1_000_000)


def test_the_demo_run_reports_only_its_spike(sqlite_store: MetricStore) -> None:
    monitor = HealthMonitor(sqlite_store, DetectorConfig())
    job = new_job(sqlite_store)
    found = ingest(sqlite_store, monitor, job, parsed(list(simulate(3000, seed=4))), 250)
    assert [(event.kind, event.metric, event.step) for event in found] == [
        (EventKind.SPIKE, "train_loss", 1350)
    ]
    stored, total = sqlite_store.list_events(job)
    assert total == 1 and stored == found
    assert sqlite_store.get_job(job).alerts == {"info": 0, "warning": 1, "critical": 0}


@pytest.mark.parametrize("seed", range(20))
def test_healthy_runs_store_nothing(sqlite_store: MetricStore, seed: int) -> None:
    monitor = HealthMonitor(sqlite_store, DetectorConfig())
    job = new_job(sqlite_store)
    assert ingest(sqlite_store, monitor, job, parsed(healthy_run(seed)), 500) == []


def test_the_first_non_finite_value_of_each_metric_is_reported_once(
    sqlite_store: MetricStore,
) -> None:
    job = new_job(sqlite_store)
    rows = [
        MetricRow(step=s, values={"train_loss": 1.0 / (s + 1), "grad_norm": 2.0}) for s in range(50)
    ]
    rows[20].values["train_loss"] = float("nan")
    rows[30].values["grad_norm"] = float("inf")
    rows[40].values["train_loss"] = float("-inf")
    found = ingest(sqlite_store, HealthMonitor(sqlite_store, DetectorConfig()), job, rows, 10)
    assert [(e.kind, e.metric, e.step, e.to_wire()["value"]) for e in found] == [
        (EventKind.NONFINITE, "train_loss", 20, "NaN"),
        (EventKind.NONFINITE, "grad_norm", 30, "Infinity"),
    ]
    assert found[0].severity is Severity.CRITICAL
    assert found[0].message == "train_loss is NaN at step 20 (its first non-finite value)"
    # A restarted server (fresh monitor state) does not report the metric again.
    later = [MetricRow(step=60, values={"train_loss": float("nan")})]
    assert ingest(sqlite_store, HealthMonitor(sqlite_store, DetectorConfig()), job, later, 1) == []


def test_event_timestamps_are_the_rows(sqlite_store: MetricStore) -> None:
    job = new_job(sqlite_store)
    rows = [MetricRow(step=1, values={"loss": float("nan")}, timestamp=1_700_000_000.0)]
    [event] = ingest(sqlite_store, HealthMonitor(sqlite_store, DetectorConfig()), job, rows, 1)
    assert event.timestamp == 1_700_000_000.0


def gpu_rows(count: int, start: float = 1_700_000_000.0) -> list[MetricRow]:
    """Two GPUs, busy for 100 s, then both idle (one reading a second)."""
    rows = []
    for step in range(count):
        busy = step < 100
        rows.append(
            MetricRow(
                step=step,
                values={
                    "gpu_utilization": 90.0 if busy else 1.0,
                    "gpu0.utilization": 92.0 if busy else 2.0,
                    "gpu1.utilization": 88.0 if busy else 0.0,
                },
                timestamp=start + step,
            )
        )
    return rows


def test_idle_gpus_of_a_running_job_make_one_alert(sqlite_store: MetricStore) -> None:
    job = new_job(sqlite_store)
    found = ingest(
        sqlite_store, HealthMonitor(sqlite_store, DetectorConfig()), job, gpu_rows(600), 50
    )
    assert [(event.kind, event.step) for event in found] == [(EventKind.GPU_IDLE, 400)]
    assert found[0].severity is Severity.WARNING


def test_idle_gpus_of_a_job_that_is_not_running_make_no_alert(sqlite_store: MetricStore) -> None:
    job = new_job(sqlite_store, running=False)
    sqlite_store.set_status(job, JobStatus.PAUSED)  # a pending job's first rows start it
    monitor = HealthMonitor(sqlite_store, DetectorConfig())
    assert ingest(sqlite_store, monitor, job, gpu_rows(600), 50) == []


def test_settings_reach_the_detectors() -> None:
    config = detector_config(Settings(health_spike_z=5.0, health_gpu_idle_seconds=60.0))
    assert config.spike_z == 5.0 and config.gpu_idle_seconds == 60.0
    assert config.plateau_window == DetectorConfig().plateau_window


def test_a_failing_store_never_fails_the_write(
    sqlite_store: MetricStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    job = new_job(sqlite_store)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(sqlite_store, "add_event", broken)
    monitor = HealthMonitor(sqlite_store, DetectorConfig())
    with caplog.at_level(logging.ERROR, logger="trainvis.health"):
        assert monitor.observe(job, [MetricRow(step=1, values={"loss": float("nan")})]) == []
    assert "health detectors failed" in caplog.text
    assert monitor.observe("ghost", [MetricRow(step=1, values={"loss": 1.0})]) == []
