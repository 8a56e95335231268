"""Exception handlers: every failure leaves in the contract's envelope.

A :class:`~trainvis.errors.PublicError` renders its own code and status; request
validation errors become 422 (or 400 for unparseable JSON) naming the field;
anything unexpected is an opaque 500 whose detail goes to the log only. A
browser asking for a page that does not exist gets the HTML 404 page instead
(:func:`trainvis.api.pages.not_found_page_for`).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from trainvis.api.pages import not_found_page_for
from trainvis.api.responses import error_response
from trainvis.errors import PublicError

log = logging.getLogger("trainvis.api")

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    503: "service_unavailable",
}


def validation_details(errors: list[Any], prefix: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Pydantic errors as ``[{"loc", "msg", "type"}]`` (JSON-safe)."""
    return [
        {
            "loc": [
                *prefix,
                *(part if isinstance(part, int | str) else str(part) for part in e["loc"]),
            ],
            "msg": str(e.get("msg", "invalid value")),
            "type": str(e.get("type", "value_error")),
        }
        for e in errors
    ]


def _summary(details: list[dict[str, Any]]) -> str:
    first = details[0]
    where = ".".join(str(part) for part in first["loc"][1:]) or str(first["loc"][0])
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return f"{where}: {first['msg']}{more}"


async def _public(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PublicError)
    if exc.http_status == 404 and (page := not_found_page_for(request)) is not None:
        return page  # a browser asked for an unknown job's page
    headers = dict(exc.headers)
    if exc.http_status == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    return error_response(exc.http_status, exc.code, exc.message, exc.details, headers or None)


async def _request_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return error_response(400, "malformed_json", "The request body is not valid JSON")
    details = validation_details(errors)
    return error_response(422, "validation_error", _summary(details), details)


async def _pydantic(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ValidationError)
    details = validation_details(list(exc.errors()), ("body",))
    return error_response(422, "validation_error", _summary(details), details)


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    if status == 404 and (page := not_found_page_for(request)) is not None:
        return page  # a browser asked for a page that does not exist
    code = HTTP_CODES.get(status, "error")
    message = str(exc.detail) if exc.detail else code
    if status == 400 and "parsing the body" in message:
        code, message = "malformed_json", "The request body is not valid JSON"
    headers = dict(getattr(exc, "headers", None) or {})
    if status in (408, 413):  # the rest of the body is unread: do not keep the connection
        headers["Connection"] = "close"
    return error_response(status, code, message, headers=headers or None)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "Internal server error")


def install_error_handlers(app: FastAPI) -> None:
    """Register every handler on ``app``."""
    app.add_exception_handler(PublicError, _public)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(ValidationError, _pydantic)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)
