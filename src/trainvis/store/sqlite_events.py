"""Job events on SQLite: functions on an open connection, inside the caller's transaction.

SQLite has no NaN (it stores NULL), so a NaN value is kept as NULL plus
``value_nan = 1``; infinities are stored as such.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from trainvis.events import EventKind, EventOrder, JobEvent, NewEvent, Severity

EVENT_COLUMNS = "id, kind, metric, step, value, value_nan, message, severity, ts"
_ORDER = {"newest": "id DESC", "step": "step ASC, id ASC"}


def insert_event(
    conn: sqlite3.Connection, pk: int, job_id: str, event: NewEvent
) -> JobEvent | None:
    """Insert ``event`` for job ``pk``; None when its ``dedupe`` key is taken."""
    ts = event.timestamp if event.timestamp is not None else time.time()
    value = event.value
    is_nan = value is not None and math.isnan(value)
    cursor = conn.execute(
        "INSERT INTO events (job_pk, kind, metric, step, value, value_nan, message, severity, "
        "ts, dedupe) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
        (
            pk,
            event.kind.value,
            event.metric,
            event.step,
            None if is_nan else value,
            int(is_nan),
            event.message,
            event.severity.value,
            ts,
            event.dedupe,
        ),
    )
    if cursor.rowcount == 0:
        return None
    event_id = cursor.lastrowid
    assert event_id is not None
    return JobEvent(
        id=event_id,
        job_id=job_id,
        kind=event.kind,
        step=event.step,
        message=event.message,
        severity=event.severity,
        timestamp=ts,
        metric=event.metric,
        value=value,
    )


def select_events(
    conn: sqlite3.Connection,
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
    total = int(conn.execute(f"SELECT count(*) FROM events WHERE {clause}", params).fetchone()[0])
    rows = conn.execute(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE {clause} "
        f"ORDER BY {_ORDER[order]} LIMIT ? OFFSET ?",
        [*params, limit, offset],
    ).fetchall()
    return [event_from_row(row, job_id) for row in rows], total


def select_event(conn: sqlite3.Connection, pk: int, job_id: str, event_id: int) -> JobEvent | None:
    """One event of the job by id (None if it has no such event)."""
    row = conn.execute(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE job_pk = ? AND id = ?", (pk, event_id)
    ).fetchone()
    return None if row is None else event_from_row(row, job_id)


def severity_counts(conn: sqlite3.Connection, pk: int) -> dict[str, int]:
    """``{"info": n, "warning": n, "critical": n}`` over the job's events."""
    counts = {severity.value: 0 for severity in Severity}
    for severity, number in conn.execute(
        "SELECT severity, count(*) FROM events WHERE job_pk = ? GROUP BY severity", (pk,)
    ):
        counts[severity] = int(number)
    return counts


def event_from_row(row: Sequence[Any], job_id: str) -> JobEvent:
    """A :class:`JobEvent` from an ``EVENT_COLUMNS`` row."""
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
