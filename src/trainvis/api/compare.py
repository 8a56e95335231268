"""``GET /training/compare``: one metric of 2 to 50 runs as one chart.

The handler parses the query; :func:`compare_impl` reads each run's whole
series through the app's :class:`~trainvis.store.cache.SeriesCache` and hands
them to :func:`trainvis.charts.compare.build_compare`. Each run's compact part
is kept in a :class:`CompactMemo` by the job's sequence number, so a compare of
finished runs and one live run recomputes the live run only.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from trainvis.api.charts import CHART_RESPONSES, Cache, Params
from trainvis.api.deps import get_store, require_read
from trainvis.api.responses import JSONBody
from trainvis.charts import ChartParams, ChartQuery, MetricsChartConfig, resolve_params, to_recharts
from trainvis.charts.compare import CompareRun, RunCompact, build_compare, compact_run
from trainvis.charts.groups import GROUP_BY_PATTERN, valid_group_by
from trainvis.charts.params import invalid
from trainvis.charts.tiers import tiered_series, tiers_apply
from trainvis.series import Series
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


#: Points (over all entries) the compact memo holds by default.
MEMO_POINTS = 400_000
MemoKey = tuple[Any, ...]


class CompactMemo:
    """Recent runs' :class:`~trainvis.charts.compare.RunCompact` by (job id,
    sequence number, metric, options).

    Every stored row (re-posted steps included) raises a job's sequence number,
    so an entry never goes stale: it is simply not asked for again. Bounded by
    the points the entries hold; the least recently used go first.
    """

    def __init__(self, max_points: int = MEMO_POINTS) -> None:
        self.max_points = max_points
        self._entries: OrderedDict[MemoKey, RunCompact] = OrderedDict()
        self._points = 0
        self._lock = threading.Lock()

    def get(self, key: MemoKey) -> RunCompact | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def put(self, key: MemoKey, value: RunCompact) -> None:
        with self._lock:
            old = self._entries.pop(key, None)
            self._points -= old.points if old is not None else 0
            self._entries[key] = value
            self._points += value.points
            while self._points > self.max_points and len(self._entries) > 1:
                _, dropped = self._entries.popitem(last=False)
                self._points -= dropped.points


def compact_memo(request: Request) -> CompactMemo:
    """The app's memo (made on first use)."""
    memo: CompactMemo | None = getattr(request.app.state, "compact_memo", None)
    if memo is None:
        memo = request.app.state.compact_memo = CompactMemo()
    return memo


Memo = Annotated[CompactMemo, Depends(compact_memo)]


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
    memo: CompactMemo | None = None,
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
    # The compact part depends on these options only (not on format or log_scale).
    options = tuple(sorted(query.model_dump(exclude={"format", "log_scale"}).items()))
    runs = []
    tiered = _tiers_answer(query, group_by)
    for job in found:
        key = (job.id, job.last_seq, job.first_timestamp, metric, options)
        compact = memo.get(key) if memo is not None else None
        series: Series | None = None
        if compact is None and tiered is not None:
            cells = store.read_cells(job.id, metric)
            series = None if cells is None else tiered_series(metric, cells, tiered)
        if series is None and (compact is None or group_by is not None):
            # group means need the whole series
            series = cache.read(job.id, [metric], with_time=query.x != "step").get(metric)
        if compact is None:
            compact = compact_run(series, query, t0=job.first_timestamp)
            if memo is not None:
                memo.put(key, compact)
        # Only a group mean needs a run's whole series afterwards: holding every
        # run's (20 × 1M points: 320 MB) kept what the cache evicts alive.
        runs.append(CompareRun(job, compact, series if group_by is not None else None))
    config, meta = build_compare(metric, runs, query=query, group_by=group_by, baseline=baseline)
    if query.format == "recharts":
        return to_recharts(config, query.x), meta
    return config, meta


def _tiers_answer(query: ChartQuery, group_by: str | None) -> ChartParams | None:
    """The chart options when each run's line can be drawn from its min/max tier
    (:mod:`trainvis.charts.tiers`): a band of steps over whole runs (a run's last
    and best values come from the same points) and no group means."""
    params = resolve_params(MetricsChartConfig(), query)
    whole = query.start_step is None and query.end_step is None
    return params if tiers_apply(params) and whole and group_by is None else None


@router.get(
    "/training/compare",
    summary="One metric of 2 to 50 runs on one chart (group means, baseline deltas)",
    responses=CHART_RESPONSES,
)
async def compare(
    store: Store,
    cache: Cache,
    memo: Memo,
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
        compare_impl, store, cache, jobs, metric, query, group_by, baseline, memo
    )
    return JSONBody({"data": config, "meta": meta})
