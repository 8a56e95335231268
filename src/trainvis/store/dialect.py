"""What differs between the SQL of SQLite and of PostgreSQL, and nothing else.

The shared store logic (:mod:`trainvis.store.sql` and the ``sql_*`` modules)
writes every statement once, with ``?`` placeholders, and runs it through a
:class:`Dialect`: :data:`SQLITE` passes the text through, :data:`POSTGRES`
turns ``?`` into ``%s`` (psycopg's placeholder) and hands psycopg bytes.
Everything else a dialect knows is a small piece of SQL or a value conversion:
row locks, ``IN`` lists, the tag filter, JSON columns, how an event's NaN
is kept, and the runs table's config lookups and sort keys (issue 16).

This module imports no driver: the SDK's local mode loads it without psycopg.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

Connection = Any
"""An open ``sqlite3.Connection`` or ``psycopg.Connection`` (both have ``execute``)."""


class Dialect:
    """The SQLite flavour; :class:`PostgresDialect` overrides what PostgreSQL spells otherwise."""

    name = "sqlite"
    #: Suffix of a ``SELECT`` that row-locks for the transaction (SQLite's
    #: ``BEGIN IMMEDIATE`` already holds the database's write lock).
    for_update = ""
    #: Suffix of a ``SELECT`` that keeps the row from being deleted meanwhile.
    for_key_share = ""
    #: The most values one :meth:`in_list` takes (SQLite's bound-parameter limit).
    in_chunk = 500
    #: ``list_jobs``'s tag filter: jobs whose JSON ``tags`` array holds ``?``.
    tag_filter = "EXISTS (SELECT 1 FROM json_each(jobs.tags) WHERE value = ?)"
    #: Bytes of a block's data kept out of line in whole pieces (see
    #: :meth:`blob_parts`); 0: the data is one column.
    blob_piece = 0
    #: Whether a full batch's block is sealed at once rather than merged into a
    #: larger one later (``blocks.SEALED_MIN``). SQLite reuses a merged
    #: block's freed pages at the next write, and a larger block wastes less of
    #: its last overflow page (7.5 against 8.9 bytes/point on the bench
    #: workload), so it merges.
    seals_batches = False
    #: Placeholders of the ``config`` (JSON object) and ``tags`` (JSON array) columns.
    config_param = "?"
    tags_param = "?"
    #: Columns of an event's value: ``value`` and a NaN flag (SQLite stores NaN as NULL).
    event_value_insert = "value, value_nan"
    event_value_select = "value, value_nan"
    #: Suffix that makes text compare by code point (SQLite's default already does).
    text_order = ""
    #: The smaller and the larger of two values (SQLite's multi-argument min/max).
    least = "min"
    greatest = "max"
    #: A bound number compared with :meth:`config_number`.
    number_param = "CAST(? AS REAL)"
    #: The ``jobs`` rows as a list query that looks into ``config`` reads them.
    config_source = "jobs"

    def nan_null(self, expr: str) -> str:
        """``expr`` (a stored double) with NaN as NULL (SQLite stores NaN as NULL)."""
        return expr

    def config_kind(self, path: Sequence[str]) -> tuple[str, list[Any]]:
        """SQL of the JSON type of ``config`` at ``path`` (object keys): ``number``,
        ``string``, ``boolean``, ``null``, ``object``, ``array``, or NULL when missing."""
        p = _json_path(path)
        return (
            "CASE json_type(config, ?) WHEN 'integer' THEN 'number' WHEN 'real' THEN 'number' "
            "WHEN 'text' THEN 'string' WHEN 'true' THEN 'boolean' WHEN 'false' THEN 'boolean' "
            "WHEN 'null' THEN 'null' WHEN 'object' THEN 'object' WHEN 'array' THEN 'array' END",
            [p],
        )

    def config_text(self, path: Sequence[str]) -> tuple[str, list[Any]]:
        """SQL of a scalar of ``config`` at ``path`` as JSON text (a string without its
        quotes); NULL for an object or array (they compare with :meth:`config_equals`)."""
        p = _json_path(path)
        return (
            "CASE json_type(config, ?) WHEN 'text' THEN json_extract(config, ?) "
            "WHEN 'object' THEN NULL WHEN 'array' THEN NULL ELSE config -> ? END",
            [p, p, p],
        )

    def config_equals(self, path: Sequence[str]) -> tuple[str, list[Any]]:
        """SQL: ``config`` at ``path`` equals the JSON of the next parameter (valid
        JSON, an object or array); SQLite compares the minified texts."""
        return "(config -> ?) = json(?)", [_json_path(path)]

    def config_number(self, path: Sequence[str]) -> tuple[str, list[Any]]:
        """SQL of ``config`` at ``path`` as a number where it is one, else NULL."""
        p = _json_path(path)
        return (
            "CASE WHEN json_type(config, ?) IN ('integer', 'real') "
            "THEN json_extract(config, ?) END",
            [p, p],
        )

    def recent_steps(
        self, conn: Connection, pks: Sequence[int], limit: int
    ) -> dict[int, list[tuple[int, float]]]:
        """The newest ``limit`` ``(step, timestamp)`` of each job in ``pks``, newest
        first (a query per job: in-process, each is an index probe)."""
        found: dict[int, list[tuple[int, float]]] = {}
        for pk in pks:
            rows = self.run(
                conn,
                "SELECT step, ts FROM steps WHERE job_pk = ? ORDER BY step DESC LIMIT ?",
                (pk, limit),
            )
            found[pk] = [(int(step), float(ts)) for step, ts in rows]
        return found

    def blob_parts(self, data: bytes) -> tuple[bytes, bytes | None]:
        """A block's ``(data, tail)`` columns: :attr:`blob_piece`-byte multiples
        and the rest (None when nothing is left over); read back as their join."""
        cut = len(data) // self.blob_piece * self.blob_piece if self.blob_piece else len(data)
        if cut in (0, len(data)):
            return data, None
        return data[:cut], data[cut:]

    def sql(self, text: str) -> Any:
        """``text`` (``?`` placeholders) as this driver's query."""
        return text

    def run(self, conn: Connection, text: str, params: Sequence[Any] = ()) -> Any:
        """Execute ``text`` on ``conn``; returns the cursor."""
        return conn.execute(self.sql(text), params)

    def scalar(self, conn: Connection, text: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row of ``text`` (an aggregate's: it always has one)."""
        row = self.run(conn, text, params).fetchone()
        return None if row is None else row[0]

    def in_list(self, column: str, values: Sequence[Any], kind: str) -> tuple[str, list[Any]]:
        """``column`` is one of ``values`` (at most :attr:`in_chunk` of them); ``kind``
        is the SQL type of an element (``bigint``, ``text``)."""
        return f"{column} IN ({','.join('?' * len(values))})", list(values)

    def load_json(self, value: Any) -> Any:
        """A JSON column as read (SQLite returns text)."""
        return orjson.loads(value)

    def event_value(self, value: float | None) -> list[Any]:
        """Parameters of :attr:`event_value_insert` for an event's value."""
        is_nan = value is not None and math.isnan(value)
        return [None if is_nan else value, int(is_nan)]

    def insert_metrics(self, pk: int, names: Sequence[str]) -> tuple[str, list[Any]]:
        """An ``INSERT`` of the job's metrics ``names`` returning ``(id, name)`` rows
        (at most ``in_chunk`` names)."""
        params: list[Any] = []
        for name in names:
            params += [pk, name]
        values = ", ".join(["(?, ?)"] * len(names))
        return f"INSERT INTO metrics (job_pk, name) VALUES {values} RETURNING id, name", params

    def chunks(self, values: Sequence[Any]) -> Iterator[Sequence[Any]]:
        """``values`` in slices that fit one :meth:`in_list`."""
        for start in range(0, len(values), self.in_chunk):
            yield values[start : start + self.in_chunk]


class PostgresDialect(Dialect):
    """PostgreSQL through psycopg 3."""

    name = "postgresql"
    for_update = " FOR UPDATE"
    for_key_share = " FOR KEY SHARE"
    in_chunk = 1 << 30  # an array parameter: one value, any length
    #: PostgreSQL's TOAST chunk of a value stored out of line with 8 kB pages
    #: (``pg_control_init().toast_chunk_size``): 4 fill a page. A block's data is
    #: split into whole chunks (column ``data``, out of line) and the rest
    #: (``tail``, inline in the row): one partial last chunk per block left
    #: ~1.2 kB of every TOAST page empty, 17 % of the bench workload's disk.
    #: Another chunk size only makes the split save less, never reads wrong.
    blob_piece = 1996
    #: A merge leaves the replaced blocks as dead tuples until a vacuum.
    seals_batches = True
    tag_filter = "tags @> jsonb_build_array(?::text)"
    config_param = "?::json"
    tags_param = "?::jsonb"
    event_value_insert = "value"
    event_value_select = "value, FALSE"  # double precision keeps NaN itself
    text_order = ' COLLATE "C"'
    least = "least"
    greatest = "greatest"
    number_param = "?::numeric"
    # ``config`` is ``json`` (text as posted): each ``->`` on it parses the text
    # again, so the row's config is parsed once into ``config_b`` (OFFSET 0 keeps
    # the planner from inlining the cast into every use)
    config_source = "(SELECT *, config::jsonb AS config_b FROM jobs OFFSET 0) AS jobs"

    def nan_null(self, expr: str) -> str:
        return f"NULLIF({expr}, 'NaN')"

    def config_kind(self, path: Sequence[str]) -> tuple[str, list[Any]]:
        value, params = _pg_config_value(path)
        return f"jsonb_typeof({value})", params

    def config_text(self, path: Sequence[str]) -> tuple[str, list[Any]]:
        value, params = _pg_config_value(path)
        return (
            f"CASE WHEN jsonb_typeof({value}) IN ('object', 'array') THEN NULL "
            f"ELSE {value} #>> '{{}}' END",
            params * 2,
        )

    def config_number(self, path: Sequence[str]) -> tuple[str, list[Any]]:
        value, params = _pg_config_value(path)
        return (
            f"CASE WHEN jsonb_typeof({value}) = 'number' THEN ({value} #>> '{{}}')::numeric END",
            params * 2,
        )

    def config_equals(self, path: Sequence[str]) -> tuple[str, list[Any]]:
        value, params = _pg_config_value(path)
        return f"{value} = ?::jsonb", params

    def recent_steps(
        self, conn: Connection, pks: Sequence[int], limit: int
    ) -> dict[int, list[tuple[int, float]]]:
        # one round trip for the page: an index probe per job through LATERAL
        found: dict[int, list[tuple[int, float]]] = {pk: [] for pk in pks}
        if not pks:
            return found
        rows = self.run(
            conn,
            "SELECT p.pk, s.step, s.ts FROM unnest(?::bigint[]) AS p (pk) CROSS JOIN LATERAL "
            "(SELECT step, ts FROM steps WHERE job_pk = p.pk ORDER BY step DESC LIMIT ?) AS s "
            "ORDER BY p.pk, s.step DESC",
            (list(pks), limit),
        )
        for pk, step, ts in rows:
            found[int(pk)].append((int(step), float(ts)))
        return found

    def sql(self, text: str) -> Any:
        return _pg_sql(text)

    def in_list(self, column: str, values: Sequence[Any], kind: str) -> tuple[str, list[Any]]:
        return f"{column} = ANY(?::{kind}[])", [list(values)]

    def insert_metrics(self, pk: int, names: Sequence[str]) -> tuple[str, list[Any]]:
        return (
            "INSERT INTO metrics (job_pk, name) SELECT ?, unnest(?::text[]) RETURNING id, name",
            [pk, list(names)],
        )

    def load_json(self, value: Any) -> Any:
        return value  # psycopg decodes json/jsonb (with orjson, see ``postgres.py``)

    def event_value(self, value: float | None) -> list[Any]:
        return [value]


def _json_path(path: Sequence[str]) -> str:
    """An SQLite JSON path of object keys (keys hold no quote or backslash:
    :func:`~trainvis.store.base.parse_config_path`)."""
    return "$" + "".join(f'."{key}"' for key in path)


def _pg_config_value(path: Sequence[str]) -> tuple[str, list[Any]]:
    """``config_b`` (the row's config parsed once: :attr:`PostgresDialect.config_source`)
    at ``path``; ``->`` with a text key is NULL on an array, as SQLite's quoted keys are."""
    return "(config_b" + " -> ?::text" * len(path) + ")", list(path)


@functools.lru_cache(maxsize=512)
def _pg_sql(text: str) -> bytes:
    return text.replace("?", "%s").encode()


SQLITE = Dialect()
POSTGRES = PostgresDialect()
