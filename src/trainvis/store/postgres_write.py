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

import math
from collections.abc import Callable, Sequence
from itertools import chain
from typing import Any

import numpy as np

from trainvis.models import MetricRow
from trainvis.store.base import Row
from trainvis.store.common import MergedRow, MetricStats, check_metric_budget, stored_rows
from trainvis.store.postgres_copy import Conn, copy_in, encode_tuples
from trainvis.store.postgres_read import rows_for_steps, step_filter

FINITE_MAX = 1.7976931348623157e308
STAT_COLUMNS = (
    "id, name, count, last_step, last_value, min_value, min_step, max_value, max_step, nonfinite"
)
STAGING_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS stage_points "
    "(metric_id bigint, step bigint, value double precision) ON COMMIT DELETE ROWS",
    "CREATE TEMP TABLE IF NOT EXISTS stage_steps "
    "(job_pk bigint, step bigint, epoch double precision, ts double precision, seq bigint) "
    "ON COMMIT DELETE ROWS",
)


def write_batch(
    conn: Conn,
    pk: int,
    job: Sequence[Any],
    merged: list[MergedRow],
    now: float,
    rows: Sequence[MetricRow] = (),
    max_metrics: int | None = None,
) -> Callable[[], list[tuple[int, Row]]]:
    """Store ``merged`` rows for the (already locked) job.

    ``job`` is ``(last_seq, max_step, max_epoch, first_ts)`` read under the
    lock. Returns a factory of the ``(seq, row)`` pairs as stored: steps that
    existed before are re-read here, inside the transaction. New metric names
    beyond ``max_metrics`` for the job raise (naming a field of ``rows``).
    """
    last_seq, max_step, max_epoch, first_ts = job
    names = sorted({name for row in merged for name in row.values})
    ids, stats = _metrics_for_update(conn, pk, names, rows, max_metrics)
    existing: set[int] = set()
    replaced: dict[int, dict[int, float]] = {}
    if max_step is not None and merged[0].step <= max_step:
        existing, replaced = _existing(conn, pk, merged, list(ids.values()))
    # No stored step among the batch's (the usual case, also for steps arriving
    # out of order from several writers): nothing can conflict, plain COPY.
    fresh = not existing
    per_metric: dict[str, tuple[list[int], list[float]]] = {name: ([], []) for name in names}
    for row in merged:
        for name, value in row.values.items():
            steps_of, values_of = per_metric[name]
            steps_of.append(row.step)
            values_of.append(value)
    for name, (steps_of, values_of) in per_metric.items():
        stats[name].apply(steps_of, values_of, replaced.get(ids[name], {}))
    _write_points(conn, ids, per_metric, fresh)
    _write_steps(conn, pk, merged, last_seq, fresh)
    _save_stats(conn, ids, stats)
    epochs = [row.epoch for row in merged if row.epoch is not None]
    if max_epoch is not None:
        epochs.append(max_epoch)
    conn.execute(
        "UPDATE jobs SET last_seq = %s, max_step = %s, max_epoch = %s, first_ts = %s, "
        "row_count = row_count + %s, updated_at = %s WHERE pk = %s",
        (
            last_seq + len(merged),
            max(merged[-1].step, max_step if max_step is not None else -1),
            max(epochs, default=None),
            min(first_ts if first_ts is not None else math.inf, *(r.timestamp for r in merged)),
            len(merged) - len(existing),
            now,
            pk,
        ),
    )
    reread = {row["step"]: row for row in rows_for_steps(conn, pk, sorted(existing))}
    return lambda: stored_rows(merged, reread, last_seq)


def _metrics_for_update(
    conn: Conn, pk: int, names: list[str], batch: Sequence[MetricRow], max_metrics: int | None
) -> tuple[dict[str, int], dict[str, MetricStats]]:
    """Ids and statistics of ``names`` for the job, creating the missing metrics
    within the job's limit (checked under the job's row lock)."""
    rows = conn.execute(
        f"SELECT {STAT_COLUMNS} FROM metrics WHERE job_pk = %s AND name = ANY(%s::text[])".encode(),
        (pk, names),
    ).fetchall()
    ids = {str(row[1]): int(row[0]) for row in rows}
    stats = {str(row[1]): stats_from_row(row) for row in rows}
    missing = [name for name in names if name not in ids]
    if missing:
        if max_metrics is not None:
            stored = conn.execute("SELECT count(*) FROM metrics WHERE job_pk = %s", (pk,))
            found = stored.fetchone()
            check_metric_budget(batch, set(missing), int(found[0]) if found else 0, max_metrics)
        created = conn.execute(
            "INSERT INTO metrics (job_pk, name) SELECT %s, unnest(%s::text[]) RETURNING id, name",
            (pk, missing),
        ).fetchall()
        for metric_id, name in created:
            ids[name], stats[name] = int(metric_id), MetricStats()
    return ids, stats


def _existing(
    conn: Conn, pk: int, merged: list[MergedRow], metric_ids: list[int]
) -> tuple[set[int], dict[int, dict[int, float]]]:
    """Steps of the batch already stored, and the stored values they replace."""
    wanted = [row.step for row in merged]
    condition, params = step_filter(wanted)
    with conn.cursor(binary=True) as cur:
        cur.execute(
            f"SELECT step FROM steps WHERE job_pk = %s AND {condition}".encode(), [pk, *params]
        )
        wanted_set = set(wanted)
        existing = {int(row[0]) for row in cur.fetchall() if row[0] in wanted_set}
        replaced: dict[int, dict[int, float]] = {}
        if not existing:
            return existing, replaced
        condition, params = step_filter(sorted(existing))
        cur.execute(
            "SELECT metric_id, step, value FROM points "
            f"WHERE metric_id = ANY(%s::bigint[]) AND {condition}".encode(),
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
    per_metric: dict[str, tuple[list[int], list[float]]],
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
    ensure_staging(conn)
    copy_in(conn, "COPY stage_points (metric_id, step, value) FROM STDIN", data)
    conn.execute(
        "INSERT INTO points (metric_id, step, value) SELECT metric_id, step, value "
        "FROM stage_points ON CONFLICT (metric_id, step) DO UPDATE SET value = EXCLUDED.value"
    )


def _write_steps(conn: Conn, pk: int, merged: list[MergedRow], last_seq: int, fresh: bool) -> None:
    # Rows with and without an epoch are encoded apart (a NULL changes the tuple size).
    chunks: list[bytes] = []
    for with_epoch in (True, False):
        part = [
            (index, row)
            for index, row in enumerate(merged)
            if (row.epoch is not None) is with_epoch
        ]
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
    for name, item in stats.items():
        if item.needs_rescan:
            _rescan(conn, ids[name], item)
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


def _rescan(conn: Conn, metric_id: int, item: MetricStats) -> None:
    """Recompute min/max after a stored extreme was overwritten (rare)."""
    base = "SELECT value, step FROM points WHERE metric_id = %s AND value BETWEEN %s AND %s "
    bounds = (metric_id, -FINITE_MAX, FINITE_MAX)
    low = conn.execute((base + "ORDER BY value ASC, step ASC LIMIT 1").encode(), bounds).fetchone()
    high = conn.execute(
        (base + "ORDER BY value DESC, step ASC LIMIT 1").encode(), bounds
    ).fetchone()
    item.min_value, item.min_step = (low[0], low[1]) if low else (None, None)
    item.max_value, item.max_step = (high[0], high[1]) if high else (None, None)
    item.needs_rescan = False


def stats_from_row(row: Sequence[Any]) -> MetricStats:
    """A :class:`MetricStats` from a ``STAT_COLUMNS`` row."""
    return MetricStats(
        count=int(row[2]),
        last_step=row[3],
        last_value=row[4] if row[3] is not None else None,
        min_value=row[5],
        min_step=row[6],
        max_value=row[7],
        max_step=row[8],
        nonfinite=int(row[9]),
    )
