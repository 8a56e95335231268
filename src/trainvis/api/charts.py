"""Chart endpoints: the four Chart.js charts of a job (or their Recharts shape).

Handlers only parse the query; :func:`chart_impl` reads whole series through
the app's :class:`~trainvis.store.cache.SeriesCache` (smoothing is exact only on
full-resolution data) and hands them to the pure builders in ``trainvis.charts``.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from trainvis.api.deps import get_store, require_read
from trainvis.api.responses import JSONBody
from trainvis.api.schemas import ERRORS, ChartResponse
from trainvis.charts import (
    CHART_KINDS,
    ChartKind,
    ChartQuery,
    build_chart,
    default_config,
    resolve_params,
    select_metrics,
    to_recharts,
)
from trainvis.charts.annotations import MAX_CHART_EVENTS, attach_events
from trainvis.charts.config import DEFAULT_CHART_METRICS, MAX_CHART_METRICS
from trainvis.charts.params import invalid
from trainvis.charts.select import limit_metrics
from trainvis.charts.tiers import tiered_series, tiers_apply
from trainvis.models import TrainingJob
from trainvis.series import Series
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
    *,
    aggregate: bool = False,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Build one chart of a job: ``(config, meta)``.

    A default selection draws at most ``DEFAULT_CHART_METRICS[kind]`` metrics
    (``meta.metrics_omitted`` counts the rest); an explicit ``metrics`` list
    draws what it names (up to ``MAX_CHART_METRICS``). ``aggregate`` (GPU
    chart) folds the devices into a mean and a min/max band per field.

    A Chart.js config carries the job's events on its metrics (and notes) as
    markers under ``options.plugins.trainvisEvents`` (see ``charts/annotations.py``).

    Raises:
        JobNotFound: unknown job. InvalidArgument: a bad option (names it).
    """
    requested = _requested(metrics)
    job = store.get_job(job_id)
    return job_chart(store, cache, job, kind, query, requested, aggregate=aggregate)


def job_chart(
    store: MetricStore,
    cache: SeriesCache,
    job: TrainingJob,
    kind: ChartKind,
    query: ChartQuery,
    requested: list[str] | None = None,
    *,
    aggregate: bool = False,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """:func:`chart_impl` for a job already read (the dashboard reads it once for
    four charts: reading a job with 10,000 metrics is not free)."""
    job_id = job.id
    names = select_metrics(kind, job.metric_names, requested)
    note: dict[str, Any] = {
        "metrics_total": len(names),
        "metrics_omitted": 0,
        "metrics_omitted_names": [],
    }
    if not requested and not (aggregate and kind == "gpu"):
        names, note = limit_metrics(kind, names)
    tiered = _tiered(store, job_id, names, kind, query, aggregate=aggregate)
    # Whole series: the builders smooth all of it, then cut to start/end_step,
    # so a smoothed value never depends on the window (DESIGN).
    rest = [name for name in names if name not in tiered]
    series = cache.read(job_id, rest, with_time=query.x != "step") if rest else {}
    series.update(tiered)
    ordered = {name: series[name] for name in names if name in series}
    config, meta = build_chart(
        kind, ordered, query=query, t0=job.first_timestamp, aggregate=aggregate
    )
    meta.update(note)
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


def _tiered(
    store: MetricStore,
    job_id: str,
    names: list[str],
    kind: ChartKind,
    query: ChartQuery,
    *,
    aggregate: bool,
) -> dict[str, Series]:
    """The series of a band chart drawn from min/max tiers (:mod:`trainvis.charts.tiers`):
    long windows of finite values, read as a few thousand tier entries."""
    params = resolve_params(default_config(kind), query)
    if not tiers_apply(params) or (aggregate and kind == "gpu"):
        return {}
    found: dict[str, Series] = {}
    for name in names:
        cells = store.read_cells(job_id, name, start_step=query.start_step, end_step=query.end_step)
        series = None if cells is None else tiered_series(name, cells, params)
        if series is not None:
            found[name] = series
    return found


def _requested(metrics: str | None) -> list[str] | None:
    """The names of an explicit ``metrics=a,b`` list (None when absent or blank).

    Raises:
        InvalidArgument: more than ``MAX_CHART_METRICS`` names.
    """
    if not metrics:
        return None
    names = list(dict.fromkeys(name.strip() for name in metrics.split(",") if name.strip()))
    if len(names) > MAX_CHART_METRICS:
        raise invalid("metrics", f"at most {MAX_CHART_METRICS} metrics per chart")
    return names or None


def all_charts(
    store: MetricStore, cache: SeriesCache, job_id: str, *, job: TrainingJob | None = None
) -> dict[str, Any]:
    """The four chart configs of a job with default options (dashboard JSON).

    ``job``: the job when the caller has read it already.

    Raises:
        JobNotFound: unknown job.
    """
    job = job if job is not None else store.get_job(job_id)
    return {kind: job_chart(store, cache, job, kind, ChartQuery())[0] for kind in CHART_KINDS}


async def _respond(
    store: MetricStore,
    cache: SeriesCache,
    job_id: str,
    kind: ChartKind,
    query: ChartQuery,
    metrics: str | None = None,
    *,
    aggregate: bool = False,
) -> Response:
    config, meta = await run_in_threadpool(
        partial(chart_impl, aggregate=aggregate), store, cache, job_id, kind, query, metrics
    )
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
async def gpu_chart(
    job_id: str,
    store: Store,
    cache: Cache,
    query: Params,
    aggregate: Annotated[
        bool,
        Query(
            description="true: one mean line per field across devices, "
            "with the devices' min and max as a band (default: one line per device)"
        ),
    ] = False,
) -> Response:
    return await _respond(store, cache, job_id, "gpu", query, aggregate=aggregate)


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
        str | None,
        Query(
            description=f"comma-separated metrics, up to {MAX_CHART_METRICS} (default: the "
            f"first {DEFAULT_CHART_METRICS['metrics']} evaluation metrics; "
            "meta.metrics_omitted counts the others)"
        ),
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
