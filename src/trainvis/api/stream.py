"""``GET /training/{job_id}/stream``: the job's live Server-Sent Events stream.

Thin by design: parse the resume point, subscribe, read the snapshot, hand the
subscription to :class:`~trainvis.realtime.sse.EventStreamResponse`.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from starlette.concurrency import run_in_threadpool

from trainvis.api.deps import get_broker, get_settings, get_store, require_read
from trainvis.config import Settings
from trainvis.errors import ServiceUnavailable
from trainvis.models import Int64
from trainvis.realtime.broker import Broker
from trainvis.realtime.sse import EventStreamResponse, retry_field, snapshot_event
from trainvis.store.base import MetricStore

router = APIRouter(tags=["realtime"], dependencies=[Depends(require_read)])

_DESCRIPTION = """\
Server-Sent Events. The first event of every connection is an unnamed message
`{"type": "snapshot", "job": <job>, "last_id": <id>}` (no `id`; `last_id`: the
stream id after which this connection's rows follow, the resume point of a client
that has seen no row yet). Then `event: metrics` (data: one row
as the history returns it, `id`: the row's sequence number), `event: status`
(`{job_id, status, previous_status, message, timestamp}`), `event: alert` (a health
finding or a note, exactly as `GET …/events` lists it; no `id`, not replayed on
resume: reload the events list) and `event: deleted` (the stream then ends). A
`: heartbeat` comment is sent when idle.

Resume: `Last-Event-ID` (sent by browsers on reconnect; it wins over `since`) or
`?since=<id>` replays every stored row with a larger id, then goes live. An id
beyond the newest row just goes live.
"""


def _check_capacity(broker: Broker, job_id: str, settings: Settings) -> None:
    """503 with ``Retry-After`` past the per-job or total subscriber cap."""
    per_job = broker.subscribers_of(job_id)
    if per_job >= settings.max_subscribers_per_job or (
        broker.subscriber_count >= settings.max_subscribers
    ):
        raise ServiceUnavailable(
            "Too many open streams; try again shortly",
            details={
                "limit_per_job": settings.max_subscribers_per_job,
                "limit_total": settings.max_subscribers,
            },
            headers={"Retry-After": "5"},
        )


_DIGITS = re.compile(r"[0-9]{1,19}")  # str.isdigit() also takes '²', which int() rejects


def _resume_point(since: int | None, last_event_id: str | None) -> int | None:
    if last_event_id is not None and _DIGITS.fullmatch(last_event_id.strip()):
        return int(last_event_id.strip())
    return since


@router.get(
    "/training/{job_id}/stream",
    summary="Live stream of a job's metrics and status (SSE)",
    description=_DESCRIPTION,
    response_class=EventStreamResponse,
    status_code=200,
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
)
async def stream_job(
    job_id: str,
    request: Request,
    store: Annotated[MetricStore, Depends(get_store)],
    broker: Annotated[Broker, Depends(get_broker)],
    since: Annotated[
        Int64 | None, Query(ge=0, description="replay rows with a larger id first")
    ] = None,
    last_event_id: Annotated[
        str | None, Header(description="resume after this id (browsers send it on reconnect)")
    ] = None,
) -> EventStreamResponse:
    """Subscribe first, then read the job: nothing stored in between is missed."""
    settings = get_settings(request)
    _check_capacity(broker, job_id, settings)
    resume = _resume_point(since, last_event_id)
    subscription = broker.subscribe(job_id)
    try:
        job = await run_in_threadpool(store.get_job, job_id)
    except BaseException:
        subscription.release()
        raise
    # ``job.last_seq`` comes from the same read as the snapshot. An id beyond it
    # (a stale client, another database) is clamped so new rows are not skipped.
    cursor = job.last_seq if resume is None else min(resume, job.last_seq)
    subscription.begin(cursor, replay=resume is not None and cursor < job.last_seq)
    return EventStreamResponse(
        subscription,
        prelude=retry_field(settings.sse_retry_ms) + snapshot_event(job, last_id=cursor),
        heartbeat=settings.sse_heartbeat,
    )
