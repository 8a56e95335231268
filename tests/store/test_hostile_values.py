"""Values an older release let into the store must not break it (issue 13).

Ingest now rejects them, but a database written before that may hold an id
counter beyond 64 bits' headroom, a timestamp outside datetime's range or an
epoch of 1e20. Every backend keeps working on such a database.
"""

from __future__ import annotations

import sqlite3

import orjson

from trainvis.events import EventKind, NewEvent
from trainvis.models import JobCreate, MetricRow
from trainvis.store import MetricStore


def _set_counter(db_url: str, value: int) -> None:
    """Write the job-id counter straight into the database (as an old release did)."""
    if db_url.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("UPDATE counters SET value = %s WHERE name = 'job_id'", (value,))
        return
    with sqlite3.connect(db_url) as conn:
        conn.execute("UPDATE counters SET value = ? WHERE name = 'job_id'", (value,))


def test_a_counter_pushed_to_the_64_bit_limit_recovers(store: MetricStore, db_url: str) -> None:
    """issue 13: after job-9223372036854775807 every generated id failed, for good."""
    assert store.create_job(JobCreate(name="a", id="job-005")).id == "job-005"
    assert store.create_job(JobCreate(name="b", id="job-9223372036854775807")).id
    _set_counter(db_url, 2**63 - 1)
    assert store.create_job(JobCreate(name="c")).id == "job-006"
    assert store.create_job(JobCreate(name="d")).id == "job-007"
    assert store.create_job(JobCreate(name="e", id="job-99999999999999999999999")).id
    assert store.create_job(JobCreate(name="f")).id == "job-008"


def test_rows_and_events_outside_the_valid_ranges_still_read(store: MetricStore) -> None:
    """issue 13: a stored timestamp before year 1 (or after 9999) cut every history
    read after ``{"data":[``, and made the job's events and charts 500s for good."""
    job = store.create_job(JobCreate(name="old")).id
    store.write_metrics(
        job,
        [
            MetricRow(step=0, values={"x": 1.0}, timestamp=-1e12, epoch=1e20),
            MetricRow(step=1, values={"x": 2.0}, timestamp=1e15, epoch=2.0),
            MetricRow(step=2, values={"x": 3.0}, timestamp=1.7e9),
        ],
    )
    found = [row for chunk in store.iter_row_chunks(job) for row in chunk]
    orjson.dumps(found)  # strict JSON: no integer beyond 64 bits
    assert [row["timestamp"] for row in found] == [
        "0001-01-01T00:00:00.000Z",
        "9999-12-31T23:59:59.999Z",
        "2023-11-14T22:13:20.000Z",
    ]
    assert [row.get("epoch") for row in found] == [1e20, 2, None]
    orjson.dumps(store.get_job(job).to_wire())
    store.add_event(job, NewEvent(kind=EventKind.NOTE, step=0, message="m", timestamp=-1e12))
    events, total = store.list_events(job)
    assert total == 1
    assert events[0].to_wire()["timestamp"] == "0001-01-01T00:00:00.000Z"
