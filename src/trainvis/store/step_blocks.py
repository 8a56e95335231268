"""A job's steps in column blocks: each step's epoch, timestamp and sequence number.

Like a metric's points (:mod:`~trainvis.store.blocks`), a job's steps live in
exactly one of two places (issue 15):

- the **head**, the ``steps`` table (one row per step): recent and
  out-of-order writes land there;
- **blocks**, rows of ``step_blocks`` keyed by ``(job_pk, first_step)``: the
  four columns of consecutive steps, compressed
  (:func:`~trainvis.store.block_codec.encode_columns`), with their count,
  first/last step and lowest/highest sequence number.

Invariants: block ranges ``[first_step, last_step]`` of a job never overlap,
and no head step lies inside a block's range. So a write of step ``s`` goes
into the block whose range holds ``s`` (the block is rewritten) or else into
the head, and a read merges the blocks overlapping its range with the head.

When a job's head holds :data:`STEP_BLOCK_ROWS` rows or more, :func:`compact`
moves them into blocks in the background compactor's transaction
(:mod:`~trainvis.store.compactor`; a crash leaves the old layout or the new
one), all but the newest partial block's worth: the
live end of a run stays in the head, where SSE catch-up and ETAs read it.
A batch of :data:`~trainvis.store.blocks.SEALED_MIN` new steps or more above
every stored one becomes a block directly where the dialect ``seals_batches``
(see there why).
Without these blocks a step costs its row plus a ``(job_pk, seq)`` index
entry, more than the compressed points of ten metrics together.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from trainvis.store.block_codec import decode_columns, encode_columns
from trainvis.store.blocks import overlapping, pieces
from trainvis.store.dialect import Connection, Dialect

#: Steps of a full step block.
STEP_BLOCK_ROWS = 4096
_BIG = 2**63 - 1


class StepRows(NamedTuple):
    """Steps' columns, ascending by step; ``epochs`` is NaN where a step has none."""

    steps: npt.NDArray[np.int64]
    epochs: npt.NDArray[np.float64]
    stamps: npt.NDArray[np.float64]
    seqs: npt.NDArray[np.int64]

    def take(self, index: Any) -> StepRows:
        """The rows at ``index`` (a slice, a mask or positions)."""
        return StepRows(self.steps[index], self.epochs[index], self.stamps[index], self.seqs[index])


EMPTY = StepRows(
    np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.float64), np.empty(0, np.int64)
)

StepHead = Callable[[Connection, int, str, Sequence[Any], "int | None"], StepRows]
"""A backend's read of a job's head rows matching a step condition, ascending by
step, at most ``limit`` of them when one is given."""


def joined(parts: Sequence[StepRows]) -> StepRows:
    """``parts`` (disjoint steps) as one :class:`StepRows`, ascending by step."""
    parts = [part for part in parts if len(part.steps)]
    if not parts:
        return EMPTY
    if len(parts) == 1:
        return parts[0]
    rows = StepRows(*(np.concatenate(column) for column in zip(*parts, strict=True)))
    if (rows.steps[1:] > rows.steps[:-1]).all():
        return rows
    return rows.take(rows.steps.argsort(kind="stable"))


# ---------------------------------------------------------------------- blocks


def _encode(rows: StepRows) -> bytes:
    return encode_columns(
        np.stack([rows.steps, rows.epochs.view(np.int64), rows.stamps.view(np.int64), rows.seqs])
    )


def _decode(data: bytes, count: int) -> StepRows:
    columns = decode_columns(data, 4, count)
    return StepRows(
        columns[0], columns[1].view(np.float64), columns[2].view(np.float64), columns[3]
    )


def insert(d: Dialect, conn: Connection, pk: int, parts: Sequence[StepRows]) -> None:
    """Store each of ``parts`` (ascending, non-empty) as one block."""
    for rows in parts:
        d.run(
            conn,
            "INSERT INTO step_blocks (job_pk, first_step, last_step, count, min_seq, max_seq, "
            "data) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                pk,
                int(rows.steps[0]),
                int(rows.steps[-1]),
                len(rows.steps),
                int(rows.seqs.min()),
                int(rows.seqs.max()),
                _encode(rows),
            ),
        )


class _Header(NamedTuple):
    first: int
    last: int
    rows: int


#: Block headers read per query where a read needs only the first (or last) few.
_PAGE = 64


def _headers(
    d: Dialect, conn: Connection, pk: int, lo: int, hi: int, *, rows: int | None = None
) -> list[_Header]:
    """The blocks overlapping ``[lo, hi]``, by step: those starting in the range,
    and the one before it (which may reach into it). With ``rows``, only the
    first blocks holding that many steps of the range, read a page at a time
    (a chunk of a long history reads a few headers, not all that follow it)."""
    sql, params = overlapping(
        pk, lo, hi, "first_step, last_step, count", table="step_blocks", by="job_pk"
    )
    if rows is not None:
        sql, params = f"{sql} LIMIT ?", [*params, _PAGE]
    found: list[_Header] = []
    held = 0
    while True:
        page = [_Header(int(a), int(b), int(c)) for a, b, c in d.run(conn, sql, params)]
        for header in page:
            if header.last < lo:
                continue
            if rows is not None and held >= rows:
                return found
            found.append(header)
            held += header.rows if header.first >= lo else 1  # a lower bound in the range
        if rows is None or len(page) < _PAGE:
            return found
        sql = (
            "SELECT first_step, last_step, count FROM step_blocks WHERE job_pk = ? AND "
            "first_step > ? AND first_step <= ? ORDER BY first_step LIMIT ?"
        )
        params = [pk, page[-1].first, hi, _PAGE]


def _load(d: Dialect, conn: Connection, pk: int, headers: Sequence[_Header]) -> list[StepRows]:
    """The decoded rows of the blocks ``headers`` names, in their order."""
    data: dict[int, bytes] = {}
    for chunk in d.chunks([header.first for header in headers]):
        condition, params = d.in_list("first_step", chunk, "bigint")
        for first, blob in d.run(
            conn,
            f"SELECT first_step, data FROM step_blocks WHERE job_pk = ? AND {condition}",
            [pk, *params],
        ):
            data[int(first)] = bytes(blob)
    return [_decode(data[header.first], header.rows) for header in headers]


# ---------------------------------------------------------------------- reads


def read(
    d: Dialect,
    conn: Connection,
    pk: int,
    lo: int,
    hi: int,
    head: StepHead,
    *,
    wanted: npt.NDArray[np.int64] | None = None,
    limit: int | None = None,
) -> StepRows:
    """The job's steps in ``[lo, hi]`` (and in ``wanted``, sorted, when given), the
    first ``limit`` of them when one is given, ascending: blocks and head merged."""
    if wanted is not None and len(wanted) <= d.in_chunk:
        condition, params = d.in_list("step", wanted.tolist(), "bigint")
    else:
        condition, params = "step BETWEEN ? AND ?", [lo, hi]
    parts = [head(conn, pk, condition, params, limit)]
    if limit is not None and len(parts[0].steps) == limit:
        hi = min(hi, int(parts[0].steps[-1]))  # the head has the first ``limit`` up to here
    headers = _headers(d, conn, pk, lo, hi, rows=limit if wanted is None else None)
    if wanted is not None:
        firsts = np.asarray([h.first for h in headers], dtype=np.int64)
        lasts = np.asarray([h.last for h in headers], dtype=np.int64)
        needed = wanted.searchsorted(lasts, side="right") > wanted.searchsorted(firsts)
        headers = [h for h, keep in zip(headers, needed.tolist(), strict=True) if keep]
    if limit is not None:  # blocks until ``limit`` rows at most: later ones come after
        held, kept = 0, []
        for header in headers:
            if held >= limit:
                break
            kept.append(header)
            held += header.rows if header.first >= lo else 1
        headers = kept
    for rows in _load(d, conn, pk, headers):
        a, b = rows.steps.searchsorted(lo), rows.steps.searchsorted(hi, side="right")
        rows = rows.take(slice(a, b))
        if wanted is not None:
            rows = rows.take(np.isin(rows.steps, wanted))
        parts.append(rows)
    found = joined(parts)
    return found if limit is None else found.take(slice(0, limit))


def count(d: Dialect, conn: Connection, pk: int, lo: int, hi: int) -> int:
    """The number of the job's steps in ``[lo, hi]``."""
    number = int(
        d.scalar(
            conn,
            "SELECT count(*) FROM steps WHERE job_pk = ? AND step BETWEEN ? AND ?",
            (pk, lo, hi),
        )
    )
    headers = _headers(d, conn, pk, lo, hi)
    inside = [h for h in headers if h.first >= lo and h.last <= hi]
    partial = [h for h in headers if not (h.first >= lo and h.last <= hi)]
    number += sum(h.rows for h in inside)
    for rows in _load(d, conn, pk, partial):
        number += int(rows.steps.searchsorted(hi, side="right") - rows.steps.searchsorted(lo))
    return number


def seqs_after(
    d: Dialect, conn: Connection, pk: int, seq: int, limit: int, head: list[tuple[int, int]]
) -> list[tuple[int, int]]:
    """``(step, seq)`` of up to ``limit`` steps with a seq above ``seq``, by seq:
    ``head`` (the head's first ``limit`` such, by seq) merged with the blocks
    holding any, read in order of their lowest seq until no later one can
    hold one of the first ``limit``."""
    found = list(head)
    rows = d.run(
        conn,
        "SELECT first_step, last_step, count, min_seq FROM step_blocks "
        "WHERE job_pk = ? AND max_seq > ? ORDER BY min_seq",
        (pk, seq),
    ).fetchall()
    for first, last, number, low in rows:
        if len(found) >= limit:
            found.sort(key=lambda item: item[1])
            del found[limit:]
            if found[-1][1] < int(low):
                break
        (block,) = _load(d, conn, pk, [_Header(int(first), int(last), int(number))])
        newer = block.seqs > seq
        found.extend(zip(block.steps[newer].tolist(), block.seqs[newer].tolist(), strict=True))
    found.sort(key=lambda item: item[1])
    return found[:limit]


def newest(
    d: Dialect,
    conn: Connection,
    head: dict[int, list[tuple[int, float]]],
    limit: int,
) -> dict[int, list[tuple[int, float]]]:
    """The newest ``limit`` ``(step, timestamp)`` of each job: ``head`` (each job's
    newest head rows, newest first) topped up from its blocks where they hold
    newer steps or the head has too few."""
    if not head:
        return head
    condition, params = d.in_list("job_pk", list(head), "bigint")
    tops = {
        int(pk): int(top)
        for pk, top in d.run(
            conn,
            f"SELECT job_pk, max(last_step) FROM step_blocks WHERE {condition} GROUP BY job_pk",
            params,
        )
    }
    found = dict(head)
    for pk, top in tops.items():
        rows = list(head[pk])
        if len(rows) < limit or rows[limit - 1][0] < top:
            found[pk] = _newest_of(d, conn, pk, rows, limit)
    return found


def _newest_of(
    d: Dialect, conn: Connection, pk: int, rows: list[tuple[int, float]], limit: int
) -> list[tuple[int, float]]:
    """``rows`` (newest head rows) topped up from the job's blocks, newest first:
    blocks read from the last, a page of headers at a time, until no older
    one can hold one of the newest ``limit``."""
    before = _BIG
    while True:
        page = [
            _Header(int(a), int(b), int(c))
            for a, b, c in d.run(
                conn,
                "SELECT first_step, last_step, count FROM step_blocks WHERE job_pk = ? "
                "AND first_step < ? ORDER BY first_step DESC LIMIT ?",
                (pk, before, _PAGE),
            )
        ]
        for header in page:
            if len(rows) >= limit and rows[limit - 1][0] > header.last:
                return rows[:limit]
            (block,) = _load(d, conn, pk, [header])
            tail = block.take(slice(max(0, len(block.steps) - limit), None))
            rows.extend(zip(tail.steps.tolist(), tail.stamps.tolist(), strict=True))
            rows.sort(key=lambda item: -item[0])
        if len(page) < _PAGE:
            return rows[:limit]
        before = page[-1].first


# ---------------------------------------------------------------------- writes


def route(d: Dialect, conn: Connection, pk: int, rows: StepRows) -> StepRows:
    """Write the steps (ascending, distinct) that fall inside a block into it (the
    block is rewritten: a step's epoch is kept where the new row has none, its
    timestamp and seq replaced); returns the rows left for the head."""
    headers = _headers(d, conn, pk, int(rows.steps[0]), int(rows.steps[-1]))
    in_block = np.zeros(len(rows.steps), dtype=bool)
    touched = []
    for header in headers:
        a = rows.steps.searchsorted(header.first)
        b = rows.steps.searchsorted(header.last, side="right")
        if a < b:
            in_block[a:b] = True
            touched.append((header, a, b))
    for (header, a, b), old in zip(
        touched, _load(d, conn, pk, [t[0] for t in touched]), strict=True
    ):
        new = rows.take(slice(a, b))
        at = old.steps.searchsorted(new.steps)
        hit = at < len(old.steps)
        hit[hit] = old.steps[at[hit]] == new.steps[hit]
        epochs = new.epochs.copy()
        keep_old = hit & np.isnan(epochs)
        epochs[keep_old] = old.epochs[at[keep_old]]
        new = StepRows(new.steps, epochs, new.stamps, new.seqs)
        merged = joined([old.take(~np.isin(old.steps, new.steps)), new])
        d.run(
            conn,
            "DELETE FROM step_blocks WHERE job_pk = ? AND first_step = ?",
            (pk, header.first),
        )
        insert(d, conn, pk, [merged])
    return rows.take(~in_block)


def head_rows(d: Dialect, conn: Connection, pk: int) -> int:
    """The number of the job's steps in the head."""
    return int(d.scalar(conn, "SELECT count(*) FROM steps WHERE job_pk = ?", (pk,)))


def compact(d: Dialect, conn: Connection, pk: int, head: StepHead, *, force: bool = False) -> None:
    """Move the job's head rows into blocks when it holds :data:`STEP_BLOCK_ROWS`
    or more (always when ``force``), in the caller's transaction.

    The rows are cut at every block between them (ranges never overlap) and
    into :data:`STEP_BLOCK_ROWS`-row blocks; the newest partial block's worth
    stays in the head.
    """
    if not force and head_rows(d, conn, pk) < STEP_BLOCK_ROWS:
        return
    rows = head(conn, pk, "step BETWEEN ? AND ?", [0, _BIG], None)
    if not len(rows.steps):
        return
    firsts = np.asarray(
        [
            int(first)
            for (first,) in d.run(
                conn,
                "SELECT first_step FROM step_blocks WHERE job_pk = ? "
                "AND first_step BETWEEN ? AND ? ORDER BY first_step",
                (pk, int(rows.steps[0]), int(rows.steps[-1])),
            )
        ],
        dtype=np.int64,
    )
    parts = [
        rows.take(slice(start, stop))
        for start, stop, last in pieces(rows.steps, firsts, STEP_BLOCK_ROWS)
        if force or not last or stop - start == STEP_BLOCK_ROWS  # the newest partial stays
    ]
    for part in parts:
        d.run(
            conn,
            "DELETE FROM steps WHERE job_pk = ? AND step BETWEEN ? AND ?",
            (pk, int(part.steps[0]), int(part.steps[-1])),
        )
    insert(d, conn, pk, parts)


def compact_all(d: Dialect, conn: Connection, head: StepHead) -> int:
    """Compact the head of every job holding :data:`STEP_BLOCK_ROWS` rows or more
    (in the caller's transaction): what the upgrade to step blocks runs;
    returns the jobs compacted."""
    pks = [
        int(pk)
        for (pk,) in d.run(
            conn,
            "SELECT job_pk FROM steps GROUP BY job_pk HAVING count(*) >= ?",
            (STEP_BLOCK_ROWS,),
        ).fetchall()
    ]
    for pk in pks:
        compact(d, conn, pk, head)
    return len(pks)
