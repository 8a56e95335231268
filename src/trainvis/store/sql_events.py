"""Job events on both SQL stores: functions on an open connection, inside the caller's
transaction.

SQLite has no NaN (it stores NULL), so there a NaN value is kept as NULL plus
``value_nan = 1``; PostgreSQL keeps the NaN itself. The dialect's
``event_value_*`` columns hide the difference.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

from trainvis.events import EventKind, EventOrder, JobEvent, NewEvent, Severity
from trainvis.store.dialect import Connection, Dialect

_ORDER = {"newest": "id DESC", "step": "step ASC, id ASC"}


def _columns(d: Dialect) -> str:
    return f"id, kind, metric, step, {d.event_value_select}, message, severity, ts"


def insert_event(
    d: Dialect, conn: Connection, pk: int, job_id: str, event: NewEvent
) -> JobEvent | None:
    """Insert ``event`` for job ``pk``; None when its ``dedupe`` key is taken."""
    ts = event.timestamp if event.timestamp is not None else time.time()
    value = d.event_value(event.value)
    marks = ", ".join("?" * len(value))
    inserted = d.run(
        conn,
        f"INSERT INTO events (job_pk, kind, metric, step, {d.event_value_insert}, message, "
        f"severity, ts, dedupe) VALUES (?, ?, ?, ?, {marks}, ?, ?, ?, ?) "
        "ON CONFLICT DO NOTHING RETURNING id",
        (
            pk,
            event.kind.value,
            event.metric,
            event.step,
            *value,
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
    d: Dialect,
    conn: Connection,
    pk: int,
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
    where, params = ["job_pk = ?"], list[Any]([pk])
    if kind is not None:
        where.append("kind = ?")
        params.append(kind.value)
    if start_step is not None:
        where.append("step >= ?")
        params.append(start_step)
    if end_step is not None:
        where.append("step <= ?")
        params.append(end_step)
    clause = " AND ".join(where)
    total = int(d.scalar(conn, f"SELECT count(*) FROM events WHERE {clause}", params))
    rows = d.run(
        conn,
        f"SELECT {_columns(d)} FROM events WHERE {clause} "
        f"ORDER BY {_ORDER[order]} LIMIT ? OFFSET ?",
        [*params, limit, offset],
    ).fetchall()
    return [event_from_row(row, job_id) for row in rows], total


def select_event(
    d: Dialect, conn: Connection, pk: int, job_id: str, event_id: int
) -> JobEvent | None:
    """One event of the job by id (None if it has no such event)."""
    row = d.run(
        conn, f"SELECT {_columns(d)} FROM events WHERE job_pk = ? AND id = ?", (pk, event_id)
    ).fetchone()
    return None if row is None else event_from_row(row, job_id)


def severity_counts(d: Dialect, conn: Connection, pks: Sequence[int]) -> dict[int, dict[str, int]]:
    """Per job pk: ``{"info": n, "warning": n, "critical": n}`` over its events."""
    counts = {pk: {severity.value: 0 for severity in Severity} for pk in pks}
    for chunk in d.chunks(pks):
        condition, params = d.in_list("job_pk", chunk, "bigint")
        cursor = d.run(
            conn,
            f"SELECT job_pk, severity, count(*) FROM events WHERE {condition} "
            "GROUP BY job_pk, severity",
            params,
        )
        for pk, severity, number in cursor:
            counts[int(pk)][severity] = int(number)
    return counts


def event_from_row(row: Sequence[Any], job_id: str) -> JobEvent:
    """A :class:`JobEvent` from a row of the event columns (value, then its NaN flag)."""
    value = math.nan if row[5] else row[4]
    return JobEvent(
        id=int(row[0]),
        job_id=job_id,
        kind=EventKind(row[1]),
        metric=row[2],
        step=int(row[3]),
        value=None if value is None else float(value),
        message=row[6],
        severity=Severity(row[7]),
        timestamp=float(row[8]),
    )
