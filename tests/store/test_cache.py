"""SeriesCache: whole series from memory, kept current through sequence numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trainvis.errors import JobNotFound
from trainvis.models import JobCreate, parse_metric_rows
from trainvis.store import MetricStore, open_store
from trainvis.store.cache import SeriesCache


def write(store: MetricStore, job: str, rows: list[dict]) -> None:
    store.write_metrics(job, parse_metric_rows(rows, max_rows=100_000))


@pytest.fixture
def job(store: MetricStore) -> str:
    job_id = store.create_job(JobCreate(name="c")).id
    write(store, job_id, [{"step": s, "loss": s * 1.0, "epoch": s / 10} for s in range(100)])
    return job_id


def test_read_matches_store(store: MetricStore, job: str) -> None:
    cache = SeriesCache(store)
    got = cache.read(job, ["loss", "nope"], with_time=True)
    assert set(got) == {"loss"}
    expected = store.read_series(job, ["loss"], with_time=True)["loss"]
    np.testing.assert_array_equal(got["loss"].steps, expected.steps)
    np.testing.assert_array_equal(got["loss"].values, expected.values)
    np.testing.assert_array_equal(got["loss"].epochs, expected.epochs)


def test_appends_replacements_and_inserts_are_merged(store: MetricStore, job: str) -> None:
    cache = SeriesCache(store)
    cache.read(job, ["loss"], with_time=True)
    write(store, job, [{"step": 100, "loss": 100.0}, {"step": 101, "loss": "NaN"}])
    write(store, job, [{"step": 5, "loss": -5.0}])
    write(store, job, [{"step": 1000, "other": 1.0}, {"step": 50, "loss": 0.5}])
    series = cache.read(job, ["loss"], with_time=True)["loss"]
    assert series.steps.tolist() == list(range(102))
    assert series.values[5] == -5.0 and series.values[50] == 0.5 and series.values[100] == 100.0
    assert math.isnan(series.values[101])
    assert series.epochs[5] == 0.5  # a re-posted step without epoch keeps it
    fresh = store.read_series(job, ["loss"])["loss"]
    np.testing.assert_array_equal(series.values, fresh.values)


def test_sees_writes_from_another_store_instance(store: MetricStore, job: str, db_url: str) -> None:
    cache = SeriesCache(store)
    cache.read(job, ["loss"])
    other = open_store(db_url)
    try:
        write(other, job, [{"step": 200, "loss": 2.0}])
    finally:
        other.close()
    assert cache.read(job, ["loss"])["loss"].steps[-1] == 200


def test_time_is_loaded_only_when_asked(store: MetricStore, job: str) -> None:
    cache = SeriesCache(store)
    assert cache.read(job, ["loss"])["loss"].epochs is None
    write(store, job, [{"step": 100, "loss": 1.0, "epoch": 10}])
    timed = cache.read(job, ["loss"], with_time=True)["loss"]
    assert timed.epochs is not None and timed.epochs[-1] == 10
    assert timed.steps[-1] == 100


def test_step_range_slices(store: MetricStore, job: str) -> None:
    series = SeriesCache(store).read(job, ["loss"], start_step=10, end_step=19)["loss"]
    assert series.steps.tolist() == list(range(10, 20))


def test_deleted_job_raises_and_is_forgotten(store: MetricStore, job: str) -> None:
    cache = SeriesCache(store)
    cache.read(job, ["loss"])
    store.delete_job(job)
    with pytest.raises(JobNotFound):
        cache.read(job, ["loss"])
    assert cache.cached_points == 0


def test_eviction_keeps_memory_bounded(store: MetricStore, job: str) -> None:
    second = store.create_job(JobCreate(name="d")).id
    write(store, second, [{"step": s, "loss": 1.0} for s in range(100)])
    cache = SeriesCache(store, max_points=150)
    cache.read(job, ["loss"])
    cache.read(second, ["loss"])
    assert cache.cached_points == 100
