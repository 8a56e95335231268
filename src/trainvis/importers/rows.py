"""Collect the points of one source run into trainvis metric rows.

Sources (TensorBoard event files, MLflow histories) deliver points one
metric at a time; trainvis stores rows, one per step. :class:`RowBuilder`
merges the points of one run by step, maps the source's metric names
(:func:`~trainvis.importers.names.map_metric_names`) and yields the rows the
ingest API accepts. An :class:`ImportedJob` is the result: the job to create,
its rows and its final status.

Sources that write one log per run directory (W&B, SwanLab) share the rest:
:class:`LoggedRun` gathers a run from its logs (a resumed run continues in a
new directory), :func:`iter_logged_jobs` groups the logs by run id and reads
them, and :meth:`LoggedRun.job` names, tags and ids the job.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainvis.importers.names import EPOCH, canonical_metric, job_id, map_metric_names
from trainvis.importers.progress import Progress

log = logging.getLogger("trainvis.importers")
Row = dict[str, Any]
MAX_NAME = 200
MAX_TAGS = 100
MAX_TAG = 100


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


@dataclass
class LoggedRun(ABC):
    """One run of a source that writes a log per run directory (W&B, SwanLab),
    gathered from one or more logs: a resumed run continues in a new directory.

    ``owner`` is the W&B entity or the SwanLab workspace; the source's reader
    fills the fields in :meth:`read`.
    """

    run_id: str
    project: str = ""
    owner: str = ""
    name: str = ""
    group: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    builder: RowBuilder = field(default_factory=RowBuilder)

    @abstractmethod
    def read(self, log_file: Path) -> None:
        """Take in one log (a later log continues the run)."""

    @abstractmethod
    def status(self) -> str:
        """The job's status, as the last log read leaves the run."""

    @abstractmethod
    def missing(self) -> str | None:
        """Why the logs hold no run to import (the run is skipped), or None."""

    def job_config(self) -> dict[str, Any]:
        """The job's ``config`` (the run's config unless the source adds to it)."""
        return self.config

    def job(self, source: str) -> ImportedJob:
        """The job for this run.

        id ``<source>-<run id>-<hash of owner, project and run id>``; name: the
        run's name (its id when it has none); tags: ``<source>``,
        ``project=``, ``group=`` and ``job_type=`` when set, then the run's
        tags (100 characters each, 100 tags at most); ``total_steps``: the
        last step.
        """
        name = (self.name or self.run_id)[:MAX_NAME]
        tags = [source]
        if self.project:
            tags.append(f"project={self.project}")
        if self.group:
            tags.append(f"group={self.group}")
        if self.job_type:
            tags.append(f"job_type={self.job_type}")
        tags.extend(self.tags)
        rows, points = self.builder.build()
        spec: dict[str, Any] = {
            "id": job_id(source, self.run_id, f"{self.owner}\0{self.project}\0{self.run_id}"),
            "name": name,
            "config": self.job_config(),
            "tags": list(dict.fromkeys(tag[:MAX_TAG] for tag in tags if tag))[:MAX_TAGS],
        }
        job = ImportedJob(spec=spec, rows=rows, status=self.status(), points=points)
        if job.last_step:
            spec["total_steps"] = job.last_step
        if self.builder.skipped:
            log.warning("%s: %d points at negative steps skipped", name, self.builder.skipped)
        return job


def iter_logged_jobs(
    logs: list[Path],
    new_run: Callable[[str], LoggedRun],
    *,
    source: str,
    label: str,
    progress: Progress | None = None,
    weigh: Callable[[Path], int] = lambda _: 1,
) -> Iterator[ImportedJob]:
    """One job per run id among ``logs`` (files ``run-<id>.<ext>``), read lazily.

    The logs of one id (a resumed run) are read into one run in the order
    given; runs come in the order of their first log. A run whose logs hold
    none (:meth:`LoggedRun.missing`) is skipped with a warning. ``weigh``
    gives a log's share of the progress bar (``label`` names the source on it).
    """
    by_run: dict[str, list[Path]] = {}
    for log_file in logs:
        by_run.setdefault(log_file.stem[len("run-") :], []).append(log_file)
    bar = progress or Progress()
    task = bar.add(f"read {len(by_run)} {label} run(s)", total=sum(map(weigh, logs)))
    for run_id, parts in by_run.items():
        run = new_run(run_id)
        for log_file in parts:
            run.read(log_file)
            bar.advance(task, weigh(log_file))
        reason = run.missing()
        if reason is not None:
            log.warning("%s: %s; skipped", run_id, reason)
            continue
        yield run.job(source)
