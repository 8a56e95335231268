"""Running the app under uvicorn, with the protections a shared cluster needs.

uvicorn closes idle keep-alive connections, but a connection that never sends
a complete request head (a slow-loris client) is kept forever. The protocol
below gives every request ``header_timeout`` seconds from its first byte (or
from the connection's opening) to finish its headers; the body is guarded by
``BodyLimitMiddleware``'s per-read timeout.
"""

from __future__ import annotations

import ipaddress
import socket
from asyncio import TimerHandle, Transport
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from trainvis.config import Settings


def guarded_protocol(header_timeout: float) -> type[HttpToolsProtocol]:
    """An ``HttpToolsProtocol`` that drops connections slow to send request headers."""

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _header_timer: TimerHandle | None = None

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

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
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
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=access_log,
        http=guarded_protocol(settings.header_timeout),
        timeout_keep_alive=30,
        timeout_graceful_shutdown=5,
    )
