"""Where imported jobs go: a server (``url``) or a store (``db``), through the SDK's clients.

:func:`open_client` picks the destination the same way the SDK does: an
explicit ``db`` means the local store, else ``url`` or ``TRAINVIS_URL`` a
server (token from ``TRAINVIS_TOKEN``), else the local store of
``TRAINVIS_DB`` (default ``./trainvis.db``).

:class:`Sink` writes an :class:`~trainvis.importers.rows.ImportedJob`
idempotently: the job has a deterministic id; when it exists already
(``409 job_exists``) its rows are upserted again (same (job, metric, step),
same value) unless the stored job already holds exactly as many points up to
the same last step, in which case nothing is written at all.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from trainvis.client.http import ApiClient, ApiError, ServerUnavailable
from trainvis.client.spool import Client
from trainvis.client.start import ClientSettings
from trainvis.importers.progress import Progress
from trainvis.importers.rows import ImportedJob, Row, iter_batches

log = logging.getLogger("trainvis.importers")
T = TypeVar("T")
#: Hears each written job with ``"created"``, ``"updated"`` or ``"unchanged"``.
OnJob = Callable[[ImportedJob, str], None]

#: The server's per-request row limit.
MAX_ROWS = 10_000
#: Estimated JSON bytes per request, well under the server's 16 MiB default.
MAX_BYTES = 8 * 1024 * 1024
RETRIES = 4


class TransferError(Exception):
    """An import or export cannot be done (the message says why)."""


class TransferClient(ApiClient):
    """The SDK's HTTP client plus the paged history read that exports need."""

    def history_page(self, job_id: str, *, start_step: int, limit: int) -> list[Row]:
        """Up to ``limit`` rows from ``start_step`` on (inclusive), ordered by step."""
        rows: list[Row] = self._request(
            "GET", f"/training/{job_id}/metrics/history?start_step={start_step}&limit={limit}"
        )
        return rows


def resolve_target(url: str | None, db: str | None) -> tuple[str | None, str, str | None]:
    """``(server url or None, store, token)``: an explicit ``db`` wins, then
    ``url``/``TRAINVIS_URL``, then ``TRAINVIS_DB`` (default ``./trainvis.db``)."""
    settings = ClientSettings.resolve(url=url, db=db)
    if db:
        return None, db, None
    return settings.url, settings.db, settings.token


def open_client(*, url: str | None = None, db: str | None = None) -> Client:
    """The SDK client for a server (``url``) or a store (``db``); see :func:`resolve_target`."""
    server, store, token = resolve_target(url, db)
    if server:
        return TransferClient(server, token=token, timeout=120.0)
    from trainvis.client.local import LocalClient

    return LocalClient(store)


def retrying(call: Callable[[], T], *, what: str) -> T:
    """``call()``, retried with backoff while the destination is unavailable.

    Every write of an import is idempotent, so repeating one is safe.
    """
    for attempt in range(RETRIES):
        try:
            return call()
        except ServerUnavailable as exc:
            if attempt == RETRIES - 1:
                raise
            delay = 0.5 * 2**attempt
            log.warning("%s: %s; retrying in %.1f s", what, exc, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


class Sink:
    """Writes imported jobs to one destination (see :func:`open_client`)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    @classmethod
    def open(cls, *, url: str | None = None, db: str | None = None) -> Sink:
        """A sink on a server or a store."""
        return cls(open_client(url=url, db=db))

    def close(self) -> None:
        """Release the destination's connections."""
        self.client.close()

    def write(
        self, job: ImportedJob, *, force: bool = False, progress: Progress | None = None
    ) -> str:
        """Create (or find) the job, upload its rows, set its status.

        Returns ``"created"``, ``"updated"`` (the job existed; rows upserted
        again) or ``"unchanged"`` (the job existed with the same points).

        Raises:
            TransferError: a job with this id exists under another name.
            ApiError: the destination rejected the job or a row.
            ServerUnavailable: the destination stayed unreachable.
        """
        existing = self._create(job)
        if existing is not None:
            if existing.get("name") != job.spec["name"]:
                raise TransferError(
                    f"job {job.job_id!r} exists with another name ({existing.get('name')!r}); "
                    "not overwriting it"
                )
            if not force and _same_points(existing, job):
                self._finish(job, str(existing.get("status")))
                return "unchanged"
        self._upload(job, progress or Progress())
        self._finish(job, "pending" if existing is None else str(existing.get("status")))
        return "created" if existing is None else "updated"

    def _create(self, job: ImportedJob) -> dict[str, Any] | None:
        """Create the job; returns the existing job instead when the id is taken."""
        try:
            retrying(lambda: self.client.create_job(job.spec), what=f"create {job.job_id}")
        except ApiError as exc:
            if exc.code != "job_exists":
                raise
            return retrying(lambda: self.client.get_job(job.job_id), what=f"read {job.job_id}")
        return None

    def _upload(self, job: ImportedJob, progress: Progress) -> None:
        task = progress.add(f"upload {job.spec['name']}", total=len(job.rows))
        for batch in iter_batches(job.rows, max_rows=MAX_ROWS, max_bytes=MAX_BYTES):
            # Copies: encoding turns NaN into strings in place, and the caller keeps the rows.
            payload = [dict(row) for row in batch]
            retrying(
                functools.partial(self.client.post_metrics, job.job_id, payload),
                what=f"upload to {job.job_id}",
            )
            progress.advance(task, len(batch))
        progress.remove(task)

    def _finish(self, job: ImportedJob, current: str) -> None:
        if job.status != "pending" and job.status != current:
            retrying(
                lambda: self.client.set_status(job.job_id, job.status, "imported"),
                what=f"status of {job.job_id}",
            )


def write_all(
    jobs: Callable[[Progress], Iterable[ImportedJob]],
    *,
    url: str | None,
    db: str | None,
    force: bool,
    progress: bool,
    on_job: OnJob | None,
) -> list[str]:
    """Write every job ``jobs(progress)`` yields to one destination; returns their ids.

    ``on_job`` hears each job with ``"created"``, ``"updated"`` or ``"unchanged"``.
    """
    sink = Sink.open(url=url, db=db)
    ids: list[str] = []
    try:
        with Progress(progress) as bar:
            for job in jobs(bar):
                outcome = sink.write(job, force=force, progress=bar)
                ids.append(job.job_id)
                if on_job is not None:
                    on_job(job, outcome)
    finally:
        sink.close()
    return ids


def _same_points(existing: dict[str, Any], job: ImportedJob) -> bool:
    """Whether the stored job already holds what ``job`` would write."""
    return (
        existing.get("point_count") == job.points
        and existing.get("current_step") == job.last_step
        and set(existing.get("metric_names") or ()) == job.metric_names
    )
