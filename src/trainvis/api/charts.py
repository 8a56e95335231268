"""Chart endpoints: the four Chart.js charts of a job (or their Recharts shape).

Handlers only parse the query; :func:`chart_impl` reads whole series through
the app's :class:`~trainvis.store.cache.SeriesCache` (smoothing is exact only on
full-resolution data) and hands them to the pure builders in ``trainvis.charts``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from trainvis.api.deps import get_store, require_read
from trainvis.api.responses import JSONBody
from trainvis.api.schemas import ERRORS, ChartResponse
from trainvis.charts import ChartKind, ChartQuery, build_chart, select_metrics, to_recharts
from trainvis.charts.annotations import MAX_CHART_EVENTS, attach_events
from trainvis.store.base import MetricStore
from trainvis.store.cache import SeriesCache

router = APIRouter(tags=["charts"], dependencies=[Depends(require_read)])
Store = Annotated[MetricStore, Depends(get_store)]


#: The chart options, validated by FastAPI with the builders' own model.
Params = Annotated[ChartQuery, Query()]
CHART_RESPONSES: dict[int | str, dict[str, Any]] = {200: {"model": ChartResponse}, **ERRORS}


def series_cache(request: Request) -> SeriesCache:
    cache: SeriesCache = request.app.state.series_cache
    return cache


Cache = Annotated[SeriesCache, Depends(series_cache)]


def chart_impl(
    store: MetricStore,
    cache: SeriesCache,
    job_id: str,
    kind: ChartKind,
    query: ChartQuery,
    metrics: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Build one chart of a job: ``(config, meta)``.

    A Chart.js config carries the job's events on its metrics (and notes) as
    markers under ``options.plugins.trainvisEvents`` (see ``charts/annotations.py``).

    Raises:
        JobNotFound: unknown job. InvalidArgument: a bad option (names it).
    """
    job = store.get_job(job_id)
    requested = [name.strip() for name in metrics.split(",") if name.strip()] if metrics else None
    names = select_metrics(kind, job.metric_names, requested)
    # Whole series: the builders smooth all of it, then cut to start/end_step,
    # so a smoothed value never depends on the window (DESIGN).
    series = cache.read(job_id, names, with_time=query.x != "step")
    ordered = {name: series[name] for name in names if name in series}
    config, meta = build_chart(kind, ordered, query=query, t0=job.first_timestamp)
    if query.format == "recharts":
        return to_recharts(config, query.x), meta
    if any(job.alerts.values()):  # markers for the job's events (most jobs have none)
        events, _ = store.list_events(
            job_id,
            order="step",
            start_step=query.start_step,
            end_step=query.end_step,
            limit=MAX_CHART_EVENTS,
        )
        attach_events(config, [event.to_wire() for event in events], names)
    return config, meta


def all_charts(store: MetricStore, cache: SeriesCache, job_id: str) -> dict[str, Any]:
    """The four chart configs of a job with default options (dashboard JSON)."""
    kinds: tuple[ChartKind, ...] = ("loss", "gpu", "metrics", "learning_rate")
    return {kind: chart_impl(store, cache, job_id, kind, ChartQuery())[0] for kind in kinds}


async def _respond(
    store: MetricStore,
    cache: SeriesCache,
    job_id: str,
    kind: ChartKind,
    query: ChartQuery,
    metrics: str | None = None,
) -> Response:
    config, meta = await run_in_threadpool(chart_impl, store, cache, job_id, kind, query, metrics)
    return JSONBody({"data": config, "meta": meta})


@router.get(
    "/training/{job_id}/loss",
    summary="Loss curves (train and val), Chart.js config",
    responses=CHART_RESPONSES,
)
async def loss_chart(job_id: str, store: Store, cache: Cache, query: Params) -> Response:
    return await _respond(store, cache, job_id, "loss", query)


@router.get(
    "/training/{job_id}/gpu",
    summary="GPU utilization and memory, Chart.js config",
    responses=CHART_RESPONSES,
)
async def gpu_chart(job_id: str, store: Store, cache: Cache, query: Params) -> Response:
    return await _respond(store, cache, job_id, "gpu", query)


@router.get(
    "/training/{job_id}/metrics/chart",
    summary="Evaluation and custom metrics, Chart.js config",
    responses=CHART_RESPONSES,
)
async def metrics_chart(
    job_id: str,
    store: Store,
    cache: Cache,
    query: Params,
    metrics: Annotated[
        str | None, Query(description="comma-separated metrics (default: all evaluation metrics)")
    ] = None,
) -> Response:
    return await _respond(store, cache, job_id, "metrics", query, metrics)


@router.get(
    "/training/{job_id}/learning-rate",
    summary="Learning-rate schedule, Chart.js config",
    responses=CHART_RESPONSES,
)
async def learning_rate_chart(job_id: str, store: Store, cache: Cache, query: Params) -> Response:
    return await _respond(store, cache, job_id, "learning_rate", query)
