"""The embedded default store: one SQLite file in WAL mode.

One writer at a time (a lock around a dedicated connection, ``BEGIN
IMMEDIATE`` so several processes sharing the file queue up instead of failing),
reads on a small, capped pool of connections (a read waits for a free one; a
streamed history borrows one per chunk, so a reader that stops reading holds
none). ``synchronous=NORMAL`` in WAL mode makes
a committed transaction survive a killed process, which is the durability the
contract promises (2xx = committed).
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from trainvis.errors import ServiceUnavailable, StoreReadOnly
from trainvis.store.base import Row
from trainvis.store.compactor import Compactor
from trainvis.store.dialect import SQLITE
from trainvis.store.sql import SQLStore
from trainvis.store.sql_read import RowQuery
from trainvis.store.sqlite_faults import read_only_uri, storage_error
from trainvis.store.sqlite_read import (
    CHUNK_STEPS,
    HeadsCache,
    point_columns,
    row_chunks,
    rows_for_steps,
    step_head,
)
from trainvis.store.sqlite_schema import migrate
from trainvis.store.sqlite_write import write_batch

__all__ = ["CHUNK_STEPS", "POOL_WAIT", "READ_CACHE_KIB", "SQLiteStore"]

#: Page cache of each pooled reader connection (KiB; the writer keeps 64 MiB).
#: Reads are bounded by Python, not by page reads, and the OS caches the file.
READ_CACHE_KIB = 8192
#: Seconds a read waits for a pooled connection before answering 503.
POOL_WAIT = 30.0


class SQLiteStore(SQLStore):
    """:class:`~trainvis.store.base.MetricStore` on one SQLite file."""

    dialect = SQLITE

    def __init__(self, path: str, *, pool_size: int = 4) -> None:
        self.path = path
        self._compactor = Compactor(self._compact_due)
        self._write_lock = threading.Lock()
        self._read_only_uri: str | None = None  # set when the file cannot be written
        self._writer = self._open_writer()
        self._readers: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._heads = HeadsCache()
        self._pool_size = pool_size
        self._slots = threading.BoundedSemaphore(pool_size)
        self._held = threading.local()

    # ------------------------------------------------------------------ plumbing

    def _open_writer(self) -> sqlite3.Connection:
        """The migrated writer connection; a database that cannot be written (read-only
        file or filesystem) is opened read-only instead: reads work, writes are 503."""
        conn: sqlite3.Connection | None = None
        try:
            conn = self._connect()
            migrate(conn)
            return conn
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            if not isinstance(storage_error(exc, self.path), StoreReadOnly):
                raise
        self._read_only_uri = read_only_uri(self.path)
        conn = self._connect()
        migrate(conn, read_only=True)
        return conn

    def _connect(self, cache_kib: int = 65536) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._read_only_uri or self.path,
            uri=self._read_only_uri is not None,
            isolation_level=None,
            check_same_thread=False,
            timeout=30.0,
        )
        if self._read_only_uri is None:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
        return conn

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """Borrow a reader connection; at most ``pool_size`` exist, a read waits
        for a free one (503 after ``POOL_WAIT`` s). A read nested in another on
        the same thread shares its connection (no self-deadlock)."""
        held: sqlite3.Connection | None = getattr(self._held, "conn", None)
        if held is not None:
            yield held
            return
        if not self._slots.acquire(timeout=POOL_WAIT):
            raise ServiceUnavailable(
                "The database is busy; try again shortly", headers={"Retry-After": "1"}
            )
        try:
            try:
                conn = self._readers.get_nowait()
            except queue.Empty:
                conn = self._connect(READ_CACHE_KIB)
            self._held.conn = conn
            try:
                # One snapshot per read: a compaction committed between a read's
                # block and head queries must show no point twice and none
                # missing (issue 15).
                conn.execute("BEGIN")
                try:
                    yield conn
                finally:
                    if conn.in_transaction:
                        conn.execute("COMMIT")
            finally:
                self._held.conn = None
                self._readers.put(conn)
        finally:
            self._slots.release()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock:
            conn = self._writer
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                finally:
                    if conn.in_transaction:  # failed; SQLite may have rolled back already
                        conn.execute("ROLLBACK")
            except sqlite3.Error as exc:  # disk full → 507, read-only → 503 (issue 13)
                fault = storage_error(exc, self.path)
                if fault is None:
                    raise
                raise fault from exc

    def close(self) -> None:
        self._compactor.close()
        with self._write_lock:
            self._writer.close()
        while not self._readers.empty():
            self._readers.get_nowait().close()

    # ------------------------------------------------------------------ hooks

    _write_batch = staticmethod(write_batch)
    _rows_for_steps = staticmethod(rows_for_steps)
    _step_head = staticmethod(step_head)
    _point_columns = staticmethod(point_columns)

    def _row_chunks(self, query: RowQuery) -> Iterator[list[Row]]:
        # Each chunk borrows a pooled connection and returns it before it is
        # yielded: a reader that stops reading holds none, and the generator may
        # resume on another thread.
        return row_chunks(self._read, self._heads, query)
