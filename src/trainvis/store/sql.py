"""The :class:`~trainvis.store.base.MetricStore` methods both SQL backends share.

:class:`SQLStore` implements the store API once on top of what a backend
provides: connections (``_read``/``_write``), its :class:`Dialect`, and the
few hooks whose SQL or speed tricks really differ (the write of points and
steps, chunked row reads, the arrays behind a series). ``SQLiteStore`` and
``PostgresStore`` subclass it.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from functools import cached_property
from typing import Any, TypedDict, Unpack

import numpy as np
import numpy.typing as npt

from trainvis.errors import JobNotFound
from trainvis.events import EventKind, EventOrder, JobEvent, NewEvent
from trainvis.models import (
    JobCreate,
    JobStatus,
    JobUpdate,
    MetricRow,
    StatusChange,
    TrainingJob,
    WriteResult,
)
from trainvis.series import Series, WindowCells
from trainvis.store import blocks, step_blocks
from trainvis.store.base import JobFilter, JobSort, MetricStore, Row
from trainvis.store.common import check_transition, merge_batch, status_timestamps
from trainvis.store.compactor import Compactor
from trainvis.store.dialect import Connection, Dialect
from trainvis.store.sql_events import insert_event, select_event, select_events
from trainvis.store.sql_jobs import (
    JobStatsCache,
    delete_rows,
    fetch_job,
    fetch_jobs,
    filter_sql,
    hydrate,
    insert_job,
    job_from_row,
    job_pk,
    update_row,
)
from trainvis.store.sql_list import page_sql, uses_config
from trainvis.store.sql_read import (
    PointColumns,
    RowQuery,
    bounds,
    limited,
    metric_map,
    seqs_after,
)
from trainvis.store.sql_write import WriteBatch
from trainvis.store.step_blocks import StepRows


class _RowQueryArgs(TypedDict, total=False):
    """The keywords of ``iter_rows``, handed on as they are to ``iter_row_chunks``."""

    metrics: Sequence[str] | None
    start_step: int | None
    end_step: int | None
    limit: int | None
    offset: int


class SQLStore(MetricStore):
    """The store API on an SQL database; subclasses supply connections and hooks.

    It subclasses the :class:`MetricStore` protocol explicitly: the protocol's
    docstrings are the API's documentation (``help()`` and ``inspect.getdoc``
    find them there) and mypy checks every signature against it.
    """

    dialect: Dialect

    @cached_property
    def _job_stats(self) -> JobStatsCache:
        """Derived statistics of recently read jobs (see :class:`JobStatsCache`)."""
        return JobStatsCache()

    # ------------------------------------------------------------------ backend hooks

    @abstractmethod
    def _read(self) -> AbstractContextManager[Connection]:
        """A connection for reads."""

    @abstractmethod
    def _write(self) -> AbstractContextManager[Connection]:
        """A connection in a write transaction, committed when the block succeeds."""

    @abstractmethod
    def _write_batch(
        self, conn: Connection, batch: WriteBatch
    ) -> Callable[[], list[tuple[int, Row]]]:
        """Store ``batch`` for its locked job; returns a factory of the ``(seq, row)``
        pairs as stored."""

    @abstractmethod
    def _row_chunks(self, query: RowQuery) -> Iterator[list[Row]]:
        """The rows of ``query`` by step, in chunks; without a metric filter the first
        ``query.offset`` steps are skipped (the caller skips rows otherwise, and limits)."""

    @abstractmethod
    def _rows_for_steps(
        self, conn: Connection, pk: int, steps: Sequence[int], metrics: Sequence[str] | None
    ) -> list[Row]:
        """Wire rows at exactly ``steps`` (missing ones skipped), ordered by step."""

    @abstractmethod
    def _step_head(
        self, conn: Connection, pk: int, condition: str, params: Sequence[Any], limit: int | None
    ) -> StepRows:
        """The job's head steps (the ``steps`` table, see
        :mod:`~trainvis.store.step_blocks`) whose ``step`` matches ``condition``
        (``?`` placeholders), ascending by step, the first ``limit`` when given."""

    @abstractmethod
    def _point_columns(
        self, conn: Connection, metric_id: int, condition: str, params: Sequence[Any]
    ) -> PointColumns:
        """One metric's head points (the ``points`` table, see :mod:`~trainvis.store.blocks`)
        whose ``step`` matches ``condition``, ascending by step; NaN kept."""

    # ------------------------------------------------------------------ jobs

    def create_job(self, spec: JobCreate) -> TrainingJob:
        now = time.time()
        with self._write() as conn:
            job_id = insert_job(self.dialect, conn, spec, now)
        return self.get_job(job_id)

    def get_job(self, job_id: str) -> TrainingJob:
        with self._read() as conn:
            row = fetch_job(self.dialect, conn, job_id)
            return hydrate(self.dialect, conn, [row], cache=self._job_stats)[0]

    def list_jobs(
        self,
        *,
        filters: JobFilter | None = None,
        sort: JobSort | None = None,
        stats: Sequence[str] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[TrainingJob], int]:
        d = self.dialect
        filters, sort = filters or JobFilter(), sort or JobSort()
        clause, params = filter_sql(d, filters)
        source = d.config_source if uses_config(filters, sort) else "jobs"
        page, before, after = page_sql(d, sort, clause, source)
        with self._read() as conn:
            total = int(d.scalar(conn, f"SELECT count(*) FROM {source} WHERE {clause}", params))
            page_params = [*before, *params, *after, limit, offset]
            pks = [int(row[0]) for row in d.run(conn, page, page_params)]
            rows = fetch_jobs(d, conn, pks)
            return hydrate(d, conn, rows, stats_of=stats, cache=self._job_stats), total

    def delete_job(self, job_id: str) -> None:
        with self._write() as conn:
            delete_rows(self.dialect, conn, job_id)

    def update_job(self, job_id: str, update: JobUpdate) -> TrainingJob:
        with self._write() as conn:
            update_row(self.dialect, conn, job_id, update, time.time())
        return self.get_job(job_id)

    def set_status(
        self, job_id: str, status: JobStatus, *, message: str | None = None
    ) -> tuple[TrainingJob, StatusChange | None]:
        now = time.time()
        change: StatusChange | None = None
        with self._write() as conn:
            row = fetch_job(self.dialect, conn, job_id, lock=True)
            job = job_from_row(self.dialect, row)
            if job.status is not status:
                check_transition(job.status, status)
                started, finished = status_timestamps(job, status, now)
                self.dialect.run(
                    conn,
                    "UPDATE jobs SET status = ?, message = ?, started_at = ?, finished_at = ?, "
                    "updated_at = ? WHERE pk = ?",
                    (status.value, message, started, finished, now, row[0]),
                )
                change = StatusChange(job_id, status, job.status, message, now)
        return self.get_job(job_id), change

    # ------------------------------------------------------------------ writes

    def write_metrics(
        self, job_id: str, rows: Sequence[MetricRow], *, max_metrics: int | None = None
    ) -> WriteResult:
        d = self.dialect
        now = time.time()
        merged = merge_batch(rows, now)
        change: StatusChange | None = None
        with self._write() as conn:
            job = d.run(
                conn,
                "SELECT pk, last_seq, max_step, max_epoch, first_ts, status FROM jobs "
                "WHERE id = ?" + d.for_update,
                (job_id,),
            ).fetchone()
            if job is None:
                raise JobNotFound(job_id)
            pk, last_seq, max_step, max_epoch, first_ts, status = job
            batch = WriteBatch(
                int(pk),
                int(last_seq),
                max_step,
                max_epoch,
                first_ts,
                merged,
                now,
                rows,
                max_metrics,
            )
            stored = self._write_batch(conn, batch)
            if status == JobStatus.PENDING.value:  # the first rows start the job
                d.run(
                    conn,
                    "UPDATE jobs SET status = ?, started_at = coalesce(started_at, ?) WHERE pk = ?",
                    (JobStatus.RUNNING.value, now, pk),
                )
                change = StatusChange(job_id, JobStatus.RUNNING, JobStatus.PENDING, None, now)
        if batch.due.metrics or batch.due.steps:  # compaction, off the request path
            self._compactor.request(batch.pk, batch.due.metrics)
        return WriteResult(
            job_id=job_id,
            accepted=len(rows),
            points=sum(len(row.values) for row in merged),
            last_step=max(row.step for row in rows),
            rows_factory=stored,
            last_seq=int(last_seq) + len(merged),
            status_change=change,
        )

    # ------------------------------------------------------------------ events

    def add_event(self, job_id: str, event: NewEvent) -> JobEvent | None:
        # The job row is key-share locked (PostgreSQL), so a concurrent
        # ``delete_job`` (which locks it for update) cannot leave the event behind.
        d = self.dialect
        with self._write() as conn:
            return insert_event(
                d, conn, job_pk(d, conn, job_id, lock=d.for_key_share), job_id, event
            )

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
        d = self.dialect
        with self._read() as conn:
            return select_events(
                d,
                conn,
                job_pk(d, conn, job_id),
                job_id,
                kind=kind,
                order=order,
                start_step=start_step,
                end_step=end_step,
                limit=limit,
                offset=offset,
            )

    def get_event(self, job_id: str, event_id: int) -> JobEvent | None:
        d = self.dialect
        with self._read() as conn:
            return select_event(d, conn, job_pk(d, conn, job_id), job_id, event_id)

    # ------------------------------------------------------------------ reads

    def count_rows(
        self,
        job_id: str,
        *,
        metrics: Sequence[str] | None = None,
        start_step: int | None = None,
        end_step: int | None = None,
    ) -> int:
        d = self.dialect
        lo, hi = bounds(start_step, end_step)
        with self._read() as conn:
            pk = job_pk(d, conn, job_id)
            if metrics is None:
                return step_blocks.count(d, conn, pk, lo, hi)
            ids = list(metric_map(d, conn, pk, metrics).values())
            columns = [
                blocks.read_points(d, conn, metric_id, lo, hi, self._point_columns)[0]
                for metric_id in ids
            ]
            if len(columns) == 1:
                return len(columns[0])
            return len(np.unique(np.concatenate(columns))) if columns else 0

    def iter_rows(self, job_id: str, **query: Unpack[_RowQueryArgs]) -> Iterator[Row]:
        for chunk in self.iter_row_chunks(job_id, **query):
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
        lo, hi = bounds(start_step, end_step)
        query = RowQuery(job_id, metrics, lo, hi, offset)
        return limited(self._row_chunks(query), offset if metrics is not None else 0, limit)

    def rows_at_steps(
        self, job_id: str, steps: Sequence[int], *, metrics: Sequence[str] | None = None
    ) -> list[Row]:
        with self._read() as conn:
            return self._rows_for_steps(conn, job_pk(self.dialect, conn, job_id), steps, metrics)

    def read_series(
        self,
        job_id: str,
        metrics: Sequence[str],
        *,
        start_step: int | None = None,
        end_step: int | None = None,
        with_time: bool = False,
    ) -> dict[str, Series]:
        lo, hi = bounds(start_step, end_step)
        with self._read() as conn:
            pk = job_pk(self.dialect, conn, job_id)
            return self._series(conn, pk, metrics, with_time, (lo, hi))

    def read_cells(
        self,
        job_id: str,
        metric: str,
        *,
        start_step: int | None = None,
        end_step: int | None = None,
    ) -> WindowCells | None:
        lo, hi = bounds(start_step, end_step)
        with self._read() as conn:
            pk = job_pk(self.dialect, conn, job_id)
            ids = metric_map(self.dialect, conn, pk, [metric])
            if metric not in ids:
                return None
            return blocks.read_cells(self.dialect, conn, ids[metric], lo, hi, self._point_columns)

    def rows_since(self, job_id: str, seq: int, *, limit: int = 1000) -> list[tuple[int, Row]]:
        with self._read() as conn:
            pk = job_pk(self.dialect, conn, job_id)
            found = self._seqs_after(conn, pk, seq, limit)
            if not found:
                return []
            by_step = {
                row["step"]: row
                for row in self._rows_for_steps(conn, pk, [step for step, _ in found], None)
            }
            return [(number, by_step[step]) for step, number in found if step in by_step]

    def series_since(
        self, job_id: str, seq: int, metrics: Sequence[str], *, limit: int = 1000
    ) -> tuple[int, dict[str, Series]]:
        with self._read() as conn:
            pk = job_pk(self.dialect, conn, job_id)
            found = self._seqs_after(conn, pk, seq, limit)
            if not found:
                return seq, {}
            wanted = np.unique(np.fromiter((step for step, _ in found), np.int64, len(found)))
            span = (int(wanted[0]), int(wanted[-1]))
            series = self._series(conn, pk, metrics, True, span, wanted)
            return found[-1][1], series

    def last_seq(self, job_id: str) -> int:
        with self._read() as conn:
            row = self.dialect.run(conn, "SELECT last_seq FROM jobs WHERE id = ?", (job_id,))
            found = row.fetchone()
            if found is None:
                raise JobNotFound(job_id)
            return int(found[0])

    def _seqs_after(self, conn: Connection, pk: int, seq: int, limit: int) -> list[tuple[int, int]]:
        """``(step, seq)`` of up to ``limit`` steps with a seq above ``seq``, by seq."""
        head = seqs_after(self.dialect, conn, pk, seq, limit)
        return step_blocks.seqs_after(self.dialect, conn, pk, seq, limit, head)

    def status_counts(self) -> dict[str, int]:
        counts = {status.value: 0 for status in JobStatus}
        with self._read() as conn:
            cursor = self.dialect.run(conn, "SELECT status, count(*) FROM jobs GROUP BY status")
            for status, number in cursor:
                counts[status] = int(number)
        return counts

    #: The store's background compactor (its thread starts with the first write that
    #: needs it); a backend makes it in ``__init__`` and closes it in ``close``.
    _compactor: Compactor

    def _compact_due(self, pk: int, metric_ids: list[int]) -> None:
        """The compactor's work: the job's metrics (and step head) that still hold a
        block's worth, under the job's lock like a write (a deleted job: nothing)."""
        d = self.dialect
        with self._write() as conn:
            if d.run(conn, "SELECT pk FROM jobs WHERE pk = ?" + d.for_update, (pk,)).fetchone():
                for metric_id, held in blocks.held_points(d, conn, metric_ids).items():
                    if held >= blocks.BLOCK_POINTS:
                        blocks.compact(d, conn, metric_id, self._point_columns)
                step_blocks.compact(d, conn, pk, self._step_head)

    def compact(self) -> int:
        """Move every metric's head points and open blocks into blocks now, in one
        transaction (writes compact on their own; this settles a store, e.g.
        before measuring it). Returns the number of metrics compacted."""
        with self._write() as conn:
            compacted = blocks.compact_all(self.dialect, conn, self._point_columns)
            for (pk,) in self.dialect.run(conn, "SELECT DISTINCT job_pk FROM steps").fetchall():
                step_blocks.compact(self.dialect, conn, int(pk), self._step_head, force=True)
            return compacted

    def total_points(self) -> int:
        with self._read() as conn:
            return int(self.dialect.scalar(conn, "SELECT coalesce(sum(count), 0) FROM metrics"))

    # ------------------------------------------------------------------ series assembly

    def _series(
        self,
        conn: Connection,
        pk: int,
        metrics: Sequence[str],
        with_time: bool,
        span: tuple[int, int],
        wanted: npt.NDArray[np.int64] | None = None,
    ) -> dict[str, Series]:
        """Series of ``metrics`` with the points whose step is in ``span`` (inclusive)
        and is one of ``wanted`` (sorted) when given; ``with_time`` adds epochs and
        timestamps."""
        result: dict[str, Series] = {}
        ids = metric_map(self.dialect, conn, pk, metrics)
        times: StepRows | None = None
        if with_time and ids:
            times = step_blocks.read(self.dialect, conn, pk, *span, self._step_head, wanted=wanted)
        for name, metric_id in ids.items():
            steps, values = blocks.read_points(
                self.dialect, conn, metric_id, *span, self._point_columns, wanted
            )
            if not len(steps):
                continue
            epochs = timestamps = None
            if times is not None:
                at = times.steps.searchsorted(steps)
                epochs, timestamps = times.epochs[at], times.stamps[at]
            result[name] = Series(name, steps, values, epochs, timestamps)
        return result
