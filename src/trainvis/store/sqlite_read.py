"""Read queries of the SQLite store: rows assembled from steps and points.

Functions take an open connection; :class:`HeadsCache` keeps the row heads
(step, epoch, timestamp) of recently read jobs in memory.
"""

from __future__ import annotations

import bisect
import math
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import numpy.typing as npt

from trainvis.errors import JobNotFound
from trainvis.store import blocks, step_blocks
from trainvis.store.base import Row
from trainvis.store.common import Head, head_rows, heads, wire_value
from trainvis.store.dialect import SQLITE
from trainvis.store.sql_read import BIGINT_MAX, PointColumns, RowQuery, metric_map
from trainvis.store.step_blocks import StepRows

CHUNK_STEPS = 5000
#: Row heads kept in memory over all jobs, and the largest job that is cached.
HEADS_CACHE_ROWS = 1_000_000
HEADS_CACHE_JOB_ROWS = 250_000
_ABSENT = object()
_POINT_ROW = np.dtype([("step", np.int64), ("value", np.float64), ("null", np.bool_)])
_TIME_ROW = np.dtype(
    [
        ("step", np.int64),
        ("epoch", np.float64),
        ("null", np.bool_),
        ("ts", np.float64),
        ("seq", np.int64),
    ]
)


def _head_step(head: Head) -> int:
    return head[0]


def _heads(rows: StepRows) -> list[Head]:
    """Row heads of read steps (NaN epochs: none)."""
    epochs = [None if epoch != epoch else epoch for epoch in rows.epochs.tolist()]
    return heads(list(zip(rows.steps.tolist(), epochs, rows.stamps.tolist(), strict=True)))


def read_steps(
    conn: sqlite3.Connection,
    pk: int,
    lo: int,
    hi: int,
    *,
    wanted: npt.NDArray[np.int64] | None = None,
    limit: int | None = None,
) -> StepRows:
    return step_blocks.read(SQLITE, conn, pk, lo, hi, step_head, wanted=wanted, limit=limit)


def _all_finite(column: list[Any]) -> bool:
    """No absent step, no NaN (NULL) and no infinity in an aligned column."""
    if _ABSENT in column or None in column:
        return False
    try:
        return math.isfinite(sum(column))
    except TypeError:
        return False


class HeadsCache:
    """The row heads of recently read jobs, valid while the job's ``last_seq`` is unchanged.

    Histories are read again and again (dashboards, exports); the step
    attributes are a third of the work, and any write changes ``last_seq``
    (also when another process wrote), so a stale copy is never served.
    Jobs over ``HEADS_CACHE_JOB_ROWS`` rows are not cached.
    """

    def __init__(self) -> None:
        self._jobs: OrderedDict[int, tuple[int, list[Head]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(
        self, conn: sqlite3.Connection, pk: int, last_seq: int, row_count: int
    ) -> list[Head] | None:
        """The job's heads, read now if not cached; None for a job too large to cache."""
        with self._lock:
            cached = self._jobs.get(pk)
            if cached is not None and cached[0] == last_seq:
                self._jobs.move_to_end(pk)
                return cached[1]
        if row_count > HEADS_CACHE_JOB_ROWS:
            return None
        found = _heads(read_steps(conn, pk, 0, BIGINT_MAX))
        with self._lock:
            self._jobs[pk] = (last_seq, found)
            total = sum(len(entry[1]) for entry in self._jobs.values())
            while total > HEADS_CACHE_ROWS and len(self._jobs) > 1:
                _, (_, dropped) = self._jobs.popitem(last=False)
                total -= len(dropped)
        return found


def row_chunks(
    conn_factory: Callable[[], AbstractContextManager[sqlite3.Connection]],
    cache: HeadsCache,
    query: RowQuery,
) -> Iterator[list[Row]]:
    """The rows of ``query`` by step, a chunk at a time, its ``offset`` skipped;
    every query on a connection of ``conn_factory`` held only for that query.

    Raises:
        JobNotFound: unknown job (on the first chunk).
    """
    with conn_factory() as conn:
        found = conn.execute(
            "SELECT pk, last_seq, row_count FROM jobs WHERE id = ?", (query.job_id,)
        ).fetchone()
        if found is None:
            raise JobNotFound(query.job_id)
        pk, last_seq, row_count = found
        ids = metric_map(SQLITE, conn, pk, query.metrics)
        if query.metrics is not None and not ids:
            return
        cached = cache.get(conn, pk, last_seq, row_count)
    # Without a metric filter every step is a row: the offset skips steps.
    step_skip = query.offset if query.metrics is None else 0
    for chunk in _head_chunks(conn_factory, cached, pk, query.lo, query.hi, step_skip):
        with conn_factory() as conn:
            rows = _assemble(conn, chunk, ids, require_any=query.metrics is not None)
        yield rows


def _head_chunks(
    conn_factory: Callable[[], AbstractContextManager[sqlite3.Connection]],
    cached: list[Head] | None,
    pk: int,
    lo: int,
    hi: int,
    skip: int,
) -> Iterator[list[Head]]:
    """``(step, epoch, timestamp)`` of the rows in ``[lo, hi]``, a chunk at a time
    (each query on a borrowed connection, none held while a chunk is out)."""
    if cached is not None:
        first = bisect.bisect_left(cached, lo, key=_head_step)
        last = bisect.bisect_right(cached, hi, key=_head_step)
        skipped = min(skip, last - first)
        for start in range(first + skipped, last, CHUNK_STEPS):
            yield cached[start : min(start + CHUNK_STEPS, last)]
        # Then, like the keyset path, whatever was appended meanwhile.
        skip -= skipped
        if cached:
            lo = max(lo, cached[-1][0] + 1)
    while lo <= hi:
        with conn_factory() as conn:
            limit = min(CHUNK_STEPS + skip, BIGINT_MAX)
            steps = read_steps(conn, pk, lo, hi, limit=limit).take(slice(skip, None))
        skip = 0
        if not len(steps.steps):
            return
        yield _heads(steps)
        lo = int(steps.steps[-1]) + 1


def _assemble(
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
    rows = head_rows(steps)
    present = [False] * len(steps) if require_any else None
    for name, metric_id in ids.items():
        column = _column(conn, metric_id, steps, exact=exact)
        if _all_finite(column):  # the common case: a value at every step
            for row, value in zip(rows, column, strict=True):
                row[name] = value
            present = None  # every row has this metric
            continue
        for index, (row, value) in enumerate(zip(rows, column, strict=True)):
            if value is _ABSENT:
                continue
            row[name] = value if value is not None and value - value == 0 else wire_value(value)
            if present is not None:
                present[index] = True
    if present is None:
        return rows
    return [row for row, keep in zip(rows, present, strict=True) if keep]


def _column(
    conn: sqlite3.Connection, metric_id: int, steps: list[Head], *, exact: bool
) -> list[Any]:
    """Values of one metric aligned with ``steps`` (``_ABSENT`` where none)."""
    step_array = np.fromiter((head[0] for head in steps), np.int64, len(steps))
    found, values = blocks.read_points(
        SQLITE,
        conn,
        metric_id,
        int(step_array[0]),
        int(step_array[-1]),
        point_columns,
        step_array if exact else None,
    )
    if len(found) == len(steps):  # points ⊆ steps, both sorted: identical steps
        same: list[Any] = values.tolist()
        return same
    column: list[Any] = [_ABSENT] * len(steps)
    where = step_array.searchsorted(found)
    keep = where < len(step_array)
    keep[keep] = step_array[where[keep]] == found[keep]
    for index, value in zip(where[keep].tolist(), values[keep].tolist(), strict=True):
        column[index] = value
    return column


def rows_for_steps(
    conn: sqlite3.Connection, pk: int, steps: Sequence[int], metrics: Sequence[str] | None
) -> list[Row]:
    """Wire rows at exactly ``steps`` (missing ones skipped), ordered by step."""
    ids = metric_map(SQLITE, conn, pk, metrics)
    rows: list[Row] = []
    for chunk in SQLITE.chunks(sorted(set(steps))):
        wanted = np.asarray(chunk, dtype=np.int64)
        found = read_steps(conn, pk, chunk[0], chunk[-1], wanted=wanted)
        if len(found.steps):
            rows.extend(_assemble(conn, _heads(found), ids, exact=True))
    return rows


def _table(
    conn: sqlite3.Connection, sql: str, params: Sequence[Any], dtype: Any, nullable: str
) -> Any:
    """``sql``'s rows as a numpy structured array (no Python object per value);
    the ``nullable`` field, read as ``ifnull(x, 0.0)`` with an ``x IS NULL`` flag
    in ``null``, is NaN where it was NULL (SQLite's NaN, or no epoch)."""
    table = np.fromiter(conn.execute(sql, params), dtype=dtype)
    table[nullable][table["null"]] = np.nan
    return table


def step_head(
    conn: sqlite3.Connection, pk: int, condition: str, params: Sequence[Any], limit: int | None
) -> StepRows:
    """The job's head rows matching ``condition`` (the first ``limit``), by step;
    NaN epochs where none."""
    sql = (
        "SELECT step, ifnull(epoch, 0.0), epoch IS NULL, ts, seq FROM steps WHERE job_pk = ? "
        f"AND {condition} ORDER BY step"
    )
    if limit is not None:
        sql, params = f"{sql} LIMIT ?", [*params, limit]
    table = _table(conn, sql, (pk, *params), _TIME_ROW, "epoch")
    return StepRows(table["step"], table["epoch"], table["ts"], table["seq"])


def point_columns(
    conn: sqlite3.Connection, metric_id: int, condition: str, params: Sequence[Any]
) -> PointColumns:
    """One metric's points matching ``condition`` as arrays, by step."""
    sql = "SELECT step, ifnull(value, 0.0), value IS NULL FROM points WHERE metric_id = ? AND "
    params = (metric_id, *params)
    table = _table(conn, f"{sql}{condition} ORDER BY step", params, _POINT_ROW, "value")
    return table["step"], table["value"]
