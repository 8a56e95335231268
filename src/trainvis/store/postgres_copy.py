"""PostgreSQL binary ``COPY`` encoded and decoded with numpy, no per-value Python work.

Binary COPY sends every field as a big-endian length and its bytes. When all
columns are ``bigint`` or ``double precision`` (8 bytes each) and a column is
either never or always NULL, every tuple has the same size and a whole batch
is one numpy structured array: building it and parsing it cost microseconds
per thousand rows, where text COPY formats and parses every float.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg.rows import TupleRow

from trainvis.store.dialect import POSTGRES

Conn = psycopg.Connection[TupleRow]

#: Signature, flags (0) and header-extension length (0).
HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
TRAILER = b"\xff\xff"
_TYPES = {"q": ">i8", "d": ">f8"}

Column = tuple[str, npt.ArrayLike] | None
"""``(kind, values)`` with kind ``q`` (bigint) or ``d`` (double precision); None: NULL."""


def encode_tuples(count: int, columns: Sequence[Column]) -> bytes:
    """``count`` tuples of ``columns`` in binary COPY format (no header or trailer)."""
    fields: list[tuple[str, str]] = [("fields", ">i2")]
    for index, column in enumerate(columns):
        fields.append((f"len{index}", ">i4"))
        if column is not None:
            fields.append((f"col{index}", _TYPES[column[0]]))
    table = np.empty(count, dtype=np.dtype(fields))
    table["fields"] = len(columns)
    for index, column in enumerate(columns):
        if column is None:
            table[f"len{index}"] = -1
        else:
            table[f"len{index}"] = 8
            table[f"col{index}"] = column[1]
    return table.tobytes()


def copy_in(conn: Conn, statement: str, *chunks: bytes) -> None:
    """``COPY … FROM STDIN (FORMAT BINARY)`` of already encoded tuples."""
    with conn.cursor() as cur, cur.copy(f"{statement} (FORMAT BINARY)".encode()) as copy:
        copy.write(HEADER)
        for chunk in chunks:
            if chunk:
                copy.write(chunk)
        copy.write(TRAILER)


def fetch_columns(
    conn: Conn, sql: str, params: Sequence[Any], kinds: str
) -> list[npt.NDArray[Any]]:
    """The columns of ``sql`` as numpy arrays, in the order the rows come.

    Each column is aggregated server-side into one array and sent with
    ``array_send`` as a single ``bytea`` (binary array format: a header, then
    a 4-byte length and 8 bytes per element), parsed by one
    ``numpy.frombuffer``. ``kinds`` has one letter per column, ``q`` (bigint)
    or ``d`` (double precision); no value may be NULL (coalesce in ``sql``).
    ``sql`` may use ``%s`` or the dialect's ``?`` placeholders.
    """
    names = [f"c{index}" for index in range(len(kinds))]
    aggregates = ", ".join(f"array_send(array_agg({name}))" for name in names)
    query = f"SELECT {aggregates} FROM ({sql}) AS t({', '.join(names)})"
    row = conn.execute(POSTGRES.sql(query), params, binary=True).fetchone()
    return [_array(row[index] if row else None, kind) for index, kind in enumerate(kinds)]


def _array(data: bytes | None, kind: str) -> npt.NDArray[Any]:
    out_type = np.int64 if kind == "q" else np.float64
    if data is None or int.from_bytes(data[:4], "big") == 0:  # no rows: NULL or 0-dim
        return np.empty(0, dtype=out_type)
    if int.from_bytes(data[4:8], "big"):
        raise RuntimeError("unexpected NULL in a numeric column")
    element = np.dtype([("length", ">i4"), ("value", _TYPES[kind])])
    return np.frombuffer(data, dtype=element, offset=20)["value"].astype(out_type)
