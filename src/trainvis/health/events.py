"""Job events: what the health detectors found, and notes users add.

An event belongs to a job and sits at a step, so charts can draw it as a
vertical marker. Detector events carry the metric and value that triggered
them; notes (``kind="note"``) are free text. The store keeps them (see
``MetricStore.add_event``); the API lists them, streams them as ``event:
alert`` and the webhook notifier forwards them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator

from trainvis.errors import InvalidArgument
from trainvis.models import (
    MAX_TIMESTAMP,
    METRIC_NAME_RE,
    IsoTimestamp,
    Text,
    datetime_seconds,
    encode_value,
    format_timestamp,
    json_integer,
    parse_timestamp,
)


class EventKind(StrEnum):
    """What an event reports."""

    NONFINITE = "nonfinite"
    SPIKE = "spike"
    DIVERGENCE = "divergence"
    PLATEAU = "plateau"
    GPU_IDLE = "gpu_idle"
    NOTE = "note"


class Severity(StrEnum):
    """How urgent an event is; the job list's badge counts warning and critical."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANKS[self]


_RANKS = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}
#: Largest step a note may name: the largest integer JavaScript's JSON keeps exactly.
MAX_NOTE_STEP = 2**53 - 1
#: Orders ``list_events`` accepts: newest first (by id) or by step (then id).
EventOrder = Literal["newest", "step"]


@dataclass(frozen=True)
class NewEvent:
    """An event to store. ``dedupe``, when set, makes the insert a no-op if the
    job already has an event with the same key (detectors use it so that a
    replayed batch or a restarted server does not report twice)."""

    kind: EventKind
    step: int
    message: str
    severity: Severity = Severity.INFO
    metric: str | None = None
    value: float | None = None
    timestamp: float | None = None
    dedupe: str | None = None


@dataclass(frozen=True)
class JobEvent:
    """A stored event."""

    id: int
    job_id: str
    kind: EventKind
    step: int
    message: str
    severity: Severity
    timestamp: float
    metric: str | None = None
    value: float | None = None

    def to_wire(self) -> dict[str, Any]:
        """The event as the events API, the ``alert`` SSE event and webhooks carry it."""
        return {
            "id": self.id,
            "job_id": self.job_id,
            "kind": self.kind.value,
            "metric": self.metric,
            "step": self.step,
            "value": None if self.value is None else encode_value(self.value),
            "message": self.message,
            "severity": self.severity.value,
            "timestamp": format_timestamp(self.timestamp),
        }


class NoteCreate(BaseModel):
    """Body of ``POST /training/{job_id}/events``: a user's marker on the job."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["note"] = Field(
        default="note", description="only `note` can be posted; detectors add the other kinds"
    )
    message: Text = Field(min_length=1, max_length=2000)
    step: int | None = Field(
        default=None,
        ge=0,
        le=MAX_NOTE_STEP,
        description="default: the job's current step (or 0)",
    )
    metric: str | None = Field(default=None, pattern=METRIC_NAME_RE.pattern)
    value: Annotated[float, Strict()] | None = Field(default=None, allow_inf_nan=False)
    severity: Severity = Severity.INFO
    timestamp: IsoTimestamp | Annotated[float, Field(ge=0, le=MAX_TIMESTAMP)] | None = Field(
        default=None, description="ISO 8601 (UTC unless it says otherwise) or Unix seconds"
    )

    _integers = field_validator("step", mode="before")(json_integer)

    @field_validator("timestamp", mode="before")
    @classmethod
    def _parse_timestamp(cls, value: Any) -> Any:
        """As on metric rows: ISO 8601 or Unix seconds, 1970 to 3000 UTC, so
        nothing stored is out of what a read can format."""
        if value is None:
            return None
        if isinstance(value, datetime):
            return datetime_seconds(value)  # ValueError outside the range
        try:
            return parse_timestamp(value, ["body", "timestamp"])
        except InvalidArgument as exc:
            raise ValueError(exc.details[0]["msg"]) from None

    def unix_timestamp(self) -> float | None:
        """``timestamp`` as Unix seconds (None when not given: the server's clock)."""
        if self.timestamp is None or isinstance(self.timestamp, float | int):
            return self.timestamp
        return datetime_seconds(self.timestamp)
