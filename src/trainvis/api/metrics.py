"""Metrics: ingest (one row or a batch) and history (JSON or CSV, streamed)."""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Iterator, Sequence
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import Field, TypeAdapter
from starlette.concurrency import run_in_threadpool

from trainvis.api.deps import get_broker, get_settings, get_store, require_read, require_write
from trainvis.api.events import announce, get_monitor
from trainvis.api.responses import JSONBody
from trainvis.api.schemas import ERRORS, HistoryResponse, WriteResponse
from trainvis.config import Settings
from trainvis.errors import MalformedRequest
from trainvis.events import JobEvent
from trainvis.health.monitor import HealthMonitor
from trainvis.models import Int64, MetricRowIn, WriteResult, parse_metric_rows
from trainvis.store.base import MetricStore, Row

router = APIRouter(tags=["metrics"], dependencies=[Depends(require_read)])
Store = Annotated[MetricStore, Depends(get_store)]

ROWS_SCHEMA = TypeAdapter(
    MetricRowIn | Annotated[list[MetricRowIn], Field(min_length=1, max_length=10_000)]
).json_schema(ref_template="#/components/schemas/{model}")


def parse_json(body: bytes) -> Any:
    """Parse a request body; accepts the NaN/Infinity tokens Python's json writes.

    Raises:
        MalformedRequest: not JSON, not UTF-8, or nested too deeply.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise MalformedRequest("The request body is not valid JSON") from None


def _ingest(
    store: MetricStore,
    job_id: str,
    body: bytes,
    settings: Settings,
    monitor: HealthMonitor | None,
) -> tuple[WriteResult, list[JobEvent]]:
    """Validate and store the rows; then (committed) run the health detectors on them."""
    rows = parse_metric_rows(parse_json(body), max_rows=settings.max_rows)
    # The metric-count limit is checked inside the write transaction (issue 13).
    result = store.write_metrics(job_id, rows, max_metrics=settings.max_metrics_per_job)
    return result, (monitor.observe(job_id, rows) if monitor is not None else [])


@router.post(
    "/training/{job_id}/metrics",
    status_code=201,
    dependencies=[Depends(require_write)],
    response_class=JSONBody,
    summary="Add metric rows (one object or an array of up to 10,000)",
    responses={201: {"model": WriteResponse}, **ERRORS},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {k: v for k, v in ROWS_SCHEMA.items() if k != "$defs"}
                }
            },
        }
    },
)
async def add_metrics(job_id: str, request: Request, store: Store) -> Response:
    body = await request.body()
    if not body:
        raise MalformedRequest("The request body is empty")
    settings = get_settings(request)
    result, found = await run_in_threadpool(
        _ingest, store, job_id, body, settings, get_monitor(request)
    )
    broker = get_broker(request)
    if result.status_change is not None:  # the first rows started the job
        broker.publish_status(result.status_change)
    broker.publish_rows(job_id, result.rows)
    announce(request, job_id, found)
    return JSONBody({"data": result.to_wire()}, status_code=201)


def _metric_list(raw: str | None) -> list[str] | None:
    if raw is None or not raw.strip():
        return None
    return [name.strip() for name in raw.split(",") if name.strip()]


def _json_stream(chunks: Iterator[list[Row]], meta: bytes) -> Iterator[bytes]:
    yield b'{"data":['
    separator = b""
    for chunk in chunks:
        yield separator + orjson.dumps(chunk)[1:-1]
        separator = b","
    yield b'],"meta":' + meta + b"}"


def _prefetched(chunks: Iterator[list[Row]]) -> Iterator[list[Row]]:
    """Read the first chunk now (call it in a worker thread), so whatever fails
    early (the job, the first query, a stored value) is an error envelope
    rather than a 200 cut after its first bytes."""
    first = next(chunks, None)
    return chunks if first is None else itertools.chain([first], chunks)


def _csv_stream(chunks: Iterator[list[Row]], columns: Sequence[str]) -> Iterator[bytes]:
    header = ["step", "epoch", "timestamp", *columns]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for chunk in chunks:
        writer.writerows([row.get(key, "") for key in header] for row in chunk)
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue().encode()


@router.get(
    "/training/{job_id}/metrics/history",
    summary="Metric rows ordered by step (JSON or CSV, streamed)",
    responses={
        200: {
            "model": HistoryResponse,
            "content": {"text/csv": {"schema": {"type": "string"}}},
        },
        **ERRORS,
    },
    response_class=JSONBody,
)
async def history(
    job_id: str,
    request: Request,
    store: Store,
    metrics: Annotated[str | None, Query(description="comma-separated metric names")] = None,
    start_step: Annotated[Int64 | None, Query(ge=0)] = None,
    end_step: Annotated[Int64 | None, Query(ge=0)] = None,
    max_points: Annotated[Int64 | None, Query(ge=16, le=100_000)] = None,
    limit: Annotated[Int64 | None, Query(ge=1)] = None,
    offset: Annotated[Int64, Query(ge=0)] = 0,
    format: Literal["json", "csv"] | None = None,
) -> Response:
    names = _metric_list(metrics)
    wants_csv = format == "csv" or (
        format is None and "text/csv" in request.headers.get("accept", "")
    )
    total = await run_in_threadpool(
        lambda: store.count_rows(job_id, metrics=names, start_step=start_step, end_step=end_step)
    )
    meta = orjson.dumps({"total": total, "limit": limit, "offset": offset})  # before any byte
    if max_points is not None:
        from trainvis.api.sampling import downsampled_rows

        cache = request.app.state.series_cache
        sampled = await run_in_threadpool(
            downsampled_rows, store, cache, job_id, names, start_step, end_step, max_points
        )
        sampled = sampled[offset : None if limit is None else offset + limit]
        chunks: Iterator[list[Row]] = iter([sampled] if sampled else [])
    else:
        chunks = store.iter_row_chunks(
            job_id,
            metrics=names,
            start_step=start_step,
            end_step=end_step,
            limit=limit,
            offset=offset,
        )
    chunks = await run_in_threadpool(_prefetched, chunks)
    if wants_csv:
        columns = names
        if columns is None:
            columns = (await run_in_threadpool(store.get_job, job_id)).metric_names
        return StreamingResponse(
            _csv_stream(chunks, columns),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{job_id}-history.csv"'},
        )
    return StreamingResponse(_json_stream(chunks, meta), media_type="application/json")
