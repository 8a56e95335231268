"""Response helpers: strict-JSON bodies (orjson) and the error envelope."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse

#: The pages' Content-Security-Policy: nothing from another origin, no inline script.
CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class JSONBody(JSONResponse):
    """A JSON response serialized with orjson (non-finite floats become null)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """The contract's error envelope; every error path builds it here."""
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return {"error": body}


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> JSONBody:
    return JSONBody(error_body(code, message, details), status_code=status, headers=headers)
