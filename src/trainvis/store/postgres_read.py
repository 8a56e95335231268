"""Read queries of the PostgreSQL store: rows assembled from steps and points.

Functions here take an open connection and run inside the caller's
transaction; :mod:`trainvis.store.postgres` owns the pool.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import numpy.typing as npt

from trainvis.store import blocks, step_blocks
from trainvis.store.base import Row
from trainvis.store.common import wire_rows, wire_value
from trainvis.store.dialect import POSTGRES
from trainvis.store.postgres_copy import Conn, fetch_columns
from trainvis.store.sql_jobs import job_pk
from trainvis.store.sql_read import BIGINT_MAX, PointColumns, RowQuery, metric_map
from trainvis.store.step_blocks import StepRows

#: Steps per chunk of a streamed history: each chunk costs about six round
#: trips (its steps, then each metric's blocks and head), so 20,000 rows (a few
#: MB of wire rows) keep a 50,000-row history to three chunks.
CHUNK_STEPS = 20_000


def step_head(
    conn: Conn, pk: int, condition: str, params: Sequence[Any], limit: int | None
) -> StepRows:
    """The job's head rows matching ``condition`` (the first ``limit``), by step;
    NaN epochs where none."""
    sql = (
        "SELECT step, coalesce(epoch, 'NaN'::float8), ts, seq FROM steps "
        f"WHERE job_pk = ? AND {condition}"
    )
    if limit is not None:
        sql, params = f"{sql} ORDER BY step LIMIT ?", [*params, limit]
    steps, epochs, stamps, seqs = fetch_columns(conn, sql, [pk, *params], "qddq")
    rows = StepRows(steps, epochs, stamps, seqs)
    if len(steps) > 1 and not (steps[1:] > steps[:-1]).all():
        rows = rows.take(steps.argsort())
    return rows


def read_steps(
    conn: Conn,
    pk: int,
    lo: int,
    hi: int,
    *,
    wanted: npt.NDArray[np.int64] | None = None,
    limit: int | None = None,
) -> StepRows:
    """The job's steps in ``[lo, hi]`` (see :func:`~trainvis.store.step_blocks.read`)."""
    return step_blocks.read(POSTGRES, conn, pk, lo, hi, step_head, wanted=wanted, limit=limit)


def _base_rows(chunk: StepRows) -> list[Row]:
    return wire_rows(chunk.steps, chunk.epochs, chunk.stamps)


def _column(
    conn: Conn, metric_id: int, steps: npt.NDArray[np.int64], *, exact: bool
) -> tuple[npt.NDArray[np.intp], list[float]]:
    """One metric's values at ``steps``: ``(positions in steps, values)``."""
    found, values = blocks.read_points(
        POSTGRES,
        conn,
        metric_id,
        int(steps[0]),
        int(steps[-1]),
        point_columns,
        steps if exact else None,
    )
    where = steps.searchsorted(found)
    if not exact and len(found) == len(steps):
        # steps are every stored step of the range and points a subset: the same steps
        return where, values.tolist()
    keep = where < len(steps)
    keep[keep] = steps[where[keep]] == found[keep]
    return where[keep], values[keep].tolist()


def assemble(
    conn: Conn,
    chunk: StepRows,
    ids: dict[str, int],
    *,
    require_any: bool = False,
    exact: bool = False,
) -> list[Row]:
    """Wire rows for ``chunk`` with the metrics in ``ids`` (keys in ``ids`` order).

    ``require_any`` drops rows that have none of the metrics; ``exact`` reads
    the points at exactly these steps instead of the range they span.
    """
    if not len(chunk.steps):  # an empty step window (a gap in the job's steps)
        return []
    rows = _base_rows(chunk)
    present = np.zeros(len(rows), dtype=bool) if require_any else None
    for name, metric_id in ids.items():
        positions, values = _column(conn, metric_id, chunk.steps, exact=exact)
        for index, value in zip(positions.tolist(), values, strict=True):
            rows[index][name] = value if value - value == 0 else wire_value(value)
        if present is not None:
            present[positions] = True
    if present is None:
        return rows
    return [row for row, keep in zip(rows, present.tolist(), strict=True) if keep]


def rows_for_steps(
    conn: Conn, pk: int, steps: Sequence[int], metrics: Sequence[str] | None = None
) -> list[Row]:
    """Wire rows at exactly ``steps`` (missing ones skipped), ordered by step."""
    wanted = sorted(set(steps))
    if not wanted:
        return []
    ids = metric_map(POSTGRES, conn, pk, metrics)
    chunk = read_steps(conn, pk, wanted[0], wanted[-1], wanted=np.asarray(wanted, np.int64))
    return assemble(conn, chunk, ids, exact=True) if len(chunk.steps) else []


def iter_chunks(
    conn_factory: Callable[[], AbstractContextManager[Conn]], query: RowQuery
) -> Iterator[list[Row]]:
    """Chunks of rows by step, each read on a connection held only for that
    chunk: a suspended or abandoned stream pins no connection.

    Keyset paging over bounded step windows: every query scans at most one
    window (``step BETWEEN lo AND lo + window``), whatever plan the planner
    picks, so a million-row job streams in linear time even with stale table
    statistics. The window widens while it comes back sparse.

    Without a metric filter every step is a row and ``offset`` is resolved to
    a starting step in SQL; with one, rows without those metrics are dropped
    first, then skipped by the caller (see ``RowQuery``).
    """
    metrics, lo, hi, offset = query.metrics, query.lo, query.hi, query.offset
    with conn_factory() as conn:  # the job, its metrics and the start: once per stream
        pk = job_pk(POSTGRES, conn, query.job_id)
        ids = metric_map(POSTGRES, conn, pk, metrics)
        top = _max_step(conn, pk)
        if metrics is not None and not ids:
            return
        if metrics is None and offset:
            start = _step_at(conn, pk, lo, hi, offset)
            if start is None:
                return
            lo = start
    window = CHUNK_STEPS
    while lo <= hi:
        if top is None or lo > top:  # past the newest step seen: has the job grown?
            with conn_factory() as conn:
                top = _max_step(conn, pk)
            if top is None or lo > top:
                return
        upper = min(hi, lo + window - 1)
        with conn_factory() as conn:
            chunk = read_steps(conn, pk, lo, upper, limit=CHUNK_STEPS)
            rows = assemble(conn, chunk, ids, require_any=metrics is not None)
        yield rows
        if len(chunk.steps) == CHUNK_STEPS:
            lo = int(chunk.steps[-1]) + 1
        else:
            lo = upper + 1
            if len(chunk.steps) < CHUNK_STEPS // 2:
                window *= 2


def point_columns(
    conn: Conn, metric_id: int, condition: str, params: Sequence[Any]
) -> PointColumns:
    """One metric's points matching ``condition`` as arrays, by step."""
    # Unordered (heap order) and sorted here: the planner, with stale
    # statistics, would otherwise pick a bitmap scan and a disk sort.
    steps, values = fetch_columns(
        conn,
        f"SELECT step, value FROM points WHERE metric_id = %s AND {condition}",
        [metric_id, *params],
        "qd",
    )
    if len(steps) > 1 and not (steps[1:] > steps[:-1]).all():
        order = steps.argsort(kind="stable")
        steps, values = steps[order], values[order]
    return steps, values


def _max_step(conn: Conn, pk: int) -> int | None:
    row = conn.execute("SELECT max_step FROM jobs WHERE pk = %s", (pk,)).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def _step_at(conn: Conn, pk: int, lo: int, hi: int, offset: int) -> int | None:
    """The step at position ``offset`` (0-based) among the job's steps in ``[lo, hi]``."""
    found = read_steps(conn, pk, lo, hi, limit=min(offset + 1, BIGINT_MAX)).steps
    return int(found[-1]) if len(found) == offset + 1 else None
