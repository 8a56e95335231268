"""Job rows of both SQL stores: id allocation, filters, hydration, statistics rows.

Functions take a :class:`~trainvis.store.dialect.Dialect` and an open
connection and run inside the caller's transaction.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from trainvis.errors import JobExists, JobNotFound
from trainvis.models import (
    JobCreate,
    JobStatus,
    JobUpdate,
    TrainingJob,
    counted_id_number,
    usable_counter,
)
from trainvis.store import step_blocks
from trainvis.store.base import JobFilter
from trainvis.store.common import (
    RECREATED_SEQ_GAP,
    MetricStats,
    build_summary,
    eta_from_rate,
    stats_wire,
)
from trainvis.store.dialect import Connection, Dialect
from trainvis.store.sql_events import severity_counts
from trainvis.store.sql_list import config_filter_sql

JOB_COLUMNS = (
    "pk, id, name, model_name, status, message, total_epochs, total_steps, config, tags, "
    "created_at, updated_at, started_at, finished_at, last_seq, max_step, max_epoch, "
    "first_ts, row_count"
)
STAT_COLUMNS = (
    "id, name, count, last_step, last_value, min_value, min_step, max_value, max_step, nonfinite"
)


def insert_job(d: Dialect, conn: Connection, spec: JobCreate, now: float) -> str:
    """Allocate the id and insert the job; returns the id.

    The counter row is locked first in every creating transaction, so
    creators (replicas of the API on PostgreSQL, processes sharing an SQLite
    file) serialize on it: no id is handed out twice and the ``used_ids``
    insert cannot deadlock against another creator.

    A deleted job's id may be taken again: the new job's sequence numbers
    start ``RECREATED_SEQ_GAP`` above the deleted job's last one.

    Raises:
        JobExists: ``spec.id`` is the id of an existing job.
    """
    start_seq: int | None = None  # set when the id is a deleted job's
    stored = int(d.scalar(conn, "SELECT value FROM counters WHERE name = 'job_id'" + d.for_update))
    counter = usable_counter(
        stored, lambda: (str(row[0]) for row in d.run(conn, "SELECT id FROM used_ids"))
    )
    if spec.id is not None:
        job_id = spec.id
        number = counted_id_number(job_id)  # None for a job-N beyond 2**62
        if number is not None and number > counter:
            counter = number
        if counter != stored:
            _set_counter(d, conn, counter)
        if not _claim_id(d, conn, job_id):
            start_seq = _recreated_seq(d, conn, job_id)
    else:
        while True:
            counter += 1
            job_id = f"job-{counter:03d}"
            if _claim_id(d, conn, job_id):
                break
        _set_counter(d, conn, counter)
    d.run(
        conn,
        "INSERT INTO jobs (id, name, model_name, status, total_epochs, total_steps, "
        "config, tags, created_at, updated_at) "
        f"VALUES (?, ?, ?, ?, ?, ?, {d.config_param}, {d.tags_param}, ?, ?)",
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
        d.run(conn, "UPDATE jobs SET last_seq = ? WHERE id = ?", (start_seq, job_id))
    return job_id


def update_row(d: Dialect, conn: Connection, job_id: str, update: JobUpdate, now: float) -> None:
    """Write the fields ``update`` gives and ``updated_at`` (issue 16).

    Raises:
        JobNotFound: unknown job.
    """
    changes = update.changes()
    columns, params = ["updated_at = ?"], list[Any]([now])
    for name in ("name", "model_name"):
        if name in changes:
            columns.append(f"{name} = ?")
            params.append(changes[name])
    if "config" in changes:
        columns.append(f"config = {d.config_param}")
        params.append(orjson.dumps(changes["config"]).decode())
    if "tags" in changes:
        columns.append(f"tags = {d.tags_param}")
        params.append(orjson.dumps(changes["tags"]).decode())
    params.append(job_id)
    row = d.run(
        conn, f"UPDATE jobs SET {', '.join(columns)} WHERE id = ? RETURNING pk", params
    ).fetchone()
    if row is None:
        raise JobNotFound(job_id)


def _recreated_seq(d: Dialect, conn: Connection, job_id: str) -> int:
    """The first ``last_seq`` of a job taking a used id again (issue 13).

    Raises:
        JobExists: a job with that id exists.
    """
    if d.run(conn, "SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone():
        raise JobExists(job_id)
    deleted = d.scalar(conn, "SELECT last_seq FROM deleted_ids WHERE id = ?", (job_id,))
    return (int(deleted) if deleted is not None else 0) + RECREATED_SEQ_GAP


def _set_counter(d: Dialect, conn: Connection, value: int) -> None:
    d.run(conn, "UPDATE counters SET value = ? WHERE name = 'job_id'", (value,))


def _claim_id(d: Dialect, conn: Connection, job_id: str) -> bool:
    """Record ``job_id`` as used; False when it was (generated ids never reuse one)."""
    row = d.run(
        conn, "INSERT INTO used_ids VALUES (?) ON CONFLICT DO NOTHING RETURNING id", (job_id,)
    ).fetchone()
    return row is not None


def fetch_job(d: Dialect, conn: Connection, job_id: str, *, lock: bool = False) -> Any:
    """The job's ``JOB_COLUMNS`` row (row-locked for the transaction with ``lock``).

    Raises:
        JobNotFound: unknown job.
    """
    suffix = d.for_update if lock else ""
    row = d.run(conn, f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?{suffix}", (job_id,)).fetchone()
    if row is None:
        raise JobNotFound(job_id)
    return row


def fetch_jobs(d: Dialect, conn: Connection, pks: Sequence[int]) -> list[Any]:
    """The ``JOB_COLUMNS`` rows of the jobs ``pks``, in that order (missing ones left out)."""
    found: dict[int, Any] = {}
    for chunk in d.chunks(pks):
        condition, params = d.in_list("pk", chunk, "bigint")
        for row in d.run(conn, f"SELECT {JOB_COLUMNS} FROM jobs WHERE {condition}", params):
            found[int(row[0])] = row
    return [found[pk] for pk in pks if pk in found]


def job_pk(d: Dialect, conn: Connection, job_id: str, *, lock: str = "") -> int:
    """The job's primary key; ``lock`` is a row-lock suffix (``d.for_update``…).

    Raises:
        JobNotFound: unknown job.
    """
    row = d.run(conn, "SELECT pk FROM jobs WHERE id = ?" + lock, (job_id,)).fetchone()
    if row is None:
        raise JobNotFound(job_id)
    return int(row[0])


def filter_sql(d: Dialect, filters: JobFilter) -> tuple[str, list[Any]]:
    """The ``WHERE`` clause and parameters of ``list_jobs`` filters (AND-ed)."""
    where, params = ["1 = 1"], list[Any]()
    if filters.status is not None:
        where.append("status = ?")
        params.append(filters.status.value)
    if filters.tag is not None:
        where.append(d.tag_filter)
        params.append(filters.tag)
    if filters.q:
        pattern = "%" + _escape_like(filters.q.lower()) + "%"
        where.append(
            "(lower(name) LIKE ? ESCAPE '\\' OR lower(coalesce(model_name, '')) LIKE ? ESCAPE '\\')"
        )
        params += [pattern, pattern]
    for path, value in filters.config:
        term, term_params = config_filter_sql(d, path, value)
        where.append(term)
        params += term_params
    return " AND ".join(where), params


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True)
class JobStats:
    """What :func:`hydrate` derives from one job's ``metrics`` rows."""

    stats: dict[str, MetricStats]
    names: list[str]
    points: int
    summary: dict[str, Any]

    @classmethod
    def of(cls, stats: dict[str, MetricStats]) -> JobStats:
        points = sum(item.count for item in stats.values())
        return cls(stats, sorted(stats), points, build_summary(stats))


#: Job key of the cache: ``(pk, id, created_at, last_seq)``.
JobKey = tuple[int, str, float, int]


class JobStatsCache:
    """The derived statistics of recently read jobs, keyed by the job's version.

    A job's ``metrics`` rows change only in a write that also raises its
    ``last_seq`` (every stored row takes the next sequence number), and an id
    created again continues above the deleted job's sequence, so
    ``(pk, id, created_at, last_seq)`` names one state of them, on every
    replica: a row written through another replica raises ``last_seq`` in the
    jobs row this read sees. Without it, a job with 10,000 metrics re-reads and
    re-summarises 10,000 rows for every chart and dashboard request (~60 ms).
    Bounded by the number of metrics held, least recently used out first.
    """

    def __init__(self, max_metrics: int = 50_000) -> None:
        self._max_metrics = max_metrics
        self._held = 0
        self._items: OrderedDict[JobKey, JobStats] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: JobKey) -> JobStats | None:
        with self._lock:
            entry = self._items.get(key)
            if entry is not None:
                self._items.move_to_end(key)
            return entry

    def put(self, key: JobKey, entry: JobStats) -> None:
        size = len(entry.stats)
        if size > self._max_metrics:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = entry
            self._held += size
            while self._held > self._max_metrics:
                _, old = self._items.popitem(last=False)
                self._held -= len(old.stats)


def hydrate(
    d: Dialect,
    conn: Connection,
    rows: Sequence[Sequence[Any]],
    *,
    stats_of: Sequence[str] | None = None,
    cache: JobStatsCache | None = None,
) -> list[TrainingJob]:
    """Jobs from ``JOB_COLUMNS`` rows with metric names, point counts, summary, alert
    counts and ETA; with ``stats_of`` (metric names), each job's ``stats`` too.
    ``cache`` keeps the derived statistics of unchanged jobs between reads."""
    jobs = [job_from_row(d, row) for row in rows]
    pks = [int(row[0]) for row in rows]
    keys: dict[int, JobKey] = {
        pk: (pk, job.id, job.created_at, job.last_seq) for pk, job in zip(pks, jobs, strict=True)
    }
    derived: dict[int, JobStats] = {}
    if cache is not None:
        for pk in pks:
            if (hit := cache.get(keys[pk])) is not None:
                derived[pk] = hit
    missing = [pk for pk in pks if pk not in derived]
    stats: dict[int, dict[str, MetricStats]] = {pk: {} for pk in missing}
    for chunk in d.chunks(missing) if missing else ():
        condition, params = d.in_list("job_pk", chunk, "bigint")
        cursor = d.run(
            conn,
            f"SELECT job_pk, {STAT_COLUMNS} FROM metrics WHERE {condition} AND count > 0",
            params,
        )
        for row in cursor:
            stats[int(row[0])][row[2]] = stats_from_row(row[1:])
    for pk in missing:
        derived[pk] = JobStats.of(stats[pk])
        if cache is not None:
            cache.put(keys[pk], derived[pk])
    alerts = severity_counts(d, conn, pks)
    for pk, job in zip(pks, jobs, strict=True):
        entry = derived[pk]
        job.alerts = alerts[pk]
        job.metric_names = list(entry.names)
        job.point_count = entry.points
        summary = entry.summary
        job.summary = {**summary, "last": dict(summary["last"]), "best": dict(summary["best"])}
        if stats_of is not None:
            mine = entry.stats
            job.stats = {name: stats_wire(name, mine[name]) for name in stats_of if name in mine}
    timed = [pk for pk, job in zip(pks, jobs, strict=True) if _has_eta(job)]
    recent = step_blocks.newest(d, conn, d.recent_steps(conn, timed, ETA_STEPS), ETA_STEPS)
    for pk, job in zip(pks, jobs, strict=True):
        if pk in recent:
            job.eta_seconds = eta_from_rate(job, recent[pk])
    return jobs


#: How many of a running job's newest steps its ETA is estimated from.
ETA_STEPS = 50


def _has_eta(job: TrainingJob) -> bool:
    return job.status is JobStatus.RUNNING and bool(job.total_steps)


def job_from_row(d: Dialect, row: Sequence[Any]) -> TrainingJob:
    """A :class:`TrainingJob` (without derived fields) from a ``JOB_COLUMNS`` row."""
    return TrainingJob(
        id=row[1],
        name=row[2],
        model_name=row[3],
        status=JobStatus(row[4]),
        message=row[5],
        total_epochs=row[6],
        total_steps=row[7],
        config=d.load_json(row[8]),
        tags=d.load_json(row[9]),
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


def stats_from_row(row: Sequence[Any]) -> MetricStats:
    """A :class:`MetricStats` from a ``STAT_COLUMNS`` row (SQLite's NULL is a NaN)."""
    last_step, last_value = row[3], row[4]
    return MetricStats(
        count=int(row[2]),
        last_step=last_step,
        last_value=(math.nan if last_value is None else last_value)
        if last_step is not None
        else None,
        min_value=row[5],
        min_step=row[6],
        max_value=row[7],
        max_step=row[8],
        nonfinite=int(row[9]),
    )


def delete_rows(d: Dialect, conn: Connection, job_id: str) -> None:
    """Delete the job with every row, point and event of it, keeping its last seq."""
    pk = job_pk(d, conn, job_id, lock=d.for_update)
    d.run(
        conn,
        "INSERT INTO deleted_ids SELECT id, last_seq FROM jobs WHERE pk = ? "
        "ON CONFLICT (id) DO UPDATE SET last_seq = excluded.last_seq",
        (pk,),
    )
    for table in ("points", "blocks"):
        d.run(
            conn,
            f"DELETE FROM {table} WHERE metric_id IN (SELECT id FROM metrics WHERE job_pk = ?)",
            (pk,),
        )
    for table in ("steps", "step_blocks", "metrics", "events"):
        d.run(conn, f"DELETE FROM {table} WHERE job_pk = ?", (pk,))
    d.run(conn, "DELETE FROM jobs WHERE pk = ?", (pk,))
