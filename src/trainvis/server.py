"""Running the app under uvicorn, with the protections a shared cluster needs.

uvicorn closes idle keep-alive connections, but a connection that never sends
a complete request head (a slow-loris client) is kept forever. The protocol
below gives every request ``header_timeout`` seconds from its first byte (or
from the connection's opening) to finish its headers; the body is guarded by
``BodyLimitMiddleware``'s timeouts. A client that stops reading a response
(the transport's buffer stays full and does not shrink for ``send_timeout``
seconds) is cut off: the connection is aborted, which the app sees as a
disconnect, so a streamed history stops and frees what it holds.

Before serving, :func:`run` moves every object that exists by then (modules,
the app, its routes and schemas: some 80,000 objects) to the garbage
collector's permanent generation (``gc.freeze``). They live as long as the
process anyway, and a full collection no longer walks them: a chart request
allocates thousands of small dicts, so every few requests one of them paid a
full collection of about 30 ms on the bench machine.
"""

from __future__ import annotations

import gc
import ipaddress
import logging
import socket
from asyncio import TimerHandle, Transport
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from trainvis.config import Settings

log = logging.getLogger("trainvis")


def guarded_protocol(
    header_timeout: float, send_timeout: float | None = None
) -> type[HttpToolsProtocol]:
    """An ``HttpToolsProtocol`` that drops connections slow to send request headers
    and, with ``send_timeout``, connections whose client stopped reading."""

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _header_timer: TimerHandle | None = None
        _send_timer: TimerHandle | None = None
        _send_backlog = 0

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(header_timeout, self._expire)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _expire(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def pause_writing(self) -> None:
            super().pause_writing()
            if send_timeout is not None and self._send_timer is None:
                self._send_backlog = self.transport.get_write_buffer_size()
                self._send_timer = self.loop.call_later(send_timeout, self._send_stalled)

        def resume_writing(self) -> None:
            self._disarm_send()
            super().resume_writing()

        def _disarm_send(self) -> None:
            if self._send_timer is not None:
                self._send_timer.cancel()
                self._send_timer = None

        def _send_stalled(self) -> None:
            """``send_timeout`` s with writing paused: cut off unless the client read."""
            self._send_timer = None
            backlog = self.transport.get_write_buffer_size()
            if send_timeout is not None and 0 < backlog < self._send_backlog:
                self._send_backlog = backlog  # slow but reading: wait again
                self._send_timer = self.loop.call_later(send_timeout, self._send_stalled)
                return
            if backlog:
                log.warning(
                    "dropping a connection from %s: it read nothing for %g s",
                    self.client[0] if self.client else "?",
                    send_timeout,
                )
                self.transport.abort()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            self._disarm_send()
            super().connection_lost(exc)

    return GuardedHttpToolsProtocol


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on the loopback interface."""
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(
                ipaddress.ip_address(info[4][0]).is_loopback
                for info in socket.getaddrinfo(host, None)
            )
        except (OSError, ValueError):
            return False


def insecure_reason(settings: Settings) -> str | None:
    """Why serving with ``settings`` would expose an open write API, or None.

    A read token alone also protects writes (issue 13), so it is enough.
    """
    if settings.api_token or settings.read_token or settings.insecure:
        return None
    if is_loopback(settings.host):
        return None
    return (
        f"refusing to listen on {settings.host!r} without a write token: anyone who can "
        "reach the port could write and delete jobs. Set TRAINVIS_API_TOKEN (or "
        "--api-token), or pass --insecure if the network is trusted."
    )


def run(app: Any, settings: Settings, *, access_log: bool = False) -> None:
    """Serve ``app`` until interrupted."""
    gc.collect()  # what is garbage already is freed, not frozen
    gc.freeze()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=access_log,
        http=guarded_protocol(settings.header_timeout, settings.send_timeout),
        timeout_keep_alive=30,
        timeout_graceful_shutdown=5,
    )
