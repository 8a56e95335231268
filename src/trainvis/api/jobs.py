"""Jobs: create, list, read, edit, delete and change status."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from starlette.concurrency import run_in_threadpool

from trainvis.api.deps import get_broker, get_store, require_read, require_write
from trainvis.api.responses import JSONBody
from trainvis.api.schemas import ERRORS, JobListResponse, JobResponse
from trainvis.models import NO_NUL, Int64, JobCreate, JobStatus, JobUpdate, StatusUpdate
from trainvis.realtime.broker import Broker as BrokerProtocol
from trainvis.store.base import JobFilter, MetricStore

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


@router.get(
    "/training/jobs",
    response_class=JSONBody,
    responses={200: {"model": JobListResponse}, **ERRORS},
    summary="List training jobs, newest first",
)
async def list_jobs(
    store: Store,
    status: JobStatus | None = None,
    tag: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
    q: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
    limit: Annotated[Int64, Query(ge=1, le=1000)] = 50,
    offset: Annotated[Int64, Query(ge=0)] = 0,
) -> Response:
    filters = JobFilter(status=status, tag=tag, q=q)
    jobs, total = await run_in_threadpool(
        lambda: store.list_jobs(filters=filters, limit=limit, offset=offset)
    )
    return JSONBody(
        {
            "data": [job.to_wire() for job in jobs],
            "meta": {"total": total, "limit": limit, "offset": offset},
        }
    )


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
