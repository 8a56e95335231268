"""ASGI middleware: request body limits, the JSON media-type rule for writes,
the cap on concurrent history streams, and the security headers every response
carries."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import re
from collections.abc import Callable
from urllib.parse import parse_qs

from starlette.datastructures import MutableHeaders
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
    counted as it streams and cut off at the limit. A body that pauses longer
    than ``body_timeout`` or is not complete ``body_deadline`` seconds after the
    first read is cut off with 408 (a steady trickle is no way around it).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        json_prefix: str,
        body_timeout: float = 30.0,
        body_deadline: float = 120.0,
        form_paths: frozenset[str] = frozenset(),
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.json_prefix = json_prefix
        self.body_timeout = body_timeout
        self.body_deadline = body_deadline
        self.form_paths = form_paths

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
        if has_body and path.startswith(self.json_prefix) and path not in self.form_paths:
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
        deadline: float | None = None  # set at the first read
        done = False

        async def counted() -> Message:
            nonlocal received, deadline, done
            if done:  # the body is in: a later read waits for a disconnect
                return await receive()
            now = asyncio.get_running_loop().time()
            if deadline is None:
                deadline = now + self.body_deadline
            left = deadline - now
            try:  # a client that stalls mid-body (slow loris) or trickles it is cut off
                message = await asyncio.wait_for(receive(), min(self.body_timeout, left))
            except TimeoutError:
                if left <= self.body_timeout:
                    text = f"The request body took over {self.body_deadline:g} s"
                    raise HTTPException(408, f"{text}; send it promptly") from None
                raise HTTPException(408, "The request body stalled; send it promptly") from None
            if message["type"] == "http.request":
                done = not message.get("more_body", False)
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


class StreamingReadsMiddleware:
    """Bound what concurrent history reads cost, and give memory back after.

    - A full-history read (a stream: neither paged with a ``limit`` of at most
      ``page_rows`` nor downsampled) takes one of ``max_streams`` slots. Beyond
      them it waits up to ``wait`` seconds for one (first come, first served),
      then is refused with 503, ``Retry-After`` and ``Connection: close``, in
      the contract's envelope.
    - Downsampled (``max_points``) and paged reads are never refused, but at
      most ``max_streams`` of each kind run at once and the others wait their
      turn: a downsampled read is built in memory before it is sent, and the
      work is bound by one core (the GIL), where a crowd of threads only
      thrashes.

    A slot is held until the response is over or the client is gone (a client
    that stops reading is cut off after the server's ``send_timeout``). When
    the last history read of a burst ends, freed heap memory is handed back
    to the operating system (``malloc_trim`` where glibc provides it).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        path: re.Pattern[str],
        max_streams: int,
        wait: float = 10.0,
        page_rows: int = 10_000,
    ) -> None:
        self.app = app
        self.path = path
        self.max_streams = max_streams
        self.wait = wait
        self.page_rows = page_rows
        self.in_flight = 0
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._trim = _malloc_trim()
        self._trimming = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in ("GET", "HEAD")
            or not self.path.fullmatch(scope.get("path", ""))
        ):
            await self.app(scope, receive, send)
            return
        kind = self._kind(scope.get("query_string", b""))
        slots = self._slots.get(kind)
        if slots is None:
            slots = self._slots[kind] = asyncio.Semaphore(self.max_streams)
        self.in_flight += 1
        try:
            try:
                await asyncio.wait_for(slots.acquire(), self.wait if kind == "stream" else None)
            except TimeoutError:
                await self._refuse(scope, receive, send)
                return
            try:
                await self.app(scope, receive, send)
            finally:
                slots.release()
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self._after_burst()

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            503,
            "service_unavailable",
            "Too many history streams at once; try again shortly (or read it in pages)",
            {"limit": self.max_streams},
            headers={"Retry-After": "1", "Connection": "close"},
        )
        await response(scope, receive, send)

    def _kind(self, query_string: bytes) -> str:
        query = parse_qs(query_string.decode("latin-1"))
        if "max_points" in query:
            return "sampled"
        limit = query.get("limit", [""])[-1].strip()
        # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
        small = limit.isascii() and limit.isdigit() and len(limit) < 20
        return "page" if small and int(limit) <= self.page_rows else "stream"

    def _after_burst(self) -> None:
        """Half a second after the last history read ends, hand freed heap back
        to the OS (off the event loop; skipped if reads resumed meanwhile)."""
        if self._trim is None or self._trimming:
            return
        self._trimming = True
        trim = self._trim
        loop = asyncio.get_running_loop()

        def done(_: object) -> None:
            self._trimming = False

        def fire() -> None:
            if self.in_flight:
                self._trimming = False
                return
            loop.run_in_executor(None, trim).add_done_callback(done)

        loop.call_later(0.5, fire)


def _malloc_trim() -> Callable[[], None] | None:
    """glibc's ``malloc_trim(0)`` (returns free heap pages to the OS), or None."""
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int

    def release() -> None:
        trim(0)

    return release


#: Sent on every response; the dashboard adds its Content-Security-Policy.
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
)


class SecurityHeadersMiddleware:
    """Add ``SECURITY_HEADERS``, and ``Cache-Control: no-store`` to API responses
    that set no caching policy of their own (metrics change every second)."""

    def __init__(self, app: ASGIApp, *, api_prefix: str) -> None:
        self.app = app
        self.api_prefix = api_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        is_api = str(scope.get("path", "")).startswith(self.api_prefix)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS:
                    if name.decode() not in headers:
                        headers.raw.append((name, value))
                if is_api and "cache-control" not in headers:
                    headers.raw.append((b"cache-control", b"no-store"))
            await send(message)

        await self.app(scope, receive, with_headers)
