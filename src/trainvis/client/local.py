"""Local mode: the SDK writes straight into a store file, no server involved.

Used when neither ``url=`` nor ``TRAINVIS_URL`` is given. It offers the same
methods as :class:`~trainvis.client.http.ApiClient` and returns the same
shapes (the job as the REST API shows it), so the rest of the SDK does not
know the difference. The store is imported only here, and only when a local
run starts: a remote run never loads the server side.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import TYPE_CHECKING, Any

from trainvis.client.http import ApiError, ServerUnavailable, TrainvisError
from trainvis.errors import PublicError

if TYPE_CHECKING:
    from trainvis.store.base import MetricStore

#: The server's default row limit per request, applied to local writes as well.
MAX_ROWS = 10_000


def _translate(exc: Exception) -> TrainvisError:
    if isinstance(exc, PublicError):
        if exc.http_status >= 500:
            return ServerUnavailable(f"{exc.code}: {exc.message}")
        return ApiError(exc.http_status, exc.code, exc.message, exc.details)
    return ServerUnavailable(f"{type(exc).__name__}: {exc}")


class LocalClient:
    """The store at ``db`` (SQLite path or database URL), opened on first use.

    Errors are translated as the server would: a rejected request raises
    :class:`ApiError`, a busy or failing database :class:`ServerUnavailable`.
    """

    def __init__(self, db: str) -> None:
        self.db = db
        self._store: MetricStore | None = None
        self._lock = threading.Lock()

    @property
    def target(self) -> str:
        """Where rows go, for messages."""
        return self.db

    def _open(self) -> MetricStore:
        with self._lock:
            if self._store is None:
                from trainvis.store import open_store

                try:
                    self._store = open_store(self.db)
                except (PublicError, sqlite3.Error, OSError) as exc:
                    raise _translate(exc) from exc
            return self._store

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        store = self._open()
        try:
            return getattr(store, name)(*args, **kwargs)
        except (PublicError, sqlite3.Error) as exc:
            raise _translate(exc) from exc

    def create_job(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Create the job; returns it as the REST API would."""
        from pydantic import ValidationError

        from trainvis.models import JobCreate

        try:
            parsed = JobCreate(**spec)
        except ValidationError as exc:
            raise ApiError(422, "validation_error", str(exc), exc.errors()) from exc
        except PublicError as exc:
            raise _translate(exc) from exc
        job = self._call("create_job", parsed)
        return dict(job.to_wire())

    def get_job(self, job_id: str) -> dict[str, Any]:
        """The job as the REST API shows it."""
        return dict(self._call("get_job", job_id).to_wire())

    def set_status(self, job_id: str, status: str, message: str | None = None) -> dict[str, Any]:
        """Change the job's status; returns the job."""
        from trainvis.models import JobStatus

        job, _change = self._call("set_status", job_id, JobStatus(status), message=message)
        return dict(job.to_wire())

    def update_job(self, job_id: str, **fields: Any) -> dict[str, Any]:
        """Edit the job's ``name``, ``model_name``, ``tags`` or ``config``; returns it."""
        from pydantic import ValidationError

        from trainvis.models import JobUpdate

        try:
            parsed = JobUpdate(**fields)
        except ValidationError as exc:
            raise ApiError(422, "validation_error", str(exc), exc.errors()) from exc
        except PublicError as exc:
            raise _translate(exc) from exc
        return dict(self._call("update_job", job_id, parsed).to_wire())

    def post_metrics(
        self, job_id: str, rows: list[dict[str, Any]], *, encoded: bytes | None = None
    ) -> dict[str, Any]:
        """Validate and store ``rows`` in one transaction (``encoded`` is ignored)."""
        from trainvis.models import parse_metric_rows

        try:
            parsed = parse_metric_rows(rows, max_rows=MAX_ROWS)
        except PublicError as exc:
            raise _translate(exc) from exc
        return dict(self._call("write_metrics", job_id, parsed).to_wire())

    def history(self, job_id: str) -> list[dict[str, Any]]:
        """Every stored row of the job, ordered by step."""
        return list(self._call("iter_rows", job_id))

    def close(self) -> None:
        """Close the store (it is reopened on the next call)."""
        with self._lock:
            store, self._store = self._store, None
        if store is not None:
            store.close()
