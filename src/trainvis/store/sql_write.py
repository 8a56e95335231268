"""The parts of a metrics write both SQL stores share.

A backend's write path (``sqlite_write.py``, ``postgres_write.py``) differs in
how it moves points and steps into the database (``executemany`` upserts
against binary ``COPY``); what surrounds that is here: the job's metrics and
their statistics read and created under the job's lock, points grouped by
metric, the job's progress columns, and the rare rescan of a replaced extreme.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from trainvis.models import MetricRow
from trainvis.store import blocks, step_blocks
from trainvis.store.blocks import HeadReader, extremes
from trainvis.store.common import MergedRow, MetricStats, check_metric_budget
from trainvis.store.compactor import BACKLOG
from trainvis.store.dialect import Connection, Dialect
from trainvis.store.sql_jobs import STAT_COLUMNS, stats_from_row
from trainvis.store.step_blocks import StepHead, StepRows

PerMetric = dict[str, tuple[list[int], list[float]]]
"""``name -> (steps, values)`` of a batch, steps ascending."""


@dataclass
class Due:
    """What a write leaves to the background compactor (:mod:`~trainvis.store.compactor`)."""

    metrics: list[int] = field(default_factory=list)
    steps: bool = False


@dataclass(frozen=True)
class WriteBatch:
    """One ``write_metrics`` call inside its transaction: the job as read under its
    lock, the merged rows and what the request asked."""

    pk: int
    last_seq: int
    max_step: int | None
    max_epoch: float | None
    first_ts: float | None
    merged: list[MergedRow]
    now: float
    rows: Sequence[MetricRow]
    max_metrics: int | None
    due: Due = field(default_factory=Due)

    @property
    def names(self) -> list[str]:
        """The batch's metric names, sorted."""
        return sorted({name for row in self.merged for name in row.values})

    @property
    def steps_are_new(self) -> bool:
        """Whether every step of the batch is above the job's newest (nothing to replace)."""
        return self.max_step is None or self.merged[0].step > self.max_step


def metrics_for_update(
    d: Dialect, conn: Connection, batch: WriteBatch, names: list[str]
) -> tuple[dict[str, int], dict[str, MetricStats]]:
    """Ids and statistics of ``names`` for the job, creating the missing metrics
    within the job's limit (checked under the job's lock).

    Only the batch's names are looked up (a job may have thousands).
    """
    ids: dict[str, int] = {}
    stats: dict[str, MetricStats] = {}
    for chunk in d.chunks(names):
        condition, params = d.in_list("name", chunk, "text")
        cursor = d.run(
            conn,
            f"SELECT {STAT_COLUMNS} FROM metrics WHERE job_pk = ? AND {condition}",
            [batch.pk, *params],
        )
        for row in cursor:
            ids[str(row[1])], stats[str(row[1])] = int(row[0]), stats_from_row(row)
    missing = [name for name in names if name not in ids]
    if missing:
        if batch.max_metrics is not None:
            stored = d.scalar(conn, "SELECT count(*) FROM metrics WHERE job_pk = ?", (batch.pk,))
            check_metric_budget(batch.rows, set(missing), int(stored), batch.max_metrics)
        for chunk in d.chunks(missing):
            text, params = d.insert_metrics(batch.pk, chunk)
            for metric_id, name in d.run(conn, text, params).fetchall():
                ids[name], stats[name] = int(metric_id), MetricStats()
    return ids, stats


def group_by_metric(merged: Sequence[MergedRow], names: list[str]) -> PerMetric:
    """The batch's points by metric."""
    per_metric: PerMetric = {name: ([], []) for name in names}
    for row in merged:
        for name, value in row.values.items():
            steps_of, values_of = per_metric[name]
            steps_of.append(row.step)
            values_of.append(value)
    return per_metric


def save_progress(d: Dialect, conn: Connection, batch: WriteBatch, new_rows: int) -> None:
    """The job's ``last_seq``, newest step and epoch, first timestamp and row count
    after ``batch`` (``new_rows`` of its rows new steps)."""
    merged = batch.merged
    epochs = [row.epoch for row in merged if row.epoch is not None]
    if batch.max_epoch is not None:
        epochs.append(batch.max_epoch)
    first_ts = batch.first_ts if batch.first_ts is not None else math.inf
    d.run(
        conn,
        "UPDATE jobs SET last_seq = ?, max_step = ?, max_epoch = ?, first_ts = ?, "
        "row_count = row_count + ?, updated_at = ? WHERE pk = ?",
        (
            batch.last_seq + len(merged),
            max(merged[-1].step, batch.max_step if batch.max_step is not None else -1),
            max(epochs, default=None),
            min(first_ts, *(row.timestamp for row in merged)),
            new_rows,
            batch.now,
            batch.pk,
        ),
    )


def rescan_extremes(
    d: Dialect,
    conn: Connection,
    ids: dict[str, int],
    stats: dict[str, MetricStats],
    head: HeadReader,
) -> None:
    """Recompute min/max of the metrics whose stored extreme was overwritten (rare)."""
    for name, item in stats.items():
        if not item.needs_rescan:
            continue
        low, high = extremes(d, conn, ids[name], head)
        item.min_value, item.min_step = low if low else (None, None)
        item.max_value, item.max_step = high if high else (None, None)
        item.needs_rescan = False


def route_steps(d: Dialect, conn: Connection, batch: WriteBatch, head: StepHead) -> list[int]:
    """Write the batch's steps that fall inside a step block into that block (see
    :mod:`~trainvis.store.step_blocks`); returns the positions in ``batch.merged``
    of the rows left for the head, whose seq is ``last_seq + position + 1``."""
    merged = batch.merged
    direct = d.seals_batches and len(merged) >= blocks.SEALED_MIN
    if batch.steps_are_new and not direct:  # no block holds one of them
        return list(range(len(merged)))
    rows = StepRows(
        np.fromiter((row.step for row in merged), np.int64, len(merged)),
        np.fromiter(
            (math.nan if row.epoch is None else row.epoch for row in merged),
            np.float64,
            len(merged),
        ),
        np.fromiter((row.timestamp for row in merged), np.float64, len(merged)),
        np.arange(batch.last_seq + 1, batch.last_seq + 1 + len(merged), dtype=np.int64),
    )
    if batch.steps_are_new:  # a full batch above every stored step: a block of its own
        step_blocks.insert(d, conn, batch.pk, [rows])
        return []
    order = rows.steps.argsort(kind="stable")
    left = step_blocks.route(d, conn, batch.pk, rows.take(order))
    return np.flatnonzero(np.isin(rows.steps, left.steps)).tolist()


def compact_backlog(
    d: Dialect,
    conn: Connection,
    batch: WriteBatch,
    metric_ids: Sequence[int],
    points: HeadReader,
    steps: StepHead,
) -> None:
    """After a batch: compact in line the heads of its job that hold a backlog
    (:data:`~trainvis.store.compactor.BACKLOG` blocks' worth), and leave those
    holding a block's worth to the background compactor (``batch.due``)."""
    for metric_id, held in blocks.held_points(d, conn, metric_ids).items():
        if held >= BACKLOG * blocks.BLOCK_POINTS:
            blocks.compact(d, conn, metric_id, points)
        elif held >= blocks.BLOCK_POINTS:
            batch.due.metrics.append(metric_id)
    held = step_blocks.head_rows(d, conn, batch.pk)
    if held >= BACKLOG * step_blocks.STEP_BLOCK_ROWS:
        step_blocks.compact(d, conn, batch.pk, steps)
    elif held >= step_blocks.STEP_BLOCK_ROWS:
        batch.due.steps = True
