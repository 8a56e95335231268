"""Errors a client may see. Each carries its HTTP status and a stable code.

Domain code (store, charts, realtime) raises these; one handler in ``api.app``
renders the contract's envelope ``{"error": {"code", "message", "details"}}``.
Anything that is not a :class:`PublicError` becomes an opaque 500.
"""

from __future__ import annotations

from typing import Any


class PublicError(Exception):
    """An error whose message is safe to show to the client."""

    http_status = 500
    code = "internal_error"

    def __init__(
        self, message: str, *, details: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}


class InvalidArgument(PublicError):
    """The request is well-formed but a value is not acceptable (422)."""

    http_status = 422
    code = "validation_error"


class MalformedRequest(PublicError):
    """The body is not parseable JSON (400)."""

    http_status = 400
    code = "malformed_json"


class UnsupportedMediaType(PublicError):
    http_status = 415
    code = "unsupported_media_type"


class PayloadTooLarge(PublicError):
    http_status = 413
    code = "payload_too_large"


class NotFound(PublicError):
    http_status = 404
    code = "not_found"


class JobNotFound(NotFound):
    code = "job_not_found"

    def __init__(self, job_id: str) -> None:
        super().__init__(f"Training job {job_id!r} does not exist", details={"job_id": job_id})
        self.job_id = job_id


class Conflict(PublicError):
    http_status = 409
    code = "conflict"


class JobExists(Conflict):
    code = "job_exists"

    def __init__(self, job_id: str) -> None:
        super().__init__(f"Training job {job_id!r} already exists", details={"job_id": job_id})


class InvalidStatusTransition(Conflict):
    code = "invalid_status_transition"


class Unauthorized(PublicError):
    http_status = 401
    code = "unauthorized"


class Forbidden(PublicError):
    """Refused whatever the credentials (e.g. a cross-site request; 403)."""

    http_status = 403
    code = "forbidden"


class TooManyRequests(PublicError):
    """Rate limited; ``Retry-After`` says when to try again (429)."""

    http_status = 429
    code = "too_many_requests"


class ServiceUnavailable(PublicError):
    http_status = 503
    code = "service_unavailable"


class InsufficientStorage(PublicError):
    """The database has no space left for a write; nothing of it was stored (507)."""

    http_status = 507
    code = "insufficient_storage"


class StoreReadOnly(ServiceUnavailable):
    """The database cannot be written (read-only file, filesystem or database);
    reads keep working (503)."""

    code = "store_read_only"


#: The messages of the two storage faults, the same on every store.
DISK_FULL = (
    "The database's disk is full: nothing of this request was stored; free space, then retry"
)
READ_ONLY = (
    "The database is read-only: writes are refused until it is writable again (reads keep working)"
)
