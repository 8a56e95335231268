"""Response schemas for the OpenAPI document.

Responses are serialized with orjson straight from plain dicts (fast); these
models only describe them, so ``/openapi.json`` matches what the server sends.
A test fuzzes every operation with schemathesis and validates each response
against them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from trainvis.models import JobStatus


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorEnvelope(BaseModel):
    """Every error: ``{"error": {"code", "message", "details"?}}``."""

    error: ErrorDetail


class BestValue(BaseModel):
    value: float
    step: int


class Summary(BaseModel):
    last: dict[str, float | str]
    best: dict[str, BestValue]
    has_nan: bool


class MetricStatsOut(BaseModel):
    """A metric's statistics in a listed job's ``stats`` (``GET /training/jobs?stats=``)."""

    last: float | str | None
    min: float | None
    max: float | None
    best: float | None
    best_step: int | None
    count: int


class JobOut(_Open):
    id: str
    name: str
    model_name: str | None
    status: JobStatus
    message: str | None
    total_epochs: int | None
    total_steps: int | None
    config: dict[str, Any]
    tags: list[str]
    created_at: str
    updated_at: str
    started_at: str | None
    finished_at: str | None
    current_step: int | None
    current_epoch: float | None
    progress: float | None
    eta_seconds: float | None
    metric_names: list[str]
    point_count: int
    summary: Summary
    stats: dict[str, MetricStatsOut] | None = None


class ListMeta(BaseModel):
    total: int
    limit: int | None
    offset: int


class JobResponse(BaseModel):
    data: JobOut


class JobListResponse(BaseModel):
    data: list[JobOut]
    meta: ListMeta


class WriteOut(BaseModel):
    job_id: str
    accepted: int
    points: int
    last_step: int


class WriteResponse(BaseModel):
    data: WriteOut


class HistoryRow(_Open):
    """``step``, optional ``epoch``, ``timestamp`` and one key per metric."""

    step: int
    epoch: float | None = None
    timestamp: str | None


class HistoryResponse(BaseModel):
    data: list[HistoryRow]
    meta: ListMeta


class ChartData(_Open):
    datasets: list[dict[str, Any]]


class ChartConfig(_Open):
    type: str
    data: ChartData
    options: dict[str, Any]


class ChartResponse(BaseModel):
    """A complete Chart.js 4 config under ``data``; counts under ``meta``."""

    data: ChartConfig
    meta: dict[str, Any]


ERRORS: dict[int | str, dict[str, Any]] = {
    "default": {"model": ErrorEnvelope, "description": "Error (the contract's envelope)"}
}
