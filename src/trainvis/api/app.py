"""The FastAPI application factory.

``create_app(settings)`` opens the store named by ``settings.db`` (unless one is
passed in), starts the realtime broker and the health monitor (with its webhook
worker) in the lifespan, after :func:`~trainvis.api.warmup.warm_up`, and mounts
every router under ``/api/v1/visualization`` (the root aliases, the HTML 404
page and the offline ``/docs`` are in :mod:`trainvis.api.pages`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from trainvis.api import (
    auth,
    charts,
    compare,
    dashboard,
    events,
    jobs,
    metrics,
    pages,
    stream,
    workspace,
)
from trainvis.api.errors import install_error_handlers
from trainvis.api.middleware import (
    BodyLimitMiddleware,
    SecurityHeadersMiddleware,
    StreamingReadsMiddleware,
)
from trainvis.api.responses import JSONBody
from trainvis.api.warmup import warm_up
from trainvis.config import Settings
from trainvis.realtime.factory import make_broker
from trainvis.store import MetricStore, open_store
from trainvis.store.cache import SeriesCache
from trainvis.version import __version__

API_PREFIX = "/api/v1/visualization"
log = logging.getLogger("trainvis")


def create_app(
    settings: Settings | None = None, *, store: MetricStore | None = None, broker: Any = None
) -> FastAPI:
    """Build the app. ``store``/``broker`` default to ones opened from ``settings``."""
    settings = settings or Settings()
    owns_store = store is None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(warm_up)  # first-use costs, before the first request
        if app.state.store is None:
            app.state.store = open_store(settings.db)
        app.state.series_cache = SeriesCache(app.state.store)
        if app.state.broker is None:
            app.state.broker = make_broker(settings, app.state.store)
        await app.state.broker.start()
        await events.start_health(app, settings)
        try:
            yield
        finally:
            await events.stop_health(app)
            await app.state.broker.stop()
            if owns_store:
                app.state.store.close()

    app = FastAPI(
        title="trainvis",
        version=__version__,
        description="Training visualization: metrics ingest, Chart.js charts, live SSE streams.",
        lifespan=lifespan,
        default_response_class=JSONBody,
        docs_url=None,  # served below from the vendored Swagger UI (no CDN)
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.broker = broker
    install_error_handlers(app)
    for module in (jobs, metrics, events, charts, workspace, compare, stream, dashboard, auth):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(pages.router)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        json_prefix=API_PREFIX,
        body_timeout=settings.body_timeout,
        body_deadline=settings.body_deadline,
        form_paths=frozenset({f"{API_PREFIX}/login"}),
    )
    app.add_middleware(
        StreamingReadsMiddleware,
        path=re.compile(re.escape(API_PREFIX) + r"/training/[^/]+/metrics/history"),
        max_streams=settings.max_streaming_reads,
        wait=settings.streaming_read_wait,
    )
    app.add_middleware(SecurityHeadersMiddleware, api_prefix=API_PREFIX)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
            expose_headers=["Location"],
        )

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse(f"{API_PREFIX}/dashboard")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return pages.docs_page(app.openapi_url or "/openapi.json", app.title)

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The generated schema plus the metric-row models the ingest route documents."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(metrics.ROWS_SCHEMA.get("$defs", {}))
    _document_errors(schema)
    app.openapi_schema = schema
    return schema


def _document_errors(schema: dict[str, Any]) -> None:
    """Every error is the contract's envelope: say so, instead of FastAPI's
    ``HTTPValidationError`` (which this app never sends)."""
    components = schema["components"]["schemas"]
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    envelope = {
        "description": "Error (the contract's envelope; 422 names the failing field)",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}},
    }
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            responses = operation.setdefault("responses", {})
            if "422" in responses:
                responses["422"] = envelope
            responses.setdefault("default", envelope)
