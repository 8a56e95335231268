"""Job events: what the health detectors found, and notes users add.

An event belongs to a job and sits at a step, so charts can draw it as a
vertical marker. Detector events carry the metric and value that triggered
them; notes (``kind="note"``) are free text. The store keeps them (see
``MetricStore.add_event``); the API lists them, streams them as ``event:
alert`` and the webhook notifier forwards them.

These are core domain types: the store, the health detectors and the API all
use them, so they live beside :mod:`trainvis.models`, below every package.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from trainvis.models import encode_value, format_timestamp


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
