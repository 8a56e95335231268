"""The body of a user's note (``POST /training/{job_id}/events``).

The event types themselves (:class:`~trainvis.events.JobEvent` and its kinds)
are core domain types in :mod:`trainvis.events`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from trainvis.events import MAX_NOTE_STEP, MAX_TIMESTAMP, Severity
from trainvis.models import METRIC_NAME_RE, Text


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
    value: float | None = Field(default=None, allow_inf_nan=False)
    severity: Severity = Severity.INFO
    timestamp: datetime | Annotated[float, Field(ge=0, le=MAX_TIMESTAMP)] | None = Field(
        default=None, description="ISO 8601 (UTC unless it says otherwise) or Unix seconds"
    )

    def unix_timestamp(self) -> float | None:
        """``timestamp`` as Unix seconds (None when not given: the server's clock)."""
        if self.timestamp is None or isinstance(self.timestamp, float | int):
            return self.timestamp
        moment = self.timestamp
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
