"""Workspace reads (issue 16): per-metric statistics and compact series of many metrics.

``GET /training/{job_id}/metrics/summary`` and ``GET /training/{job_id}/series``.
Both read whole series through the app's
:class:`~trainvis.store.cache.SeriesCache` (exact after re-posted steps: the
cache merges replacements) and hand them to the pure functions of
``trainvis.charts.compact``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from trainvis.api.charts import Cache, Params
from trainvis.api.deps import get_store, require_read
from trainvis.api.responses import JSONBody
from trainvis.api.schemas import ERRORS
from trainvis.charts import ChartQuery, resolve_params
from trainvis.charts.compact import compact_series, empty_series, metric_summary
from trainvis.charts.config import MAX_CHART_METRICS, MetricsChartConfig
from trainvis.charts.params import invalid
from trainvis.store.base import MetricStore
from trainvis.store.cache import SeriesCache

router = APIRouter(tags=["charts"], dependencies=[Depends(require_read)])
Store = Annotated[MetricStore, Depends(get_store)]

#: Most metric names one ``series`` request may name.
MAX_SERIES_METRICS = MAX_CHART_METRICS


class MetricSummaryItem(BaseModel):
    name: str
    count: int
    first_step: int | None
    last_step: int | None
    last: float | str | None
    min: float | None
    max: float | None
    best: float | None
    best_step: int | None
    nonfinite: int


class SummaryMeta(BaseModel):
    total: int


class MetricSummaryResponse(BaseModel):
    """One item per metric of the job, sorted by name."""

    data: list[MetricSummaryItem]
    meta: SummaryMeta


class CompactSeries(BaseModel):
    x: list[float]
    y: list[float | None]
    nonfinite_x: list[float]
    smoothed: list[float | None] | None = None
    min: list[float | None] | None = None
    max: list[float | None] | None = None


class SeriesResponse(BaseModel):
    """Arrays per requested metric (empty for a metric the job lacks); counts in ``meta``."""

    data: dict[str, CompactSeries]
    meta: dict[str, Any]


def summary_impl(store: MetricStore, cache: SeriesCache, job_id: str) -> list[dict[str, Any]]:
    """The statistics of every metric of a job, sorted by name.

    Raises:
        JobNotFound: unknown job.
    """
    names = sorted(store.get_job(job_id).metric_names)
    series = cache.read(job_id, names)
    return [metric_summary(series[name]) for name in names if name in series]


def parse_metric_list(metrics: str) -> list[str]:
    """The names of a ``metrics=a,b`` list (blanks dropped, duplicates once, in order).

    Raises:
        InvalidArgument: no name, or more than :data:`MAX_SERIES_METRICS`.
    """
    names = list(dict.fromkeys(name.strip() for name in metrics.split(",") if name.strip()))
    if not names:
        raise invalid("metrics", "name at least one metric")
    if len(names) > MAX_SERIES_METRICS:
        raise invalid("metrics", f"at most {MAX_SERIES_METRICS} metrics per request")
    return names


def series_impl(
    store: MetricStore, cache: SeriesCache, job_id: str, metrics: str, query: ChartQuery
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Compact arrays of the named metrics of a job: ``(data, meta)``.

    Smoothing runs on each whole series; the window and downsampling come after.

    Raises:
        JobNotFound: unknown job. InvalidArgument: a bad option (names it).
    """
    names = parse_metric_list(metrics)
    job = store.get_job(job_id)
    params = resolve_params(MetricsChartConfig(), query, t0=job.first_timestamp)
    series = cache.read(job_id, names, with_time=query.x != "step")
    data: dict[str, Any] = {}
    per_metric: dict[str, Any] = {}
    for name in names:
        if name not in series:
            data[name] = empty_series(params)
            continue
        data[name], per_metric[name] = compact_series(
            series[name], params, start_step=query.start_step, end_step=query.end_step
        )
    meta = {
        "metrics": len(names),
        "missing": [name for name in names if name not in series],
        "points_total": sum(item["points_total"] for item in per_metric.values()),
        "points_returned": sum(item["points_returned"] for item in per_metric.values()),
        "downsampled": any(item["downsampled"] for item in per_metric.values()),
        "algorithm": "minmax" if params.band else params.algorithm,
        "max_points": params.max_points,
        "x": params.x,
        "smoothing": params.smoothing_meta(),
        "series": per_metric,
    }
    return data, meta


@router.get(
    "/training/{job_id}/metrics/summary",
    summary="Per-metric statistics: count, first/last step, last, min, max, best",
    responses={200: {"model": MetricSummaryResponse}, **ERRORS},
)
async def metrics_summary(job_id: str, store: Store, cache: Cache) -> Response:
    items = await run_in_threadpool(summary_impl, store, cache, job_id)
    return JSONBody({"data": items, "meta": {"total": len(items)}})


@router.get(
    "/training/{job_id}/series",
    summary="Compact x/y arrays of up to 100 metrics (smoothed on the full series)",
    responses={200: {"model": SeriesResponse}, **ERRORS},
)
async def series(
    job_id: str,
    store: Store,
    cache: Cache,
    query: Params,
    metrics: Annotated[
        str,
        Query(
            description=f"comma-separated metric names (1 to {MAX_SERIES_METRICS})",
            pattern=r"[^\s,]",  # at least one name (the schema says so, too)
        ),
    ],
) -> Response:
    data, meta = await run_in_threadpool(series_impl, store, cache, job_id, metrics, query)
    return JSONBody({"data": data, "meta": meta})
