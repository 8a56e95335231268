"""The runs table's SQL (issue 16): sort keys and config filters of ``list_jobs``.

Both stores run the same statements; what differs (JSON lookups, collation,
NaN) comes from the :class:`~trainvis.store.dialect.Dialect`. A sort key is
one to three ``sort_<i>`` columns of a subquery: the outer query orders by
"lacks the key" first, then the columns, then id descending.
"""

from __future__ import annotations

import re
from typing import Any

from trainvis.models import best_direction
from trainvis.store.base import JobSort
from trainvis.store.dialect import Dialect

#: A JSON number (what a config filter value must look like to match numerically).
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")

#: Rank of a config value's JSON type in the order: numbers, strings, booleans,
#: arrays, objects (a null or missing value has none: it lacks the key).
_KIND_RANK = (
    "CASE {kind} WHEN 'number' THEN 0 WHEN 'string' THEN 1 WHEN 'boolean' THEN 2 "
    "WHEN 'array' THEN 3 WHEN 'object' THEN 4 END"
)

#: Metric statistic → column of the ``metrics`` table (``best`` is resolved per name).
_STAT_COLUMNS = {"last": "last_value", "min": "min_value", "max": "max_value"}


def config_filter_sql(d: Dialect, path: tuple[str, ...], value: str) -> tuple[str, list[Any]]:
    """A ``WHERE`` term: the config value at ``path`` equals ``value``.

    Equal means the JSON text (a string without quotes) is ``value``, or both
    are numbers of equal value; a missing or null value never matches.
    """
    kind, kind_params = d.config_kind(path)
    text, text_params = d.config_text(path)
    term = f"(({kind}) <> 'null' AND (({text}) = ?"
    params = [*kind_params, *text_params, value]
    if _JSON_NUMBER.fullmatch(value) and abs(float(value)) != float("inf"):
        number, number_params = d.config_number(path)
        term += f" OR ({number}) = {d.number_param}"
        params += [*number_params, value]
    return term + "))", params


def sort_sql(d: Dialect, sort: JobSort) -> tuple[list[str], list[Any], str]:
    """The subquery's key columns (``<expr> AS sort_<i>``), their parameters and
    the outer ``ORDER BY`` clause (without the keyword)."""
    exprs, params = _key_exprs(d, sort)
    direction = "DESC" if sort.descending else "ASC"
    columns = [f"{expr} AS sort_{index}" for index, expr in enumerate(exprs)]
    order = ["sort_0 IS NULL"]
    order += [f"sort_{index} {direction}" for index in range(len(exprs))]
    if sort.config:  # the last config key is its text: code-point order on both stores
        order[-1] = f"sort_{len(exprs) - 1}{d.text_order} {direction}"
    elif sort.column in ("name", "status"):
        order[-1] = f"sort_0{d.text_order} {direction}"
    return columns, params, ", ".join([*order, "id DESC"])


def _key_exprs(d: Dialect, sort: JobSort) -> tuple[list[str], list[Any]]:
    """The expressions a key orders by (the first is NULL where a job lacks it)."""
    if sort.config:
        kind, kind_params = d.config_kind(sort.config)
        number, number_params = d.config_number(sort.config)
        text, text_params = d.config_text(sort.config)
        return (
            [_KIND_RANK.format(kind=kind), f"({number})", f"({text})"],
            [*kind_params, *number_params, *text_params],
        )
    if sort.metric is not None:
        return [_metric_expr(d, sort.metric, sort.stat or "last")], [sort.metric]
    if sort.column == "name":
        return ["lower(name)"], []
    if sort.column == "progress":
        ratio = "max_step * 1.0 / total_steps"
        return [
            f"CASE WHEN total_steps > 0 AND max_step IS NOT NULL "
            f"THEN {d.least}({d.greatest}({ratio}, 0.0), 1.0) END"
        ], []
    return [str(sort.column)], []  # created_at, updated_at, status: plain columns


def _metric_expr(d: Dialect, name: str, stat: str) -> str:
    """The job's statistic ``stat`` of metric ``name`` (one ``?``: the name)."""
    if stat == "best":
        direction = best_direction(name)
        column = {"min": "min_value", "max": "max_value"}.get(direction or "", "NULL")
    else:
        column = _STAT_COLUMNS[stat]
    if stat == "last":
        column = d.nan_null(column)
    return (
        f"(SELECT {column} FROM metrics WHERE metrics.job_pk = jobs.pk "
        "AND metrics.name = ? AND metrics.count > 0)"
    )
