"""The SQLite write path: one metrics batch inside the caller's ``BEGIN IMMEDIATE``.

The transaction holds the database's write lock, so sequence numbers
``last_seq + 1 …`` are allocated, written and committed in order. Points and
steps go in with ``executemany`` upserts; a batch whose first step is above
the job's newest (the common case of a training loop) reads nothing back.
"""

from __future__ import annotations

import itertools
import math
import sqlite3
from collections.abc import Callable

import numpy as np

from trainvis.store import blocks
from trainvis.store.base import Row
from trainvis.store.common import MetricStats, stored_rows
from trainvis.store.dialect import SQLITE
from trainvis.store.sql_write import (
    WriteBatch,
    compact_backlog,
    group_by_metric,
    metrics_for_update,
    rescan_extremes,
    route_steps,
    save_progress,
)
from trainvis.store.sqlite_read import point_columns, read_steps, rows_for_steps, step_head


def write_batch(conn: sqlite3.Connection, batch: WriteBatch) -> Callable[[], list[tuple[int, Row]]]:
    """Store the batch's rows for its job; see ``SQLStore._write_batch``."""
    pk, merged, last_seq, names = batch.pk, batch.merged, batch.last_seq, batch.names
    ids, stats = metrics_for_update(SQLITE, conn, batch, names)
    fresh = batch.steps_are_new
    existing: set[int] = set()
    if not fresh:
        existing = _existing_steps(conn, pk, [row.step for row in merged])
    per_metric = group_by_metric(merged, names)
    points: list[tuple[int, int, float]] = []
    new_blocks: list[blocks.BlockRow] = []
    for name, (steps_of, values_of) in per_metric.items():
        metric_id = ids[name]
        # Points inside a block rewrite it; a long batch above the stored ones is
        # a block of its own; the rest goes to the head (issue 15).
        (head_steps, head_values), replaced = blocks.route(
            SQLITE, conn, metric_id, steps_of, values_of, stats[name].last_step, new_blocks
        )
        if not fresh and len(head_steps):
            replaced.update(_replaced(conn, metric_id, head_steps.tolist()))
        stats[name].apply(steps_of, values_of, replaced)
        points.extend(zip(itertools.repeat(metric_id), head_steps.tolist(), head_values.tolist()))
    blocks.insert_blocks(SQLITE, conn, new_blocks)
    conn.executemany(
        "INSERT INTO points VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET value = excluded.value",
        points,
    )
    conn.executemany(
        "INSERT INTO steps VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
        "epoch = coalesce(excluded.epoch, epoch), ts = excluded.ts, seq = excluded.seq",
        [
            (
                pk,
                merged[index].step,
                merged[index].epoch,
                merged[index].timestamp,
                last_seq + index + 1,
            )
            for index in route_steps(SQLITE, conn, batch, step_head)
        ],
    )
    compact_backlog(SQLITE, conn, batch, list(ids.values()), point_columns, step_head)
    _save_stats(conn, ids, stats)
    save_progress(SQLITE, conn, batch, len(merged) - len(existing))
    reread = (  # a write of new steps only reads nothing back (issue 13)
        {row["step"]: row for row in rows_for_steps(conn, pk, sorted(existing), None)}
        if existing
        else {}
    )
    return lambda: stored_rows(merged, reread, last_seq)


def _existing_steps(conn: sqlite3.Connection, pk: int, steps: list[int]) -> set[int]:
    wanted = np.unique(np.asarray(steps, dtype=np.int64))
    found = read_steps(conn, pk, int(wanted[0]), int(wanted[-1]), wanted=wanted)
    return set(found.steps.tolist())


def _replaced(conn: sqlite3.Connection, metric_id: int, steps: list[int]) -> dict[int, float]:
    wanted = set(steps)
    rows = conn.execute(
        "SELECT step, value FROM points WHERE metric_id = ? AND step BETWEEN ? AND ?",
        (metric_id, steps[0], steps[-1]),
    )
    return {step: math.nan if value is None else value for step, value in rows if step in wanted}


def _save_stats(
    conn: sqlite3.Connection, ids: dict[str, int], stats: dict[str, MetricStats]
) -> None:
    rescan_extremes(SQLITE, conn, ids, stats, point_columns)
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
