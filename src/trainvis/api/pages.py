"""Pages around the dashboard: root aliases, the HTML 404 page and offline ``/docs``.

- ``/dashboard``, ``/dashboard/job/{id}``, ``/dashboard/compare`` (anything under
  ``/dashboard``) redirect to the same path under the API's base path, query
  string kept, so a shortened link works.
- A browser that asks for a page that does not exist (an unknown job's page,
  any unknown path under the dashboard or outside the API) gets an HTML 404
  page with a link back to the dashboard; API clients keep the JSON envelope
  (:func:`not_found_page_for` decides, the error handlers call it).
- ``/docs`` is FastAPI's Swagger UI page with the vendored swagger-ui-dist
  assets, so it renders without network access. Its one inline script is
  allowed by hash in the page's Content-Security-Policy (no ``unsafe-inline``).
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import RedirectResponse

from trainvis.api.dashboard import Format, wants_html
from trainvis.api.responses import CSP, SECURITY_HEADERS

API_PREFIX = "/api/v1/visualization"
DASHBOARD = f"{API_PREFIX}/dashboard"
NOT_FOUND_PAGE = Path(__file__).resolve().parent.parent / "dashboard" / "404.html"
SWAGGER = f"{API_PREFIX}/static/vendor/swagger-ui"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)
router = APIRouter(include_in_schema=False)


def _alias_target(request: Request, rest: str = "") -> RedirectResponse:
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(f"{DASHBOARD}{rest}{query}", status_code=307)


@router.get("/dashboard")
async def dashboard_alias(request: Request) -> RedirectResponse:
    """``/dashboard`` → the dashboard under the API's base path."""
    return _alias_target(request)


@router.get("/dashboard/{rest:path}")
async def dashboard_path_alias(rest: str, request: Request) -> RedirectResponse:
    """``/dashboard/<rest>`` (a job page, compare, …) → the same page under the base path."""
    return _alias_target(request, f"/{rest}")


def _is_page_path(path: str) -> bool:
    """Dashboard pages and anything outside the API (never the API's JSON routes)."""
    if path == DASHBOARD or path.startswith(f"{DASHBOARD}/"):
        return True
    return not path.startswith(f"{API_PREFIX}/") and path not in ("/docs", "/openapi.json")


def not_found_page_for(request: Request) -> Response | None:
    """The HTML 404 page when a browser asked for a page; None for API clients.

    A browser is a ``GET``/``HEAD`` whose ``Accept`` prefers ``text/html`` (or
    ``?format=html``); see :func:`trainvis.api.dashboard.wants_html`.
    """
    if request.method not in ("GET", "HEAD") or not _is_page_path(request.url.path):
        return None
    fmt = request.query_params.get("format")
    chosen: Format = "html" if fmt == "html" else "json" if fmt == "json" else None
    if not wants_html(request.headers.get("accept"), chosen):
        return None
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-store", "Vary": "Accept"}
    return Response(
        NOT_FOUND_PAGE.read_bytes(),
        status_code=404,
        media_type="text/html; charset=utf-8",
        headers=headers,
    )


def _script_hashes(html: str) -> str:
    """CSP source expressions (``'sha256-…'``) for every inline script of ``html``."""
    return " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in _INLINE_SCRIPT.findall(html)
    )


def docs_page(openapi_url: str, title: str) -> Response:
    """Swagger UI on the vendored assets, its inline start-up script allowed by hash."""
    page = get_swagger_ui_html(
        openapi_url=openapi_url,
        title=f"{title} — API",
        swagger_js_url=f"{SWAGGER}/swagger-ui-bundle.js",
        swagger_css_url=f"{SWAGGER}/swagger-ui.css",
        swagger_favicon_url=f"{API_PREFIX}/static/favicon.svg",
    )
    html = bytes(page.body).decode()
    csp = CSP.replace("script-src 'self'", f"script-src 'self' {_script_hashes(html)}")
    headers = {**SECURITY_HEADERS, "Content-Security-Policy": csp, "Cache-Control": "no-cache"}
    return Response(html, media_type="text/html; charset=utf-8", headers=headers)
