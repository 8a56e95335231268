"""Dashboard sign-in for servers with a read token.

Browsers cannot put a bearer token on page loads or on an ``EventSource``, so
``POST /login`` checks a token typed into a form and answers with a signed,
expiring session (never the token itself, see :mod:`trainvis.api.session`) in
an ``HttpOnly``, ``SameSite=Strict`` cookie that
:func:`~trainvis.api.deps.require_read` accepts. Dashboard pages redirect to the
form when the cookie is missing. Failed sign-ins are rate limited per client
address (429 with ``Retry-After``); ``POST /logout`` must come from a page of
this server (``Origin``/``Referer`` check against cross-site request forgery).
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from starlette.exceptions import HTTPException

from trainvis.api.deps import COOKIE, get_settings, require_read, token_matches
from trainvis.api.responses import SECURITY_HEADERS
from trainvis.api.session import SESSION_SECONDS, Privilege, SignInLimiter, issue
from trainvis.config import Settings
from trainvis.errors import Forbidden, TooManyRequests, Unauthorized

PREFIX = "/api/v1/visualization"
LOGIN_PAGE = Path(__file__).resolve().parent.parent / "dashboard" / "login.html"
router = APIRouter(tags=["auth"])


def _safe_next(raw: str | None) -> str:
    """Only redirect to a path of this server (never another origin)."""
    if raw and raw.startswith(PREFIX) and not raw.startswith("//") and "\\" not in raw:
        return raw
    return f"{PREFIX}/dashboard"


def require_read_page(request: Request) -> None:
    """:func:`require_read`, but a browser asking for a page is sent to the sign-in form."""
    try:
        require_read(request)
    except Unauthorized:
        if "text/html" not in request.headers.get("accept", ""):
            raise
        target = urllib.parse.quote(
            request.url.path + (f"?{request.url.query}" if request.url.query else "")
        )
        raise HTTPException(
            303, "Sign in first", headers={"Location": f"{PREFIX}/login?next={target}"}
        ) from None


@router.get("/login", include_in_schema=False)
async def login_page() -> Response:
    return Response(
        LOGIN_PAGE.read_bytes(),
        media_type="text/html; charset=utf-8",
        headers={**SECURITY_HEADERS, "Cache-Control": "no-store"},
    )


def _limiter(request: Request) -> SignInLimiter:
    """The app's sign-in limiter (one per app, created on first use)."""
    limiter: SignInLimiter | None = getattr(request.app.state, "sign_in_limiter", None)
    if limiter is None:
        limiter = request.app.state.sign_in_limiter = SignInLimiter()
    return limiter


def _privilege(settings: Settings, token: str) -> Privilege | None:
    """What ``token`` may do on this server: ``write`` for a token that also writes."""
    if settings.api_token and token_matches(token, settings.api_token):
        return "write"
    if settings.read_token and token_matches(token, settings.read_token):
        return "read" if settings.api_token else "write"
    return None


def _foreign_origin(request: Request) -> bool | None:
    """Whether the request came from a page of another origin (None: it does not say).

    ``Origin`` (or, without it, ``Referer``) must name this server's host as the
    request addressed it (``Host``, or ``X-Forwarded-Host`` from a proxy), or an
    origin listed in ``cors_origins``.
    """
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return None
    parts = urllib.parse.urlsplit(source)
    origin = f"{parts.scheme}://{parts.netloc}"
    hosts = (request.headers.get("host"), request.headers.get("x-forwarded-host"))
    if parts.netloc and parts.netloc in hosts:
        return False
    return origin not in get_settings(request).cors_origins


@router.post("/login", include_in_schema=False)
async def login(request: Request) -> Response:
    """Check the form's token; on success set the session cookie and go back to the page."""
    settings = get_settings(request)
    if _foreign_origin(request):
        raise Forbidden("Sign in from this server's own sign-in page")
    form = urllib.parse.parse_qs((await request.body()).decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0]
    target = _safe_next((form.get("next") or [""])[0])
    browser = "text/html" in request.headers.get("accept", "")
    limiter, client = _limiter(request), request.client.host if request.client else ""
    wait = limiter.retry_after(client)
    if wait is not None:
        if browser:  # back to the form, which says to wait
            back = urllib.parse.quote(target)
            return RedirectResponse(
                f"{PREFIX}/login?error=limited&next={back}",
                status_code=303,
                headers={"Retry-After": str(wait)},
            )
        raise TooManyRequests(
            f"Too many failed sign-in attempts; try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )
    privilege = _privilege(settings, token)
    if privilege is None:
        limiter.failed(client)
        if browser:  # a browser: back to the form
            back = urllib.parse.quote(target)
            return RedirectResponse(f"{PREFIX}/login?error=1&next={back}", status_code=303)
        raise Unauthorized("That token is not valid for this server")
    limiter.succeeded(client)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        issue(settings, privilege),
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout", include_in_schema=False)
async def logout(request: Request) -> Response:
    """End the sign-in; only a request from a page of this server may (CSRF check)."""
    if _foreign_origin(request) is not False:
        raise Forbidden("Sign out from a page of this server (Origin or Referer required)")
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response
