"""Backend-independent pieces of the store: batch merging, status rules,
per-metric statistics, the job summary and the wire shape of a stored row.

Both backends keep, for every (job, metric), a small statistics record updated
in the same transaction as the points. The job detail (``point_count``,
``summary``) is read from those records, never from the points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from trainvis.errors import InvalidArgument, InvalidStatusTransition
from trainvis.models import (
    JobStatus,
    MetricRow,
    TrainingJob,
    best_direction,
    encode_value,
    format_timestamp,
    row_to_wire,
)
from trainvis.store.cache import CATCH_UP_LIMIT

#: A job created again under a deleted job's id starts its sequence numbers this
#: far above the deleted job's last one: a stale ``Last-Event-ID`` then replays
#: every row of the new job, and the series cache (which re-reads a job that
#: moved on by more than ``CATCH_UP_LIMIT``) never mixes the two jobs' points.
RECREATED_SEQ_GAP = CATCH_UP_LIMIT + 1


@dataclass
class MergedRow:
    """All rows of one step in a request, merged (later keys win)."""

    step: int
    values: dict[str, float]
    epoch: float | None
    timestamp: float


def merge_batch(rows: Sequence[MetricRow], now: float) -> list[MergedRow]:
    """Merge rows that share a step and order the result by step."""
    merged: dict[int, MergedRow] = {}
    for row in rows:
        existing = merged.get(row.step)
        if existing is None:
            merged[row.step] = MergedRow(
                row.step, dict(row.values), row.epoch, row.timestamp or now
            )
            continue
        existing.values.update(row.values)
        if row.epoch is not None:
            existing.epoch = row.epoch
        if row.timestamp is not None:
            existing.timestamp = row.timestamp
    return [merged[step] for step in sorted(merged)]


def stored_rows(
    merged: Sequence[MergedRow], reread: dict[int, dict[str, Any]], last_seq: int
) -> list[tuple[int, dict[str, Any]]]:
    """``(seq, row)`` for a written batch: steps that already existed come from
    ``reread`` (the merged stored row), new ones from the request."""
    return [
        (
            last_seq + index + 1,
            reread.get(row.step) or row_to_wire(row.step, row.epoch, row.timestamp, row.values),
        )
        for index, row in enumerate(merged)
    ]


def check_metric_budget(
    rows: Sequence[MetricRow], new_names: set[str], stored: int, limit: int | None
) -> None:
    """422 naming the first metric of ``rows`` that would take the job past ``limit`` names.

    ``new_names`` are the batch's names the job does not have yet and ``stored``
    the number it has: backends call this inside the write transaction (issue 13).
    """
    if limit is None or stored + len(new_names) <= limit:
        return
    seen: set[str] = set()
    for index, row in enumerate(rows):
        for name in row.values:
            if name not in new_names or name in seen:
                continue
            seen.add(name)
            if stored + len(seen) > limit:
                message = f"a job may have at most {limit} distinct metrics"
                raise InvalidArgument(
                    f"{index}.{name}: {message}",
                    details=[
                        {"loc": ["body", index, name], "msg": message, "type": "limit_exceeded"}
                    ],
                )


@dataclass
class MetricStats:
    """Running statistics of one metric of one job."""

    count: int = 0
    last_step: int | None = None
    last_value: float | None = None
    min_value: float | None = None
    min_step: int | None = None
    max_value: float | None = None
    max_step: int | None = None
    nonfinite: int = 0
    #: Set when a replaced value was the min or max: the backend must rescan.
    needs_rescan: bool = field(default=False, compare=False)

    def apply(self, steps: list[int], values: list[float], replaced: dict[int, float]) -> None:
        """Fold new points in (``steps`` ascending); ``replaced`` maps step → old value."""
        if not steps:
            return
        if not replaced and math.isfinite(sum(values)):
            self._apply_finite(steps, values)
            return
        for step, value in zip(steps, values, strict=True):
            self._apply_one(step, value, replaced)

    def _apply_finite(self, steps: list[int], values: list[float]) -> None:
        """Fast path: only new points, all finite (C-speed min/max)."""
        self.count += len(steps)
        if self.last_step is None or steps[-1] >= self.last_step:
            self.last_step, self.last_value = steps[-1], values[-1]
        low = min(values)
        low_step = steps[values.index(low)]  # first occurrence = earliest step
        if (
            self.min_value is None
            or low < self.min_value
            or (low == self.min_value and self.min_step is not None and low_step < self.min_step)
        ):
            self.min_value, self.min_step = low, low_step
        high = max(values)
        high_step = steps[values.index(high)]
        if (
            self.max_value is None
            or high > self.max_value
            or (high == self.max_value and self.max_step is not None and high_step < self.max_step)
        ):
            self.max_value, self.max_step = high, high_step

    def _apply_one(self, step: int, value: float, replaced: dict[int, float]) -> None:
        if step not in replaced:
            self.count += 1
        else:
            old = replaced[step]
            if not math.isfinite(old):
                self.nonfinite -= 1
            if step in (self.min_step, self.max_step) and value != old:
                self.needs_rescan = True
        if self.last_step is None or step >= self.last_step:
            self.last_step, self.last_value = step, value
        if not math.isfinite(value):
            self.nonfinite += 1
            return
        if (
            self.min_value is None
            or value < self.min_value
            or (value == self.min_value and self.min_step is not None and step < self.min_step)
        ):
            self.min_value, self.min_step = value, step
        if (
            self.max_value is None
            or value > self.max_value
            or (value == self.max_value and self.max_step is not None and step < self.max_step)
        ):
            self.max_value, self.max_step = value, step


def build_summary(stats: dict[str, MetricStats]) -> dict[str, Any]:
    """The contract's job summary from per-metric statistics."""
    last: dict[str, Any] = {}
    best: dict[str, Any] = {}
    has_nan = False
    for name in sorted(stats):
        item = stats[name]
        if item.last_value is not None:
            last[name] = encode_value(item.last_value)
        has_nan = has_nan or item.nonfinite > 0
        value, step = best_of(name, item)
        if value is not None:
            best[name] = {"value": value, "step": step}
    return {"last": last, "best": best, "has_nan": has_nan}


def best_of(name: str, item: MetricStats) -> tuple[float | None, int | None]:
    """``(value, step)`` of the best finite value of metric ``name`` by
    :func:`~trainvis.models.best_direction`; ``(None, None)`` when there is none."""
    direction = best_direction(name)
    if direction == "min":
        return item.min_value, item.min_step
    if direction == "max":
        return item.max_value, item.max_step
    return None, None


def stats_wire(name: str, item: MetricStats) -> dict[str, Any]:
    """A metric's statistics in a listed job's ``stats`` (issue 16): ``last`` as in
    history rows (``"NaN"``…), ``min``/``max``/``best`` over finite values (null
    when none), ``count`` of every value."""
    best, best_step = best_of(name, item)
    return {
        "last": None if item.last_value is None else encode_value(item.last_value),
        "min": item.min_value,
        "max": item.max_value,
        "best": best,
        "best_step": best_step,
        "count": item.count,
    }


def check_transition(current: JobStatus, target: JobStatus) -> None:
    """Raise unless ``current`` → ``target`` is allowed (nothing goes back to pending)."""
    if target is JobStatus.PENDING and current is not JobStatus.PENDING:
        raise InvalidStatusTransition(
            f"A job cannot go back to 'pending' (it is '{current.value}')",
            details={"status": current.value, "requested": target.value},
        )


def status_timestamps(
    job: TrainingJob, target: JobStatus, now: float
) -> tuple[float | None, float | None]:
    """``(started_at, finished_at)`` after moving ``job`` to ``target``."""
    started, finished = job.started_at, job.finished_at
    if target is JobStatus.RUNNING:
        started = started or now
        finished = None
    elif target.is_terminal:
        finished = now
    return started, finished


def eta_from_rate(job: TrainingJob, recent: Sequence[tuple[int, float]]) -> float | None:
    """Seconds to ``total_steps`` from recent ``(step, timestamp)`` rows, newest first."""
    if job.status is not JobStatus.RUNNING or not job.total_steps or len(recent) < 2:
        return None
    (step_new, ts_new), (step_old, ts_old) = recent[0], recent[-1]
    if ts_new <= ts_old or step_new <= step_old or job.current_step is None:
        return None
    rate = (step_new - step_old) / (ts_new - ts_old)
    remaining = max(0, job.total_steps - job.current_step)
    return round(remaining / rate, 1)


Head = tuple[int, float | int | None, str]
"""A row's ``(step, epoch as on the wire, ISO timestamp)``."""


def heads(steps: Sequence[tuple[int, float | None, float]]) -> list[Head]:
    """Row heads from ``(step, epoch or None, Unix timestamp)`` rows; timestamps
    are formatted once per distinct value (a batch shares one)."""
    stamps = {ts: format_timestamp(ts) or "" for ts in {row[2] for row in steps}}
    return [
        (step, None if epoch is None else _plain_epoch(epoch), stamps[ts])
        for step, epoch, ts in steps
    ]


def _plain_epoch(epoch: float) -> float | int:
    """A whole epoch as an int where that is exact (1e20 stays a float: strict JSON)."""
    return int(epoch) if epoch.is_integer() and epoch < 2**53 else epoch


def wire_rows(
    steps: npt.NDArray[np.int64], epochs: npt.NDArray[np.float64], stamps: npt.NDArray[np.float64]
) -> list[dict[str, Any]]:
    """Wire rows (no metric yet) from steps, epochs (NaN: none) and Unix
    timestamps (what :func:`head_rows` of :func:`heads` gives), the per-row
    work done on whole columns: timestamps formatted once per distinct value,
    whole epochs as ints (:func:`_plain_epoch`)."""
    distinct, which = np.unique(stamps, return_inverse=True)
    texts = [format_timestamp(ts) or "" for ts in distinct.tolist()]
    stamp_texts = [texts[index] for index in which.tolist()]
    whole = np.isfinite(epochs) & (epochs == np.floor(epochs)) & (epochs < 2**53)
    plain: npt.NDArray[Any] = epochs.astype(object)
    plain[whole] = epochs[whole].astype(np.int64).astype(object)
    rows = [
        {"step": step, "epoch": epoch, "timestamp": stamp}
        for step, epoch, stamp in zip(steps.tolist(), plain.tolist(), stamp_texts, strict=True)
    ]
    absent = np.flatnonzero(np.isnan(epochs)).tolist()
    for index in absent:  # the row has no epoch
        del rows[index]["epoch"]
    return rows


def head_rows(steps: Sequence[Head]) -> list[dict[str, Any]]:
    """Wire rows (no metric yet) from row heads."""
    return [
        {"step": step, "timestamp": stamp}
        if epoch is None
        else {"step": step, "epoch": epoch, "timestamp": stamp}
        for step, epoch, stamp in steps
    ]


def wire_value(value: float | None) -> float | str:
    """A stored value for the wire: non-finite ones as strings; NULL is SQLite's NaN."""
    if value is None:
        return "NaN"
    return value if value - value == 0 else encode_value(value)
