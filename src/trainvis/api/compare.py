"""``GET /training/compare``: one metric of 2 to 50 runs as one chart.

The handler parses the query; :func:`compare_impl` reads each run's whole
series through the app's :class:`~trainvis.store.cache.SeriesCache` and hands
them to :func:`trainvis.charts.compare.build_compare`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from starlette.concurrency import run_in_threadpool

from trainvis.api.charts import CHART_RESPONSES, Cache, Params
from trainvis.api.deps import get_store, require_read
from trainvis.api.responses import JSONBody
from trainvis.charts import ChartQuery, to_recharts
from trainvis.charts.compare import CompareRun, build_compare
from trainvis.charts.groups import GROUP_BY_PATTERN, valid_group_by
from trainvis.charts.params import invalid
from trainvis.store.base import MetricStore
from trainvis.store.cache import SeriesCache

router = APIRouter(tags=["charts"], dependencies=[Depends(require_read)])
Store = Annotated[MetricStore, Depends(get_store)]

#: Fewest and most runs one compare request may name.
MIN_COMPARE_JOBS = 2
MAX_COMPARE_JOBS = 50
JOBS_MESSAGE = f"name {MIN_COMPARE_JOBS} to {MAX_COMPARE_JOBS} job ids"
#: The schema's shape of ``jobs``: 2 to 50 ids of job-id characters, comma-separated
#: (ASCII classes only: ``\s`` differs between the schema's regex engines).
_ID = "[A-Za-z0-9._-]+"
JOBS_PATTERN = rf"^{_ID}(,{_ID}){{{MIN_COMPARE_JOBS - 1},{MAX_COMPARE_JOBS - 1}}}$"


def parse_job_list(jobs: str) -> list[str]:
    """The distinct ids of a ``jobs=a,b`` list, in order.

    The 2 to 50 ids are counted as listed; an id listed twice is drawn once
    (so ``a,a`` is one run, which the schema cannot tell from ``a,b``).

    Raises:
        InvalidArgument: fewer than 2 or more than 50 ids listed (names ``jobs``).
    """
    listed = [part.strip() for part in jobs.split(",") if part.strip()]
    if not MIN_COMPARE_JOBS <= len(listed) <= MAX_COMPARE_JOBS:
        raise invalid("jobs", JOBS_MESSAGE + f", got {len(listed)}")
    return list(dict.fromkeys(listed))


def compare_impl(
    store: MetricStore,
    cache: SeriesCache,
    jobs: str,
    metric: str,
    query: ChartQuery,
    group_by: str | None = None,
    baseline: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The compare chart of ``metric`` over the listed jobs: ``(config, meta)``.

    Raises:
        InvalidArgument: a bad ``jobs`` list, ``group_by``, ``baseline`` (not
            one of the jobs) or chart option; the details name the parameter.
        JobNotFound: an unknown job id (the first one, in list order).
    """
    ids = parse_job_list(jobs)
    if group_by is not None and not valid_group_by(group_by):
        raise invalid("group_by", "must be config.<path>, tag, model_name or status")
    found = [store.get_job(job_id) for job_id in ids]
    if baseline is not None and baseline not in ids:
        raise invalid("baseline", "must be one of the compared jobs")
    runs = []
    for job in found:
        series = cache.read(job.id, [metric], with_time=query.x != "step")
        runs.append(CompareRun(job, series.get(metric)))
    config, meta = build_compare(metric, runs, query=query, group_by=group_by, baseline=baseline)
    if query.format == "recharts":
        return to_recharts(config, query.x), meta
    return config, meta


@router.get(
    "/training/compare",
    summary="One metric of 2 to 50 runs on one chart (group means, baseline deltas)",
    responses=CHART_RESPONSES,
)
async def compare(
    store: Store,
    cache: Cache,
    query: Params,
    jobs: Annotated[
        str,
        Query(
            description=f"comma-separated job ids ({MIN_COMPARE_JOBS} to {MAX_COMPARE_JOBS})",
            pattern=JOBS_PATTERN,
        ),
    ],
    metric: Annotated[str, Query(min_length=1, max_length=1000, description="the metric name")],
    group_by: Annotated[
        str | None,
        Query(
            description="config.<path>, tag, model_name or status: a mean line per group",
            pattern=GROUP_BY_PATTERN,
        ),
    ] = None,
    baseline: Annotated[
        str | None, Query(description="a job id of jobs: meta.jobs gains deltas in %")
    ] = None,
) -> Response:
    config, meta = await run_in_threadpool(
        compare_impl, store, cache, jobs, metric, query, group_by, baseline
    )
    return JSONBody({"data": config, "meta": meta})
