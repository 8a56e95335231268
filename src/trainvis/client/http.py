"""A thin ``httpx`` wrapper around the REST API that raises typed errors.

Every method is synchronous and made for one thread at a time (the SDK's
sender thread owns one :class:`ApiClient`; ``trainvis sync`` another). One
keep-alive connection pool is reused for every request.

Errors split by what a caller should do next:

- :class:`ServerUnavailable`: connection refused or reset, timeouts, 5xx and
  429. Retry later (the SDK backs off, then spools).
- :class:`ApiError`: any other non-2xx answer (the request itself is wrong,
  or the job is gone). Retrying the same request gives the same answer.
"""

from __future__ import annotations

import json
import math
from typing import Any

import httpx

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson is a dependency, but the SDK does not need it
    _orjson = None  # type: ignore[assignment]

#: Base path of the REST API under the server root.
API_PREFIX = "/api/v1/visualization"
USER_AGENT = "trainvis-sdk"


class TrainvisError(Exception):
    """Base class of every error the SDK raises."""


class ServerUnavailable(TrainvisError):
    """The server could not be reached or answered 5xx/429: worth retrying."""


class ApiError(TrainvisError):
    """The server rejected a request (4xx other than 429).

    Attributes:
        status_code: the HTTP status.
        code: the contract's error code (``job_not_found``, ``validation_error``, …).
        message: the server's human-readable message.
        details: the error's ``details`` (the failing fields for a 422), or None.
    """

    def __init__(self, status_code: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{status_code} {code}: {message}")
        self.status_code = status_code
        self.code = code
        self.message = message
        self.details = details


def encode_json(payload: Any) -> bytes:
    """JSON bytes; NaN and ±Infinity use Python's tokens (the server accepts them)."""
    return json.dumps(payload, separators=(",", ":"), allow_nan=True).encode()


def _nonfinite_as_strings(values: dict[str, Any]) -> None:
    for key, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            values[key] = "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    _nonfinite_as_strings(item)


def encode_rows(rows: list[dict[str, Any]]) -> bytes:
    """Metric rows as JSON, fast: ``orjson`` when installed, else :func:`encode_json`.

    orjson would write NaN as ``null`` (a lost value), so rows holding a
    non-finite number get the contract's strings ``"NaN"``/``"Infinity"``/
    ``"-Infinity"`` first (in place). One ``fsum`` per row finds them.
    """
    if _orjson is None:
        return encode_json(rows)
    fsum, isfinite = math.fsum, math.isfinite
    for row in rows:
        try:
            if isfinite(fsum(row.values())):
                continue
        except (TypeError, OverflowError, ValueError):  # gpus list, huge or ±inf: look closer
            pass
        _nonfinite_as_strings(row)
    try:
        encoded: bytes = _orjson.dumps(rows)
    except TypeError:  # e.g. an int beyond 64 bits
        return encode_json(rows)
    return encoded


def _error_from(response: httpx.Response) -> TrainvisError:
    if response.status_code >= 500 or response.status_code == 429:
        return ServerUnavailable(f"{response.status_code} from {response.request.url}")
    code, message, details = f"http_{response.status_code}", response.reason_phrase, None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        code = str(error.get("code", code))
        message = str(error.get("message", message))
        details = error.get("details")
    return ApiError(response.status_code, code, message, details)


class ApiClient:
    """Calls of the REST API the SDK needs, on one keep-alive ``httpx.Client``.

    Args:
        url: the server root, e.g. ``http://localhost:8000`` (a trailing
            ``/api/v1/visualization`` is accepted too).
        token: sent as ``Authorization: Bearer <token>`` when set.
        timeout: seconds for each request (connect, read, write).
        transport: an ``httpx`` transport (tests).
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        root = url.rstrip("/")
        if root.endswith(API_PREFIX):
            root = root[: -len(API_PREFIX)]
        self.url = root
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=root + API_PREFIX,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            transport=transport,
        )

    @property
    def target(self) -> str:
        """Where requests go, for messages."""
        return self.url

    def _request(self, method: str, path: str, *, content: bytes | None = None) -> Any:
        headers = {"Content-Type": "application/json"} if content is not None else None
        try:
            response = self._http.request(method, path, content=content, headers=headers)
        except (httpx.TransportError, httpx.DecodingError) as exc:
            raise ServerUnavailable(f"{type(exc).__name__}: {exc} ({self.url})") from exc
        if response.status_code >= 400:
            raise _error_from(response)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json().get("data")
        except ValueError as exc:  # a proxy's HTML page, say: not our server
            raise ServerUnavailable(f"non-JSON answer from {self.url}{path}") from exc

    def create_job(self, spec: dict[str, Any]) -> dict[str, Any]:
        """``POST /training/jobs``; returns the job. Raises ApiError (409 ``job_exists``)."""
        job: dict[str, Any] = self._request("POST", "/training/jobs", content=encode_json(spec))
        return job

    def get_job(self, job_id: str) -> dict[str, Any]:
        """``GET /training/jobs/{id}``. Raises ApiError (404 ``job_not_found``)."""
        job: dict[str, Any] = self._request("GET", f"/training/jobs/{job_id}")
        return job

    def set_status(self, job_id: str, status: str, message: str | None = None) -> dict[str, Any]:
        """``PUT /training/jobs/{id}/status``; returns the job."""
        body = {"status": status} if message is None else {"status": status, "message": message}
        job: dict[str, Any] = self._request(
            "PUT", f"/training/jobs/{job_id}/status", content=encode_json(body)
        )
        return job

    def update_job(self, job_id: str, **fields: Any) -> dict[str, Any]:
        """``PATCH /training/jobs/{id}`` with any of ``name``, ``model_name``, ``tags``,
        ``config`` (replaces the stored config); returns the job.

        Raises:
            ApiError: 404 ``job_not_found``, 422 for a bad value.
        """
        job: dict[str, Any] = self._request(
            "PATCH", f"/training/jobs/{job_id}", content=encode_json(fields)
        )
        return job

    def post_metrics(
        self, job_id: str, rows: list[dict[str, Any]], *, encoded: bytes | None = None
    ) -> dict[str, Any]:
        """``POST /training/{id}/metrics`` with ``rows`` (``encoded``: the same rows as JSON).

        Returns the response's ``data`` (``accepted``, ``points``, ``last_step``).
        """
        content = encoded if encoded is not None else encode_rows(rows)
        result: dict[str, Any] = self._request(
            "POST", f"/training/{job_id}/metrics", content=content
        )
        return result

    def history(self, job_id: str) -> list[dict[str, Any]]:
        """Every stored row of the job, ordered by step (non-finite values as strings)."""
        rows: list[dict[str, Any]] = self._request("GET", f"/training/{job_id}/metrics/history")
        return rows

    def list_jobs(self, **filters: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """``GET /training/jobs`` with ``filters`` (``status``, ``tag``, ``q``, ``limit``,
        ``offset``; None values left out); returns the jobs and the list's ``meta``."""
        body = self._get_body("/training/jobs", filters)
        return list(body.get("data") or []), dict(body.get("meta") or {})

    def list_events(self, job_id: str, *, limit: int = 100) -> list[dict[str, Any]]:
        """``GET /training/{id}/events``: the job's newest ``limit`` events, newest first."""
        body = self._get_body(f"/training/{job_id}/events", {"limit": limit})
        return list(body.get("data") or [])

    def _get_body(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        """The whole JSON body of a GET (``data`` and ``meta``); errors as in ``_request``."""
        query = {key: value for key, value in params.items() if value is not None}
        try:
            response = self._http.get(path, params=query)
        except (httpx.TransportError, httpx.DecodingError) as exc:
            raise ServerUnavailable(f"{type(exc).__name__}: {exc} ({self.url})") from exc
        if response.status_code >= 400:
            raise _error_from(response)
        try:
            body = response.json()
        except ValueError as exc:
            raise ServerUnavailable(f"non-JSON answer from {self.url}{path}") from exc
        if not isinstance(body, dict):
            raise ServerUnavailable(f"unexpected answer from {self.url}{path}")
        return body

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()
