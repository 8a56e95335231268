"""The storage contract every backend implements.

The API, the realtime broker and the SDK's local mode depend on
:class:`MetricStore` only; nothing above this package knows which database is
underneath. Methods are synchronous (the API calls them from a worker thread)
and safe to call from several threads at once.

Data model, common to every backend:

- a *job* has a stored, monotonic ``last_seq``;
- a *row* is one ``(job, step)``: optional ``epoch``, a ``timestamp`` and the
  metric values posted for that step. Every write of a row gives it the next
  sequence number of its job (a re-posted step gets a new, larger one), which is
  what the SSE stream uses as its event id;
- a *point* is one ``(job, metric, step) -> value``. A later write of the same
  point replaces the value; NaN and ±Infinity are stored as such;
- an *event* is a health finding or a user's note at a step (see
  :mod:`trainvis.health.events`); events go with their job.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from trainvis.errors import PublicError
from trainvis.events import EventKind, EventOrder, JobEvent, NewEvent
from trainvis.models import (
    JobCreate,
    JobStatus,
    JobUpdate,
    MetricRow,
    StatusChange,
    TrainingJob,
    WriteResult,
)
from trainvis.series import Series, WindowCells

Row = dict[str, Any]
"""A row in wire shape: ``step``, optional ``epoch``, ``timestamp``, one key per metric."""


class StoreError(PublicError):
    """The database failed in a way that is not the client's fault (503)."""

    http_status = 503
    code = "store_unavailable"


@dataclass(frozen=True)
class JobFilter:
    """Filters of ``list_jobs``; they combine with AND."""

    status: JobStatus | None = None
    tag: str | None = None
    q: str | None = None
    #: ``(path, value)`` pairs: the job's ``config`` value at the dotted ``path``
    #: (object keys only), as JSON text with strings unquoted, equals ``value``;
    #: a number also matches a numerically equal ``value`` (``1e-05`` and
    #: ``0.00001``), an object or array equal JSON. A missing or null value
    #: never matches (issue 16).
    config: tuple[tuple[tuple[str, ...], str], ...] = ()


#: The column keys of :class:`JobSort` (``config.<path>`` and ``metric.<name>.<stat>`` aside).
SORT_COLUMNS = ("created_at", "updated_at", "name", "status", "progress")
#: The statistics a ``metric.<name>.<stat>`` sort key may name.
SORT_STATS = ("last", "min", "max", "best")


@dataclass(frozen=True)
class JobSort:
    """The order of ``list_jobs`` (issue 16): one key, ascending unless ``descending``.

    Exactly one of ``column`` (one of :data:`SORT_COLUMNS`), ``config``
    (a dotted path into the job's ``config``, object keys only) or
    ``metric``/``stat`` (a metric's statistic from :data:`SORT_STATS`; ``best``
    follows :func:`~trainvis.models.best_direction`, null for other metrics)
    is set. Jobs lacking the key (no such config value or a null one, no such
    metric or no finite value of it, no progress) come last in both directions;
    ties and those jobs are ordered by id descending.
    """

    column: str | None = "created_at"
    config: tuple[str, ...] = ()
    metric: str | None = None
    stat: str | None = None
    descending: bool = True

    @classmethod
    def parse(cls, text: str) -> JobSort:
        """The sort of a ``sort`` query value (:data:`SORT_PATTERN`).

        Raises:
            ValueError: an unknown key or a bad shape (the message says which).
        """
        descending = text.startswith("-")
        key = text[1:] if descending else text
        if key in SORT_COLUMNS:
            return cls(column=key, descending=descending)
        if key.startswith("config."):
            return cls(column=None, config=parse_config_path(key), descending=descending)
        if key.startswith("metric."):
            name, _, stat = key.removeprefix("metric.").rpartition(".")
            if stat not in SORT_STATS or not _METRIC_NAME.fullmatch(name):
                raise ValueError(
                    "a metric sort key is metric.<name>.<stat> with stat " + ", ".join(SORT_STATS)
                )
            return cls(column=None, metric=name, stat=stat, descending=descending)
        raise ValueError(
            "sort by " + ", ".join(SORT_COLUMNS) + ", config.<path> or metric.<name>.<stat>"
            ", with a leading - for descending"
        )


_SEGMENT = r'[^."\\\x00-\x1f]+'
_METRIC = r"[A-Za-z_][A-Za-z0-9_./-]{0,127}"
_METRIC_NAME = re.compile(_METRIC)
_CONFIG_PATH = re.compile(rf"{_SEGMENT}(?:\.{_SEGMENT})*")
#: Every ``sort`` value :meth:`JobSort.parse` accepts (the OpenAPI schema's pattern).
SORT_PATTERN = (
    "^-?(?:" + "|".join(SORT_COLUMNS) + rf"|config\.{_CONFIG_PATH.pattern}"
    rf"|metric\.{_METRIC}\.(?:" + "|".join(SORT_STATS) + "))$"
)


def parse_config_path(key: str) -> tuple[str, ...]:
    """The object keys of ``config.<dotted path>`` (``key`` includes ``config.``).

    Raises:
        ValueError: no path, an empty segment, or a quote, backslash or control
            character in a key.
    """
    path = key.removeprefix("config.")
    if key == path or not _CONFIG_PATH.fullmatch(path):
        raise ValueError(
            "a config key is config.<dotted path> (keys without quotes, backslashes "
            "or control characters)"
        )
    return tuple(path.split("."))


class MetricStore(Protocol):
    """A durable store of jobs and their metrics.

    Every method that takes a ``job_id`` raises :class:`~trainvis.errors.JobNotFound`
    for an unknown job. A method that returns has committed what it wrote.
    """

    def create_job(self, spec: JobCreate) -> TrainingJob:
        """Create a job in status ``pending``.

        Without ``spec.id`` the id is the next ``job-NNN`` of a stored counter
        that never goes down; a client id ``job-N`` raises the counter to N.

        A client id of a deleted job may be used again: the new job starts
        empty and its sequence numbers continue above the deleted job's (by
        more than ``RECREATED_SEQ_GAP``), so stale stream positions and
        seq-keyed caches never take the new job for the old one.

        Raises:
            JobExists: ``spec.id`` is the id of an existing job.
        """
        ...

    def get_job(self, job_id: str) -> TrainingJob:
        """The job with its progress fields, ``metric_names``, ``summary`` and ``alerts``."""
        ...

    def list_jobs(
        self,
        *,
        filters: JobFilter | None = None,
        sort: JobSort | None = None,
        stats: Sequence[str] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[TrainingJob], int]:
        """A page of the jobs matching ``filters`` in ``sort`` order (default newest
        first, ties by id descending) and the total matching.

        With ``stats`` (metric names), each job's ``stats`` maps those of the
        names it has to their statistics (see :func:`~trainvis.store.common.stats_wire`);
        a job with none of them gets an empty dict.
        """
        ...

    def delete_job(self, job_id: str) -> None:
        """Delete the job and every row, point and event of it."""
        ...

    def update_job(self, job_id: str, update: JobUpdate) -> TrainingJob:
        """Replace the fields ``update`` gives (``name``, ``model_name``, ``config``,
        ``tags``) and set ``updated_at`` to now.

        Returns:
            The job as :meth:`get_job` shows it after the edit.

        Raises:
            JobNotFound: unknown job.
        """
        ...

    def set_status(
        self, job_id: str, status: JobStatus, *, message: str | None = None
    ) -> tuple[TrainingJob, StatusChange | None]:
        """Move the job to ``status``; returns the job and the change (None for a no-op).

        Raises:
            InvalidStatusTransition: a move back to ``pending``.
        """
        ...

    def write_metrics(
        self, job_id: str, rows: Sequence[MetricRow], *, max_metrics: int | None = None
    ) -> WriteResult:
        """Upsert rows in one transaction: all are stored or none.

        Rows of the same step merge (a later value replaces an earlier one,
        absent keys keep what is stored). Each distinct step written gets a new
        sequence number; ``WriteResult.rows`` lists ``(seq, row)`` as stored.
        ``WriteResult.points`` counts the values stored (after merging). A
        ``pending`` job becomes ``running`` (``WriteResult.status_change``).

        Raises:
            InvalidArgument: the rows would give the job more than
                ``max_metrics`` distinct metric names (checked in the transaction).
        """
        ...

    def count_rows(
        self,
        job_id: str,
        *,
        metrics: Sequence[str] | None = None,
        start_step: int | None = None,
        end_step: int | None = None,
    ) -> int:
        """Rows in the step range (inclusive) that have any of ``metrics`` (all rows if None)."""
        ...

    def iter_rows(
        self,
        job_id: str,
        *,
        metrics: Sequence[str] | None = None,
        start_step: int | None = None,
        end_step: int | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> Iterator[Row]:
        """Rows ordered by step, read in chunks (a million rows never sit in memory).

        With ``metrics``, rows carry only those metrics and rows with none of
        them are skipped.
        """
        ...

    def iter_row_chunks(
        self,
        job_id: str,
        *,
        metrics: Sequence[str] | None = None,
        start_step: int | None = None,
        end_step: int | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> Iterator[list[Row]]:
        """:meth:`iter_rows` as non-empty lists of consecutive rows (a few
        thousand each): what the API serializes one list at a time."""
        ...

    def rows_at_steps(
        self, job_id: str, steps: Sequence[int], *, metrics: Sequence[str] | None = None
    ) -> list[Row]:
        """The rows at exactly these steps, ordered by step (missing steps skipped)."""
        ...

    def read_cells(
        self,
        job_id: str,
        metric: str,
        *,
        start_step: int | None = None,
        end_step: int | None = None,
    ) -> WindowCells | None:
        """The metric's min/max tier over ``[start_step, end_step]`` (inclusive;
        None: open): per cell of ``2**shift`` steps its count, minimum, maximum
        and their first steps, read from block summaries where the store keeps
        them; None when the job has no such metric.

        Raises:
            JobNotFound: unknown job.
        """
        ...

    def read_series(
        self,
        job_id: str,
        metrics: Sequence[str],
        *,
        start_step: int | None = None,
        end_step: int | None = None,
        with_time: bool = False,
    ) -> dict[str, Series]:
        """Each requested metric as arrays (metrics with no points are left out).

        ``with_time`` fills ``epochs`` and ``timestamps``.
        """
        ...

    def rows_since(self, job_id: str, seq: int, *, limit: int = 1000) -> list[tuple[int, Row]]:
        """Rows whose current sequence number is greater than ``seq``, by seq."""
        ...

    def series_since(
        self, job_id: str, seq: int, metrics: Sequence[str], *, limit: int = 1000
    ) -> tuple[int, dict[str, Series]]:
        """The points of ``metrics`` in the rows :meth:`rows_since` would return, as arrays.

        Returns the sequence number of the last row read (``seq`` when there
        is none) and, for each metric with a point in those rows, a
        :class:`Series` ordered by step with ``epochs`` (NaN where absent) and
        Unix ``timestamps``: raw values, no wire encoding.
        """
        ...

    def last_seq(self, job_id: str) -> int:
        """The job's newest sequence number (0 before its first row)."""
        ...

    def add_event(self, job_id: str, event: NewEvent) -> JobEvent | None:
        """Store an event on the job; returns it with its id.

        Returns None (and stores nothing) when ``event.dedupe`` is set and the
        job already has an event with that key. ``event.timestamp`` defaults
        to now. Non-finite values are kept.
        """
        ...

    def list_events(
        self,
        job_id: str,
        *,
        kind: EventKind | None = None,
        order: EventOrder = "newest",
        start_step: int | None = None,
        end_step: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[JobEvent], int]:
        """A page of the job's events and the total matching the filters.

        ``order="newest"``: by id, newest first; ``order="step"``: by step, then
        id. ``start_step``/``end_step`` are inclusive.
        """
        ...

    def get_event(self, job_id: str, event_id: int) -> JobEvent | None:
        """One event of the job by id; None when the job has no such event."""
        ...

    def status_counts(self) -> dict[str, int]:
        """Number of jobs in every status (zeros included)."""
        ...

    def total_points(self) -> int:
        """Points stored over all jobs."""
        ...

    def close(self) -> None:
        """Release connections; the store is unusable afterwards."""
        ...
