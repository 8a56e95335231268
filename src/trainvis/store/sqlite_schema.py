"""SQLite schema as an ordered list of migrations (``PRAGMA user_version``).

Append a new entry to :data:`MIGRATIONS` to change the schema; never edit one
that has shipped. A database at version N gets migrations N+1… applied in one
transaction each at open.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from trainvis.store import step_blocks
from trainvis.store.blocks import compact_all
from trainvis.store.dialect import SQLITE
from trainvis.store.sqlite_read import point_columns, step_head

MIGRATIONS: tuple[str, ...] = (
    # 1: jobs, per-metric statistics, rows (one per job and step) and points
    # (one per job, metric and step). NaN is stored as NULL: SQLite has no NaN.
    """
    CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
    INSERT INTO counters VALUES ('job_id', 0);
    CREATE TABLE used_ids (id TEXT PRIMARY KEY) WITHOUT ROWID;
    CREATE TABLE jobs (
        pk INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        model_name TEXT,
        status TEXT NOT NULL,
        message TEXT,
        total_epochs INTEGER,
        total_steps INTEGER,
        config TEXT NOT NULL,
        tags TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        last_seq INTEGER NOT NULL DEFAULT 0,
        max_step INTEGER,
        max_epoch REAL,
        first_ts REAL,
        row_count INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX jobs_created ON jobs (created_at DESC, id DESC);
    CREATE TABLE metrics (
        id INTEGER PRIMARY KEY,
        job_pk INTEGER NOT NULL REFERENCES jobs (pk) ON DELETE CASCADE,
        name TEXT NOT NULL,
        count INTEGER NOT NULL DEFAULT 0,
        last_step INTEGER,
        last_value REAL,
        min_value REAL,
        min_step INTEGER,
        max_value REAL,
        max_step INTEGER,
        nonfinite INTEGER NOT NULL DEFAULT 0,
        UNIQUE (job_pk, name)
    );
    CREATE TABLE steps (
        job_pk INTEGER NOT NULL,
        step INTEGER NOT NULL,
        epoch REAL,
        ts REAL NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (job_pk, step)
    ) WITHOUT ROWID;
    CREATE INDEX steps_seq ON steps (job_pk, seq);
    CREATE TABLE points (
        metric_id INTEGER NOT NULL,
        step INTEGER NOT NULL,
        value REAL,
        PRIMARY KEY (metric_id, step)
    ) WITHOUT ROWID;
    """,
    # 2: job events (health findings and user notes). ``dedupe`` makes a
    # detector's insert idempotent; NULL keys (notes) never conflict.
    """
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        job_pk INTEGER NOT NULL REFERENCES jobs (pk) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        metric TEXT,
        step INTEGER NOT NULL,
        value REAL,
        value_nan INTEGER NOT NULL DEFAULT 0,
        message TEXT NOT NULL,
        severity TEXT NOT NULL,
        ts REAL NOT NULL,
        dedupe TEXT,
        UNIQUE (job_pk, dedupe)
    );
    CREATE INDEX events_job_step ON events (job_pk, step, id);
    """,
    # 3: the last sequence number of each deleted job, so that a job created
    # again under its id continues above it (issue 13).
    """
    CREATE TABLE deleted_ids (id TEXT PRIMARY KEY, last_seq INTEGER NOT NULL) WITHOUT ROWID;
    """,
    # 4: points in compressed column blocks with summaries; ``points`` stays as
    # the head of recent and out-of-order writes (issue 15, store/blocks.py).
    # (Stored points move into blocks in schema 5's data step, DATA_STEPS.)
    """
    CREATE TABLE blocks (
        metric_id INTEGER NOT NULL,
        first_step INTEGER NOT NULL,
        last_step INTEGER NOT NULL,
        count INTEGER NOT NULL,
        min_value REAL,
        max_value REAL,
        nonfinite INTEGER NOT NULL,
        sealed INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (metric_id, first_step)
    ) WITHOUT ROWID;
    CREATE INDEX blocks_open ON blocks (metric_id, first_step) WHERE sealed = 0;
    """,
    # 5: steps (epoch, timestamp, seq) in compressed column blocks; ``steps``
    # stays as their head (issue 15, store/step_blocks.py). A block gains its
    # min/max tier (``blocks.read_cells``; NULL for one written before) and its
    # data may end in ``tail`` (``Dialect.blob_parts``). Stored points and steps move
    # into blocks in the same transaction (DATA_STEPS).
    """
    ALTER TABLE blocks ADD COLUMN tiers BLOB;
    ALTER TABLE blocks ADD COLUMN tail BLOB;
    CREATE TABLE step_blocks (
        job_pk INTEGER NOT NULL,
        first_step INTEGER NOT NULL,
        last_step INTEGER NOT NULL,
        count INTEGER NOT NULL,
        min_seq INTEGER NOT NULL,
        max_seq INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (job_pk, first_step)
    ) WITHOUT ROWID;
    CREATE INDEX step_blocks_seq ON step_blocks (job_pk, max_seq);
    """,
)


def _into_blocks(conn: sqlite3.Connection) -> None:
    """Move stored points and steps into blocks (schema 5). Schema 4 leaves the
    points in the head, which may hold any of them, since blocks gain ``tail`` in 5."""
    compact_all(SQLITE, conn, point_columns)
    step_blocks.compact_all(SQLITE, conn, step_head)


#: Data moves run after the DDL of their migration (keyed by the version they
#: reach), in its transaction.
DATA_STEPS: dict[int, Callable[[sqlite3.Connection], object]] = {
    5: _into_blocks,
}


def migrate(conn: sqlite3.Connection, *, read_only: bool = False) -> int:
    """Bring the database to the newest schema version; returns that version.

    A current database is only read (so a read-only file opens); an older one
    that is ``read_only`` cannot be upgraded: ``RuntimeError`` says so.
    """
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version == len(MIGRATIONS):
        return version
    if read_only and version < len(MIGRATIONS):
        raise RuntimeError(
            f"database schema version {version} is older than this trainvis "
            f"({len(MIGRATIONS)}) and the database is read-only: open it once with "
            "write access to upgrade it"
        )
    while True:
        # Read the version inside the write lock: another process or thread
        # opening the same new file may have migrated it meanwhile.
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > len(MIGRATIONS):
                raise RuntimeError(
                    f"database schema version {version} is newer than this trainvis "
                    f"({len(MIGRATIONS)}); upgrade trainvis"
                )
            if version == len(MIGRATIONS):
                conn.execute("COMMIT")
                return version
            for statement in MIGRATIONS[version].split(";"):
                if statement.strip():
                    conn.execute(statement)
            data_step = DATA_STEPS.get(version + 1)
            if data_step is not None:
                data_step(conn)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
