"""Server-Sent Events: the wire encoding and the streaming ASGI response.

Encoding follows the WHATWG ``text/event-stream`` format and sse-starlette's
``ServerSentEvent``: multi-line data becomes several ``data:`` lines (a browser
joins them back with ``\\n``), and line breaks are stripped from ``event`` and
``id`` so a value can never inject a field. Every function returns ``bytes``:
an event is serialized once and the same bytes are written to every subscriber.

:class:`EventStreamResponse` races two things per connection, as sse-starlette
does: the producer (events, heartbeats) and a watcher of the client's
disconnect; whichever finishes first cancels the other. Server shutdown reaches
the producer through its :class:`EventSource` (see ``ARCHITECTURE.md``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import anyio
import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from trainvis.models import StatusChange, TrainingJob

log = logging.getLogger("trainvis.realtime")

_LINE_BREAKS = re.compile(r"\r\n|\r|\n")
#: The heartbeat: a comment line, ignored by every EventSource client.
HEARTBEAT = b": heartbeat\n\n"
#: How long the final, empty body chunk may take to leave for a stuck client.
FINAL_WRITE_TIMEOUT = 1.0

STREAM_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


class StreamEnded(Exception):
    """Raised by an :class:`EventSource` when the stream is over (deleted job, shutdown)."""


def _single_line(value: str) -> str:
    return _LINE_BREAKS.sub("", value)


def encode_event(
    data: str | bytes | None = None,
    *,
    event: str | None = None,
    id: str | int | None = None,
    retry: int | None = None,
    comment: str | None = None,
) -> bytes:
    """One SSE event as bytes, ending with the blank line that dispatches it.

    ``data`` is split on any line break (``\\r\\n``, ``\\r``, ``\\n``) into one
    ``data:`` line per line. ``event`` and ``id`` lose their line breaks.
    ``comment`` lines start with ``:``. Fields are written in the order
    comment, event, id, retry, data. An all-``None`` call returns ``b"\\n"``.
    """
    lines: list[str] = []
    if comment is not None:
        lines.extend(f": {line}" for line in _LINE_BREAKS.split(comment))
    if event is not None:
        lines.append(f"event: {_single_line(event)}")
    if id is not None:
        lines.append(f"id: {_single_line(str(id))}")
    if retry is not None:
        lines.append(f"retry: {int(retry)}")
    if data is not None:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        lines.extend(f"data: {line}" for line in _LINE_BREAKS.split(text))
    return ("\n".join(lines) + "\n\n").encode("utf-8") if lines else b"\n"


def encode_json_event(payload: bytes, *, event: str | None = None, id: int | None = None) -> bytes:
    """A one-line JSON payload (as orjson writes it) as an event; the fast path.

    orjson never emits a raw line break, so no splitting is needed; this writes
    exactly what :func:`encode_event` would.
    """
    head = b"" if event is None else b"event: " + _single_line(event).encode() + b"\n"
    if id is not None:
        head += b"id: " + str(id).encode() + b"\n"
    return head + b"data: " + payload + b"\n\n"


def retry_field(milliseconds: int) -> bytes:
    """The ``retry:`` line that sets the client's reconnection delay."""
    return encode_event(retry=milliseconds)


def metrics_event(seq: int, row: Mapping[str, Any]) -> bytes:
    """``event: metrics`` with ``id: <seq>``; data is the row as history returns it."""
    return encode_json_event(orjson.dumps(row), event="metrics", id=seq)


def status_event(change: StatusChange) -> bytes:
    """``event: status`` with ``{job_id, status, previous_status, message, timestamp}``."""
    return encode_json_event(orjson.dumps(change.to_wire()), event="status")


def alert_event(event: Mapping[str, Any]) -> bytes:
    """``event: alert``; data is the job event as ``GET …/events`` returns it (no ``id:``)."""
    return encode_json_event(orjson.dumps(event), event="alert")


def deleted_event(job_id: str) -> bytes:
    """``event: deleted`` with ``{"job_id": ...}``; the server closes the stream after it."""
    return encode_json_event(orjson.dumps({"job_id": job_id}), event="deleted")


def snapshot_event(job: TrainingJob, *, last_id: int | None = None) -> bytes:
    """The unnamed first message of every connection: ``{"type": "snapshot", "job": ...}``.

    It carries no ``id:`` so it never moves the client's ``Last-Event-ID``.
    ``last_id`` (at connection): the stream id after which this connection's rows
    follow, so a client that has seen no row yet can still resume exactly (issue 17).
    """
    body: dict[str, Any] = {"type": "snapshot", "job": job.to_wire()}
    if last_id is not None:
        body["last_id"] = last_id
    return encode_json_event(orjson.dumps(body))


class EventSource(Protocol):
    """What :class:`EventStreamResponse` pulls bytes from (a broker subscription)."""

    async def next_chunk(self, *, timeout: float) -> bytes | None:
        """The next bytes to write, or None when nothing came within ``timeout``.

        Raises:
            StreamEnded: the stream is over; nothing more will come.
        """
        ...

    def on_close(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the event loop) when the source is closed by the server."""
        ...

    def release(self) -> None:
        """Free the source (unsubscribe). Idempotent."""
        ...


class EventStreamResponse(Response):
    """An endless ``text/event-stream`` response fed by an :class:`EventSource`.

    ``prelude`` (the ``retry:`` line and the snapshot) is written first. A
    heartbeat comment goes out whenever nothing was written for ``heartbeat``
    seconds. The response ends when the source raises :class:`StreamEnded`, when
    the source is closed by the server (shutdown), or when the client
    disconnects; in every case the source is released.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        source: EventSource,
        *,
        prelude: bytes,
        heartbeat: float,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        # Like StreamingResponse: no ``body`` attribute, hence no Content-Length.
        self.status_code = 200
        self.background = None
        self.init_headers({**STREAM_HEADERS, **(headers or {})})
        self.source = source
        self.prelude = prelude
        self.heartbeat = heartbeat

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            disconnected = False
            async with anyio.create_task_group() as group:
                self.source.on_close(group.cancel_scope.cancel)

                async def watch_disconnect() -> None:
                    nonlocal disconnected
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    disconnected = True
                    group.cancel_scope.cancel()

                group.start_soon(watch_disconnect)
                await self._produce(send)
                group.cancel_scope.cancel()
            if not disconnected:
                with anyio.move_on_after(FINAL_WRITE_TIMEOUT):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self.source.release()

    async def _produce(self, send: Send) -> None:
        await send({"type": "http.response.body", "body": self.prelude, "more_body": True})
        while True:
            try:
                chunk = await self.source.next_chunk(timeout=self.heartbeat)
            except StreamEnded:
                return
            except Exception:  # a store failure mid-stream: end it, the client resumes
                log.exception("SSE stream failed; closing it (the client will resume)")
                return
            body = HEARTBEAT if chunk is None else chunk
            await send({"type": "http.response.body", "body": body, "more_body": True})
