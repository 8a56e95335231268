"""PostgreSQL schema as an ordered list of migrations (table ``schema_version``).

Append a new entry to :data:`MIGRATIONS` to change the schema; never edit one
that has shipped. :func:`migrate` applies the missing ones in one transaction
under a transaction-scoped advisory lock, so several replicas starting at once
queue up: the first creates (or upgrades) the schema, the others find it done.

The data model is the SQLite one (see ``sqlite_schema.py``) with PostgreSQL
types: ``double precision`` keeps NaN and ±Infinity natively, ``config`` is
``json`` (key order as posted) and ``tags`` ``jsonb`` (for the tag filter).
Points and steps carry no foreign keys (they would cost a trigger per row on
ingest); ``delete_job`` removes them explicitly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import psycopg
from psycopg.rows import TupleRow

from trainvis.store import step_blocks
from trainvis.store.blocks import compact_all
from trainvis.store.dialect import POSTGRES
from trainvis.store.postgres_read import point_columns, step_head

#: Key of the advisory lock that serializes migrations ("trainvis" in ASCII).
MIGRATION_LOCK = 0x7472_6169_6E76_6973

MIGRATIONS: tuple[str, ...] = (
    # 1: counters, used ids, jobs, per-metric statistics, rows (one per job and
    # step, with the job's sequence number) and points (one per metric and step).
    """
    CREATE TABLE counters (name text PRIMARY KEY, value bigint NOT NULL);
    INSERT INTO counters VALUES ('job_id', 0);
    CREATE TABLE used_ids (id text PRIMARY KEY);
    CREATE TABLE jobs (
        pk bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id text NOT NULL UNIQUE,
        name text NOT NULL,
        model_name text,
        status text NOT NULL,
        message text,
        total_epochs bigint,
        total_steps bigint,
        config json NOT NULL,
        tags jsonb NOT NULL,
        created_at double precision NOT NULL,
        updated_at double precision NOT NULL,
        started_at double precision,
        finished_at double precision,
        last_seq bigint NOT NULL DEFAULT 0,
        max_step bigint,
        max_epoch double precision,
        first_ts double precision,
        row_count bigint NOT NULL DEFAULT 0
    );
    CREATE INDEX jobs_created ON jobs (created_at DESC, id DESC);
    CREATE TABLE metrics (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        job_pk bigint NOT NULL,
        name text NOT NULL,
        count bigint NOT NULL DEFAULT 0,
        last_step bigint,
        last_value double precision,
        min_value double precision,
        min_step bigint,
        max_value double precision,
        max_step bigint,
        nonfinite bigint NOT NULL DEFAULT 0,
        UNIQUE (job_pk, name)
    );
    CREATE TABLE steps (
        job_pk bigint NOT NULL,
        step bigint NOT NULL,
        epoch double precision,
        ts double precision NOT NULL,
        seq bigint NOT NULL,
        PRIMARY KEY (job_pk, step)
    );
    CREATE INDEX steps_seq ON steps (job_pk, seq);
    CREATE TABLE points (
        metric_id bigint NOT NULL,
        step bigint NOT NULL,
        value double precision NOT NULL,
        PRIMARY KEY (metric_id, step)
    );
    """,
    # 2: job events (health findings and user notes). ``dedupe`` makes a
    # detector's insert idempotent; NULL keys (notes) never conflict.
    """
    CREATE TABLE events (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        job_pk bigint NOT NULL,
        kind text NOT NULL,
        metric text,
        step bigint NOT NULL,
        value double precision,
        message text NOT NULL,
        severity text NOT NULL,
        ts double precision NOT NULL,
        dedupe text,
        UNIQUE (job_pk, dedupe)
    );
    CREATE INDEX events_job_step ON events (job_pk, step, id);
    """,
    # 3: the last sequence number of each deleted job, so that a job created
    # again under its id continues above it (issue 13).
    """
    CREATE TABLE deleted_ids (id text PRIMARY KEY, last_seq bigint NOT NULL);
    """,
    # 4: points in compressed column blocks with summaries; ``points`` stays as
    # the head of recent and out-of-order writes (issue 15, store/blocks.py).
    # (Its data step moved to 5: a database at 4 may hold its points in the head.)
    """
    CREATE TABLE blocks (
        metric_id bigint NOT NULL,
        first_step bigint NOT NULL,
        last_step bigint NOT NULL,
        count integer NOT NULL,
        min_value double precision,
        max_value double precision,
        nonfinite integer NOT NULL,
        sealed smallint NOT NULL,
        data bytea NOT NULL,
        PRIMARY KEY (metric_id, first_step)
    );
    ALTER TABLE blocks ALTER COLUMN data SET STORAGE EXTERNAL;
    CREATE INDEX blocks_open ON blocks (metric_id, first_step) WHERE sealed = 0;
    """,
    # 5: steps (epoch, timestamp, seq) in compressed column blocks; ``steps``
    # stays as their head (issue 15, store/step_blocks.py). A block gains its
    # min/max tier (``blocks.read_cells``; NULL for one written before) and its
    # data may end in ``tail`` (``Dialect.blob_parts``). Stored points and steps move
    # into blocks in the same transaction (DATA_STEPS).
    """
    ALTER TABLE blocks ADD COLUMN tiers bytea;
    ALTER TABLE blocks ALTER COLUMN tiers SET STORAGE MAIN;
    ALTER TABLE blocks ADD COLUMN tail bytea;
    ALTER TABLE blocks ALTER COLUMN tail SET STORAGE MAIN;
    CREATE TABLE step_blocks (
        job_pk bigint NOT NULL,
        first_step bigint NOT NULL,
        last_step bigint NOT NULL,
        count integer NOT NULL,
        min_seq bigint NOT NULL,
        max_seq bigint NOT NULL,
        data bytea NOT NULL,
        PRIMARY KEY (job_pk, first_step)
    );
    ALTER TABLE step_blocks ALTER COLUMN data SET STORAGE EXTERNAL;
    CREATE INDEX step_blocks_seq ON step_blocks (job_pk, max_seq);
    """,
)


def _into_blocks(conn: psycopg.Connection[TupleRow]) -> None:
    """Move stored points and steps into blocks (schema 5). Schema 4 leaves the
    points in the head, which may hold any of them, since blocks gain ``tail`` in 5."""
    compact_all(POSTGRES, conn, point_columns)
    step_blocks.compact_all(POSTGRES, conn, step_head)


#: Data moves run after the DDL of their migration (keyed by the version they
#: reach), in its transaction.
DATA_STEPS: dict[int, Callable[[psycopg.Connection[TupleRow]], object]] = {
    5: _into_blocks,
}


def schema_version(conn: psycopg.Connection[TupleRow]) -> int:
    """The version recorded in the database (0 for an empty database)."""
    exists = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
    return int(row[0]) if row else 0


def migrate(
    conn: psycopg.Connection[TupleRow],
    migrations: Sequence[str] = MIGRATIONS,
) -> int:
    """Bring the database to the newest schema version; returns that version.

    Runs in one transaction holding ``pg_advisory_xact_lock``: replicas that
    start together wait for each other, and a failed migration leaves the
    database as it was.

    A current database is only read, so a read-only one opens (issue 13).

    Raises:
        RuntimeError: the database is newer than this trainvis.
    """
    if schema_version(conn) == len(migrations):
        return len(migrations)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        version = schema_version(conn)
        if version > len(migrations):
            raise RuntimeError(
                f"database schema version {version} is newer than this trainvis "
                f"({len(migrations)}); upgrade trainvis"
            )
        for number in range(version + 1, len(migrations) + 1):
            conn.execute(migrations[number - 1].encode())
            data_step = DATA_STEPS.get(number)
            if data_step is not None and migrations[number - 1] == MIGRATIONS[number - 1]:
                data_step(conn)
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (number,))
    return len(migrations)
