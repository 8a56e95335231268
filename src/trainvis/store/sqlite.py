"""The embedded default store: one SQLite file in WAL mode.

One writer at a time (a lock around a dedicated connection, ``BEGIN
IMMEDIATE`` so several processes sharing the file queue up instead of failing),
reads on a small, capped pool of connections (a read waits for a free one; a
streamed history borrows one per chunk, so a reader that stops reading holds
none). ``synchronous=NORMAL`` in WAL mode makes
a committed transaction survive a killed process, which is the durability the
contract promises (2xx = committed).
"""

from __future__ import annotations

import bisect
import itertools
import math
import queue
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import orjson

from trainvis.errors import JobExists, JobNotFound, ServiceUnavailable, StoreReadOnly
from trainvis.events import EventKind, EventOrder, JobEvent, NewEvent
from trainvis.models import (
    JobCreate,
    JobStatus,
    MetricRow,
    StatusChange,
    TrainingJob,
    WriteResult,
    counted_id_number,
    encode_value,
    format_timestamp,
    usable_counter,
)
from trainvis.series import Series
from trainvis.store.base import JobFilter, Row
from trainvis.store.common import (
    RECREATED_SEQ_GAP,
    MetricStats,
    build_summary,
    check_metric_budget,
    check_transition,
    eta_from_rate,
    merge_batch,
    status_timestamps,
    stored_rows,
)
from trainvis.store.sqlite_events import (
    insert_event,
    select_event,
    select_events,
    severity_counts,
)
from trainvis.store.sqlite_faults import read_only_uri, storage_error
from trainvis.store.sqlite_schema import migrate

CHUNK_STEPS = 5000
#: Page cache of each pooled reader connection (KiB; the writer keeps 64 MiB).
#: Reads are bounded by Python, not by page reads, and the OS caches the file.
READ_CACHE_KIB = 8192
#: Seconds a read waits for a pooled connection before answering 503.
POOL_WAIT = 30.0
#: Row heads kept in memory over all jobs, and the largest job that is cached.
HEADS_CACHE_ROWS = 1_000_000
HEADS_CACHE_JOB_ROWS = 250_000
IN_CHUNK = 500
FINITE_MAX = 1.7976931348623157e308
JOB_COLUMNS = (
    "pk, id, name, model_name, status, message, total_epochs, total_steps, config, tags, "
    "created_at, updated_at, started_at, finished_at, last_seq, max_step, max_epoch, "
    "first_ts, row_count"
)
STAT_COLUMNS = (
    "id, name, count, last_step, last_value, min_value, min_step, max_value, max_step, nonfinite"
)


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


_ABSENT = object()
_POINT_ROW = np.dtype([("step", np.int64), ("value", np.float64), ("null", np.bool_)])
_TIME_ROW = np.dtype(
    [("step", np.int64), ("epoch", np.float64), ("null", np.bool_), ("ts", np.float64)]
)


Head = tuple[int, float | int | None, str]
"""A row's ``(step, epoch as returned, ISO timestamp)``."""


def _head_step(head: Head) -> int:
    return head[0]


def _heads(steps: list[tuple[int, float | None, float]]) -> list[Head]:
    """Row heads from ``steps`` rows, timestamps formatted once per distinct value."""
    return [
        (step, None if epoch is None else _plain_epoch(epoch), stamp)
        for (step, epoch, _), stamp in zip(steps, _stamps(steps), strict=True)
    ]


def _plain_epoch(epoch: float) -> float | int:
    """A whole epoch as an int where that is exact (1e20 stays a float: strict JSON)."""
    return int(epoch) if epoch.is_integer() and epoch < 2**53 else epoch


def _stamps(steps: list[tuple[int, float | None, float]]) -> list[str]:
    """Timestamps formatted once per distinct value (a batch shares one)."""
    stamps = [ts for _, _, ts in steps]
    memo = {ts: format_timestamp(ts) or "" for ts in dict.fromkeys(stamps)}
    return [memo[ts] for ts in stamps]


def _all_finite(column: list[Any]) -> bool:
    """No absent step, no NaN (NULL) and no infinity in an aligned column."""
    if _ABSENT in column or None in column:
        return False
    try:
        return math.isfinite(sum(column))
    except TypeError:
        return False


def _encode(value: float | None) -> float | str:
    """A stored value for the wire: NULL is SQLite's NaN."""
    return "NaN" if value is None else encode_value(value)


class SQLiteStore:
    """:class:`~trainvis.store.base.MetricStore` on one SQLite file."""

    def __init__(self, path: str, *, pool_size: int = 4) -> None:
        self.path = path
        self._write_lock = threading.Lock()
        self._read_only_uri: str | None = None  # set when the file cannot be written
        self._writer = self._open_writer()
        self._readers: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._heads_cache: OrderedDict[int, tuple[int, list[Head]]] = OrderedDict()
        self._heads_lock = threading.Lock()
        self._pool_size = pool_size
        self._slots = threading.BoundedSemaphore(pool_size)
        self._held = threading.local()

    # ------------------------------------------------------------------ plumbing

    def _open_writer(self) -> sqlite3.Connection:
        """The migrated writer connection; a database that cannot be written (read-only
        file or filesystem) is opened read-only instead: reads work, writes are 503."""
        conn: sqlite3.Connection | None = None
        try:
            conn = self._connect()
            migrate(conn)
            return conn
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            if not isinstance(storage_error(exc, self.path), StoreReadOnly):
                raise
        self._read_only_uri = read_only_uri(self.path)
        conn = self._connect()
        migrate(conn, read_only=True)
        return conn

    def _connect(self, cache_kib: int = 65536) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._read_only_uri or self.path,
            uri=self._read_only_uri is not None,
            isolation_level=None,
            check_same_thread=False,
            timeout=30.0,
        )
        if self._read_only_uri is None:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
        return conn

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """Borrow a reader connection; at most ``pool_size`` exist, a read waits
        for a free one (503 after ``POOL_WAIT`` s). A read nested in another on
        the same thread shares its connection (no self-deadlock)."""
        held: sqlite3.Connection | None = getattr(self._held, "conn", None)
        if held is not None:
            yield held
            return
        if not self._slots.acquire(timeout=POOL_WAIT):
            raise ServiceUnavailable(
                "The database is busy; try again shortly", headers={"Retry-After": "1"}
            )
        try:
            try:
                conn = self._readers.get_nowait()
            except queue.Empty:
                conn = self._connect(READ_CACHE_KIB)
            self._held.conn = conn
            try:
                yield conn
            finally:
                self._held.conn = None
                self._readers.put(conn)
        finally:
            self._slots.release()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock:
            conn = self._writer
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                finally:
                    if conn.in_transaction:  # failed; SQLite may have rolled back already
                        conn.execute("ROLLBACK")
            except sqlite3.Error as exc:  # disk full → 507, read-only → 503 (issue 13)
                fault = storage_error(exc, self.path)
                if fault is None:
                    raise
                raise fault from exc

    def close(self) -> None:
        with self._write_lock:
            self._writer.close()
        while not self._readers.empty():
            self._readers.get_nowait().close()

    # ------------------------------------------------------------------ jobs

    def _job_row(self, conn: sqlite3.Connection, job_id: str) -> tuple[Any, ...]:
        row = conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(job_id)
        return tuple(row)

    def _job_pk(self, conn: sqlite3.Connection, job_id: str) -> int:
        row = conn.execute("SELECT pk FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(job_id)
        return int(row[0])

    def _stats(self, conn: sqlite3.Connection, pk: int) -> dict[str, MetricStats]:
        rows = conn.execute(
            f"SELECT {STAT_COLUMNS} FROM metrics WHERE job_pk = ? AND count > 0", (pk,)
        )
        return {row[1]: _stats_from_row(row) for row in rows}

    def _hydrate(self, conn: sqlite3.Connection, row: tuple[Any, ...]) -> TrainingJob:
        job = _job_from_row(row)
        stats = self._stats(conn, row[0])
        job.metric_names = sorted(stats)
        job.point_count = sum(item.count for item in stats.values())
        job.summary = build_summary(stats)
        job.alerts = severity_counts(conn, row[0])
        if job.status is JobStatus.RUNNING and job.total_steps:
            recent = conn.execute(
                "SELECT step, ts FROM steps WHERE job_pk = ? ORDER BY step DESC LIMIT 50",
                (row[0],),
            ).fetchall()
            job.eta_seconds = eta_from_rate(job, recent)
        return job

    def create_job(self, spec: JobCreate) -> TrainingJob:
        now = time.time()
        start_seq: int | None = None  # set when the id is a deleted job's
        with self._write() as conn:
            counter = usable_counter(
                int(conn.execute("SELECT value FROM counters WHERE name = 'job_id'").fetchone()[0]),
                lambda: (row[0] for row in conn.execute("SELECT id FROM used_ids")),
            )
            if spec.id is not None:
                job_id = spec.id
                if conn.execute("SELECT 1 FROM used_ids WHERE id = ?", (job_id,)).fetchone():
                    if conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone():
                        raise JobExists(job_id)
                    deleted = conn.execute(
                        "SELECT last_seq FROM deleted_ids WHERE id = ?", (job_id,)
                    ).fetchone()
                    start_seq = (int(deleted[0]) if deleted else 0) + RECREATED_SEQ_GAP
                number = counted_id_number(job_id)  # None for a job-N beyond 2**62
                if number is not None:
                    counter = max(counter, number)
            else:
                while True:
                    counter += 1
                    job_id = f"job-{counter:03d}"
                    if not conn.execute(
                        "SELECT 1 FROM used_ids WHERE id = ?", (job_id,)
                    ).fetchone():
                        break
            conn.execute("UPDATE counters SET value = ? WHERE name = 'job_id'", (counter,))
            conn.execute("INSERT OR IGNORE INTO used_ids VALUES (?)", (job_id,))
            conn.execute(
                "INSERT INTO jobs (id, name, model_name, status, total_epochs, total_steps, "
                "config, tags, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
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
                conn.execute("UPDATE jobs SET last_seq = ? WHERE id = ?", (start_seq, job_id))
        return self.get_job(job_id)

    def get_job(self, job_id: str) -> TrainingJob:
        with self._read() as conn:
            return self._hydrate(conn, self._job_row(conn, job_id))

    def list_jobs(
        self, *, filters: JobFilter | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[list[TrainingJob], int]:
        filters = filters or JobFilter()
        where, params = ["1 = 1"], []
        if filters.status is not None:
            where.append("status = ?")
            params.append(filters.status.value)
        if filters.tag is not None:
            where.append("EXISTS (SELECT 1 FROM json_each(jobs.tags) WHERE value = ?)")
            params.append(filters.tag)
        if filters.q:
            pattern = "%" + _escape_like(filters.q.lower()) + "%"
            where.append(
                "(lower(name) LIKE ? ESCAPE '\\' OR lower(coalesce(model_name, '')) "
                "LIKE ? ESCAPE '\\')"
            )
            params += [pattern, pattern]
        clause = " AND ".join(where)
        with self._read() as conn:
            total = int(
                conn.execute(f"SELECT count(*) FROM jobs WHERE {clause}", params).fetchone()[0]
            )
            rows = conn.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE {clause} "
                "ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
                [*params, limit, offset],
            ).fetchall()
            return [self._hydrate(conn, tuple(row)) for row in rows], total

    def delete_job(self, job_id: str) -> None:
        with self._write() as conn:
            pk = self._job_pk(conn, job_id)
            conn.execute(
                "INSERT INTO deleted_ids SELECT id, last_seq FROM jobs WHERE pk = ? "
                "ON CONFLICT (id) DO UPDATE SET last_seq = excluded.last_seq",
                (pk,),
            )
            conn.execute(
                "DELETE FROM points WHERE metric_id IN (SELECT id FROM metrics WHERE job_pk = ?)",
                (pk,),
            )
            conn.execute("DELETE FROM steps WHERE job_pk = ?", (pk,))
            conn.execute("DELETE FROM metrics WHERE job_pk = ?", (pk,))
            conn.execute("DELETE FROM events WHERE job_pk = ?", (pk,))
            conn.execute("DELETE FROM jobs WHERE pk = ?", (pk,))

    def set_status(
        self, job_id: str, status: JobStatus, *, message: str | None = None
    ) -> tuple[TrainingJob, StatusChange | None]:
        now = time.time()
        change: StatusChange | None = None
        with self._write() as conn:
            job = _job_from_row(self._job_row(conn, job_id))
            if job.status is not status:
                check_transition(job.status, status)
                started, finished = status_timestamps(job, status, now)
                conn.execute(
                    "UPDATE jobs SET status = ?, message = ?, started_at = ?, finished_at = ?, "
                    "updated_at = ? WHERE id = ?",
                    (status.value, message, started, finished, now, job_id),
                )
                change = StatusChange(job_id, status, job.status, message, now)
        return self.get_job(job_id), change

    # ------------------------------------------------------------------ writes

    def write_metrics(
        self, job_id: str, rows: Sequence[MetricRow], *, max_metrics: int | None = None
    ) -> WriteResult:
        now = time.time()
        merged = merge_batch(rows, now)
        change: StatusChange | None = None
        with self._write() as conn:
            job = self._job_row(conn, job_id)
            pk, last_seq, max_step, max_epoch, first_ts = job[0], job[14], job[15], job[16], job[17]
            names = sorted({name for row in merged for name in row.values})
            ids = self._metric_ids(conn, pk, names, rows, max_metrics)
            fresh = max_step is None or merged[0].step > max_step
            existing_steps: set[int] = set()
            if not fresh:
                existing_steps = self._existing_steps(conn, pk, [row.step for row in merged])
            per_metric: dict[str, tuple[list[int], list[float]]] = {
                name: ([], []) for name in names
            }
            for row in merged:
                for name, value in row.values.items():
                    steps_of, values_of = per_metric[name]
                    steps_of.append(row.step)
                    values_of.append(value)
            stats = self._stats_for_update(conn, ids)
            points: list[tuple[int, int, float]] = []
            for name, (steps_of, values_of) in per_metric.items():
                metric_id = ids[name]
                replaced = {} if fresh else self._replaced(conn, metric_id, steps_of)
                stats[name].apply(steps_of, values_of, replaced)
                points.extend(zip(itertools.repeat(metric_id), steps_of, values_of))
            conn.executemany(
                "INSERT INTO points VALUES (?, ?, ?) "
                "ON CONFLICT DO UPDATE SET value = excluded.value",
                points,
            )
            conn.executemany(
                "INSERT INTO steps VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
                "epoch = coalesce(excluded.epoch, epoch), ts = excluded.ts, seq = excluded.seq",
                [
                    (pk, row.step, row.epoch, row.timestamp, last_seq + index + 1)
                    for index, row in enumerate(merged)
                ],
            )
            self._save_stats(conn, ids, stats)
            epochs = [row.epoch for row in merged if row.epoch is not None]
            if max_epoch is not None:
                epochs.append(max_epoch)
            conn.execute(
                "UPDATE jobs SET last_seq = ?, max_step = ?, max_epoch = ?, first_ts = ?, "
                "row_count = row_count + ?, updated_at = ? WHERE pk = ?",
                (
                    last_seq + len(merged),
                    max(merged[-1].step, max_step if max_step is not None else -1),
                    max(epochs, default=None),
                    min(first_ts or math.inf, min(row.timestamp for row in merged)),
                    len(merged) - len(existing_steps),
                    now,
                    pk,
                ),
            )
            if job[4] == JobStatus.PENDING.value:  # the first rows start the job
                conn.execute(
                    "UPDATE jobs SET status = ?, started_at = coalesce(started_at, ?) WHERE pk = ?",
                    (JobStatus.RUNNING.value, now, pk),
                )
                change = StatusChange(job_id, JobStatus.RUNNING, JobStatus.PENDING, None, now)
            reread = (  # a write of new steps only reads nothing back (issue 13)
                {row["step"]: row for row in self._rows_for_steps(conn, pk, sorted(existing_steps))}
                if existing_steps
                else {}
            )
        return WriteResult(
            job_id=job_id,
            accepted=len(rows),
            points=sum(len(row.values) for row in merged),
            last_step=max(row.step for row in rows),
            rows_factory=lambda: stored_rows(merged, reread, last_seq),
            last_seq=last_seq + len(merged),
            status_change=change,
        )

    def _metric_ids(
        self,
        conn: sqlite3.Connection,
        pk: int,
        names: list[str],
        rows: Sequence[MetricRow],
        max_metrics: int | None,
    ) -> dict[str, int]:
        """Ids of ``names``, creating the missing metrics within the job's limit.

        Only the batch's names are looked up (a job may have thousands).
        """
        known: dict[str, int] = {}
        for chunk in _chunks(names, IN_CHUNK):
            marks = ",".join("?" * len(chunk))
            known.update(
                conn.execute(
                    f"SELECT name, id FROM metrics WHERE job_pk = ? AND name IN ({marks})",
                    (pk, *chunk),
                ).fetchall()
            )
        missing = [name for name in names if name not in known]
        if missing:
            if max_metrics is not None:
                stored = conn.execute("SELECT count(*) FROM metrics WHERE job_pk = ?", (pk,))
                check_metric_budget(rows, set(missing), int(stored.fetchone()[0]), max_metrics)
            for name in missing:
                cursor = conn.execute(
                    "INSERT INTO metrics (job_pk, name) VALUES (?, ?)", (pk, name)
                )
                known[name] = int(cursor.lastrowid or 0)
        return {name: int(known[name]) for name in names}

    def _existing_steps(self, conn: sqlite3.Connection, pk: int, steps: list[int]) -> set[int]:
        found = conn.execute(
            "SELECT step FROM steps WHERE job_pk = ? AND step BETWEEN ? AND ?",
            (pk, steps[0], steps[-1]),
        )
        wanted = set(steps)
        return {row[0] for row in found if row[0] in wanted}

    def _replaced(
        self, conn: sqlite3.Connection, metric_id: int, steps: list[int]
    ) -> dict[int, float]:
        wanted = set(steps)
        rows = conn.execute(
            "SELECT step, value FROM points WHERE metric_id = ? AND step BETWEEN ? AND ?",
            (metric_id, steps[0], steps[-1]),
        )
        return {step: _nan(value) for step, value in rows if step in wanted}

    def _stats_for_update(
        self, conn: sqlite3.Connection, ids: dict[str, int]
    ) -> dict[str, MetricStats]:
        by_id = {metric_id: name for name, metric_id in ids.items()}
        stats = {name: MetricStats() for name in ids}
        for chunk in _chunks(list(by_id), IN_CHUNK):
            marks = ",".join("?" * len(chunk))
            for row in conn.execute(
                f"SELECT {STAT_COLUMNS} FROM metrics WHERE id IN ({marks})", chunk
            ):
                stats[by_id[row[0]]] = _stats_from_row(row)
        return stats

    def _save_stats(
        self, conn: sqlite3.Connection, ids: dict[str, int], stats: dict[str, MetricStats]
    ) -> None:
        for name, item in stats.items():
            if item.needs_rescan:
                self._rescan(conn, ids[name], item)
        conn.executemany(
            "UPDATE metrics SET count = ?, last_step = ?, last_value = ?, min_value = ?, "
            "min_step = ?, max_value = ?, max_step = ?, nonfinite = ? WHERE id = ?",
            [
                (
                    item.count,
                    item.last_step,
                    item.last_value,
                    item.min_value,
                    item.min_step,
                    item.max_value,
                    item.max_step,
                    item.nonfinite,
                    ids[name],
                )
                for name, item in stats.items()
            ],
        )

    def _rescan(self, conn: sqlite3.Connection, metric_id: int, item: MetricStats) -> None:
        """Recompute min/max after a stored extreme was overwritten (rare)."""
        base = "SELECT value, step FROM points WHERE metric_id = ? AND value BETWEEN ? AND ? "
        bounds = (metric_id, -FINITE_MAX, FINITE_MAX)
        low = conn.execute(base + "ORDER BY value ASC, step ASC LIMIT 1", bounds).fetchone()
        high = conn.execute(base + "ORDER BY value DESC, step ASC LIMIT 1", bounds).fetchone()
        item.min_value, item.min_step = (low[0], low[1]) if low else (None, None)
        item.max_value, item.max_step = (high[0], high[1]) if high else (None, None)
        item.needs_rescan = False

    # ------------------------------------------------------------------ events

    def add_event(self, job_id: str, event: NewEvent) -> JobEvent | None:
        with self._write() as conn:
            return insert_event(conn, self._job_pk(conn, job_id), job_id, event)

    def list_events(
        self,
        job_id: str,
        *,
        kind: EventKind | None = None,
        order: EventOrder = "newest",
        start_step: int | None = None,
        end_step: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[JobEvent], int]:
        with self._read() as conn:
            pk = self._job_pk(conn, job_id)
            return select_events(
                conn,
                pk,
                job_id,
                kind=kind,
                order=order,
                start_step=start_step,
                end_step=end_step,
                limit=limit,
                offset=offset,
            )

    def get_event(self, job_id: str, event_id: int) -> JobEvent | None:
        with self._read() as conn:
            return select_event(conn, self._job_pk(conn, job_id), job_id, event_id)

    # ------------------------------------------------------------------ reads

    def _metric_map(
        self, conn: sqlite3.Connection, pk: int, metrics: Sequence[str] | None
    ) -> dict[str, int]:
        rows = conn.execute("SELECT name, id FROM metrics WHERE job_pk = ? ORDER BY name", (pk,))
        known = {name: int(metric_id) for name, metric_id in rows}
        if metrics is None:
            return known
        return {name: known[name] for name in metrics if name in known}

    def count_rows(
        self,
        job_id: str,
        *,
        metrics: Sequence[str] | None = None,
        start_step: int | None = None,
        end_step: int | None = None,
    ) -> int:
        lo, hi = _bounds(start_step, end_step)
        with self._read() as conn:
            pk = self._job_pk(conn, job_id)
            if metrics is None:
                sql = "SELECT count(*) FROM steps WHERE job_pk = ? AND step BETWEEN ? AND ?"
                return int(conn.execute(sql, (pk, lo, hi)).fetchone()[0])
            ids = list(self._metric_map(conn, pk, metrics).values())
            if not ids:
                return 0
            marks = ",".join("?" * len(ids))
            sql = (
                f"SELECT count(DISTINCT step) FROM points WHERE metric_id IN ({marks}) "
                "AND step BETWEEN ? AND ?"
            )
            return int(conn.execute(sql, (*ids, lo, hi)).fetchone()[0])

    def iter_rows(
        self,
        job_id: str,
        *,
        metrics: Sequence[str] | None = None,
        start_step: int | None = None,
        end_step: int | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> Iterator[Row]:
        for chunk in self.iter_row_chunks(
            job_id,
            metrics=metrics,
            start_step=start_step,
            end_step=end_step,
            limit=limit,
            offset=offset,
        ):
            yield from chunk

    def iter_row_chunks(
        self,
        job_id: str,
        *,
        metrics: Sequence[str] | None = None,
        start_step: int | None = None,
        end_step: int | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> Iterator[list[Row]]:
        lo, hi = _bounds(start_step, end_step)
        # Each chunk borrows a pooled connection and returns it before it is
        # yielded: a reader that stops reading holds none, and the generator may
        # resume on another thread.
        with self._read() as conn:
            found = conn.execute(
                "SELECT pk, last_seq, row_count FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
            if found is None:
                raise JobNotFound(job_id)
            pk, last_seq, row_count = found
            ids = self._metric_map(conn, pk, metrics)
        if metrics is not None and not ids:
            return
        # Without a metric filter every step is a row: the offset skips steps.
        step_skip, skip = (offset, 0) if metrics is None else (0, offset)
        remaining = limit if limit is not None else math.inf
        for heads in self._head_chunks(pk, last_seq, row_count, lo, hi, step_skip):
            with self._read() as conn:
                rows = self._assemble(conn, heads, ids, require_any=metrics is not None)
            if skip:
                dropped = min(skip, len(rows))
                rows, skip = rows[dropped:], skip - dropped
            if len(rows) > remaining:
                rows = rows[: int(remaining)]
            remaining -= len(rows)
            if rows:
                yield rows
            if remaining <= 0:
                return

    def _head_chunks(
        self,
        pk: int,
        last_seq: int,
        row_count: int,
        lo: int,
        hi: int,
        skip: int,
    ) -> Iterator[list[Head]]:
        """``(step, epoch, timestamp)`` of the rows in ``[lo, hi]``, a chunk at a time
        (each query on a borrowed connection, none held while a chunk is out)."""
        with self._read() as conn:
            heads = self._cached_heads(conn, pk, last_seq, row_count)
        if heads is not None:
            first = bisect.bisect_left(heads, lo, key=_head_step)
            last = bisect.bisect_right(heads, hi, key=_head_step)
            skipped = min(skip, last - first)
            for start in range(first + skipped, last, CHUNK_STEPS):
                yield heads[start : min(start + CHUNK_STEPS, last)]
            # Then, like the keyset path, whatever was appended meanwhile.
            skip -= skipped
            if heads:
                lo = max(lo, heads[-1][0] + 1)
        while lo <= hi:
            with self._read() as conn:
                steps = conn.execute(
                    "SELECT step, epoch, ts FROM steps WHERE job_pk = ? AND step BETWEEN ? AND ? "
                    "ORDER BY step LIMIT ? OFFSET ?",
                    (pk, lo, hi, CHUNK_STEPS, skip),
                ).fetchall()
            skip = 0
            if not steps:
                return
            yield _heads(steps)
            lo = steps[-1][0] + 1

    def _cached_heads(
        self, conn: sqlite3.Connection, pk: int, last_seq: int, row_count: int
    ) -> list[Head] | None:
        """The job's row heads from memory while its ``last_seq`` is unchanged.

        Histories are read again and again (dashboards, exports); the step
        attributes are a third of the work, and any write changes ``last_seq``
        (also when another process wrote), so a stale copy is never served.
        Jobs over ``HEADS_CACHE_JOB_ROWS`` rows are not cached.
        """
        with self._heads_lock:
            cached = self._heads_cache.get(pk)
            if cached is not None and cached[0] == last_seq:
                self._heads_cache.move_to_end(pk)
                return cached[1]
        if row_count > HEADS_CACHE_JOB_ROWS:
            return None
        steps = conn.execute(
            "SELECT step, epoch, ts FROM steps WHERE job_pk = ? ORDER BY step", (pk,)
        ).fetchall()
        heads = _heads(steps)
        with self._heads_lock:
            self._heads_cache[pk] = (last_seq, heads)
            total = sum(len(entry[1]) for entry in self._heads_cache.values())
            while total > HEADS_CACHE_ROWS and len(self._heads_cache) > 1:
                _, (_, dropped) = self._heads_cache.popitem(last=False)
                total -= len(dropped)
        return heads

    def _assemble(
        self,
        conn: sqlite3.Connection,
        steps: list[Head],
        ids: dict[str, int],
        *,
        require_any: bool = False,
        exact: bool = False,
    ) -> list[Row]:
        """Rows for ``steps`` (ascending) with the metrics in ``ids``.

        ``exact`` queries the points at exactly these steps instead of the
        whole range between the first and the last.
        """
        rows: list[Row] = [
            {"step": step, "timestamp": stamp}
            if epoch is None
            else {"step": step, "epoch": epoch, "timestamp": stamp}
            for step, epoch, stamp in steps
        ]
        present = [False] * len(steps) if require_any else None
        for name, metric_id in ids.items():
            column = self._column(conn, metric_id, steps, exact=exact)
            if _all_finite(column):  # the common case: a value at every step
                for row, value in zip(rows, column, strict=True):
                    row[name] = value
                present = None  # every row has this metric
                continue
            for index, (row, value) in enumerate(zip(rows, column, strict=True)):
                if value is _ABSENT:
                    continue
                row[name] = value if value is not None and value - value == 0 else _encode(value)
                if present is not None:
                    present[index] = True
        if present is None:
            return rows
        return [row for row, keep in zip(rows, present, strict=True) if keep]

    def _column(
        self,
        conn: sqlite3.Connection,
        metric_id: int,
        steps: list[Head],
        *,
        exact: bool,
    ) -> list[Any]:
        """Values of one metric aligned with ``steps`` (``_ABSENT`` where none)."""
        if exact:
            marks = ",".join("?" * len(steps))
            found = conn.execute(
                f"SELECT step, value FROM points WHERE metric_id = ? AND step IN ({marks}) "
                "ORDER BY step",
                (metric_id, *(step for step, _, _ in steps)),
            ).fetchall()
        else:
            found = conn.execute(
                "SELECT step, value FROM points WHERE metric_id = ? AND step BETWEEN ? AND ? "
                "ORDER BY step",
                (metric_id, steps[0][0], steps[-1][0]),
            ).fetchall()
        if len(found) == len(steps):  # points ⊆ steps, both sorted: identical steps
            return [value for _, value in found]
        column: list[Any] = [_ABSENT] * len(steps)
        position = {step: index for index, (step, _, _) in enumerate(steps)}
        for step, value in found:
            index = position.get(step)
            if index is not None:
                column[index] = value
        return column

    def _rows_for_steps(
        self,
        conn: sqlite3.Connection,
        pk: int,
        steps: Sequence[int],
        metrics: Sequence[str] | None = None,
    ) -> list[Row]:
        ids = self._metric_map(conn, pk, metrics)
        rows: list[Row] = []
        for chunk in _chunks(sorted(set(steps)), IN_CHUNK):
            marks = ",".join("?" * len(chunk))
            found = conn.execute(
                f"SELECT step, epoch, ts FROM steps WHERE job_pk = ? AND step IN ({marks}) "
                "ORDER BY step",
                (pk, *chunk),
            ).fetchall()
            if found:
                rows.extend(self._assemble(conn, _heads(found), ids, exact=True))
        return rows

    def rows_at_steps(
        self, job_id: str, steps: Sequence[int], *, metrics: Sequence[str] | None = None
    ) -> list[Row]:
        with self._read() as conn:
            pk = self._job_pk(conn, job_id)
            return self._rows_for_steps(conn, pk, steps, metrics)

    def read_series(
        self,
        job_id: str,
        metrics: Sequence[str],
        *,
        start_step: int | None = None,
        end_step: int | None = None,
        with_time: bool = False,
    ) -> dict[str, Series]:
        lo, hi = _bounds(start_step, end_step)
        result: dict[str, Series] = {}
        with self._read() as conn:
            pk = self._job_pk(conn, job_id)
            ids = self._metric_map(conn, pk, metrics)
            time_steps = time_epochs = time_ts = None
            if with_time and ids:
                table = np.fromiter(
                    conn.execute(
                        "SELECT step, ifnull(epoch, 0.0), epoch IS NULL, ts FROM steps "
                        "WHERE job_pk = ? AND step BETWEEN ? AND ? ORDER BY step",
                        (pk, lo, hi),
                    ),
                    dtype=_TIME_ROW,
                )
                time_steps, time_epochs, time_ts = table["step"], table["epoch"], table["ts"]
                time_epochs[table["null"]] = np.nan
            for name, metric_id in ids.items():
                points = np.fromiter(
                    conn.execute(
                        "SELECT step, ifnull(value, 0.0), value IS NULL FROM points "
                        "WHERE metric_id = ? AND step BETWEEN ? AND ? ORDER BY step",
                        (metric_id, lo, hi),
                    ),
                    dtype=_POINT_ROW,
                )
                if points.shape[0] == 0:
                    continue
                steps, values = points["step"], points["value"]
                values[points["null"]] = np.nan  # NULL is SQLite's NaN
                epochs = timestamps = None
                if time_steps is not None and time_epochs is not None and time_ts is not None:
                    where = np.searchsorted(time_steps, steps)
                    epochs, timestamps = time_epochs[where], time_ts[where]
                result[name] = Series(name, steps, values, epochs, timestamps)
        return result

    def rows_since(self, job_id: str, seq: int, *, limit: int = 1000) -> list[tuple[int, Row]]:
        with self._read() as conn:
            pk = self._job_pk(conn, job_id)
            found = conn.execute(
                "SELECT step, seq FROM steps WHERE job_pk = ? AND seq > ? ORDER BY seq LIMIT ?",
                (pk, seq, limit),
            ).fetchall()
            if not found:
                return []
            by_step = {
                row["step"]: row for row in self._rows_for_steps(conn, pk, [s for s, _ in found])
            }
            return [(int(number), by_step[step]) for step, number in found if step in by_step]

    def last_seq(self, job_id: str) -> int:
        with self._read() as conn:
            row = conn.execute("SELECT last_seq FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise JobNotFound(job_id)
            return int(row[0])

    def status_counts(self) -> dict[str, int]:
        counts = {status.value: 0 for status in JobStatus}
        with self._read() as conn:
            for status, number in conn.execute("SELECT status, count(*) FROM jobs GROUP BY status"):
                counts[status] = int(number)
        return counts

    def total_points(self) -> int:
        with self._read() as conn:
            return int(conn.execute("SELECT coalesce(sum(count), 0) FROM metrics").fetchone()[0])


# ---------------------------------------------------------------------- helpers


def _bounds(start_step: int | None, end_step: int | None) -> tuple[int, int]:
    return (start_step if start_step is not None else 0), (
        end_step if end_step is not None else 2**63 - 1
    )


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _stats_from_row(row: Sequence[Any]) -> MetricStats:
    count, last_step = int(row[2]), row[3]
    return MetricStats(
        count=count,
        last_step=last_step,
        last_value=_nan(row[4]) if last_step is not None else None,
        min_value=row[5],
        min_step=row[6],
        max_value=row[7],
        max_step=row[8],
        nonfinite=int(row[9]),
    )


def _job_from_row(row: Sequence[Any]) -> TrainingJob:
    return TrainingJob(
        id=row[1],
        name=row[2],
        model_name=row[3],
        status=JobStatus(row[4]),
        message=row[5],
        total_epochs=row[6],
        total_steps=row[7],
        config=orjson.loads(row[8]),
        tags=orjson.loads(row[9]),
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
