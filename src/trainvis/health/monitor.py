"""Apply the health detectors to just-written rows and store what they find.

:class:`HealthMonitor` is called by the ingest route after the write committed,
in the same worker thread. Detector state lives in this process's memory, per
job and metric (a few numbers and fixed-size windows), and is rebuilt from
scratch when missing (a restart, an evicted job): the detectors warm up again
on the next rows. Findings are stored as job events; each carries a ``dedupe``
key, so a replayed batch, a restarted server or a second replica ingesting the
same rows does not store a finding twice (the first non-finite value of a
metric is reported once per job, ever).

With several replicas, each sees the batches it ingests; a job logged through
one client usually lands on one replica at a time, and a detector fed every
other batch still sees an ordered, if thinner, stream.

Nothing here may fail or slow down ingest: :meth:`HealthMonitor.observe`
logs and swallows its own errors, and its cost on a 1,000-row batch is a
fraction of a millisecond per watched metric (see ``tests/unit/test_monitor.py``).
"""

from __future__ import annotations

import functools
import logging
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import attrgetter

import numpy as np
import numpy.typing as npt

from trainvis.config import Settings
from trainvis.errors import JobNotFound
from trainvis.events import EventKind, JobEvent, NewEvent, Severity
from trainvis.health.detectors import DetectorConfig, Finding, MetricWatch
from trainvis.health.gpu_idle import GpuIdleDetector
from trainvis.health.rolling import Floats
from trainvis.models import JobStatus, MetricRow, best_direction, encode_value
from trainvis.store.base import MetricStore
from trainvis.store.common import MergedRow, merge_batch

log = logging.getLogger("trainvis.health")

#: Utilization metrics the GPU-idle detector watches.
GPU_UTILIZATION_RE = re.compile(
    r"^(gpu_utilization|gpu\d+\.utilization|gpu/[A-Za-z0-9_.-]+/(\d+\.)?utilization)$"
)
#: Jobs whose detector state is kept (least recently written evicted first).
MAX_JOBS = 10_000
#: Training metrics watched per job (a job may have thousands of custom metrics).
MAX_WATCHED_PER_JOB = 256
#: Seconds a job's status is trusted before the GPU-idle check reads it again.
STATUS_TTL = 30.0

Detector = MetricWatch | GpuIdleDetector
_STEP = attrgetter("step")
_VALUES = attrgetter("values")


def detector_config(settings: Settings) -> DetectorConfig:
    """The detector thresholds of ``settings`` (the rest keep their defaults)."""
    return DetectorConfig(
        spike_z=settings.health_spike_z,
        spike_window=settings.health_spike_window,
        divergence_window=settings.health_divergence_window,
        divergence_rise=settings.health_divergence_rise,
        plateau_window=settings.health_plateau_window,
        gpu_idle_threshold=settings.health_gpu_idle_threshold,
        gpu_idle_seconds=settings.health_gpu_idle_seconds,
    )


@dataclass
class _JobHealth:
    """Detector state of one job."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    detectors: dict[str, Detector | None] = field(default_factory=dict)
    watched: int = 0
    nonfinite: set[str] = field(default_factory=set)
    status: JobStatus | None = None
    status_read_at: float = -math.inf


class HealthMonitor:
    """Runs every detector over written rows; stores findings as job events."""

    def __init__(
        self, store: MetricStore, config: DetectorConfig, *, max_jobs: int = MAX_JOBS
    ) -> None:
        self.store = store
        self.config = config
        self.max_jobs = max_jobs
        self._jobs: OrderedDict[str, _JobHealth] = OrderedDict()
        self._lock = threading.Lock()

    def observe(self, job_id: str, rows: Sequence[MetricRow]) -> list[JobEvent]:
        """Feed a committed write to the detectors; returns the events it stored.

        Never raises: a detector or store failure is logged and the write's
        findings are lost, the write itself is not affected.
        """
        try:
            state = self._state(job_id)
            with state.lock:
                batch = _Batch.of(rows, time.time())
                findings = self._findings(job_id, state, batch)
            return self._store(job_id, findings, batch) if findings else []
        except JobNotFound:
            return []  # deleted meanwhile
        except Exception:
            log.exception("health detectors failed on a write to job %s", job_id)
            return []

    # ------------------------------------------------------------------ detection

    def _state(self, job_id: str) -> _JobHealth:
        with self._lock:
            state = self._jobs.get(job_id)
            if state is None:
                state = self._jobs[job_id] = _JobHealth()
                while len(self._jobs) > self.max_jobs:
                    self._jobs.popitem(last=False)
            else:
                self._jobs.move_to_end(job_id)
            return state

    def _findings(self, job_id: str, state: _JobHealth, batch: _Batch) -> list[Finding]:
        found = self._nonfinite(state, batch) if batch.has_nonfinite() else []
        for name in sorted(batch.names()):
            detector = self._detector(state, name)
            if detector is None:
                continue
            steps, values, finite = batch.column(name)
            if not len(values):
                continue
            if isinstance(detector, MetricWatch):
                found += detector.feed(steps, values)
                continue
            for finding in detector.feed(
                steps,
                values,
                functools.partial(batch.times_at, finite),
                lambda: self._is_running(job_id, state),
            ):
                if not self._gpu_episode_open(state, detector):
                    found.append(finding)
        return found

    def _detector(self, state: _JobHealth, name: str) -> Detector | None:
        if name in state.detectors:
            return state.detectors[name]
        detector: Detector | None = None
        if GPU_UTILIZATION_RE.match(name):
            detector = GpuIdleDetector(name, self.config)
        elif not name.startswith("gpu") and state.watched < MAX_WATCHED_PER_JOB:
            direction = best_direction(name)
            if direction is not None:
                detector = MetricWatch(name, -1 if direction == "min" else 1, self.config)
                state.watched += 1
        state.detectors[name] = detector
        return detector

    def _nonfinite(self, state: _JobHealth, batch: _Batch) -> list[Finding]:
        found: list[Finding] = []
        for step, values in zip(batch.steps.tolist(), batch.dicts, strict=True):
            total = sum(values.values())
            if total - total == 0:  # every value of the row is finite
                continue
            for name, value in values.items():
                if value - value == 0 or name in state.nonfinite:
                    continue
                state.nonfinite.add(name)
                found.append(
                    Finding(
                        EventKind.NONFINITE,
                        name,
                        step,
                        value,
                        Severity.CRITICAL,
                        f"{name} is {encode_value(value)} at step {step} "
                        "(its first non-finite value)",
                    )
                )
        return found

    def _is_running(self, job_id: str, state: _JobHealth) -> bool:
        now = time.monotonic()
        if now - state.status_read_at > STATUS_TTL:
            state.status = self.store.get_job(job_id).status
            state.status_read_at = now
        return state.status is JobStatus.RUNNING

    @staticmethod
    def _gpu_episode_open(state: _JobHealth, current: GpuIdleDetector) -> bool:
        """Whether another GPU of the job is already reported idle (one event per episode)."""
        return any(
            isinstance(other, GpuIdleDetector) and other is not current
            and other.reported and other.idle
            for other in state.detectors.values()
        )  # fmt: skip

    # ------------------------------------------------------------------ storing

    def _store(self, job_id: str, findings: list[Finding], batch: _Batch) -> list[JobEvent]:
        stamps = dict(zip(batch.steps.tolist(), batch.times().tolist(), strict=True))
        stored: list[JobEvent] = []
        for finding in sorted(findings, key=lambda item: item.step):
            key = (
                f"nonfinite:{finding.metric}"
                if finding.kind is EventKind.NONFINITE
                else f"{finding.kind.value}:{finding.metric}:{finding.step}"
            )
            event = self.store.add_event(
                job_id,
                NewEvent(
                    kind=finding.kind,
                    step=finding.step,
                    message=finding.message,
                    severity=finding.severity,
                    metric=finding.metric,
                    value=finding.value,
                    timestamp=finding.timestamp or stamps.get(finding.step),
                    dedupe=key,
                ),
            )
            if event is not None:
                stored.append(event)
        return stored


class _Batch:
    """A write's rows by step (merged when a step repeats), read column by column.

    Columns are pulled with C-level ``map`` calls: the per-row Python work is
    what a 1,000-row batch would otherwise spend its time on.
    """

    def __init__(self, rows: Sequence[MetricRow | MergedRow], now: float) -> None:
        self.rows = rows
        self.now = now
        self.steps = np.fromiter(map(_STEP, rows), dtype=np.int64, count=len(rows))
        self.dicts: list[dict[str, float]] = list(map(_VALUES, rows))
        self._times: npt.NDArray[np.float64] | None = None

    @classmethod
    def of(cls, rows: Sequence[MetricRow], now: float) -> _Batch:
        """The batch of a write; rows out of step order or repeating a step are merged."""
        batch = cls(rows, now)
        steps = batch.steps
        if len(steps) > 1 and not bool((steps[1:] > steps[:-1]).all()):
            return cls(merge_batch(rows, now), now)
        return batch

    def has_nonfinite(self) -> bool:
        """Whether any value is NaN or infinite (one C-level sum of everything)."""
        total = sum(map(sum, map(dict.values, self.dicts)))
        return not math.isfinite(total)

    def names(self) -> set[str]:
        """Every metric in the batch."""
        return set().union(*self.dicts)

    def column(self, name: str) -> tuple[npt.NDArray[np.int64], Floats, npt.NDArray[np.bool_]]:
        """``(steps, values, mask)``: the finite values of ``name`` and where they are."""
        column = np.array(list(map(dict.get, self.dicts, repeat(name))), dtype=np.float64)
        finite = np.isfinite(column)  # absent keys came in as None: NaN
        if finite.all():
            return self.steps, column, finite
        return self.steps[finite], column[finite], finite

    def times_at(self, mask: npt.NDArray[np.bool_]) -> Floats:
        """The timestamps of the rows ``mask`` selects."""
        return self.times()[mask]

    def times(self) -> Floats:
        """Row timestamps (Unix seconds; rows posted without one were stored at ``now``)."""
        if self._times is None:
            stamps = (row.timestamp or self.now for row in self.rows)
            self._times = np.fromiter(stamps, dtype=np.float64, count=len(self.rows))
        return self._times
