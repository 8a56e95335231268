"""Collect the points of one source run into trainvis metric rows.

Sources (TensorBoard event files, MLflow histories) deliver points one
metric at a time; trainvis stores rows, one per step. :class:`RowBuilder`
merges the points of one run by step, maps the source's metric names
(:func:`~trainvis.importers.names.map_metric_names`) and yields the rows the
ingest API accepts. An :class:`ImportedJob` is the result: the job to create,
its rows and its final status.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from trainvis.importers.names import EPOCH, canonical_metric, map_metric_names

Row = dict[str, Any]


@dataclass
class ImportedJob:
    """One job ready to be written.

    Attributes:
        spec: the ``POST /training/jobs`` body, ``id`` included.
        rows: metric rows ordered by step (values may be NaN or ±Infinity).
        status: the status to leave the job in (``pending`` leaves it as created).
        points: the number of metric values in ``rows``.
    """

    spec: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    status: str = "completed"
    points: int = 0

    @property
    def job_id(self) -> str:
        """The job's id (every imported job has a client-chosen one)."""
        return str(self.spec["id"])

    @property
    def metric_names(self) -> set[str]:
        """Every metric name in ``rows``."""
        names: set[str] = set()
        for row in self.rows:
            names.update(key for key in row if key not in ("step", "epoch", "timestamp"))
        return names

    @property
    def last_step(self) -> int | None:
        """The largest step in ``rows`` (None without rows)."""
        return max((row["step"] for row in self.rows), default=None)


class RowBuilder:
    """Points of one run, merged by step; a later point of the same (name, step) wins."""

    def __init__(self) -> None:
        self._points: dict[str, dict[int, float]] = {}
        self._times: dict[int, float] = {}
        self.skipped = 0

    def add(self, name: str, step: int, value: float, timestamp: float | None = None) -> None:
        """Record ``name`` at ``step``; ``timestamp`` (Unix seconds) keeps the latest per step.

        Negative steps (which trainvis rejects) are counted in ``skipped`` and dropped.
        """
        if step < 0:
            self.skipped += 1
            return
        series = self._points.get(name)
        if series is None:
            series = self._points[name] = {}
        series[step] = value
        if timestamp is not None and timestamp >= 0:
            known = self._times.get(step)
            if known is None or timestamp > known:
                self._times[step] = timestamp

    def purge_from(self, step: int) -> None:
        """Forget every point at ``step`` or later (a TensorBoard restart from a checkpoint)."""
        for series in self._points.values():
            for old in [old for old in series if old >= step]:
                del series[old]
        for old in [old for old in self._times if old >= step]:
            del self._times[old]

    @property
    def names(self) -> list[str]:
        """Source metric names seen so far."""
        return list(self._points)

    def mapping(self) -> dict[str, str]:
        """Source name → trainvis name; an epoch source with a bad value stays a metric."""
        bad_epochs = [
            name
            for name, series in self._points.items()
            if canonical_metric(name) == EPOCH
            and not all(math.isfinite(value) and value >= 0 for value in series.values())
        ]
        return map_metric_names(self._points, literal=bad_epochs)

    def build(self) -> tuple[list[Row], int]:
        """The rows ordered by step, and the number of metric values in them."""
        mapping = self.mapping()
        by_step: dict[int, Row] = {}
        points = 0
        for name, series in self._points.items():
            target = mapping[name]
            for step, value in series.items():
                row = by_step.get(step)
                if row is None:
                    row = by_step[step] = {"step": step}
                row[target] = value
                if target != EPOCH:
                    points += 1
        rows = [by_step[step] for step in sorted(by_step)]
        for row in rows:
            stamp = self._times.get(row["step"])
            if stamp is not None:
                row["timestamp"] = stamp
        return rows, points


def iter_batches(rows: list[Row], *, max_rows: int, max_bytes: int) -> Iterator[list[Row]]:
    """Consecutive slices of ``rows``: at most ``max_rows`` rows and about
    ``max_bytes`` of JSON each (estimated from key lengths; a row is never split)."""
    start, size = 0, 0
    for index, row in enumerate(rows):
        row_size = sum(len(key) for key in row) + 28 * len(row)
        if index > start and (index - start >= max_rows or size + row_size > max_bytes):
            yield rows[start:index]
            start, size = index, 0
        size += row_size
    if start < len(rows):
        yield rows[start:]
