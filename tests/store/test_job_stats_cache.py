"""The cache of a job's derived statistics never serves a stale state.

Each store keeps the summary, metric names and point count it derived for a
job, keyed by ``(pk, id, created_at, last_seq)``; these tests change the job
behind it — through a second store on the same database (another replica), by
re-posting a step, by deleting and creating the job again — and check every
read still matches what is stored.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from trainvis.models import JobCreate, MetricRow
from trainvis.store import MetricStore, open_store
from trainvis.store.common import MetricStats
from trainvis.store.sql_jobs import JobStats, JobStatsCache


@pytest.fixture
def replica(db_url: str) -> Iterator[MetricStore]:
    other = open_store(db_url)
    try:
        yield other
    finally:
        other.close()


def test_a_write_through_another_replica_shows_in_the_next_read(
    store: MetricStore, replica: MetricStore
) -> None:
    job = store.create_job(JobCreate(name="wide", id="job-wide"))
    store.write_metrics(job.id, [MetricRow(step=1, values={"train_loss": 2.0, "acc": 0.5})])
    first = store.get_job(job.id)
    assert store.get_job(job.id).summary == first.summary  # served again
    replica.write_metrics(job.id, [MetricRow(step=2, values={"train_loss": 1.0, "f1": 0.3})])
    after = store.get_job(job.id)
    assert after.metric_names == ["acc", "f1", "train_loss"]
    assert after.point_count == 4
    assert after.summary["last"]["train_loss"] == 1.0
    assert after.summary["best"]["train_loss"] == {"value": 1.0, "step": 2}
    listed, _ = store.list_jobs(stats=["train_loss"])
    assert listed[0].stats == {
        "train_loss": {
            "last": 1.0,
            "min": 1.0,
            "max": 2.0,
            "best": 1.0,
            "best_step": 2,
            "count": 2,
        }
    }


def test_a_reposted_step_that_was_the_best_is_read_again(store: MetricStore) -> None:
    job = store.create_job(JobCreate(name="repost"))
    store.write_metrics(job.id, [MetricRow(step=s, values={"val_loss": 1.0 / s}) for s in (1, 2)])
    assert store.get_job(job.id).summary["best"]["val_loss"] == {"value": 0.5, "step": 2}
    store.write_metrics(job.id, [MetricRow(step=2, values={"val_loss": 3.0})])
    assert store.get_job(job.id).summary["best"]["val_loss"] == {"value": 1.0, "step": 1}


def test_a_job_deleted_and_created_again_starts_empty(store: MetricStore) -> None:
    job = store.create_job(JobCreate(name="first", id="job-again"))
    store.write_metrics(job.id, [MetricRow(step=1, values={"loss": 1.0})])
    assert store.get_job(job.id).metric_names == ["loss"]
    store.delete_job(job.id)
    again = store.create_job(JobCreate(name="second", id="job-again"))
    assert (again.metric_names, again.point_count, again.summary["last"]) == ([], 0, {})
    other = store.create_job(JobCreate(name="other"))  # may take the freed pk on SQLite
    assert store.get_job(other.id).metric_names == []


def test_a_caller_changing_its_summary_does_not_change_the_next_read(
    store: MetricStore,
) -> None:
    job = store.create_job(JobCreate(name="mutable"))
    store.write_metrics(job.id, [MetricRow(step=1, values={"a_loss": 1.0, "b_loss": 2.0})])
    read = store.get_job(job.id)
    read.summary["last"].clear()
    read.metric_names.clear()
    again = store.get_job(job.id)
    assert again.summary["last"] == {"a_loss": 1.0, "b_loss": 2.0}
    assert again.metric_names == ["a_loss", "b_loss"]


def test_the_cache_holds_at_most_its_metrics_least_recent_out_first() -> None:
    cache = JobStatsCache(max_metrics=5)
    entry = JobStats.of({f"m{i}": MetricStats(count=1) for i in range(2)})
    for pk in range(3):
        cache.put((pk, f"job-{pk}", 0.0, 1), entry)
    assert cache.get((0, "job-0", 0.0, 1)) is None  # 6 metrics > 5: the oldest left
    assert cache.get((2, "job-2", 0.0, 1)) is entry
    cache.put((9, "job-9", 0.0, 1), JobStats.of({f"m{i}": MetricStats() for i in range(6)}))
    assert cache.get((9, "job-9", 0.0, 1)) is None  # larger than the whole cache
