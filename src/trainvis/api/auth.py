"""Dashboard sign-in for servers with a read token.

Browsers cannot put a bearer token on page loads or on an ``EventSource``, so
``POST /login`` checks a token typed into a form and stores it in an
``HttpOnly``, ``SameSite=Strict`` cookie that :func:`~trainvis.api.deps.require_read`
accepts. Dashboard pages redirect to the form when the cookie is missing.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from starlette.exceptions import HTTPException

from trainvis.api.deps import COOKIE, get_settings, require_read, token_matches
from trainvis.api.responses import SECURITY_HEADERS
from trainvis.errors import Unauthorized

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


@router.post("/login", include_in_schema=False)
async def login(request: Request) -> Response:
    """Check the form's token; on success set the cookie and go back to the dashboard."""
    settings = get_settings(request)
    form = urllib.parse.parse_qs((await request.body()).decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0]
    target = _safe_next((form.get("next") or [""])[0])
    valid = [t for t in (settings.read_token, settings.api_token) if t]
    if not any(token_matches(token, expected) for expected in valid):
        if "text/html" in request.headers.get("accept", ""):  # a browser: back to the form
            back = urllib.parse.quote(target)
            return RedirectResponse(f"{PREFIX}/login?error=1&next={back}", status_code=303)
        raise Unauthorized("That token is not valid for this server")
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout", include_in_schema=False)
async def logout() -> Response:
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response
