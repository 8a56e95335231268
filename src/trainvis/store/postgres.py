"""The scale-out store: PostgreSQL through psycopg 3 and a connection pool.

Several API replicas may share one database. What keeps them consistent lives
in the database, never in a replica's memory: job ids come from a counter row
updated in the creating transaction, and each metrics write row-locks its job
before allocating sequence numbers (see ``postgres_write.py``). Every method
runs one short transaction on a pooled connection; a 2xx therefore means the
rows are committed. Connection failures surface as
:class:`~trainvis.store.base.StoreError` (503 with ``Retry-After`` and a generic
message; the driver's text goes to the log), a full disk as
:class:`~trainvis.errors.InsufficientStorage` (507) and a read-only database
(``default_transaction_read_only``, a hot standby) as
:class:`~trainvis.errors.StoreReadOnly` (503) on writes, reads unaffected.

Losing the database (a restart, a failover, every connection cut) must not
outlast the outage: each pooled connection is checked before use, and the first
one found dead marks the database as away. From then on requests do not wait
on the pool (whose idle connections are all dead, and whose own reconnection
backs off exponentially): at most one probe connection per
:data:`PROBE_INTERVAL` tells whether the database is back, every other request
answers 503 at once, and the probe that succeeds swaps in a fresh pool.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

try:
    import psycopg
    from psycopg.types.json import set_json_loads
    from psycopg_pool import ConnectionPool, PoolClosed
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("PostgreSQL support needs psycopg: pip install 'trainvis[postgres]'") from exc
import orjson
from psycopg import IsolationLevel

from trainvis.errors import DISK_FULL, READ_ONLY, InsufficientStorage, StoreReadOnly
from trainvis.store.base import Row, StoreError
from trainvis.store.compactor import Compactor
from trainvis.store.dialect import POSTGRES
from trainvis.store.postgres_copy import Conn
from trainvis.store.postgres_read import (
    iter_chunks,
    point_columns,
    rows_for_steps,
    step_head,
)
from trainvis.store.postgres_schema import migrate
from trainvis.store.postgres_write import write_batch
from trainvis.store.sql import SQLStore
from trainvis.store.sql_jobs import job_pk
from trainvis.store.sql_read import RowQuery

log = logging.getLogger("trainvis.store")

#: Seconds between reconnection probes while the database is away.
PROBE_INTERVAL = 0.25
#: ``Retry-After`` (seconds) of the 503 answered while the database is away.
RETRY_AFTER = 1
#: The public message of that 503; the driver's own text goes to the log only.
UNAVAILABLE = "The database is unavailable; retry later"


def normalize_url(url: str) -> str:
    """A libpq URL from the forms ``open_store`` accepts (``postgresql+psycopg://``…)."""
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def _configure(conn: Conn) -> None:
    set_json_loads(orjson.loads, conn)


class PostgresStore(SQLStore):
    """:class:`~trainvis.store.base.MetricStore` on a PostgreSQL database."""

    dialect = POSTGRES

    def __init__(
        self, url: str, *, min_size: int = 1, max_size: int = 16, timeout: float = 30.0
    ) -> None:
        self.url = normalize_url(url)
        self._compactor = Compactor(self._compact_due)
        self._kwargs: dict[str, Any] = {"application_name": "trainvis", "connect_timeout": 10}
        self._sizes = (min_size, max_size)
        self.timeout = timeout
        try:
            with psycopg.connect(self.url, autocommit=True, **self._kwargs) as conn:
                migrate(conn)
        except psycopg.errors.ReadOnlySqlTransaction as exc:  # an old schema, read-only
            raise RuntimeError(
                "the PostgreSQL database is read-only and its schema is older than this "
                "trainvis: connect once with write access to upgrade it"
            ) from exc
        except psycopg.OperationalError as exc:
            log.error("cannot open the PostgreSQL database: %s", exc)
            raise StoreError(
                "Cannot open the PostgreSQL database (the server log has the details)"
            ) from exc
        self._lock = threading.Lock()
        self._away = False  # a pooled connection was found dead: probe before using the pool
        self._next_probe = 0.0
        self._pool = self._open_pool()

    # ------------------------------------------------------------------ plumbing

    def _open_pool(self) -> ConnectionPool[Conn]:
        return ConnectionPool(
            self.url,
            min_size=self._sizes[0],
            max_size=self._sizes[1],
            kwargs=self._kwargs,
            configure=_configure,
            timeout=self.timeout,
            name="trainvis",
            open=True,
        )

    @contextmanager
    def _tx(self, *, snapshot: bool = False) -> Iterator[Conn]:
        """A pooled connection in a transaction, committed when the block succeeds;
        ``snapshot``: ``REPEATABLE READ`` (reads only: one snapshot for all queries)."""
        pool, conn = self._acquire()
        # Set on every use (no round trip: it shapes the BEGIN psycopg sends).
        conn.isolation_level = IsolationLevel.REPEATABLE_READ if snapshot else None
        try:
            with conn:  # what ``pool.connection()`` does: commit, or roll back on error
                yield conn
        except psycopg.errors.DiskFull as exc:  # SQLSTATE 53100 (issue 13)
            raise InsufficientStorage(DISK_FULL) from exc
        except psycopg.errors.ReadOnlySqlTransaction as exc:  # 25006: read-only database
            raise StoreReadOnly(READ_ONLY) from exc
        except psycopg.Error as exc:
            if not (isinstance(exc, psycopg.OperationalError) or conn.broken):
                raise
            if conn.broken:
                self._lost(pool, exc)
            else:
                log.warning("a PostgreSQL transaction failed: %s", exc)
            raise _unavailable() from exc
        finally:
            pool.putconn(conn)

    def _acquire(self) -> tuple[ConnectionPool[Conn], Conn]:
        """A checked connection (and its pool); :class:`StoreError` while the database is away."""
        failure: Exception | None = None
        for _ in range(2):  # a dead connection found: probe, and take one from the fresh pool
            if self._away:
                self._recover()
            pool = self._pool
            try:
                conn = pool.getconn()
            except PoolClosed:  # swapped for a fresh pool while this request waited
                if pool is self._pool:
                    raise
                continue
            except psycopg.OperationalError as exc:  # PoolTimeout
                log.warning("no PostgreSQL connection: %s", exc)
                raise _unavailable() from exc
            try:
                ConnectionPool.check_connection(conn)
            except psycopg.Error as exc:
                pool.putconn(conn)  # the pool discards it
                self._lost(pool, exc)
                failure = exc
                continue
            return pool, conn
        raise _unavailable() from failure

    def _lost(self, pool: ConnectionPool[Conn], exc: Exception) -> None:
        """A connection of ``pool`` died: so did its idle siblings (a restart, a cut)."""
        with self._lock:
            if pool is self._pool and not self._away:
                log.warning("lost the connection to PostgreSQL (%s); reconnecting", exc)
                self._away, self._next_probe = True, 0.0

    def _recover(self) -> None:
        """Probe the database (one caller per :data:`PROBE_INTERVAL`); swap in a fresh
        pool when it answers, else raise :class:`StoreError` at once."""
        with self._lock:
            if not self._away:
                return
            now = time.monotonic()
            if now < self._next_probe:
                raise _unavailable()
            self._next_probe = now + PROBE_INTERVAL
            try:
                kwargs = {**self._kwargs, "connect_timeout": 2}
                psycopg.connect(self.url, autocommit=True, **kwargs).close()
            except psycopg.OperationalError as exc:
                log.debug("PostgreSQL is still unavailable: %s", exc)
                raise _unavailable() from exc
            stale, self._pool, self._away = self._pool, self._open_pool(), False
        log.info("PostgreSQL is reachable again")
        # Closing waits for the old pool's workers: not on a request's time.
        threading.Thread(target=stale.close, kwargs={"timeout": 1.0}, daemon=True).start()

    def _read(self) -> AbstractContextManager[Conn]:
        # One snapshot per read: a compaction committed between a read's block and
        # head queries must show no point twice and none missing (issue 15).
        return self._tx(snapshot=True)

    def _write(self) -> AbstractContextManager[Conn]:
        return self._tx()

    def close(self) -> None:
        """Close every pooled connection; the store is unusable afterwards."""
        self._compactor.close()
        self._pool.close()

    # ------------------------------------------------------------------ hooks

    _write_batch = staticmethod(write_batch)
    _rows_for_steps = staticmethod(rows_for_steps)
    _step_head = staticmethod(step_head)
    _point_columns = staticmethod(point_columns)

    def _row_chunks(self, query: RowQuery) -> Iterator[list[Row]]:
        """Keyset chunks (see ``iter_chunks``). The job is looked up at once (an
        unknown job raises before the first row); no connection is held between chunks."""
        with self._read() as conn:
            job_pk(POSTGRES, conn, query.job_id)
        return iter_chunks(self._read, query)


# ---------------------------------------------------------------------- helpers


def _unavailable() -> StoreError:
    """The 503 of a database that is away (generic: callers log the cause)."""
    return StoreError(UNAVAILABLE, headers={"Retry-After": str(RETRY_AFTER)})
