"""Root aliases, the HTML 404 page for browsers and the offline ``/docs`` (issue 16)."""

from __future__ import annotations

import base64
import hashlib
import re

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.conftest import API

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("/dashboard", f"{API}/dashboard"),
        ("/dashboard?status=running&q=a%20b", f"{API}/dashboard?status=running&q=a%20b"),
        ("/dashboard/job/abc123", f"{API}/dashboard/job/abc123"),
        ("/dashboard/job/abc123?x=epoch", f"{API}/dashboard/job/abc123?x=epoch"),
        ("/dashboard/compare?jobs=a,b&m=x", f"{API}/dashboard/compare?jobs=a,b&m=x"),
    ],
)
def test_root_dashboard_aliases_redirect_keeping_the_query(
    client: TestClient, path: str, target: str
) -> None:
    response = client.get(path, follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == target


def test_alias_lands_on_the_job_page(client: TestClient) -> None:
    job_id = client.post(f"{API}/training/jobs", json={"name": "a"}).json()["data"]["id"]
    response = client.get(f"/dashboard/job/{job_id}", headers={"Accept": BROWSER_ACCEPT})
    assert response.status_code == 200
    assert 'data-page="job"' in response.text


def _assert_not_found_page(response: httpx.Response) -> None:
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert 'data-page="not-found"' in response.text
    assert f'href="{API}/dashboard"' in response.text
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "unsafe-inline" not in csp


@pytest.mark.parametrize(
    "path",
    [
        f"{API}/dashboard/job/no-such-job",
        f"{API}/dashboard/nope",
        f"{API}/dashboard/job/x/y",
        "/nope",
    ],
)
def test_browsers_get_an_html_404_page(client: TestClient, path: str) -> None:
    _assert_not_found_page(client.get(path, headers={"Accept": BROWSER_ACCEPT}))


def test_format_html_gets_the_404_page_even_without_a_browser_accept(client: TestClient) -> None:
    response = client.get(f"{API}/dashboard/job/nope?format=html")
    _assert_not_found_page(response)


@pytest.mark.parametrize(
    ("path", "code"),
    [
        (f"{API}/dashboard/job/no-such-job", "job_not_found"),
        (f"{API}/dashboard/nope", "not_found"),
        ("/nope", "not_found"),
    ],
)
def test_api_clients_keep_the_json_envelope(client: TestClient, path: str, code: str) -> None:
    for headers in ({"Accept": "application/json"}, {}, {"Accept": "*/*"}):
        response = client.get(path, headers=headers)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == code


def test_api_routes_never_answer_with_the_page(client: TestClient) -> None:
    """Even a browser asking an API route for an unknown job gets JSON (fetch callers parse it)."""
    for path in ("/training/jobs/nope", "/training/nope/loss", "/static/nope.js", "/nope"):
        response = client.get(API + path, headers={"Accept": BROWSER_ACCEPT})
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("application/json"), path


def test_docs_page_uses_the_vendored_swagger_ui(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    html = response.text
    assert "cdn." not in html and "https://" not in html
    assert f"{API}/static/vendor/swagger-ui/swagger-ui-bundle.js" in html
    assert f"{API}/static/vendor/swagger-ui/swagger-ui.css" in html
    assert "/openapi.json" in html
    # The inline start-up script runs under the strict CSP only through its hash.
    csp = response.headers["content-security-policy"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    scripts = re.findall(r"<script>(.*?)</script>", html, re.DOTALL)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        served = client.get(f"{API}/static/vendor/swagger-ui/{asset}")
        assert served.status_code == 200 and len(served.content) > 100_000, asset
    assert client.get("/redoc").status_code == 404
