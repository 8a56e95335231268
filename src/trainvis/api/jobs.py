"""Jobs: create, list, read, edit, delete and change status."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from trainvis.api.deps import get_broker, get_store, require_read, require_write
from trainvis.api.responses import JSONBody
from trainvis.api.schemas import ERRORS, JobListResponse, JobResponse
from trainvis.charts.params import invalid
from trainvis.models import NO_NUL, Int64, JobCreate, JobStatus, JobUpdate, StatusUpdate
from trainvis.realtime.broker import Broker as BrokerProtocol
from trainvis.store.base import SORT_PATTERN, JobFilter, JobSort, MetricStore, parse_config_path

router = APIRouter(tags=["jobs"], dependencies=[Depends(require_read)])
Store = Annotated[MetricStore, Depends(get_store)]
Broker = Annotated[BrokerProtocol, Depends(get_broker)]


@router.post(
    "/training/jobs",
    status_code=201,
    dependencies=[Depends(require_write)],
    response_class=JSONBody,
    responses={201: {"model": JobResponse}, **ERRORS},
    summary="Create a training job",
)
async def create_job(spec: JobCreate, store: Store) -> Response:
    job = await run_in_threadpool(store.create_job, spec)
    return JSONBody(
        {"data": job.to_wire()},
        status_code=201,
        headers={"Location": f"/api/v1/visualization/training/jobs/{job.id}"},
    )


#: The most ``config.<path>=`` filters one list request may give.
MAX_CONFIG_FILTERS = 20
#: Longest value of a ``config.<path>=`` filter.
MAX_CONFIG_VALUE = 200

LIST_DESCRIPTION = """\
The runs table. Filters combine with AND; besides `status`, `tag` and `q`,
any number of `config.<dotted path>=<value>` parameters (up to 20) keep jobs
whose config value at that path, written as JSON text with strings unquoted
(`AdamW`, `0.001`, `true`), equals the value; numbers also match a
numerically equal value (`1e-05` and `0.00001`); a missing or null value
never matches.

`sort` is one key, `-` first for descending (default `-created_at`):
`created_at`, `updated_at`, `name`, `status`, `progress`, `config.<path>` or
`metric.<name>.<stat>` with stat `last`, `min`, `max` or `best` (`best` is the
minimum for names containing `loss`, the maximum for accuracy-like metrics).
Jobs lacking the key come last in both directions; ties by id descending.

`stats=a,b` adds to each job `stats`: `{"<metric>": {"last", "min", "max",
"best", "best_step", "count"}}` for the listed metrics it has.
"""


@router.get(
    "/training/jobs",
    response_class=JSONBody,
    responses={200: {"model": JobListResponse}, **ERRORS},
    summary="List training jobs: filter, sort, per-metric statistics",
    description=LIST_DESCRIPTION,
)
async def list_jobs(
    request: Request,
    store: Store,
    status: JobStatus | None = None,
    tag: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
    q: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
    sort: Annotated[
        str,
        Query(
            max_length=300,
            json_schema_extra={"pattern": SORT_PATTERN},
            description="One sort key, `-` first for descending.",
        ),
    ] = "-created_at",
    stats: Annotated[
        str | None,
        Query(
            max_length=4000,
            pattern=NO_NUL,
            description="Comma list of metric names whose statistics each job gains.",
        ),
    ] = None,
    limit: Annotated[Int64, Query(ge=1, le=1000)] = 50,
    offset: Annotated[Int64, Query(ge=0)] = 0,
) -> Response:
    try:
        order = JobSort.parse(sort)
    except ValueError as exc:
        raise invalid("sort", str(exc)) from None
    filters = JobFilter(status=status, tag=tag, q=q, config=config_filters(request))
    names = None if stats is None else _names(stats)
    jobs, total = await run_in_threadpool(
        lambda: store.list_jobs(
            filters=filters, sort=order, stats=names, limit=limit, offset=offset
        )
    )
    return JSONBody(
        {
            "data": [job.to_wire() for job in jobs],
            "meta": {"total": total, "limit": limit, "offset": offset},
        }
    )


def config_filters(request: Request) -> tuple[tuple[tuple[str, ...], str], ...]:
    """The ``config.<path>=<value>`` filters of a list request, in order.

    Raises:
        InvalidArgument: a bad path or value, or too many filters (names the parameter).
    """
    found: list[tuple[tuple[str, ...], str]] = []
    for key, value in request.query_params.multi_items():
        if key != "config" and not key.startswith("config."):
            continue
        try:
            path = parse_config_path(key)
        except ValueError as exc:
            raise invalid(key, str(exc)) from None
        if len(value) > MAX_CONFIG_VALUE or "\x00" in value:
            raise invalid(key, f"at most {MAX_CONFIG_VALUE} characters, no NUL")
        found.append((path, value))
    if len(found) > MAX_CONFIG_FILTERS:
        raise invalid("config", f"at most {MAX_CONFIG_FILTERS} config filters")
    return tuple(found)


def _names(stats: str) -> list[str]:
    """The metric names of ``stats=a,b`` (blanks dropped, each once, in order)."""
    return list(dict.fromkeys(name.strip() for name in stats.split(",") if name.strip()))


@router.get(
    "/training/jobs/{job_id}",
    response_class=JSONBody,
    responses={200: {"model": JobResponse}, **ERRORS},
    summary="Get a job",
)
async def get_job(job_id: str, store: Store) -> Response:
    job = await run_in_threadpool(store.get_job, job_id)
    return JSONBody({"data": job.to_wire()})


@router.patch(
    "/training/jobs/{job_id}",
    dependencies=[Depends(require_write)],
    response_class=JSONBody,
    responses={200: {"model": JobResponse}, **ERRORS},
    summary="Edit a job's name, model name, tags or config",
    description="Each field given replaces the stored one (``config`` and ``tags`` "
    "as a whole); at least one is required. Validated as in create.",
)
async def update_job(job_id: str, update: JobUpdate, store: Store) -> Response:
    job = await run_in_threadpool(store.update_job, job_id, update)
    return JSONBody({"data": job.to_wire()})


@router.delete(
    "/training/jobs/{job_id}",
    status_code=204,
    dependencies=[Depends(require_write)],
    responses=ERRORS,
    summary="Delete a job and its metrics",
)
async def delete_job(job_id: str, store: Store, broker: Broker) -> Response:
    await run_in_threadpool(store.delete_job, job_id)
    broker.publish_deleted(job_id)
    return Response(status_code=204)


@router.put(
    "/training/jobs/{job_id}/status",
    dependencies=[Depends(require_write)],
    response_class=JSONBody,
    responses={200: {"model": JobResponse}, **ERRORS},
    summary="Change a job's status",
)
async def update_status(
    job_id: str, update: StatusUpdate, store: Store, broker: Broker
) -> Response:
    job, change = await run_in_threadpool(
        lambda: store.set_status(job_id, update.status, message=update.message)
    )
    if change is not None:
        broker.publish_status(change)
    return JSONBody({"data": job.to_wire()})
