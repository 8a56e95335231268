"""The body of a user's note (``POST /training/{job_id}/events``).

The event types themselves (:class:`~trainvis.events.JobEvent` and its kinds)
are core domain types in :mod:`trainvis.events`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator

from trainvis.errors import InvalidArgument
from trainvis.events import MAX_NOTE_STEP, Severity
from trainvis.models import (
    MAX_TIMESTAMP,
    METRIC_NAME_RE,
    IsoTimestamp,
    Text,
    datetime_seconds,
    json_integer,
    parse_timestamp,
)


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
