"""The scale-out store: PostgreSQL through psycopg 3 and a connection pool.

Several API replicas may share one database. What keeps them consistent lives
in the database, never in a replica's memory: job ids come from a counter row
updated in the creating transaction, and each metrics write row-locks its job
before allocating sequence numbers (see ``postgres_write.py``). Every method
runs one short transaction on a pooled connection; a 2xx therefore means the
rows are committed. Connection failures surface as
:class:`~trainvis.store.base.StoreError` (503 with ``Retry-After`` and a generic
message; the driver's text goes to the log), a full disk as
:class:`~trainvis.errors.InsufficientStorage` (507) and a read-only database
(``default_transaction_read_only``, a hot standby) as
:class:`~trainvis.errors.StoreReadOnly` (503) on writes, reads unaffected.

Losing the database (a restart, a failover, every connection cut) must not
outlast the outage: each pooled connection is checked before use, and the first
one found dead marks the database as away. From then on requests do not wait
on the pool (whose idle connections are all dead, and whose own reconnection
backs off exponentially): at most one probe connection per
:data:`PROBE_INTERVAL` tells whether the database is back, every other request
answers 503 at once, and the probe that succeeds swaps in a fresh pool.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

try:
    import psycopg
    from psycopg.types.json import set_json_loads
    from psycopg_pool import ConnectionPool, PoolClosed
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("PostgreSQL support needs psycopg: pip install 'trainvis[postgres]'") from exc
import orjson

from trainvis.errors import DISK_FULL, READ_ONLY, InsufficientStorage, JobNotFound, StoreReadOnly
from trainvis.events import EventKind, EventOrder, JobEvent, NewEvent
from trainvis.models import (
    JobCreate,
    JobStatus,
    MetricRow,
    StatusChange,
    TrainingJob,
    WriteResult,
)
from trainvis.series import Series
from trainvis.store.base import JobFilter, Row, StoreError
from trainvis.store.common import (
    check_transition,
    merge_batch,
    status_timestamps,
)
from trainvis.store.postgres_copy import Conn, fetch_columns
from trainvis.store.postgres_events import insert_event, select_event, select_events
from trainvis.store.postgres_jobs import (
    JOB_COLUMNS,
    filter_sql,
    hydrate,
    insert_job,
    job_from_row,
    one,
)
from trainvis.store.postgres_read import (
    bounds,
    iter_chunks,
    job_pk,
    metric_map,
    rows_for_steps,
    seqs_after,
)
from trainvis.store.postgres_schema import migrate
from trainvis.store.postgres_write import write_batch

log = logging.getLogger("trainvis.store")

#: Seconds between reconnection probes while the database is away.
PROBE_INTERVAL = 0.25
#: ``Retry-After`` (seconds) of the 503 answered while the database is away.
RETRY_AFTER = 1
#: The public message of that 503; the driver's own text goes to the log only.
UNAVAILABLE = "The database is unavailable; retry later"


def normalize_url(url: str) -> str:
    """A libpq URL from the forms ``open_store`` accepts (``postgresql+psycopg://``…)."""
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def _configure(conn: Conn) -> None:
    set_json_loads(orjson.loads, conn)


class PostgresStore:
    """:class:`~trainvis.store.base.MetricStore` on a PostgreSQL database."""

    def __init__(
        self, url: str, *, min_size: int = 1, max_size: int = 16, timeout: float = 30.0
    ) -> None:
        self.url = normalize_url(url)
        self._kwargs: dict[str, Any] = {"application_name": "trainvis", "connect_timeout": 10}
        self._sizes = (min_size, max_size)
        self.timeout = timeout
        try:
            with psycopg.connect(self.url, autocommit=True, **self._kwargs) as conn:
                migrate(conn)
        except psycopg.errors.ReadOnlySqlTransaction as exc:  # an old schema, read-only
            raise RuntimeError(
                "the PostgreSQL database is read-only and its schema is older than this "
                "trainvis: connect once with write access to upgrade it"
            ) from exc
        except psycopg.OperationalError as exc:
            log.error("cannot open the PostgreSQL database: %s", exc)
            raise StoreError(
                "Cannot open the PostgreSQL database (the server log has the details)"
            ) from exc
        self._lock = threading.Lock()
        self._away = False  # a pooled connection was found dead: probe before using the pool
        self._next_probe = 0.0
        self._pool = self._open_pool()

    # ------------------------------------------------------------------ plumbing

    def _open_pool(self) -> ConnectionPool[Conn]:
        return ConnectionPool(
            self.url,
            min_size=self._sizes[0],
            max_size=self._sizes[1],
            kwargs=self._kwargs,
            configure=_configure,
            timeout=self.timeout,
            name="trainvis",
            open=True,
        )

    @contextmanager
    def _tx(self) -> Iterator[Conn]:
        """A pooled connection in a transaction, committed when the block succeeds."""
        pool, conn = self._acquire()
        try:
            with conn:  # what ``pool.connection()`` does: commit, or roll back on error
                yield conn
        except psycopg.errors.DiskFull as exc:  # SQLSTATE 53100 (issue 13)
            raise InsufficientStorage(DISK_FULL) from exc
        except psycopg.errors.ReadOnlySqlTransaction as exc:  # 25006: read-only database
            raise StoreReadOnly(READ_ONLY) from exc
        except psycopg.Error as exc:
            if not (isinstance(exc, psycopg.OperationalError) or conn.broken):
                raise
            if conn.broken:
                self._lost(pool, exc)
            else:
                log.warning("a PostgreSQL transaction failed: %s", exc)
            raise _unavailable() from exc
        finally:
            pool.putconn(conn)

    def _acquire(self) -> tuple[ConnectionPool[Conn], Conn]:
        """A checked connection (and its pool); :class:`StoreError` while the database is away."""
        failure: Exception | None = None
        for _ in range(2):  # a dead connection found: probe, and take one from the fresh pool
            if self._away:
                self._recover()
            pool = self._pool
            try:
                conn = pool.getconn()
            except PoolClosed:  # swapped for a fresh pool while this request waited
                if pool is self._pool:
                    raise
                continue
            except psycopg.OperationalError as exc:  # PoolTimeout
                log.warning("no PostgreSQL connection: %s", exc)
                raise _unavailable() from exc
            try:
                ConnectionPool.check_connection(conn)
            except psycopg.Error as exc:
                pool.putconn(conn)  # the pool discards it
                self._lost(pool, exc)
                failure = exc
                continue
            return pool, conn
        raise _unavailable() from failure

    def _lost(self, pool: ConnectionPool[Conn], exc: Exception) -> None:
        """A connection of ``pool`` died: so did its idle siblings (a restart, a cut)."""
        with self._lock:
            if pool is self._pool and not self._away:
                log.warning("lost the connection to PostgreSQL (%s); reconnecting", exc)
                self._away, self._next_probe = True, 0.0

    def _recover(self) -> None:
        """Probe the database (one caller per :data:`PROBE_INTERVAL`); swap in a fresh
        pool when it answers, else raise :class:`StoreError` at once."""
        with self._lock:
            if not self._away:
                return
            now = time.monotonic()
            if now < self._next_probe:
                raise _unavailable()
            self._next_probe = now + PROBE_INTERVAL
            try:
                kwargs = {**self._kwargs, "connect_timeout": 2}
                psycopg.connect(self.url, autocommit=True, **kwargs).close()
            except psycopg.OperationalError as exc:
                log.debug("PostgreSQL is still unavailable: %s", exc)
                raise _unavailable() from exc
            stale, self._pool, self._away = self._pool, self._open_pool(), False
        log.info("PostgreSQL is reachable again")
        # Closing waits for the old pool's workers: not on a request's time.
        threading.Thread(target=stale.close, kwargs={"timeout": 1.0}, daemon=True).start()

    def close(self) -> None:
        """Close every pooled connection; the store is unusable afterwards."""
        self._pool.close()

    # ------------------------------------------------------------------ jobs

    def create_job(self, spec: JobCreate) -> TrainingJob:
        """Create a job; see :meth:`MetricStore.create_job`.

        The counter row is locked first in every creating transaction, so
        replicas creating jobs at once serialize on it (no deadlock with the
        ``used_ids`` insert, no id handed out twice).
        """
        now = time.time()
        with self._tx() as conn:
            job_id = insert_job(conn, spec, now)
        return self.get_job(job_id)

    def get_job(self, job_id: str) -> TrainingJob:
        """The job with progress fields, ``metric_names`` and ``summary``."""
        with self._tx() as conn:
            row = conn.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = %s".encode(), (job_id,)
            ).fetchone()
            if row is None:
                raise JobNotFound(job_id)
            return hydrate(conn, [row])[0]

    def list_jobs(
        self, *, filters: JobFilter | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[list[TrainingJob], int]:
        """Jobs newest first (ties by id descending) and the total matching."""
        clause, params = filter_sql(filters or JobFilter())
        with self._tx() as conn:
            count = conn.execute(f"SELECT count(*) FROM jobs WHERE {clause}".encode(), params)
            total = int(one(count.fetchone()))
            rows = conn.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE {clause} "
                "ORDER BY created_at DESC, id DESC LIMIT %s OFFSET %s".encode(),
                [*params, limit, offset],
            ).fetchall()
            return hydrate(conn, rows), total

    def delete_job(self, job_id: str) -> None:
        """Delete the job with every row, point and event of it."""
        with self._tx() as conn:
            pk = job_pk(conn, job_id, lock=True)
            conn.execute(
                "INSERT INTO deleted_ids SELECT id, last_seq FROM jobs WHERE pk = %s "
                "ON CONFLICT (id) DO UPDATE SET last_seq = EXCLUDED.last_seq",
                (pk,),
            )
            conn.execute(
                "DELETE FROM points WHERE metric_id IN (SELECT id FROM metrics WHERE job_pk = %s)",
                (pk,),
            )
            conn.execute("DELETE FROM steps WHERE job_pk = %s", (pk,))
            conn.execute("DELETE FROM metrics WHERE job_pk = %s", (pk,))
            conn.execute("DELETE FROM events WHERE job_pk = %s", (pk,))
            conn.execute("DELETE FROM jobs WHERE pk = %s", (pk,))

    def set_status(
        self, job_id: str, status: JobStatus, *, message: str | None = None
    ) -> tuple[TrainingJob, StatusChange | None]:
        """Move the job to ``status``; see :meth:`MetricStore.set_status`."""
        now = time.time()
        change: StatusChange | None = None
        with self._tx() as conn:
            row = conn.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = %s FOR UPDATE".encode(), (job_id,)
            ).fetchone()
            if row is None:
                raise JobNotFound(job_id)
            job = job_from_row(row)
            if job.status is not status:
                check_transition(job.status, status)
                started, finished = status_timestamps(job, status, now)
                conn.execute(
                    "UPDATE jobs SET status = %s, message = %s, started_at = %s, "
                    "finished_at = %s, updated_at = %s WHERE pk = %s",
                    (status.value, message, started, finished, now, row[0]),
                )
                change = StatusChange(job_id, status, job.status, message, now)
        return self.get_job(job_id), change

    # ------------------------------------------------------------------ writes

    def write_metrics(
        self, job_id: str, rows: Sequence[MetricRow], *, max_metrics: int | None = None
    ) -> WriteResult:
        """Upsert rows in one transaction; see :meth:`MetricStore.write_metrics`."""
        now = time.time()
        merged = merge_batch(rows, now)
        change: StatusChange | None = None
        with self._tx() as conn:
            job = conn.execute(
                "SELECT pk, last_seq, max_step, max_epoch, first_ts, status FROM jobs "
                "WHERE id = %s FOR UPDATE",
                (job_id,),
            ).fetchone()
            if job is None:
                raise JobNotFound(job_id)
            stored = write_batch(conn, int(job[0]), job[1:5], merged, now, rows, max_metrics)
            if job[5] == JobStatus.PENDING.value:  # the first rows start the job
                conn.execute(
                    "UPDATE jobs SET status = %s, started_at = coalesce(started_at, %s) "
                    "WHERE pk = %s",
                    (JobStatus.RUNNING.value, now, job[0]),
                )
                change = StatusChange(job_id, JobStatus.RUNNING, JobStatus.PENDING, None, now)
        return WriteResult(
            job_id=job_id,
            accepted=len(rows),
            points=sum(len(row.values) for row in merged),
            last_step=max(row.step for row in rows),
            rows_factory=stored,
            last_seq=int(job[1]) + len(merged),
            status_change=change,
        )

    # ------------------------------------------------------------------ events

    def add_event(self, job_id: str, event: NewEvent) -> JobEvent | None:
        """Store an event; see :meth:`MetricStore.add_event`."""
        with self._tx() as conn:
            return insert_event(conn, job_id, event)

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
        """A page of the job's events; see :meth:`MetricStore.list_events`."""
        with self._tx() as conn:
            return select_events(
                conn,
                job_id,
                kind=kind,
                order=order,
                start_step=start_step,
                end_step=end_step,
                limit=limit,
                offset=offset,
            )

    def get_event(self, job_id: str, event_id: int) -> JobEvent | None:
        """One event of the job by id (None when it has none with that id)."""
        with self._tx() as conn:
            return select_event(conn, job_id, event_id)

    # ------------------------------------------------------------------ reads

    def count_rows(
        self,
        job_id: str,
        *,
        metrics: Sequence[str] | None = None,
        start_step: int | None = None,
        end_step: int | None = None,
    ) -> int:
        """Rows in the inclusive step range having any of ``metrics`` (all rows if None)."""
        lo, hi = bounds(start_step, end_step)
        with self._tx() as conn:
            pk = job_pk(conn, job_id)
            if metrics is None:
                cursor = conn.execute(
                    "SELECT count(*) FROM steps WHERE job_pk = %s AND step BETWEEN %s AND %s",
                    (pk, lo, hi),
                )
                return int(one(cursor.fetchone()))
            ids = list(metric_map(conn, pk, metrics).values())
            if not ids:
                return 0
            cursor = conn.execute(
                "SELECT count(DISTINCT step) FROM points WHERE metric_id = ANY(%s::bigint[]) "
                "AND step BETWEEN %s AND %s",
                (ids, lo, hi),
            )
            return int(one(cursor.fetchone()))

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
        """Rows by step, read in keyset chunks; see :meth:`MetricStore.iter_rows`.

        The job is looked up at once (an unknown job raises before the first
        row); no connection is held between chunks.
        """
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
        """:meth:`iter_rows` a chunk at a time (what the API streams)."""
        with self._tx() as conn:
            job_pk(conn, job_id)
        lo, hi = bounds(start_step, end_step)
        return _limited(iter_chunks(self._tx, job_id, metrics, lo, hi, offset), limit)

    def rows_at_steps(
        self, job_id: str, steps: Sequence[int], *, metrics: Sequence[str] | None = None
    ) -> list[Row]:
        """The rows at exactly these steps, ordered by step (missing steps skipped)."""
        with self._tx() as conn:
            return rows_for_steps(conn, job_pk(conn, job_id), steps, metrics)

    def read_series(
        self,
        job_id: str,
        metrics: Sequence[str],
        *,
        start_step: int | None = None,
        end_step: int | None = None,
        with_time: bool = False,
    ) -> dict[str, Series]:
        """Each requested metric as arrays; see :meth:`MetricStore.read_series`."""
        lo, hi = bounds(start_step, end_step)
        result: dict[str, Series] = {}
        with self._tx() as conn:
            pk = job_pk(conn, job_id)
            ids = metric_map(conn, pk, metrics)
            time_steps = time_epochs = time_ts = None
            if with_time and ids:
                time_steps, time_epochs, time_ts = fetch_columns(
                    conn,
                    "SELECT step, coalesce(epoch, 'NaN'::float8), ts FROM steps "
                    "WHERE job_pk = %s AND step BETWEEN %s AND %s",
                    (pk, lo, hi),
                    "qdd",
                )
                order = time_steps.argsort(kind="stable")
                time_steps, time_epochs, time_ts = (
                    time_steps[order],
                    time_epochs[order],
                    time_ts[order],
                )
            for name, metric_id in ids.items():
                # Unordered (heap order) and sorted here: the planner, with stale
                # statistics, would otherwise pick a bitmap scan and a disk sort.
                steps, values = fetch_columns(
                    conn,
                    "SELECT step, value FROM points WHERE metric_id = %s "
                    "AND step BETWEEN %s AND %s",
                    (metric_id, lo, hi),
                    "qd",
                )
                if not len(steps):
                    continue
                if len(steps) > 1 and not (steps[1:] > steps[:-1]).all():
                    order = steps.argsort(kind="stable")
                    steps, values = steps[order], values[order]
                epochs = timestamps = None
                if time_steps is not None and time_epochs is not None and time_ts is not None:
                    where = time_steps.searchsorted(steps)
                    epochs, timestamps = time_epochs[where], time_ts[where]
                result[name] = Series(name, steps, values, epochs, timestamps)
        return result

    def rows_since(self, job_id: str, seq: int, *, limit: int = 1000) -> list[tuple[int, Row]]:
        """Rows whose current sequence number is greater than ``seq``, by seq."""
        with self._tx() as conn:
            pk = job_pk(conn, job_id)
            found = seqs_after(conn, pk, seq, limit)
            if not found:
                return []
            by_step = {row["step"]: row for row in rows_for_steps(conn, pk, [s for s, _ in found])}
            return [(int(number), by_step[step]) for step, number in found if step in by_step]

    def last_seq(self, job_id: str) -> int:
        """The job's newest sequence number (0 before its first row)."""
        with self._tx() as conn:
            row = conn.execute("SELECT last_seq FROM jobs WHERE id = %s", (job_id,)).fetchone()
            if row is None:
                raise JobNotFound(job_id)
            return int(row[0])

    def status_counts(self) -> dict[str, int]:
        """Number of jobs in every status (zeros included)."""
        counts = {status.value: 0 for status in JobStatus}
        with self._tx() as conn:
            for status, number in conn.execute("SELECT status, count(*) FROM jobs GROUP BY 1"):
                counts[status] = int(number)
        return counts

    def total_points(self) -> int:
        """Points stored over all jobs."""
        with self._tx() as conn:
            cursor = conn.execute("SELECT coalesce(sum(count), 0) FROM metrics")
            return int(one(cursor.fetchone()))


# ---------------------------------------------------------------------- helpers


def _unavailable() -> StoreError:
    """The 503 of a database that is away (generic: callers log the cause)."""
    return StoreError(UNAVAILABLE, headers={"Retry-After": str(RETRY_AFTER)})


def _limited(chunks: Iterator[list[Row]], limit: int | None) -> Iterator[list[Row]]:
    remaining = limit if limit is not None else math.inf
    for rows in chunks:
        if remaining <= 0:
            return
        if len(rows) > remaining:
            rows = rows[: int(remaining)]
        remaining -= len(rows)
        if rows:
            yield rows
