"""Compaction runs off the request path, and a backlog still bounds the head (issue 15).

Block sizes are shrunk so a few dozen points fill a head. On both stores: a
write that fills a head leaves it to the background compactor, which empties
it into sealed blocks; with the compactor stopped, writes compact in line
once a head holds ``BACKLOG`` blocks' worth, so no head grows without bound;
and every answer stays the same whichever of them ran.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from trainvis.models import JobCreate, MetricRow
from trainvis.store import blocks, open_store, step_blocks
from trainvis.store.compactor import BACKLOG
from trainvis.store.sql import SQLStore

BLOCK = 16


@pytest.fixture
def small(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[SQLStore]:
    monkeypatch.setattr(blocks, "BLOCK_POINTS", BLOCK)
    monkeypatch.setattr(blocks, "DIRECT_MIN", 10_000)  # every batch goes to the head
    monkeypatch.setattr(step_blocks, "STEP_BLOCK_ROWS", BLOCK)
    opened = open_store(db_url)
    assert isinstance(opened, SQLStore)
    try:
        yield opened
    finally:
        opened.close()


def _layout(store: SQLStore) -> tuple[int, int, int, int]:
    """``(head points, points in sealed blocks, head steps, steps in blocks)``."""
    d = store.dialect
    with store._read() as conn:
        return (
            int(d.scalar(conn, "SELECT count(*) FROM points")),
            int(d.scalar(conn, "SELECT coalesce(sum(count), 0) FROM blocks WHERE sealed = 1")),
            int(d.scalar(conn, "SELECT count(*) FROM steps")),
            int(d.scalar(conn, "SELECT coalesce(sum(count), 0) FROM step_blocks")),
        )


def _write(store: SQLStore, job: str, steps: range) -> None:
    for start in range(steps.start, steps.stop, 4):  # small batches, as a slow loop sends
        store.write_metrics(
            job, [MetricRow(s, {"loss": s / 10}) for s in range(start, min(start + 4, steps.stop))]
        )


def test_a_full_head_is_compacted_in_the_background(small: SQLStore) -> None:
    job = small.create_job(JobCreate(name="bg")).id
    _write(small, job, range(0, 2 * BLOCK + 4))
    assert small._compactor.wait_idle(30)
    head, sealed, head_steps, step_blocked = _layout(small)
    # Points: sealed blocks, the rest in the head or an open block (whether the
    # last compaction ran before or after the last write); steps: the newest
    # partial block's worth stays in the head.
    assert sealed == 2 * BLOCK and head in (0, 4)
    assert (head_steps, step_blocked) == (4, 2 * BLOCK)
    rows = list(small.iter_rows(job))
    assert [row["step"] for row in rows] == list(range(2 * BLOCK + 4))
    assert [row["loss"] for row in rows] == [s / 10 for s in range(2 * BLOCK + 4)]


def test_without_the_compactor_a_backlog_is_compacted_in_the_write(small: SQLStore) -> None:
    small._compactor.close()  # a compactor that never keeps up
    job = small.create_job(JobCreate(name="backlog")).id
    most = 0
    for start in range(0, 10 * BLOCK, 4):
        _write(small, job, range(start, start + 4))
        head, _, head_steps, _ = _layout(small)
        most = max(most, head, head_steps)
    assert most < BACKLOG * BLOCK + 4  # compacted in line at the backlog, never beyond
    assert _layout(small)[1] > 0
    assert [row["step"] for row in small.iter_rows(job)] == list(range(10 * BLOCK))


def test_a_job_deleted_before_its_compaction_is_left_alone(small: SQLStore) -> None:
    job = small.create_job(JobCreate(name="gone")).id
    _write(small, job, range(0, BLOCK + 4))
    small.delete_job(job)
    assert small._compactor.wait_idle(30)
    assert _layout(small) == (0, 0, 0, 0)
