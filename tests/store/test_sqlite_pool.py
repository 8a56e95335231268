"""The SQLite store's reader pool is capped (issue 13, item 5): streamed
histories borrow pooled connections a chunk at a time instead of opening one
each, so a crowd of readers (or readers that stop reading) cannot multiply
connections and their page caches."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

from trainvis.models import JobCreate, parse_metric_rows
from trainvis.store.sqlite import CHUNK_STEPS, SQLiteStore

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="counts open files in /proc"
)

POOL = 2
ROWS = 3 * CHUNK_STEPS + 10  # several chunks per history


def open_connections(path: Path) -> int:
    """SQLite connections open on ``path`` in this process (each holds it open once)."""
    target = str(path.resolve())
    count = 0
    for entry in Path("/proc/self/fd").iterdir():
        try:
            count += os.readlink(entry) == target
        except OSError:
            pass
    return count


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    opened = SQLiteStore(str(tmp_path / "pool.db"), pool_size=POOL)
    opened.create_job(JobCreate(id="big", name="big"))
    rows = [{"step": step, "loss": 1.0 / (step + 1), "acc": 0.5} for step in range(ROWS)]
    for start in range(0, ROWS, 10_000):
        batch = parse_metric_rows(rows[start : start + 10_000], max_rows=10_000)
        opened.write_metrics("big", batch)
    return opened


def test_suspended_history_streams_hold_no_connection(store: SQLiteStore, tmp_path: Path) -> None:
    """issue 13: ten histories each stopped after their first chunk (readers
    that stopped reading) keep at most the pool's connections open."""
    path = tmp_path / "pool.db"
    streams = [store.iter_row_chunks("big") for _ in range(10)]
    try:
        for stream in streams:
            assert len(next(stream)) == CHUNK_STEPS
        assert open_connections(path) <= POOL + 1  # + the writer
        for stream in streams:  # and every one still finishes
            assert sum(len(chunk) for chunk in stream) == ROWS - CHUNK_STEPS
    finally:
        for stream in streams:
            stream.close()
        store.close()


def test_concurrent_history_streams_share_the_pool(store: SQLiteStore, tmp_path: Path) -> None:
    """issue 13: eight threads streaming the full history at once never open
    more than ``pool_size`` reader connections, and each gets every row."""
    path = tmp_path / "pool.db"
    peak, counts, errors = 0, [], []
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, open_connections(path))

    def read() -> None:
        try:
            counts.append(sum(len(chunk) for chunk in store.iter_row_chunks("big")))
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    watcher = threading.Thread(target=watch)
    watcher.start()
    readers = [threading.Thread(target=read) for _ in range(8)]
    try:
        for thread in readers:
            thread.start()
        for thread in readers:
            thread.join(120)
    finally:
        stop.set()
        watcher.join(10)
        store.close()
    assert not errors
    assert counts == [ROWS] * 8
    assert 1 <= peak <= POOL + 1  # + the writer
