"""Points in column blocks: the block table's writes, compaction and reads.

A metric's points live in exactly one of two places (issue 15):

- the **head**, the ``points`` table (one row per point): small and out-of-order
  writes land there;
- **blocks**, rows of ``blocks`` keyed by ``(metric_id, first_step)``: the
  steps (delta-encoded) and values (bit-exact float64: NaN payloads and
  ±Infinity kept) of consecutive points, compressed, with a summary (count,
  first/last step, finite min/max, non-finite count).

Invariants: block ranges ``[first_step, last_step]`` of a metric never overlap,
and no head point lies inside a block's range. So a write of step ``s`` goes
into the block whose range holds ``s`` (the block is rewritten) or else into
the head, and a read merges the blocks overlapping the range with the head.
A batch of at least :data:`DIRECT_MIN` new points above everything stored of
the metric (a training loop's batch) becomes a block directly, sealed from
:data:`SEALED_MIN` points up where the dialect says so.

Blocks of fewer than :data:`BLOCK_POINTS` points at the tail are *open*.
When a metric's head and open blocks hold :data:`BLOCK_POINTS` points or
more, :func:`compact` moves them into sealed blocks, in a transaction of the
background compactor (:mod:`~trainvis.store.compactor`; in the write's own
once a backlog builds up): a crash (even SIGKILL) leaves either the old
layout or the new one, never a point twice or missing. The codec (and why it is the one) is
in :mod:`~trainvis.store.block_codec`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from trainvis.series import Cells, WindowCells
from trainvis.store.block_codec import (
    Steps,
    Values,
    cells_of,
    decode,
    decode_cells,
    decode_into,
    encode,
    encode_cells,
    summarize,
)
from trainvis.store.dialect import Connection, Dialect
from trainvis.store.sql_read import PointColumns

#: Points of a sealed block.
BLOCK_POINTS = 4096
#: A block's min/max tier has an entry per ``2**TIER_SHIFT`` steps (see
#: :func:`read_cells`): 1M steps are 3,907 entries, about 0.1 byte a point.
TIER_SHIFT = 8
#: A metric's batch of new points this long or longer is written as a block directly.
DIRECT_MIN = 256
#: A direct block this long or longer is sealed at once where the dialect
#: ``seals_batches`` (PostgreSQL): a full batch of the SDK (``Sender.batch_size``),
#: what a loop logging faster than the SDK's flush interval sends. Such a
#: stream is written once and never merged again: on PostgreSQL every merge
#: leaves the replaced rows as dead tuples until a vacuum, which doubled the
#: disk of the bench workload (16 bytes/point of blocks instead of 7).
#: Compression does not depend on the block size from here up (6.77
#: bytes/point at 1,000 points, 6.76 at 4,096).
SEALED_MIN = 1000

HeadReader = Callable[[Connection, int, str, Sequence[Any]], PointColumns]
"""A backend's read of one metric's head points matching a step condition."""

_EMPTY: PointColumns = (np.empty(0, np.int64), np.empty(0, np.float64))


# ---------------------------------------------------------------------- writes


BlockRow = tuple[Any, ...]
"""A block's row of ``blocks`` (:data:`BLOCK_COLUMNS`), encoded."""

BLOCK_COLUMNS = (
    "metric_id, first_step, last_step, count, min_value, max_value, nonfinite, sealed, tiers, "
    "data, tail"
)
#: Blocks per INSERT statement (11 parameters each).
_INSERT_ROWS = 100


def block_row(metric_id: int, steps: Steps, values: Values, *, sealed: bool) -> BlockRow:
    """The row storing ``steps``/``values`` (ascending, non-empty) as one block."""
    s = summarize(steps, values)
    return (
        metric_id,
        s.first_step,
        s.last_step,
        s.count,
        s.min_value,
        s.max_value,
        s.nonfinite,
        int(sealed),
        encode_cells(cells_of(steps, values, TIER_SHIFT)),
        encode(steps, values),
    )


def insert_blocks(d: Dialect, conn: Connection, rows: Sequence[BlockRow]) -> None:
    """Store ``rows`` (of :func:`block_row`): one statement per 100 blocks, so that
    a batch's blocks of many metrics cost PostgreSQL one round trip, not one each."""
    for start in range(0, len(rows), _INSERT_ROWS):
        chunk = rows[start : start + _INSERT_ROWS]
        marks = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk))
        d.run(
            conn,
            f"INSERT INTO blocks ({BLOCK_COLUMNS}) VALUES {marks}",
            [value for row in chunk for value in (*row[:-1], *d.blob_parts(row[-1]))],
        )


def insert_block(
    d: Dialect, conn: Connection, metric_id: int, steps: Steps, values: Values, *, sealed: bool
) -> None:
    """Store ``steps``/``values`` (ascending, non-empty) as one block."""
    insert_blocks(d, conn, [block_row(metric_id, steps, values, sealed=sealed)])


def _joined(data: bytes, tail: bytes | None) -> bytes:
    """A block's data from its ``data`` and ``tail`` columns (see ``Dialect.blob_parts``)."""
    return bytes(data) if tail is None else bytes(data) + bytes(tail)


def overlapping(
    key: int, lo: int, hi: int, columns: str, *, table: str = "blocks", by: str = "metric_id"
) -> tuple[str, list[Any]]:
    """SQL of ``columns`` of the blocks of ``table`` (keyed ``by``, here ``key``)
    overlapping ``[lo, hi]``, by first step: those starting in the range, and
    the one before it (which may reach into it). Point and step blocks alike."""
    return (
        f"SELECT {columns} FROM {table} WHERE {by} = ? AND first_step BETWEEN coalesce("
        f"(SELECT first_step FROM {table} WHERE {by} = ? AND first_step <= ? "
        "ORDER BY first_step DESC LIMIT 1), ?) AND ? ORDER BY first_step",
        [key, key, lo, lo, hi],
    )


def _headers(
    d: Dialect, conn: Connection, metric_id: int, lo: int, hi: int
) -> list[tuple[int, int, int, int]]:
    """``(first_step, last_step, count, sealed)`` of the blocks overlapping ``[lo, hi]``."""
    sql, params = overlapping(metric_id, lo, hi, "first_step, last_step, count, sealed")
    rows = d.run(conn, sql, params).fetchall()
    return [(int(a), int(b), int(c), int(e)) for a, b, c, e in rows if int(b) >= lo]


def _blobs(
    d: Dialect, conn: Connection, metric_id: int, headers: list[tuple[int, int, int, int]]
) -> list[bytes]:
    """The data of the blocks ``headers`` names, in their order."""
    if not headers:
        return []
    data: dict[int, bytes] = {}
    for chunk in d.chunks([h[0] for h in headers]):
        condition, params = d.in_list("first_step", chunk, "bigint")
        for first, blob, tail in d.run(
            conn,
            f"SELECT first_step, data, tail FROM blocks WHERE metric_id = ? AND {condition}",
            [metric_id, *params],
        ):
            data[int(first)] = _joined(blob, tail)
    return [data[h[0]] for h in headers]


def _load(
    d: Dialect, conn: Connection, metric_id: int, headers: list[tuple[int, int, int, int]]
) -> list[PointColumns]:
    """The decoded points of the blocks ``headers`` names, in their order."""
    blobs = _blobs(d, conn, metric_id, headers)
    return [decode(blob, h[2]) for h, blob in zip(headers, blobs, strict=True)]


def route(
    d: Dialect,
    conn: Connection,
    metric_id: int,
    steps: list[int],
    values: list[float],
    tail: int | None,
    new_blocks: list[BlockRow],
) -> tuple[PointColumns, dict[int, float]]:
    """Write a metric's batch (steps ascending, distinct) where it belongs.

    ``tail`` is the metric's greatest stored step (None: nothing stored). Points
    inside a block's range rewrite that block; a long enough batch above
    ``tail`` becomes a block, appended to ``new_blocks`` for the caller to
    store with :func:`insert_blocks` (one statement for all its metrics) before
    it compacts. Returns the points left for the head and the stored values the
    block rewrites replaced (step → old value).
    """
    if tail is None or steps[0] > tail:
        if len(steps) >= DIRECT_MIN:
            step_array = np.asarray(steps, dtype=np.int64)
            new_blocks.append(
                block_row(
                    metric_id,
                    step_array,
                    np.asarray(values, np.float64),
                    sealed=d.seals_batches and len(steps) >= SEALED_MIN,
                )
            )
            return _EMPTY, {}
        return (np.asarray(steps, dtype=np.int64), np.asarray(values, dtype=np.float64)), {}
    step_array = np.asarray(steps, dtype=np.int64)
    value_array = np.asarray(values, dtype=np.float64)
    headers = _headers(d, conn, metric_id, steps[0], steps[-1])
    in_block = np.zeros(len(step_array), dtype=bool)
    replaced: dict[int, float] = {}
    touched = []
    for header in headers:
        first, last = header[0], header[1]
        a, b = step_array.searchsorted(first), step_array.searchsorted(last, side="right")
        if a < b:
            in_block[a:b] = True
            touched.append((header, a, b))
    for (header, a, b), (old_steps, old_values) in zip(
        touched, _load(d, conn, metric_id, [t[0] for t in touched]), strict=True
    ):
        new_steps, new_values = step_array[a:b], value_array[a:b]
        at = old_steps.searchsorted(new_steps)
        hit = at < len(old_steps)
        hit[hit] = old_steps[at[hit]] == new_steps[hit]
        replaced.update(zip(new_steps[hit].tolist(), old_values[at[hit]].tolist(), strict=True))
        merged_steps = np.concatenate([old_steps, new_steps[~hit]])
        merged_values = np.concatenate([old_values, new_values[~hit]])
        merged_values[at[hit]] = new_values[hit]
        order = merged_steps.argsort(kind="stable")
        d.run(
            conn,
            "DELETE FROM blocks WHERE metric_id = ? AND first_step = ?",
            (metric_id, header[0]),
        )
        insert_block(
            d,
            conn,
            metric_id,
            merged_steps[order],
            merged_values[order],
            sealed=bool(header[3]),
        )
    return (step_array[~in_block], value_array[~in_block]), replaced


def held_points(d: Dialect, conn: Connection, metric_ids: Sequence[int]) -> dict[int, int]:
    """Points in the head and open blocks of each of the metrics (those with any)."""
    held: dict[int, int] = {}
    for chunk in d.chunks(list(metric_ids)):
        condition, params = d.in_list("metric_id", chunk, "bigint")
        for metric_id, number in d.run(
            conn,
            f"SELECT metric_id, count(*) FROM points WHERE {condition} GROUP BY metric_id",
            params,
        ):
            held[int(metric_id)] = int(number)
        for metric_id, number in d.run(
            conn,
            f"SELECT metric_id, sum(count) FROM blocks WHERE {condition} AND sealed = 0 "
            "GROUP BY metric_id",
            params,
        ):
            held[int(metric_id)] = held.get(int(metric_id), 0) + int(number)
    return held


def compact(d: Dialect, conn: Connection, metric_id: int, head: HeadReader) -> None:
    """Move the metric's head points and open blocks into blocks (in the caller's
    transaction).

    The points are cut at every sealed block between them (ranges never
    overlap) and into :data:`BLOCK_POINTS`-point blocks; only the remainder
    after the last sealed block stays open.
    """
    head_steps, head_values = head(conn, metric_id, "step >= ?", [0])
    opened = [
        (int(a), int(b), int(c), 0)
        for a, b, c in d.run(
            conn,
            "SELECT first_step, last_step, count FROM blocks WHERE metric_id = ? AND sealed = 0 "
            "ORDER BY first_step",
            (metric_id,),
        ).fetchall()
    ]
    parts = [*_load(d, conn, metric_id, opened), (head_steps, head_values)]
    steps = np.concatenate([p[0] for p in parts])
    values = np.concatenate([p[1] for p in parts])
    if not len(steps):
        return
    order = steps.argsort(kind="stable")
    steps, values = steps[order], values[order]
    sealed_firsts = np.asarray(
        [
            int(row[0])
            for row in d.run(
                conn,
                "SELECT first_step FROM blocks WHERE metric_id = ? AND sealed = 1 "
                "AND first_step BETWEEN ? AND ? ORDER BY first_step",
                (metric_id, int(steps[0]), int(steps[-1])),
            )
        ],
        dtype=np.int64,
    )
    d.run(conn, "DELETE FROM points WHERE metric_id = ?", (metric_id,))
    d.run(conn, "DELETE FROM blocks WHERE metric_id = ? AND sealed = 0", (metric_id,))
    rows = [
        block_row(
            metric_id,
            steps[start:stop],
            values[start:stop],
            sealed=stop - start == BLOCK_POINTS or not last,
        )
        for start, stop, last in pieces(steps, sealed_firsts, BLOCK_POINTS)
    ]
    insert_blocks(d, conn, rows)


def pieces(steps: Steps, firsts: Steps, size: int) -> Iterator[tuple[int, int, bool]]:
    """``(start, stop, last)`` slices of ``steps`` (ascending) cut at each of
    ``firsts`` (first steps of blocks among them: block ranges never overlap)
    and into pieces of at most ``size``; ``last`` marks those after the last cut."""
    bounds = [0, *steps.searchsorted(firsts).tolist(), len(steps)]
    for index in range(len(bounds) - 1):
        a, b = bounds[index], bounds[index + 1]
        for start in range(a, b, size):
            yield start, min(start + size, b), index == len(bounds) - 2


def compact_all(d: Dialect, conn: Connection, head: HeadReader) -> int:
    """Compact the head and open blocks of every metric that has any (in the
    caller's transaction): what the upgrade to blocks runs; returns the metrics
    compacted."""
    rows = d.run(
        conn,
        "SELECT DISTINCT metric_id FROM points UNION SELECT metric_id FROM blocks WHERE sealed = 0",
    ).fetchall()
    for (metric_id,) in rows:
        compact(d, conn, int(metric_id), head)
    return len(rows)


# ---------------------------------------------------------------------- reads


def read_points(
    d: Dialect,
    conn: Connection,
    metric_id: int,
    lo: int,
    hi: int,
    head: HeadReader,
    wanted: Steps | None = None,
) -> PointColumns:
    """One metric's points with a step in ``[lo, hi]`` (and in ``wanted``, sorted,
    when given), ascending by step: blocks and head merged."""
    if wanted is None:  # a range: every overlapping block, in one query
        sql, params = overlapping(metric_id, lo, hi, "last_step, count, data, tail")
        found = [
            (int(count), _joined(data, tail))
            for last, count, data, tail in d.run(conn, sql, params).fetchall()
            if int(last) >= lo
        ]
    else:  # steps: only the blocks that hold one of them
        headers = _headers(d, conn, metric_id, lo, hi)
        if headers:
            firsts = np.asarray([h[0] for h in headers], dtype=np.int64)
            lasts = np.asarray([h[1] for h in headers], dtype=np.int64)
            needed = wanted.searchsorted(lasts, side="right") > wanted.searchsorted(firsts)
            headers = [h for h, keep in zip(headers, needed.tolist(), strict=True) if keep]
        found = list(zip([h[2] for h in headers], _blobs(d, conn, metric_id, headers), strict=True))
    if wanted is not None and len(wanted) <= d.in_chunk:
        condition, params = d.in_list("step", wanted.tolist(), "bigint")
    else:
        condition, params = "step BETWEEN ? AND ?", [lo, hi]
    head_steps, head_values = head(conn, metric_id, condition, params)
    total = sum(count for count, _ in found)
    steps = np.empty(total + len(head_steps), dtype=np.int64)
    values = np.empty(len(steps), dtype=np.float64)
    at = 0
    for count, data in found:
        decode_into(data, steps[at : at + count], values[at : at + count])
        at += count
    if len(head_steps):  # head points sit between or after blocks
        steps[at:], values[at:] = head_steps, head_values
        if total:
            order = steps.argsort(kind="stable")
            steps, values = steps[order], values[order]
    first, last = steps.searchsorted(lo), steps.searchsorted(hi, side="right")
    steps, values = steps[first:last], values[first:last]
    if wanted is not None:
        keep = np.isin(steps, wanted)
        steps, values = steps[keep], values[keep]
    return steps, values


def extremes(
    d: Dialect, conn: Connection, metric_id: int, head: HeadReader
) -> tuple[tuple[float, int] | None, tuple[float, int] | None]:
    """``(value, step)`` of the metric's finite minimum and maximum (earliest step on
    ties), or None when it has no finite value: from the blocks' tiers, not
    every point."""
    cells = read_cells(d, conn, metric_id, 0, 2**63 - 1, head).cells
    if not len(cells.cells):
        return None, None
    low = _earliest(cells.mins == cells.mins.min(), cells.min_steps)
    high = _earliest(cells.maxs == cells.maxs.max(), cells.max_steps)
    return (float(cells.mins[low]), int(cells.min_steps[low])), (
        float(cells.maxs[high]),
        int(cells.max_steps[high]),
    )


def _earliest(hit: npt.NDArray[np.bool_], steps: Steps) -> int:
    """The position, among those where ``hit`` holds, of the earliest step."""
    where = np.flatnonzero(hit)
    return int(where[steps[where].argmin()])


def read_cells(
    d: Dialect, conn: Connection, metric_id: int, lo: int, hi: int, head: HeadReader
) -> WindowCells:
    """The min/max tier of one metric's points with a step in ``[lo, hi]``: the
    stored tiers of the blocks inside the range (a few thousand entries for a
    million points), the points of the first and last block, of blocks
    without a tier (written before tiers) and of the head read and summarised
    here. The first and last point are always among those read."""
    sql, params = overlapping(
        metric_id, lo, hi, "first_step, last_step, count, nonfinite, tiers IS NOT NULL"
    )
    headers = [
        (int(a), int(b), int(c), int(e), bool(t))
        for a, b, c, e, t in d.run(conn, sql, params).fetchall()
        if int(b) >= lo
    ]
    tiered = [h for h in headers[1:-1] if h[4]]
    firsts = {h[0] for h in tiered}
    raw = [h for h in headers if h[0] not in firsts]
    parts = _load(d, conn, metric_id, [(h[0], h[1], h[2], 0) for h in raw])
    parts.append(head(conn, metric_id, "step BETWEEN ? AND ?", [lo, hi]))
    steps = np.concatenate([p[0] for p in parts])
    values = np.concatenate([p[1] for p in parts])
    order = steps.argsort(kind="stable")
    steps, values = steps[order], values[order]
    keep = (steps >= lo) & (steps <= hi)
    steps, values = steps[keep], values[keep]
    entries = [cells_of(steps, values, TIER_SHIFT)]
    for chunk in d.chunks(sorted(firsts)):
        condition, chunk_params = d.in_list("first_step", chunk, "bigint")
        entries.extend(
            decode_cells(bytes(blob))
            for (blob,) in d.run(
                conn,
                f"SELECT tiers FROM blocks WHERE metric_id = ? AND {condition}",
                [metric_id, *chunk_params],
            )
        )
    joined = Cells._make(np.concatenate(column) for column in zip(*entries, strict=True))
    by_cell = joined.cells.argsort(kind="stable")
    return WindowCells(
        cells=Cells._make(column[by_cell] for column in joined),
        shift=TIER_SHIFT,
        points=len(steps) + sum(h[2] for h in tiered),
        nonfinite=int(np.count_nonzero(~np.isfinite(values))) + sum(h[3] for h in tiered),
        first=(int(steps[0]), float(values[0])) if len(steps) else None,
        last=(int(steps[-1]), float(values[-1])) if len(steps) else None,
    )
