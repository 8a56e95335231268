"""Signed sign-in sessions: what the dashboard cookie holds instead of a token.

A session value is ``v1.<privilege>.<expires>.<signature>``: the privilege of
the token that signed in (``read``, or ``write`` for a token that may also
write), the Unix second after which it is no longer valid, and an HMAC-SHA256
of the rest under a key derived from the configured tokens. The cookie never
carries a token, so a leaked cookie cannot be replayed as a bearer token and
lapses on its own.

The key is derived, not random: every replica configured with the same tokens
accepts every replica's cookies (behind a load balancer a browser may reach any
of them), and changing either token invalidates every session signed before.
Knowing the read token does not let anyone forge a session while a write token
is also configured (the key depends on both).

A session authorizes reads only; writes always need the bearer token (see
:func:`trainvis.api.deps.require_write`), so no write can be forged cross-site.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections import deque
from typing import Literal

from trainvis.config import Settings

Privilege = Literal["read", "write"]
#: How long a sign-in lasts (the cookie's ``Max-Age`` as well).
SESSION_SECONDS = 12 * 3600
VERSION = "v1"


def session_key(settings: Settings) -> bytes:
    """The signing key: an HMAC of both configured tokens (same on every replica)."""
    material = "\0".join(token or "" for token in (settings.read_token, settings.api_token))
    return hmac.new(b"trainvis session key v1", material.encode(), hashlib.sha256).digest()


def _signature(key: bytes, payload: str) -> str:
    digest = hmac.new(key, payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def issue(settings: Settings, privilege: Privilege, *, now: float | None = None) -> str:
    """A signed session value granting ``privilege`` for :data:`SESSION_SECONDS`."""
    expires = int(time.time() if now is None else now) + SESSION_SECONDS
    payload = f"{VERSION}.{privilege}.{expires}"
    return f"{payload}.{_signature(session_key(settings), payload)}"


def verify(settings: Settings, value: str | None, *, now: float | None = None) -> Privilege | None:
    """The privilege a session value grants, or None (forged, altered, expired, malformed)."""
    if not value or value.count(".") != 3:
        return None
    payload, _, signature = value.rpartition(".")
    expected = _signature(session_key(settings), payload)
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        return None
    version, privilege, expires = payload.split(".")
    if version != VERSION or privilege not in ("read", "write") or not expires.isdigit():
        return None
    if int(expires) < (time.time() if now is None else now):
        return None
    return "write" if privilege == "write" else "read"


class SignInLimiter:
    """At most ``attempts`` failed sign-ins per client in any ``window`` seconds.

    Per process (each replica counts its own); a client over the limit is
    refused every attempt, the right token included, until its oldest failure
    leaves the window. At most ``max_clients`` addresses are tracked (the
    longest idle are forgotten first), so a flood of addresses cannot grow it.
    """

    def __init__(self, attempts: int = 5, window: float = 60.0, max_clients: int = 10_000) -> None:
        self.attempts = attempts
        self.window = window
        self.max_clients = max_clients
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str, now: float) -> deque[float]:
        failures = self._failures.get(client)
        if failures is None:
            return deque()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[client]
        return failures

    def retry_after(self, client: str, *, now: float | None = None) -> int | None:
        """Seconds ``client`` must wait before trying again, or None when it may try now."""
        now = time.monotonic() if now is None else now
        failures = self._recent(client, now)
        if len(failures) < self.attempts:
            return None
        return max(1, int(failures[0] + self.window - now + 0.999))

    def succeeded(self, client: str) -> None:
        """Forget ``client``'s failures (it signed in)."""
        self._failures.pop(client, None)

    def failed(self, client: str, *, now: float | None = None) -> None:
        """Count a failed attempt of ``client``."""
        now = time.monotonic() if now is None else now
        failures = self._failures.pop(client, None) or deque()
        failures.append(now)
        self._failures[client] = failures  # re-inserted: dict order is least recently failed first
        while len(self._failures) > self.max_clients:
            del self._failures[next(iter(self._failures))]
