"""The dashboard: HTML for browsers, JSON for API clients, and the UI's static files.

``GET /dashboard`` and ``GET /dashboard/job/{job_id}`` negotiate on ``Accept``
(``?format=json|html`` wins): a browser gets the web UI (static pages under
``trainvis/dashboard``), anything else the JSON of DESIGN.md "Dashboard JSON".
``GET /static/{path}`` serves the UI's files (vendored Chart.js included), so the
dashboard works offline. Every HTML and static response carries a strict
Content-Security-Policy: same origin only, no inline script.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.staticfiles import StaticFiles

from trainvis.api.auth import require_read_page
from trainvis.api.charts import Cache, all_charts
from trainvis.api.deps import get_store
from trainvis.api.responses import SECURITY_HEADERS, JSONBody
from trainvis.api.schemas import ERRORS, ErrorEnvelope
from trainvis.models import JobStatus
from trainvis.store.base import MetricStore

STATIC_DIR = Path(__file__).resolve().parent.parent / "dashboard"
RECENT_JOBS = 10
#: Beyond this many metrics the dashboard's job JSON summarizes only the charted ones.
SUMMARY_METRICS = 100
router = APIRouter(tags=["dashboard"])
# Pages and their JSON need the read token; the static files (scripts, styles,
# the sign-in page's stylesheet) are public.
ReadAccess = [Depends(require_read_page)]
PAGE_OR_JSON: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The web UI (text/html) or the dashboard's data (application/json)",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "text/html": {"schema": {"type": "string"}},
        },
    },
    303: {"description": "Sign in first (servers with a read token, browsers only)"},
    404: {
        "model": ErrorEnvelope,
        "description": "Unknown job: an HTML page for browsers, the error envelope for API clients",
        "content": {"text/html": {"schema": {"type": "string"}}},
    },
    **ERRORS,
}
Store = Annotated[MetricStore, Depends(get_store)]
Format = Literal["json", "html"] | None
_static = StaticFiles(directory=STATIC_DIR, check_dir=False)


def wants_html(accept: str | None, fmt: Format) -> bool:
    """True when the client prefers HTML: ``fmt`` if given, else the ``Accept`` header.

    HTML only when ``text/html`` (or XHTML) is listed with a higher quality than
    ``application/json``; ``*/*``, a missing header and ties go to JSON, so API
    clients (curl, httpx, fetch) get JSON and browsers get the page.
    """
    if fmt is not None:
        return fmt == "html"
    html_q = json_q = 0.0
    for part in (accept or "").split(","):
        media, _, params = part.strip().partition(";")
        quality = _quality(params)
        media = media.strip().lower()
        if media in ("text/html", "application/xhtml+xml"):
            html_q = max(html_q, quality)
        elif media == "application/json":
            json_q = max(json_q, quality)
    return html_q > json_q


def _quality(params: str) -> float:
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                return max(0.0, min(1.0, float(value)))
            except ValueError:
                return 0.0
    return 1.0


def _page(name: str) -> Response:
    body = (STATIC_DIR / name).read_bytes()
    headers = {**SECURITY_HEADERS, "Vary": "Accept", "Cache-Control": "no-cache"}
    return Response(body, media_type="text/html; charset=utf-8", headers=headers)


def _json(data: dict[str, Any]) -> Response:
    return JSONBody({"data": data}, headers={"Vary": "Accept"})


def dashboard_impl(store: MetricStore) -> dict[str, Any]:
    """Counts by status (every status, zeros included), totals and the 10 newest jobs."""
    counts = {status.value: 0 for status in JobStatus}
    counts.update(store.status_counts())
    jobs, total = store.list_jobs(limit=RECENT_JOBS)
    return {
        "counts": counts,
        "totals": {"jobs": total, "points": store.total_points()},
        "recent_jobs": [job.to_wire() for job in jobs],
    }


def job_dashboard_impl(
    store: MetricStore, cache: Any, job_id: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The job and its four chart configs (default options), and the response's meta.

    The job is read once. Each chart draws at most its default number of
    metrics; for a job with more than :data:`SUMMARY_METRICS` metrics the job's
    per-metric summary (``last``, ``best``) keeps only the metrics the charts
    draw, and ``meta.summary_omitted`` counts the others (the full summary is
    at ``GET /training/jobs/{id}`` and ``metrics/summary``), so a wide job's
    JSON stays small (issue 16).

    Raises:
        JobNotFound: unknown job.
    """
    job = store.get_job(job_id)
    charts = all_charts(store, cache, job_id, job=job)
    wire = job.to_wire()
    omitted = 0
    if len(job.metric_names) > SUMMARY_METRICS:
        drawn = {
            dataset.get("metric")
            for config in charts.values()
            for dataset in config["data"]["datasets"]
        }
        wire["summary"], omitted = _summary_of(job.summary, drawn)
    return {"job": wire, "charts": charts}, {"summary_omitted": omitted}


def _summary_of(summary: dict[str, Any], keep: set[Any]) -> tuple[dict[str, Any], int]:
    """``summary`` with its per-metric maps cut to ``keep``; how many metrics were cut."""
    cut: dict[str, Any] = {}
    dropped: set[str] = set()
    for key, value in summary.items():
        if isinstance(value, dict):
            cut[key] = {name: item for name, item in value.items() if name in keep}
            dropped.update(name for name in value if name not in keep)
        else:
            cut[key] = value
    return cut, len(dropped)


@router.get(
    "/dashboard",
    summary="Dashboard: the web UI (Accept: text/html) or job counts, totals and recent jobs",
    response_class=JSONBody,
    dependencies=ReadAccess,
    responses=PAGE_OR_JSON,
)
async def dashboard(request: Request, store: Store, format: Format = None) -> Response:
    if wants_html(request.headers.get("accept"), format):
        return _page("index.html")
    return _json(await run_in_threadpool(dashboard_impl, store))


@router.get(
    "/dashboard/job/{job_id}",
    summary="A job's dashboard: the web UI (Accept: text/html) or the job and its four charts",
    response_class=JSONBody,
    dependencies=ReadAccess,
    responses=PAGE_OR_JSON,
)
async def job_dashboard(
    job_id: str, request: Request, store: Store, cache: Cache, format: Format = None
) -> Response:
    if wants_html(request.headers.get("accept"), format):
        await run_in_threadpool(store.get_job, job_id)  # 404 for an unknown job
        return _page("job.html")
    data, meta = await run_in_threadpool(job_dashboard_impl, store, cache, job_id)
    return JSONBody({"data": data, "meta": meta}, headers={"Vary": "Accept"})


@router.get(
    "/dashboard/compare",
    summary="Compare runs: the web UI (?jobs=a,b; the page's state lives in its query)",
    response_class=Response,
    dependencies=ReadAccess,
    responses={
        200: {
            "description": "The compare page",
            "content": {"text/html": {"schema": {"type": "string"}}},
        },
        303: PAGE_OR_JSON[303],
        **ERRORS,
    },
)
async def compare_page() -> Response:
    """The page itself; it reads ``/training/compare`` and the jobs from the API."""
    return _page("compare.html")


@router.get("/static/{path:path}", include_in_schema=False)
async def static(path: str, request: Request) -> Response:
    """The dashboard's files (404 for anything outside the package's dashboard folder)."""
    response = await _static.get_response(path, request.scope)
    response.headers.update(SECURITY_HEADERS)
    if path.startswith("vendor/"):
        response.headers["Cache-Control"] = "public, max-age=86400"
    else:
        response.headers["Cache-Control"] = "no-cache"
    return response
