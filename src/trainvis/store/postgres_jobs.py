"""Job rows of the PostgreSQL store: id allocation, filters, hydration.

Functions take an open connection and run inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from psycopg.rows import TupleRow

from trainvis.errors import JobExists
from trainvis.models import (
    JobCreate,
    JobStatus,
    TrainingJob,
    counted_id_number,
    usable_counter,
)
from trainvis.store.base import JobFilter, StoreError
from trainvis.store.common import RECREATED_SEQ_GAP, MetricStats, build_summary, eta_from_rate
from trainvis.store.postgres_copy import Conn
from trainvis.store.postgres_events import severity_counts
from trainvis.store.postgres_write import STAT_COLUMNS, stats_from_row

JOB_COLUMNS = (
    "pk, id, name, model_name, status, message, total_epochs, total_steps, config, tags, "
    "created_at, updated_at, started_at, finished_at, last_seq, max_step, max_epoch, "
    "first_ts, row_count"
)


def insert_job(conn: Conn, spec: JobCreate, now: float) -> str:
    """Allocate the id and insert the job; returns the id.

    The counter row is locked first in every creating transaction, so
    replicas creating jobs at once serialize on it: no id is handed out twice
    and the ``used_ids`` insert cannot deadlock against another creator.

    A deleted job's id may be taken again: the new job's sequence numbers
    start ``RECREATED_SEQ_GAP`` above the deleted job's last one.

    Raises:
        JobExists: ``spec.id`` is the id of an existing job.
    """
    start_seq: int | None = None  # set when the id is a deleted job's
    stored = int(
        one(conn.execute("SELECT value FROM counters WHERE name = 'job_id' FOR UPDATE").fetchone())
    )
    counter = usable_counter(
        stored, lambda: (str(row[0]) for row in conn.execute("SELECT id FROM used_ids"))
    )
    if spec.id is not None:
        job_id = spec.id
        number = counted_id_number(job_id)  # None for a job-N beyond 2**62
        if number is not None and number > counter:
            counter = number
        if counter != stored:
            _set_counter(conn, counter)
        if not _claim_id(conn, job_id):
            start_seq = _recreated_seq(conn, job_id)
    else:
        while True:
            counter += 1
            job_id = f"job-{counter:03d}"
            if _claim_id(conn, job_id):
                break
        _set_counter(conn, counter)
    conn.execute(
        "INSERT INTO jobs (id, name, model_name, status, total_epochs, total_steps, "
        "config, tags, created_at, updated_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s::json, %s::jsonb, %s, %s)",
        (
            job_id,
            spec.name,
            spec.model_name,
            JobStatus.PENDING.value,
            spec.total_epochs,
            spec.total_steps,
            orjson.dumps(spec.config).decode(),
            orjson.dumps(spec.tags).decode(),
            now,
            now,
        ),
    )
    if start_seq is not None:
        conn.execute("UPDATE jobs SET last_seq = %s WHERE id = %s", (start_seq, job_id))
    return job_id


def _recreated_seq(conn: Conn, job_id: str) -> int:
    """The first ``last_seq`` of a job taking a used id again (issue 13).

    Raises:
        JobExists: a job with that id exists.
    """
    if conn.execute("SELECT 1 FROM jobs WHERE id = %s", (job_id,)).fetchone():
        raise JobExists(job_id)
    deleted = conn.execute("SELECT last_seq FROM deleted_ids WHERE id = %s", (job_id,)).fetchone()
    return (int(deleted[0]) if deleted else 0) + RECREATED_SEQ_GAP


def _set_counter(conn: Conn, value: int) -> None:
    conn.execute("UPDATE counters SET value = %s WHERE name = 'job_id'", (value,))


def _claim_id(conn: Conn, job_id: str) -> bool:
    """Record ``job_id`` as used; False when it was (generated ids never reuse one)."""
    row = conn.execute(
        "INSERT INTO used_ids VALUES (%s) ON CONFLICT DO NOTHING RETURNING id", (job_id,)
    ).fetchone()
    return row is not None


def filter_sql(filters: JobFilter) -> tuple[str, list[Any]]:
    """The ``WHERE`` clause and parameters of ``list_jobs`` filters (AND-ed)."""
    where, params = ["TRUE"], list[Any]()
    if filters.status is not None:
        where.append("status = %s")
        params.append(filters.status.value)
    if filters.tag is not None:
        where.append("tags @> jsonb_build_array(%s::text)")
        params.append(filters.tag)
    if filters.q:
        pattern = "%" + _escape_like(filters.q.lower()) + "%"
        where.append("(lower(name) LIKE %s OR lower(coalesce(model_name, '')) LIKE %s)")
        params += [pattern, pattern]
    return " AND ".join(where), params


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def hydrate(conn: Conn, rows: list[TupleRow]) -> list[TrainingJob]:
    """Jobs from ``JOB_COLUMNS`` rows with metric names, point counts, summary, alert
    counts and ETA."""
    jobs = [job_from_row(row) for row in rows]
    pks = [int(row[0]) for row in rows]
    stats: dict[int, dict[str, MetricStats]] = {pk: {} for pk in pks}
    if pks:
        cursor = conn.execute(
            f"SELECT job_pk, {STAT_COLUMNS} FROM metrics "
            "WHERE job_pk = ANY(%s::bigint[]) AND count > 0".encode(),
            (pks,),
        )
        for row in cursor:
            stats[row[0]][row[2]] = stats_from_row(row[1:])
    alerts = severity_counts(conn, pks)
    for pk, job in zip(pks, jobs, strict=True):
        job.alerts = alerts[pk]
        job.metric_names = sorted(stats[pk])
        job.point_count = sum(item.count for item in stats[pk].values())
        job.summary = build_summary(stats[pk])
        if job.status is JobStatus.RUNNING and job.total_steps:
            recent = conn.execute(
                "SELECT step, ts FROM steps WHERE job_pk = %s ORDER BY step DESC LIMIT 50",
                (pk,),
            ).fetchall()
            job.eta_seconds = eta_from_rate(job, [(int(s), float(t)) for s, t in recent])
    return jobs


def one(row: TupleRow | None) -> Any:
    """The first column of a row that must exist (an aggregate's)."""
    if row is None:  # pragma: no cover - aggregates always return a row
        raise StoreError("query returned no row")
    return row[0]


def job_from_row(row: Sequence[Any]) -> TrainingJob:
    """A :class:`TrainingJob` (without derived fields) from a ``JOB_COLUMNS`` row."""
    return TrainingJob(
        id=row[1],
        name=row[2],
        model_name=row[3],
        status=JobStatus(row[4]),
        message=row[5],
        total_epochs=row[6],
        total_steps=row[7],
        config=row[8],
        tags=row[9],
        created_at=row[10],
        updated_at=row[11],
        started_at=row[12],
        finished_at=row[13],
        last_seq=row[14],
        current_step=row[15],
        current_epoch=row[16],
        first_timestamp=row[17],
        row_count=row[18],
    )
