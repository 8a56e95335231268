"""The runs table's SQL (issue 16): sort keys and config filters of ``list_jobs``.

Both stores run the same statements; what differs (JSON lookups, collation,
NaN) comes from the :class:`~trainvis.store.dialect.Dialect`. A sort key is
one to three ``sort_<i>`` columns of a subquery (a metric statistic: a column
of the joined ``metrics`` row); the outer query orders by "lacks the key"
first, then the key, then id descending. The sort runs on narrow rows
(primary keys); the page's jobs are read afterwards.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from trainvis.models import best_direction
from trainvis.store.base import JobFilter, JobSort
from trainvis.store.dialect import Dialect

#: A JSON number (what a config filter value must look like to match numerically).
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")

#: Rank of a config value's JSON type in the order: numbers, strings, booleans,
#: arrays, objects (a null or missing value has none: it lacks the key).
_KIND_RANK = (
    "CASE {kind} WHEN 'number' THEN 0 WHEN 'string' THEN 1 WHEN 'boolean' THEN 2 "
    "WHEN 'array' THEN 3 WHEN 'object' THEN 4 END"
)

#: Sort columns that are never NULL.
_NOT_NULL = ("created_at", "updated_at", "name", "status")
#: Metric statistic → column of the ``metrics`` table (``best`` is resolved per name).
_STAT_COLUMNS = {"last": "last_value", "min": "min_value", "max": "max_value"}


def config_filter_sql(d: Dialect, path: tuple[str, ...], value: str) -> tuple[str, list[Any]]:
    """A ``WHERE`` term: the config value at ``path`` equals ``value``.

    Equal means the JSON text (a string without quotes) is ``value``, or both
    are numbers of equal value, or both are equal JSON objects or arrays; a
    missing or null value never matches.
    """
    kind, kind_params = d.config_kind(path)
    text, text_params = d.config_text(path)
    term = f"(({kind}) <> 'null' AND (({text}) = ?"
    params = [*kind_params, *text_params, value]
    if _JSON_NUMBER.fullmatch(value) and abs(float(value)) != float("inf"):
        number, number_params = d.config_number(path)
        term += f" OR ({number}) = {d.number_param}"
        params += [*number_params, value]
    if _json_container(value):
        equals, equals_params = d.config_equals(path)
        term += f" OR {equals}"
        params += [*equals_params, value]
    return term + "))", params


def _json_container(value: str) -> bool:
    """Whether ``value`` is strict JSON for an object or array (both databases parse it)."""
    if not value.startswith(("{", "[")):
        return False
    try:
        return isinstance(orjson.loads(value), dict | list)
    except orjson.JSONDecodeError:
        return False


def uses_config(filters: JobFilter, sort: JobSort) -> bool:
    """Whether a list query looks into ``config`` (then it reads ``d.config_source``)."""
    return bool(filters.config or sort.config)


def page_sql(
    d: Dialect, sort: JobSort, where: str, source: str = "jobs"
) -> tuple[str, list[Any], list[Any]]:
    """``SELECT pk`` of the jobs matching ``where`` in ``sort`` order, ending in
    ``LIMIT ? OFFSET ?``: the text, and the parameters that go before and after
    ``where``'s. ``source`` is what the jobs are read from (``d.config_source``
    where ``where`` or the key looks into ``config``)."""
    direction = "DESC" if sort.descending else "ASC"
    if sort.metric is not None:
        column = _metric_column(d, sort.metric, sort.stat or "last")
        if column is None:  # no job has a best of this metric: id order
            by_id = f"SELECT pk FROM {source} WHERE {where} ORDER BY id DESC LIMIT ? OFFSET ?"
            return by_id, [], []
        return (
            f"SELECT listed.pk FROM (SELECT pk, id FROM {source} WHERE {where}) AS listed "
            "LEFT JOIN metrics AS m ON m.job_pk = listed.pk AND m.name = ? AND m.count > 0 "
            f"ORDER BY {column} IS NULL, {column} {direction}, listed.id DESC LIMIT ? OFFSET ?",
            [],
            [sort.metric],
        )
    exprs, params = _key_exprs(d, sort)
    columns = ", ".join(f"{expr} AS sort_{index}" for index, expr in enumerate(exprs))
    # created_at, updated_at, name and status are never NULL: without the
    # "lacks" term the default order can walk the ``jobs_created`` index
    order = [] if sort.column in _NOT_NULL else ["sort_0 IS NULL"]
    order += [f"sort_{index} {direction}" for index in range(len(exprs))]
    if sort.config or sort.column in ("name", "status"):  # text: code-point order
        order[-1] = f"sort_{len(exprs) - 1}{d.text_order} {direction}"
    return (
        f"SELECT pk FROM (SELECT pk, id, {columns} FROM {source} WHERE {where}) AS listed "
        f"ORDER BY {', '.join(order)}, id DESC LIMIT ? OFFSET ?",
        params,
        [],
    )


def _key_exprs(d: Dialect, sort: JobSort) -> tuple[list[str], list[Any]]:
    """The expressions a column or config key orders by (the first is NULL where a
    job lacks it)."""
    if sort.config:
        kind, kind_params = d.config_kind(sort.config)
        number, number_params = d.config_number(sort.config)
        text, text_params = d.config_text(sort.config)
        return (
            [_KIND_RANK.format(kind=kind), f"({number})", f"({text})"],
            [*kind_params, *number_params, *text_params],
        )
    if sort.column == "name":
        return ["lower(name)"], []
    if sort.column == "progress":
        ratio = "max_step * 1.0 / total_steps"
        return [
            f"CASE WHEN total_steps > 0 AND max_step IS NOT NULL "
            f"THEN {d.least}({d.greatest}({ratio}, 0.0), 1.0) END"
        ], []
    return [str(sort.column)], []  # created_at, updated_at, status: plain columns


def _metric_column(d: Dialect, name: str, stat: str) -> str | None:
    """The column of the joined ``metrics`` row (``m``) holding ``stat`` of ``name``;
    None for ``best`` of a metric without a direction."""
    if stat == "best":
        direction = best_direction(name)
        return None if direction is None else f"m.{direction}_value"
    column = f"m.{_STAT_COLUMNS[stat]}"
    return d.nan_null(column) if stat == "last" else column
