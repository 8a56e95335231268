"""Read queries of the PostgreSQL store: rows assembled from steps and points.

Functions here take an open connection and run inside the caller's
transaction; :mod:`trainvis.store.postgres` owns the pool.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from trainvis.errors import JobNotFound
from trainvis.models import encode_value, format_timestamp
from trainvis.store.base import Row
from trainvis.store.postgres_copy import Conn, fetch_columns

CHUNK_STEPS = 5000
BIGINT_MAX = 2**63 - 1


def bounds(start_step: int | None, end_step: int | None) -> tuple[int, int]:
    """Inclusive step bounds with open ends filled in."""
    return (start_step if start_step is not None else 0), (
        end_step if end_step is not None else BIGINT_MAX
    )


def job_pk(conn: Conn, job_id: str, *, lock: bool = False) -> int:
    """The job's primary key (row-locked for the transaction with ``lock``)."""
    suffix = " FOR UPDATE" if lock else ""
    row = conn.execute("SELECT pk FROM jobs WHERE id = %s" + suffix, (job_id,)).fetchone()
    if row is None:
        raise JobNotFound(job_id)
    return int(row[0])


def metric_map(conn: Conn, pk: int, metrics: Sequence[str] | None) -> dict[str, int]:
    """``name -> metric id`` by name, or in the order of ``metrics`` (unknown names dropped)."""
    rows = conn.execute("SELECT name, id FROM metrics WHERE job_pk = %s ORDER BY name", (pk,))
    known = {str(name): int(metric_id) for name, metric_id in rows}
    if metrics is None:
        return known
    return {name: known[name] for name in metrics if name in known}


class Chunk(NamedTuple):
    """Stored rows' attributes, ascending by step; ``epochs`` is NaN where absent."""

    steps: npt.NDArray[np.int64]
    epochs: npt.NDArray[np.float64]
    timestamps: npt.NDArray[np.float64]


def read_chunk(conn: Conn, pk: int, condition: str, params: Sequence[Any]) -> Chunk:
    """The job's rows (``steps`` table) matching ``condition``, sorted by step."""
    steps, epochs, stamps = fetch_columns(
        conn,
        "SELECT step, coalesce(epoch, 'NaN'::float8), ts FROM steps "
        f"WHERE job_pk = %s AND {condition}",
        [pk, *params],
        "qdd",
    )
    if len(steps) > 1 and not (steps[1:] > steps[:-1]).all():
        order = steps.argsort()
        steps, epochs, stamps = steps[order], epochs[order], stamps[order]
    return Chunk(steps, epochs, stamps)


def step_filter(steps: Sequence[int]) -> tuple[str, list[Any]]:
    """A condition on ``step`` that selects at least the sorted ``steps``.

    A dense set becomes a range (an index range scan the planner always gets
    right; callers drop the extra steps), a sparse one ``= ANY(array)``.
    """
    lo, hi = steps[0], steps[-1]
    if hi - lo < 4 * len(steps) + 64:
        return "step BETWEEN %s AND %s", [lo, hi]
    return "step = ANY(%s::bigint[])", [list(steps)]


def _stamps(timestamps: npt.NDArray[np.float64]) -> list[str]:
    """Timestamps formatted once per distinct value (a batch shares one)."""
    memo: dict[float, str] = {}
    out: list[str] = []
    for ts in timestamps.tolist():
        text = memo.get(ts)
        if text is None:
            text = memo[ts] = format_timestamp(ts) or ""
        out.append(text)
    return out


def _base_rows(chunk: Chunk) -> list[Row]:
    rows: list[Row] = []
    for step, epoch, stamp in zip(
        chunk.steps.tolist(), chunk.epochs.tolist(), _stamps(chunk.timestamps), strict=True
    ):
        if epoch != epoch:  # NaN: the row has no epoch
            rows.append({"step": step, "timestamp": stamp})
        else:
            rows.append(
                {
                    "step": step,
                    "epoch": int(epoch) if epoch.is_integer() and epoch < 2**53 else epoch,
                    "timestamp": stamp,
                }
            )
    return rows


def _column(
    conn: Conn, metric_id: int, steps: npt.NDArray[np.int64], *, exact: bool
) -> tuple[npt.NDArray[np.intp], list[float]]:
    """One metric's values at ``steps``: ``(positions in steps, values)``."""
    if exact:
        condition, params = step_filter(steps.tolist())
    else:
        condition, params = "step BETWEEN %s AND %s", [int(steps[0]), int(steps[-1])]
    found, values = fetch_columns(
        conn,
        f"SELECT step, value FROM points WHERE metric_id = %s AND {condition}",
        [metric_id, *params],
        "qd",
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
    chunk: Chunk,
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
            rows[index][name] = value if value - value == 0 else encode_value(value)
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
    ids = metric_map(conn, pk, metrics)
    chunk = read_chunk(conn, pk, *step_filter(wanted))
    keep = np.isin(chunk.steps, np.asarray(wanted, dtype=np.int64))
    if not keep.all():
        chunk = Chunk(chunk.steps[keep], chunk.epochs[keep], chunk.timestamps[keep])
    return assemble(conn, chunk, ids, exact=True) if len(chunk.steps) else []


def iter_chunks(
    conn_factory: Callable[[], AbstractContextManager[Conn]],
    job_id: str,
    metrics: Sequence[str] | None,
    lo: int,
    hi: int,
    offset: int,
) -> Iterator[list[Row]]:
    """Chunks of rows by step, each read on a connection held only for that
    chunk: a suspended or abandoned stream pins no connection.

    Keyset paging over bounded step windows: every query scans at most one
    window (``step BETWEEN lo AND lo + window``), whatever plan the planner
    picks, so a million-row job streams in linear time even with stale table
    statistics. The window widens while it comes back sparse.

    Without a metric filter every step is a row and ``offset`` is resolved to
    a starting step in SQL; with one, rows without those metrics are dropped
    first, then skipped here.
    """
    with conn_factory() as conn:  # the job, its metrics and the start: once per stream
        pk = job_pk(conn, job_id)
        ids = metric_map(conn, pk, metrics)
        top = _max_step(conn, pk)
        if metrics is not None and not ids:
            return
        if metrics is None and offset:
            start = _step_at(conn, pk, lo, hi, offset)
            if start is None:
                return
            lo, offset = start, 0
    skip, window = offset, CHUNK_STEPS
    while lo <= hi:
        if top is None or lo > top:  # past the newest step seen: has the job grown?
            with conn_factory() as conn:
                top = _max_step(conn, pk)
            if top is None or lo > top:
                return
        upper = min(hi, lo + window - 1)
        with conn_factory() as conn:
            chunk = read_chunk(
                conn, pk, "step BETWEEN %s AND %s ORDER BY step LIMIT %s", [lo, upper, CHUNK_STEPS]
            )
            rows = assemble(conn, chunk, ids, require_any=metrics is not None)
        if skip:
            dropped = min(skip, len(rows))
            rows, skip = rows[dropped:], skip - dropped
        if rows:
            yield rows
        if len(chunk.steps) == CHUNK_STEPS:
            lo = int(chunk.steps[-1]) + 1
        else:
            lo = upper + 1
            if len(chunk.steps) < CHUNK_STEPS // 2:
                window *= 2


def _max_step(conn: Conn, pk: int) -> int | None:
    row = conn.execute("SELECT max_step FROM jobs WHERE pk = %s", (pk,)).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def _step_at(conn: Conn, pk: int, lo: int, hi: int, offset: int) -> int | None:
    """The step at position ``offset`` (0-based) among the job's steps in ``[lo, hi]``."""
    row = conn.execute(
        "SELECT step FROM steps WHERE job_pk = %s AND step BETWEEN %s AND %s "
        "ORDER BY step OFFSET %s LIMIT 1",
        (pk, lo, hi, offset),
    ).fetchone()
    return None if row is None else int(row[0])


def seqs_after(conn: Conn, pk: int, seq: int, limit: int) -> list[tuple[int, int]]:
    """``(step, seq)`` of up to ``limit`` rows with a seq above ``seq``, by seq.

    Seqs are nearly dense (a re-posted step leaves a hole), so the scan goes
    through bounded seq windows, widened while they come back short, up to the
    job's ``last_seq``: never a scan of everything after ``seq``.
    """
    row = conn.execute("SELECT last_seq FROM jobs WHERE pk = %s", (pk,)).fetchone()
    last = int(row[0]) if row else 0
    found: list[tuple[int, int]] = []
    window = max(limit, 64)
    while len(found) < limit and seq < last:
        upper = min(last, seq + window)
        with conn.cursor(binary=True) as cur:
            cur.execute(
                "SELECT step, seq FROM steps WHERE job_pk = %s AND seq > %s AND seq <= %s "
                "ORDER BY seq LIMIT %s",
                (pk, seq, upper, limit - len(found)),
            )
            found.extend((int(step), int(number)) for step, number in cur.fetchall())
        seq, window = upper, window * 2
    return found
