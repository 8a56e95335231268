"""Job events in the store: one suite over every backend (issue 10)."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest

from trainvis.errors import JobNotFound
from trainvis.events import EventKind, NewEvent, Severity
from trainvis.models import JobCreate, MetricRow
from trainvis.store import open_store
from trainvis.store.base import MetricStore


def new_job(store: MetricStore, name: str = "events") -> str:
    return store.create_job(JobCreate(name=name)).id


def note(step: int, message: str = "note", **kwargs: object) -> NewEvent:
    return NewEvent(kind=EventKind.NOTE, step=step, message=message, **kwargs)  # type: ignore[arg-type]


def test_add_and_list_events_newest_first_or_by_step(store: MetricStore) -> None:
    job = new_job(store)
    first = store.add_event(job, note(300, "late step, added first", timestamp=1_700_000_000.5))
    second = store.add_event(
        job,
        NewEvent(
            kind=EventKind.SPIKE,
            step=100,
            message="train_loss spiked",
            severity=Severity.WARNING,
            metric="train_loss",
            value=3.5,
        ),
    )
    assert first is not None and second is not None and second.id > first.id
    assert first.to_wire() == {
        "id": first.id,
        "job_id": job,
        "kind": "note",
        "metric": None,
        "step": 300,
        "value": None,
        "message": "late step, added first",
        "severity": "info",
        "timestamp": "2023-11-14T22:13:20.500Z",
    }
    newest, total = store.list_events(job)
    assert total == 2 and [event.id for event in newest] == [second.id, first.id]
    by_step, _ = store.list_events(job, order="step")
    assert [event.step for event in by_step] == [100, 300]
    assert by_step[0] == second


def test_filters_and_pages(store: MetricStore) -> None:
    job = new_job(store)
    for step in range(10):
        kind = EventKind.NOTE if step % 2 else EventKind.PLATEAU
        store.add_event(job, NewEvent(kind=kind, step=step * 10, message=f"e{step}"))
    notes, total = store.list_events(job, kind=EventKind.NOTE)
    assert total == 5 and {event.kind for event in notes} == {EventKind.NOTE}
    ranged, total = store.list_events(job, order="step", start_step=20, end_step=50)
    assert total == 4 and [event.step for event in ranged] == [20, 30, 40, 50]
    page, total = store.list_events(job, order="step", limit=3, offset=3)
    assert total == 10 and [event.step for event in page] == [30, 40, 50]


def test_non_finite_values_are_kept(store: MetricStore) -> None:
    job = new_job(store)
    for value in (math.nan, math.inf, -math.inf, 0.25):
        store.add_event(job, NewEvent(kind=EventKind.NONFINITE, step=1, message="x", value=value))
    events, _ = store.list_events(job, order="step")
    wire = [event.to_wire()["value"] for event in events]
    assert wire == ["NaN", "Infinity", "-Infinity", 0.25]


def test_a_dedupe_key_is_stored_once(store: MetricStore) -> None:
    job, other = new_job(store), new_job(store, "other")
    event = NewEvent(kind=EventKind.NONFINITE, step=5, message="NaN", dedupe="nonfinite:loss")
    assert store.add_event(job, event) is not None
    assert store.add_event(job, event) is None
    assert store.add_event(other, event) is not None  # keys are per job
    assert store.add_event(job, note(5)) is not None and store.add_event(job, note(5)) is not None
    assert store.list_events(job)[1] == 3


def test_job_alert_counts_by_severity(store: MetricStore) -> None:
    job, quiet = new_job(store), new_job(store, "quiet")
    for severity in (Severity.WARNING, Severity.WARNING, Severity.CRITICAL, Severity.INFO):
        store.add_event(job, NewEvent(kind=EventKind.SPIKE, step=1, message="m", severity=severity))
    assert store.get_job(job).alerts == {"info": 1, "warning": 2, "critical": 1}
    assert store.get_job(quiet).alerts == {"info": 0, "warning": 0, "critical": 0}
    listed = {item.id: item.alerts for item in store.list_jobs()[0]}
    assert listed[job]["warning"] == 2 and listed[quiet]["critical"] == 0
    assert store.get_job(job).to_wire()["alerts"] == {"info": 1, "warning": 2, "critical": 1}


def test_get_event_and_unknown_jobs(store: MetricStore) -> None:
    job = new_job(store)
    stored = store.add_event(job, note(7, "restarted from checkpoint"))
    assert stored is not None
    assert store.get_event(job, stored.id) == stored
    assert store.get_event(job, stored.id + 1000) is None
    assert store.get_event(new_job(store, "b"), stored.id) is None  # another job's event
    with pytest.raises(JobNotFound):
        store.add_event("ghost", note(1))
    with pytest.raises(JobNotFound):
        store.list_events("ghost")


def test_events_go_with_their_job(store: MetricStore) -> None:
    job, kept = new_job(store), new_job(store, "kept")
    store.write_metrics(job, [MetricRow(step=1, values={"loss": 1.0})])
    store.add_event(job, note(1))
    store.add_event(kept, note(1))
    store.delete_job(job)
    with pytest.raises(JobNotFound):
        store.list_events(job)
    assert store.list_events(kept)[1] == 1


def test_a_version_1_sqlite_database_upgrades_with_its_data(tmp_path: Path) -> None:
    """Migration 2 (events) applies to a database written before it existed."""
    from trainvis.store.sqlite_schema import MIGRATIONS

    path = str(tmp_path / "old.db")
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in MIGRATIONS[0].split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO jobs (id, name, status, config, tags, created_at, updated_at) "
        "VALUES ('job-001', 'old', 'running', '{}', '[]', 1, 1)"
    )
    conn.close()
    store = open_store(path)
    try:
        assert store.get_job("job-001").alerts == {"info": 0, "warning": 0, "critical": 0}
        assert store.add_event("job-001", note(3)) is not None
        assert store.list_events("job-001")[1] == 1
    finally:
        store.close()
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    check.close()


@pytest.mark.postgres
def test_a_version_1_postgres_database_upgrades_with_its_data(pg_url: str) -> None:
    import psycopg

    from tests.conftest import _fresh_pg_schema
    from trainvis.store.postgres_schema import MIGRATIONS, migrate

    _fresh_pg_schema(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        migrate(conn, MIGRATIONS[:1])
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO jobs (id, name, status, config, tags, created_at, updated_at) "
            "VALUES ('job-001', 'old', 'running', '{}', '[]', 1, 1)"
        )
    store = open_store(pg_url)
    try:
        assert store.add_event("job-001", note(3)) is not None
        assert store.get_job("job-001").alerts["info"] == 1
    finally:
        store.close()
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    assert row is not None and row[0] == len(MIGRATIONS)
