"""Read helpers both SQL stores share: step bounds and filters, metric ids, the
shapes their read hooks return, and the row limit of a chunked read."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from trainvis.store.base import Row
from trainvis.store.dialect import Connection, Dialect

BIGINT_MAX = 2**63 - 1

StepColumns = tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]
"""Rows' ``(steps, epochs, timestamps)`` ascending by step; epochs are NaN where absent."""
PointColumns = tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]
"""One metric's ``(steps, values)`` ascending by step."""


@dataclass(frozen=True)
class RowQuery:
    """A chunked row read: the job, the metrics (None: all), inclusive step bounds,
    and the rows to skip first.

    Without a metric filter every step is a row: a backend resolves ``offset``
    to steps skipped in SQL. With one, rows without those metrics are dropped
    first and :func:`limited` skips the offset.
    """

    job_id: str
    metrics: Sequence[str] | None
    lo: int
    hi: int
    offset: int


def bounds(start_step: int | None, end_step: int | None) -> tuple[int, int]:
    """Inclusive step bounds with open ends filled in."""
    return (start_step if start_step is not None else 0), (
        end_step if end_step is not None else BIGINT_MAX
    )


def metric_map(
    d: Dialect, conn: Connection, pk: int, metrics: Sequence[str] | None
) -> dict[str, int]:
    """``name -> metric id`` by name, or in the order of ``metrics`` (unknown names dropped)."""
    rows = d.run(conn, "SELECT name, id FROM metrics WHERE job_pk = ? ORDER BY name", (pk,))
    known = {str(name): int(metric_id) for name, metric_id in rows}
    if metrics is None:
        return known
    return {name: known[name] for name in metrics if name in known}


def step_filter(d: Dialect, steps: Sequence[int]) -> tuple[str, list[Any]]:
    """A condition on ``step`` that selects at least the sorted ``steps``.

    A dense set (or one too long for one ``IN`` list) becomes a range, an
    index range scan the planner always gets right (callers drop the extra
    steps); a sparse one a list.
    """
    lo, hi = steps[0], steps[-1]
    if hi - lo < 4 * len(steps) + 64 or len(steps) > d.in_chunk:
        return "step BETWEEN ? AND ?", [lo, hi]
    return d.in_list("step", steps, "bigint")


def seqs_after(
    d: Dialect, conn: Connection, pk: int, seq: int, limit: int
) -> list[tuple[int, int]]:
    """``(step, seq)`` of up to ``limit`` rows with a seq above ``seq``, by seq.

    Seqs are nearly dense (a re-posted step leaves a hole), so the scan goes
    through bounded seq windows, widened while they come back short, up to the
    job's ``last_seq``: never a scan of everything after ``seq``, whatever plan
    a planner with stale statistics would pick.
    """
    last = int(d.scalar(conn, "SELECT last_seq FROM jobs WHERE pk = ?", (pk,)) or 0)
    found: list[tuple[int, int]] = []
    window = max(limit, 64)
    while len(found) < limit and seq < last:
        upper = min(last, seq + window)
        cursor = d.run(
            conn,
            "SELECT step, seq FROM steps WHERE job_pk = ? AND seq > ? AND seq <= ? "
            "ORDER BY seq LIMIT ?",
            (pk, seq, upper, limit - len(found)),
        )
        found.extend((int(step), int(number)) for step, number in cursor.fetchall())
        seq, window = upper, window * 2
    return found


def limited(chunks: Iterator[list[Row]], skip: int, limit: int | None) -> Iterator[list[Row]]:
    """``chunks`` without their first ``skip`` rows, cut after ``limit`` rows in all,
    empty chunks dropped; the source is closed at the end."""
    remaining = limit if limit is not None else BIGINT_MAX
    try:
        for rows in chunks:
            if skip:
                dropped = min(skip, len(rows))
                rows, skip = rows[dropped:], skip - dropped
            if len(rows) > remaining:
                rows = rows[:remaining]
            remaining -= len(rows)
            if rows:
                yield rows
            if remaining <= 0:
                return
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
