"""Job events: list a job's health findings and notes, add a note; the health lifespan.

``GET /training/{job_id}/events`` lists them (newest first, or by step);
``POST /training/{job_id}/events`` adds a note (``kind=note``), which is
published like a finding. :func:`announce` is what ingest calls with the events
the monitor stored: each goes out on the job's SSE stream as ``event: alert``
and, if configured, to the webhook.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from trainvis.api.deps import get_broker, get_store, require_read, require_write
from trainvis.api.responses import JSONBody
from trainvis.api.schemas import ERRORS
from trainvis.config import Settings
from trainvis.events import EventKind, EventOrder, JobEvent, NewEvent, Severity
from trainvis.health.events import NoteCreate
from trainvis.health.monitor import HealthMonitor, detector_config
from trainvis.health.webhooks import WebhookNotifier
from trainvis.models import Int64
from trainvis.store.base import MetricStore

router = APIRouter(tags=["events"], dependencies=[Depends(require_read)])
Store = Annotated[MetricStore, Depends(get_store)]


class EventOut(BaseModel):
    """A job event (health finding or note)."""

    id: int
    job_id: str
    kind: EventKind
    metric: str | None
    step: int
    value: float | str | None
    message: str
    severity: Severity
    timestamp: str


class EventListMeta(BaseModel):
    total: int
    limit: int
    offset: int


class EventListResponse(BaseModel):
    data: list[EventOut]
    meta: EventListMeta


class EventResponse(BaseModel):
    data: EventOut


# ---------------------------------------------------------------------- lifespan


async def start_health(app: FastAPI, settings: Settings) -> None:
    """Create the monitor (unless ``health`` is off) and start the webhook worker."""
    store: MetricStore = app.state.store
    app.state.monitor = HealthMonitor(store, detector_config(settings)) if settings.health else None
    app.state.notifier = WebhookNotifier.from_settings(settings)
    if app.state.notifier is not None:
        await app.state.notifier.start()


async def stop_health(app: FastAPI) -> None:
    """Send what the webhook queue holds (briefly), then stop its worker."""
    notifier: WebhookNotifier | None = getattr(app.state, "notifier", None)
    if notifier is not None:
        await notifier.stop()


def get_monitor(request: Request) -> HealthMonitor | None:
    monitor: HealthMonitor | None = getattr(request.app.state, "monitor", None)
    return monitor


def announce(request: Request, job_id: str, events: Sequence[JobEvent]) -> None:
    """Publish stored events as ``alert`` SSE events and queue them for the webhook."""
    if not events:
        return
    broker = get_broker(request)
    notifier: WebhookNotifier | None = getattr(request.app.state, "notifier", None)
    for event in events:
        broker.publish_alert(job_id, event.to_wire())
        if notifier is not None:
            notifier.notify(event)


# ---------------------------------------------------------------------- routes

_LIST_DESCRIPTION = """\
The job's events: health findings (`nonfinite`, `spike`, `divergence`, `plateau`,
`gpu_idle`) and user notes (`note`). `order=newest` (default) lists by id, newest
first; `order=step` by step, then id (what a chart's markers need).
`start_step`/`end_step` are inclusive. Each event is
`{id, job_id, kind, metric, step, value, message, severity, timestamp}`; `severity` is
`info`, `warning` or `critical`; a non-finite `value` is the string `"NaN"`,
`"Infinity"` or `"-Infinity"`.
"""


@router.get(
    "/training/{job_id}/events",
    response_class=JSONBody,
    responses={200: {"model": EventListResponse}, **ERRORS},
    summary="A job's events: health findings and notes",
    description=_LIST_DESCRIPTION,
)
async def list_events(
    job_id: str,
    store: Store,
    kind: EventKind | None = None,
    order: EventOrder = "newest",
    start_step: Annotated[Int64 | None, Query(ge=0)] = None,
    end_step: Annotated[Int64 | None, Query(ge=0)] = None,
    limit: Annotated[Int64, Query(ge=1, le=1000)] = 100,
    offset: Annotated[Int64, Query(ge=0)] = 0,
) -> Response:
    events, total = await run_in_threadpool(
        lambda: store.list_events(
            job_id,
            kind=kind,
            order=order,
            start_step=start_step,
            end_step=end_step,
            limit=limit,
            offset=offset,
        )
    )
    return JSONBody(
        {
            "data": [event.to_wire() for event in events],
            "meta": {"total": total, "limit": limit, "offset": offset},
        }
    )


def add_note_impl(store: MetricStore, job_id: str, note: NoteCreate) -> JobEvent:
    """Store a note; its step defaults to the job's current step (0 before any row).

    Raises:
        JobNotFound: unknown job.
    """
    step = note.step
    if step is None:
        step = store.get_job(job_id).current_step or 0
    event = store.add_event(
        job_id,
        NewEvent(
            kind=EventKind.NOTE,
            step=step,
            message=note.message,
            severity=note.severity,
            metric=note.metric,
            value=note.value,
            timestamp=note.unix_timestamp(),
        ),
    )
    assert event is not None  # notes have no dedupe key
    return event


@router.post(
    "/training/{job_id}/events",
    status_code=201,
    dependencies=[Depends(require_write)],
    response_class=JSONBody,
    responses={201: {"model": EventResponse}, **ERRORS},
    summary="Add a note to a job (a marker such as 'restarted from checkpoint')",
)
async def add_note(job_id: str, note: NoteCreate, request: Request, store: Store) -> Response:
    event = await run_in_threadpool(add_note_impl, store, job_id, note)
    announce(request, job_id, [event])
    body: dict[str, Any] = {"data": event.to_wire()}
    return JSONBody(body, status_code=201)
