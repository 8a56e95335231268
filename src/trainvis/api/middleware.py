"""ASGI middleware: request body limits and the JSON media-type rule for writes."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trainvis.api.responses import error_response

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or media.endswith(b"+json")


class BodyLimitMiddleware:
    """Reject bodies over ``max_bytes`` (413) and non-JSON API writes (415).

    The declared ``Content-Length`` is checked before reading; a chunked body is
    counted as it streams and cut off at the limit.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, json_prefix: str) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.json_prefix = json_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in WRITE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        try:
            length = int(declared) if declared is not None else None
        except ValueError:
            length = None
        if length is not None and length > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        has_body = bool(length) or b"transfer-encoding" in headers
        path: str = scope.get("path", "")
        if has_body and path.startswith(self.json_prefix):
            if not _is_json(headers.get(b"content-type", b"")):
                response = error_response(
                    415,
                    "unsupported_media_type",
                    "Send the body as JSON with 'Content-Type: application/json'",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, self._counting(receive), send)

    def _counting(self, receive: Receive) -> Receive:
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, f"Request body exceeds {self.max_bytes} bytes")
            return message

        return counted

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413,
            "payload_too_large",
            f"Request body exceeds {self.max_bytes} bytes",
            {"limit_bytes": self.max_bytes},
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)
