"""FastAPI dependencies: the store, broker and settings of the running app, auth."""

from __future__ import annotations

import hmac

from fastapi import Request

from trainvis.api.session import verify
from trainvis.config import Settings
from trainvis.errors import JobNotFound, Unauthorized
from trainvis.realtime.broker import Broker
from trainvis.store.base import MetricStore


def get_store(request: Request) -> MetricStore:
    """The app's store. A ``{job_id}`` in the path holding U+0000 is a 404 here:
    no job can have it (PostgreSQL text cannot even be queried with it)."""
    job_id = request.path_params.get("job_id")
    if job_id is not None and "\x00" in job_id:
        raise JobNotFound(job_id)
    store: MetricStore = request.app.state.store
    return store


def get_broker(request: Request) -> Broker:
    broker: Broker = request.app.state.broker
    return broker


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    return token.strip()


COOKIE = "trainvis_session"


def token_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a presented token with the configured one."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


_matches = token_matches


def require_write(request: Request) -> None:
    """A write needs ``Authorization: Bearer <token>``: the write token when one is
    configured, else the read token when one is (issue 13: a read token alone also
    protects writes). A sign-in cookie never authorizes a write."""
    settings = get_settings(request)
    token = settings.api_token or settings.read_token
    if token and not _matches(_bearer(request), token):
        raise Unauthorized("A valid 'Authorization: Bearer <token>' header is required to write")


def require_read(request: Request) -> None:
    """With a read token configured, reads need it (the write token also reads), as a
    bearer token or as a signed sign-in session in the cookie (see ``api.session``)."""
    settings = get_settings(request)
    if not settings.read_token:
        return
    given = _bearer(request)
    if given is None and verify(settings, request.cookies.get(COOKIE)) is not None:
        return
    if _matches(given, settings.read_token):
        return
    if settings.api_token and _matches(given, settings.api_token):
        return
    raise Unauthorized("A valid token is required to read")
