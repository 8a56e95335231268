"""Job events on PostgreSQL: functions on an open connection, inside the caller's transaction."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from trainvis.errors import JobNotFound
from trainvis.events import EventKind, EventOrder, JobEvent, NewEvent, Severity
from trainvis.store.postgres_copy import Conn
from trainvis.store.postgres_read import job_pk

EVENT_COLUMNS = "id, kind, metric, step, value, message, severity, ts"
_ORDER = {"newest": "id DESC", "step": "step ASC, id ASC"}


def insert_event(conn: Conn, job_id: str, event: NewEvent) -> JobEvent | None:
    """Insert ``event``; None when its ``dedupe`` key is taken.

    The job row is key-share locked, so a concurrent ``delete_job`` (which
    locks it for update) cannot leave the event behind.

    Raises:
        JobNotFound: unknown job.
    """
    row = conn.execute("SELECT pk FROM jobs WHERE id = %s FOR KEY SHARE", (job_id,)).fetchone()
    if row is None:
        raise JobNotFound(job_id)
    ts = event.timestamp if event.timestamp is not None else time.time()
    inserted = conn.execute(
        "INSERT INTO events (job_pk, kind, metric, step, value, message, severity, ts, dedupe) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING id",
        (
            row[0],
            event.kind.value,
            event.metric,
            event.step,
            event.value,
            event.message,
            event.severity.value,
            ts,
            event.dedupe,
        ),
    ).fetchone()
    if inserted is None:
        return None
    return JobEvent(
        id=int(inserted[0]),
        job_id=job_id,
        kind=event.kind,
        step=event.step,
        message=event.message,
        severity=event.severity,
        timestamp=ts,
        metric=event.metric,
        value=event.value,
    )


def select_events(
    conn: Conn,
    job_id: str,
    *,
    kind: EventKind | None,
    order: EventOrder,
    start_step: int | None,
    end_step: int | None,
    limit: int,
    offset: int,
) -> tuple[list[JobEvent], int]:
    """A page of the job's events and the total matching the filters."""
    where, params = ["job_pk = %s"], list[Any]([job_pk(conn, job_id)])
    if kind is not None:
        where.append("kind = %s")
        params.append(kind.value)
    if start_step is not None:
        where.append("step >= %s")
        params.append(start_step)
    if end_step is not None:
        where.append("step <= %s")
        params.append(end_step)
    clause = " AND ".join(where)
    count = conn.execute(f"SELECT count(*) FROM events WHERE {clause}".encode(), params).fetchone()
    rows = conn.execute(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE {clause} "
        f"ORDER BY {_ORDER[order]} LIMIT %s OFFSET %s".encode(),
        [*params, limit, offset],
    ).fetchall()
    return [event_from_row(row, job_id) for row in rows], int(count[0]) if count else 0


def select_event(conn: Conn, job_id: str, event_id: int) -> JobEvent | None:
    """One event of the job by id (None if it has no such event)."""
    row = conn.execute(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE job_pk = %s AND id = %s".encode(),
        (job_pk(conn, job_id), event_id),
    ).fetchone()
    return None if row is None else event_from_row(row, job_id)


def severity_counts(conn: Conn, pks: Sequence[int]) -> dict[int, dict[str, int]]:
    """Per job pk: ``{"info": n, "warning": n, "critical": n}`` over its events."""
    counts = {pk: {severity.value: 0 for severity in Severity} for pk in pks}
    if pks:
        cursor = conn.execute(
            "SELECT job_pk, severity, count(*) FROM events WHERE job_pk = ANY(%s::bigint[]) "
            "GROUP BY 1, 2",
            (list(pks),),
        )
        for pk, severity, number in cursor:
            counts[int(pk)][severity] = int(number)
    return counts


def event_from_row(row: Sequence[Any], job_id: str) -> JobEvent:
    """A :class:`JobEvent` from an ``EVENT_COLUMNS`` row."""
    return JobEvent(
        id=int(row[0]),
        job_id=job_id,
        kind=EventKind(row[1]),
        metric=row[2],
        step=int(row[3]),
        value=None if row[4] is None else float(row[4]),
        message=row[5],
        severity=Severity(row[6]),
        timestamp=float(row[7]),
    )
