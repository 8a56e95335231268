"""Read queries of the PostgreSQL store: rows assembled from steps and points.

Functions here take an open connection and run inside the caller's
transaction; :mod:`trainvis.store.postgres` owns the pool.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg.rows import TupleRow

from trainvis.errors import JobNotFound
from trainvis.models import row_to_wire
from trainvis.store.base import Row

Conn = psycopg.Connection[TupleRow]
CHUNK_STEPS = 5000
BIGINT_MAX = 2**63 - 1
#: Binary COPY header: signature, flags, header-extension length.
_COPY_HEADER = 19
_COPY_TRAILER = 2


def bounds(start_step: int | None, end_step: int | None) -> tuple[int, int]:
    """Inclusive step bounds with open ends filled in."""
    return (start_step if start_step is not None else 0), (
        end_step if end_step is not None else BIGINT_MAX
    )


def job_pk(conn: Conn, job_id: str, *, lock: bool = False) -> int:
    """The job's primary key (row-locked for the transaction with ``lock``)."""
    suffix = " FOR UPDATE" if lock else ""
    row = conn.execute("SELECT pk FROM jobs WHERE id = %s" + suffix, (job_id,)).fetchone()
    if row is None:
        raise JobNotFound(job_id)
    return int(row[0])


def metric_map(conn: Conn, pk: int, metrics: Sequence[str] | None) -> dict[str, int]:
    """``name -> metric id`` by name, or in the order of ``metrics`` (unknown names dropped)."""
    rows = conn.execute("SELECT name, id FROM metrics WHERE job_pk = %s ORDER BY name", (pk,))
    known = {str(name): int(metric_id) for name, metric_id in rows}
    if metrics is None:
        return known
    return {name: known[name] for name in metrics if name in known}


def step_chunk(
    conn: Conn, pk: int, ids: dict[str, int] | None, lo: int, hi: int, skip: int
) -> list[tuple[int, float | None, float]]:
    """Up to ``CHUNK_STEPS`` rows ``(step, epoch, ts)`` from ``lo`` on (keyset paging).

    With ``ids``, only steps that have a point of one of those metrics.
    """
    sql = "SELECT step, epoch, ts FROM steps WHERE job_pk = %s AND step BETWEEN %s AND %s"
    params: list[Any] = [pk, lo, hi]
    if ids is not None:
        sql += (
            " AND EXISTS (SELECT 1 FROM points p WHERE p.metric_id = ANY(%s) "
            "AND p.step = steps.step)"
        )
        params.append(list(ids.values()))
    sql += " ORDER BY step LIMIT %s OFFSET %s"
    return conn.execute(sql.encode(), [*params, CHUNK_STEPS, skip]).fetchall()


def assemble(
    conn: Conn, steps: list[tuple[int, float | None, float]], ids: dict[str, int]
) -> list[Row]:
    """Wire rows for a chunk of consecutive ``steps`` with the metrics in ``ids``."""
    lo, hi = steps[0][0], steps[-1][0]
    values: dict[int, dict[str, float]] = {step: {} for step, _, _ in steps}
    for name, metric_id in ids.items():
        cursor = conn.execute(
            "SELECT step, value FROM points WHERE metric_id = %s AND step BETWEEN %s AND %s",
            (metric_id, lo, hi),
        )
        for step, value in cursor:
            bucket = values.get(step)
            if bucket is not None:
                bucket[name] = value
    return [row_to_wire(step, epoch, ts, values[step]) for step, epoch, ts in steps]


def rows_for_steps(
    conn: Conn, pk: int, steps: Sequence[int], metrics: Sequence[str] | None = None
) -> list[Row]:
    """Wire rows at exactly ``steps`` (missing ones skipped), ordered by step."""
    wanted = sorted(set(steps))
    if not wanted:
        return []
    ids = metric_map(conn, pk, metrics)
    found = conn.execute(
        "SELECT step, epoch, ts FROM steps WHERE job_pk = %s AND step = ANY(%s) ORDER BY step",
        (pk, wanted),
    ).fetchall()
    if not found:
        return []
    present = [row[0] for row in found]
    values: dict[int, dict[str, float]] = {step: {} for step in present}
    for name, metric_id in ids.items():
        cursor = conn.execute(
            "SELECT step, value FROM points WHERE metric_id = %s AND step = ANY(%s)",
            (metric_id, present),
        )
        for step, value in cursor:
            values[step][name] = value
    return [row_to_wire(step, epoch, ts, values[step]) for step, epoch, ts in found]


def iter_chunks(
    conn_factory: Any,
    job_id: str,
    metrics: Sequence[str] | None,
    lo: int,
    hi: int,
    offset: int,
) -> Iterator[list[Row]]:
    """Chunks of rows by step, each read on a connection held only for that chunk.

    ``conn_factory()`` is a context manager yielding a connection; the
    generator holds none while it is suspended, so an abandoned stream does
    not pin a pooled connection.
    """
    skip = offset
    while lo <= hi:
        with conn_factory() as conn:
            pk = job_pk(conn, job_id)
            ids = metric_map(conn, pk, metrics)
            if metrics is not None and not ids:
                return
            steps = step_chunk(conn, pk, ids if metrics is not None else None, lo, hi, skip)
            if not steps:
                return
            rows = assemble(conn, steps, ids)
        skip = 0
        yield rows
        if len(steps) < CHUNK_STEPS:
            return
        lo = steps[-1][0] + 1


def copy_columns(conn: Conn, sql: str, params: Sequence[Any], kinds: str) -> list[npt.NDArray[Any]]:
    """Run ``sql`` through binary ``COPY … TO STDOUT`` and return one array per column.

    ``kinds`` has one letter per column: ``q`` (bigint) or ``d`` (double
    precision); no column may be NULL (every row then has the same size and
    the whole result decodes with one ``numpy.frombuffer``).
    """
    fields: list[tuple[str, str]] = [("count", ">i2")]
    for index, kind in enumerate(kinds):
        fields += [(f"len{index}", ">i4"), (f"c{index}", ">i8" if kind == "q" else ">f8")]
    dtype = np.dtype(fields)
    buffer = bytearray()
    with conn.cursor() as cur:
        query = psycopg.sql.SQL("COPY ({}) TO STDOUT (FORMAT BINARY)").format(
            psycopg.sql.SQL(sql.replace("%s", "{}")).format(  # type: ignore[arg-type]
                *(psycopg.sql.Literal(param) for param in params)
            )
        )
        with cur.copy(query) as copy:
            for block in copy:
                buffer += block
    body = memoryview(buffer)[_COPY_HEADER : len(buffer) - _COPY_TRAILER]
    if struct.unpack(">i", buffer[15:19])[0] != 0:  # no header extension is ever sent
        raise RuntimeError("unexpected binary COPY header extension")
    table = np.frombuffer(body, dtype=dtype)
    result: list[npt.NDArray[Any]] = []
    for index, kind in enumerate(kinds):
        column = table[f"c{index}"]
        result.append(column.astype(np.int64 if kind == "q" else np.float64))
    return result
