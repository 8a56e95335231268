"""The PostgreSQL write path: one metrics batch in one transaction.

Concurrency: the transaction first row-locks the job (``SELECT … FOR
UPDATE``), so writers of one job — on any replica — queue on that lock, and
sequence numbers ``last_seq + 1 …`` are allocated, written and committed in
order: unique, gap-free, and visible to readers in seq order. Every write
transaction takes the job lock before anything else and touches one job only,
so lock order is consistent and writers cannot deadlock.

Speed: a batch none of whose steps is stored yet (the common case of a
training loop, checked under the lock) cannot conflict with stored points, so
points and steps go in with a plain binary ``COPY``. Otherwise they are
copied into per-connection temporary staging tables and merged with one
``INSERT … SELECT … ON CONFLICT … DO UPDATE`` per table.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import chain

import numpy as np

from trainvis.store import blocks
from trainvis.store.base import Row
from trainvis.store.common import MergedRow, MetricStats, stored_rows
from trainvis.store.dialect import POSTGRES
from trainvis.store.postgres_copy import Conn, copy_in, encode_tuples
from trainvis.store.postgres_read import point_columns, read_steps, rows_for_steps, step_head
from trainvis.store.sql_read import step_filter
from trainvis.store.sql_write import (
    PerMetric,
    WriteBatch,
    compact_backlog,
    group_by_metric,
    metrics_for_update,
    rescan_extremes,
    route_steps,
    save_progress,
)

STAGING_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS stage_points "
    "(metric_id bigint, step bigint, value double precision) ON COMMIT DELETE ROWS",
    "CREATE TEMP TABLE IF NOT EXISTS stage_steps "
    "(job_pk bigint, step bigint, epoch double precision, ts double precision, seq bigint) "
    "ON COMMIT DELETE ROWS",
)


def write_batch(conn: Conn, batch: WriteBatch) -> Callable[[], list[tuple[int, Row]]]:
    """Store the batch's rows for its (already locked) job.

    Returns a factory of the ``(seq, row)`` pairs as stored: steps that
    existed before are re-read here, inside the transaction. New metric names
    beyond the job's limit raise (naming a field of ``batch.rows``).
    """
    pk, merged, last_seq, names = batch.pk, batch.merged, batch.last_seq, batch.names
    ids, stats = metrics_for_update(POSTGRES, conn, batch, names)
    existing: set[int] = set()
    replaced: dict[int, dict[int, float]] = {}
    if not batch.steps_are_new:
        existing, replaced = _existing(conn, pk, merged, list(ids.values()))
    # No stored step among the batch's (the usual case, also for steps arriving
    # out of order from several writers): nothing can conflict, plain COPY.
    fresh = not existing
    per_metric = group_by_metric(merged, names)
    head: PerMetric = {}
    new_blocks: list[blocks.BlockRow] = []
    for name, (steps_of, values_of) in per_metric.items():
        # Points inside a block rewrite it; a long batch above the stored ones is
        # a block of its own; the rest goes to the head (issue 15).
        (head_steps, head_values), from_blocks = blocks.route(
            POSTGRES, conn, ids[name], steps_of, values_of, stats[name].last_step, new_blocks
        )
        stats[name].apply(steps_of, values_of, {**replaced.get(ids[name], {}), **from_blocks})
        if len(head_steps):
            head[name] = (head_steps.tolist(), head_values.tolist())
    blocks.insert_blocks(POSTGRES, conn, new_blocks)
    if not fresh:
        ensure_staging(conn)
    if head:
        _write_points(conn, ids, head, fresh)
    head_rows = route_steps(POSTGRES, conn, batch, step_head)
    if head_rows:
        _write_steps(conn, pk, [(index, merged[index]) for index in head_rows], last_seq, fresh)
    compact_backlog(POSTGRES, conn, batch, list(ids.values()), point_columns, step_head)
    _save_stats(conn, ids, stats)
    save_progress(POSTGRES, conn, batch, len(merged) - len(existing))
    reread = {row["step"]: row for row in rows_for_steps(conn, pk, sorted(existing))}
    return lambda: stored_rows(merged, reread, last_seq)


def _existing(
    conn: Conn, pk: int, merged: list[MergedRow], metric_ids: list[int]
) -> tuple[set[int], dict[int, dict[int, float]]]:
    """Steps of the batch already stored, and the stored values they replace."""
    wanted = np.unique(np.fromiter((row.step for row in merged), np.int64, len(merged)))
    found = read_steps(conn, pk, int(wanted[0]), int(wanted[-1]), wanted=wanted)
    existing = set(found.steps.tolist())
    with conn.cursor(binary=True) as cur:
        replaced: dict[int, dict[int, float]] = {}
        if not existing:
            return existing, replaced
        condition, params = step_filter(POSTGRES, sorted(existing))
        cur.execute(
            POSTGRES.sql(
                f"SELECT metric_id, step, value FROM points WHERE metric_id = ANY(?::bigint[]) "
                f"AND {condition}"
            ),
            [metric_ids, *params],
        )
        for metric_id, step, value in cur.fetchall():
            if step in existing:
                replaced.setdefault(metric_id, {})[step] = value
    return existing, replaced


def ensure_staging(conn: Conn) -> None:
    """Create this connection's temporary staging tables (idempotent)."""
    for ddl in STAGING_DDL:
        conn.execute(ddl.encode())


def _write_points(
    conn: Conn,
    ids: dict[str, int],
    per_metric: PerMetric,
    fresh: bool,
) -> None:
    series = list(per_metric.items())
    count = sum(len(steps_of) for _, (steps_of, _) in series)
    data = encode_tuples(
        count,
        [
            ("q", np.repeat([ids[name] for name, _ in series], [len(s) for _, (s, _) in series])),
            ("q", np.fromiter(chain.from_iterable(s for _, (s, _) in series), np.int64, count)),
            ("d", np.fromiter(chain.from_iterable(v for _, (_, v) in series), np.float64, count)),
        ],
    )
    if fresh:
        copy_in(conn, "COPY points (metric_id, step, value) FROM STDIN", data)
        return
    copy_in(conn, "COPY stage_points (metric_id, step, value) FROM STDIN", data)
    conn.execute(
        "INSERT INTO points (metric_id, step, value) SELECT metric_id, step, value "
        "FROM stage_points ON CONFLICT (metric_id, step) DO UPDATE SET value = EXCLUDED.value"
    )


def _write_steps(
    conn: Conn, pk: int, merged: list[tuple[int, MergedRow]], last_seq: int, fresh: bool
) -> None:
    """Store the head's steps: ``(position in the batch, row)``, whose seq is
    ``last_seq + position + 1``."""
    # Rows with and without an epoch are encoded apart (a NULL changes the tuple size).
    chunks: list[bytes] = []
    for with_epoch in (True, False):
        part = [(index, row) for index, row in merged if (row.epoch is not None) is with_epoch]
        if not part:
            continue
        chunks.append(
            encode_tuples(
                len(part),
                [
                    ("q", np.full(len(part), pk)),
                    ("q", [row.step for _, row in part]),
                    ("d", [row.epoch for _, row in part if row.epoch is not None])
                    if with_epoch
                    else None,
                    ("d", [row.timestamp for _, row in part]),
                    ("q", [last_seq + index + 1 for index, _ in part]),
                ],
            )
        )
    table = "steps" if fresh else "stage_steps"
    copy_in(conn, f"COPY {table} (job_pk, step, epoch, ts, seq) FROM STDIN", *chunks)
    if fresh:
        return
    conn.execute(
        "INSERT INTO steps (job_pk, step, epoch, ts, seq) "
        "SELECT job_pk, step, epoch, ts, seq FROM stage_steps "
        "ON CONFLICT (job_pk, step) DO UPDATE SET epoch = coalesce(EXCLUDED.epoch, steps.epoch), "
        "ts = EXCLUDED.ts, seq = EXCLUDED.seq"
    )


def _save_stats(conn: Conn, ids: dict[str, int], stats: dict[str, MetricStats]) -> None:
    rescan_extremes(POSTGRES, conn, ids, stats, point_columns)
    items = list(stats.items())

    def floats(values: list[float | None]) -> list[float | None]:
        return [None if value is None else float(value) for value in values]

    conn.execute(
        "UPDATE metrics m SET count = v.count, last_step = v.last_step, "
        "last_value = v.last_value, min_value = v.min_value, min_step = v.min_step, "
        "max_value = v.max_value, max_step = v.max_step, nonfinite = v.nonfinite "
        "FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::float8[], %s::float8[], "
        "%s::bigint[], %s::float8[], %s::bigint[], %s::bigint[]) "
        "AS v(id, count, last_step, last_value, min_value, min_step, max_value, max_step, "
        "nonfinite) WHERE m.id = v.id",
        (
            [ids[name] for name, _ in items],
            [item.count for _, item in items],
            [item.last_step for _, item in items],
            floats([item.last_value for _, item in items]),
            floats([item.min_value for _, item in items]),
            [item.min_step for _, item in items],
            floats([item.max_value for _, item in items]),
            [item.max_step for _, item in items],
            [item.nonfinite for _, item in items],
        ),
    )
