"""Access control and hardening (issue 9): tokens, read token and sign-in,
security headers, limits and hostile input — in process, on every backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from trainvis.api.app import create_app
from trainvis.config import Settings

API = "/api/v1/visualization"
WRITE, READ = "w-secret-token", "r-secret-token"


@pytest.fixture
def secured(db_url: str) -> Iterator[TestClient]:
    settings = Settings(db=db_url, api_token=WRITE, read_token=READ)
    with TestClient(create_app(settings)) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_job(client: TestClient, headers: dict[str, str] | None = None) -> str:
    response = client.post(f"{API}/training/jobs", json={"name": "x"}, headers=headers or {})
    assert response.status_code == 201, response.text
    return str(response.json()["data"]["id"])


def writes(job: str) -> list[tuple[str, str, object]]:
    return [
        ("POST", f"{API}/training/jobs", {"name": "y"}),
        ("POST", f"{API}/training/{job}/metrics", {"step": 1, "loss": 1.0}),
        ("PUT", f"{API}/training/jobs/{job}/status", {"status": "running"}),
        ("DELETE", f"{API}/training/jobs/{job}", None),
    ]


def test_every_write_needs_the_write_token(secured: TestClient) -> None:
    job = make_job(secured, bearer(WRITE))
    for method, url, body in writes(job):
        for headers in ({}, bearer("wrong"), bearer(READ), {"Authorization": WRITE}):
            response = secured.request(method, url, json=body, headers=headers)
            assert response.status_code == 401, (method, url, headers)
            assert response.json()["error"]["code"] == "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"
            assert WRITE not in response.text
    assert (
        secured.get(f"{API}/training/jobs/{job}", headers=bearer(READ)).json()["data"][
            "point_count"
        ]
        == 0
    )
    for method, url, body in writes(job):
        response = secured.request(method, url, json=body, headers=bearer(WRITE))
        assert response.status_code in (200, 201, 204), (method, url, response.text)


def test_reads_need_the_read_token(secured: TestClient) -> None:
    job = make_job(secured, bearer(WRITE))
    reads = [
        f"{API}/training/jobs",
        f"{API}/training/jobs/{job}",
        f"{API}/training/{job}/metrics/history",
        f"{API}/training/{job}/loss",
        f"{API}/dashboard?format=json",
    ]
    for url in reads:
        assert secured.get(url).status_code == 401, url
        assert secured.get(url, headers=bearer("nope")).status_code == 401, url
        assert secured.get(url, headers=bearer(READ)).status_code == 200, url
        assert secured.get(url, headers=bearer(WRITE)).status_code == 200, url


def test_dashboard_sign_in_sets_a_strict_httponly_cookie(secured: TestClient) -> None:
    page = secured.get(f"{API}/dashboard", headers={"Accept": "text/html"}, follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"].startswith(f"{API}/login?next=")
    form = secured.get(page.headers["location"])
    assert form.status_code == 200 and 'name="token"' in form.text
    bad = secured.post(
        f"{API}/login",
        content=f"token=wrong&next={API}/dashboard",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert bad.status_code == 401
    good = secured.post(
        f"{API}/login",
        content=f"token={READ}&next=https://evil.example/",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert good.status_code == 303
    assert good.headers["location"] == f"{API}/dashboard"  # never another origin
    cookie = good.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert secured.get(f"{API}/dashboard", headers={"Accept": "text/html"}).status_code == 200
    assert secured.get(f"{API}/training/jobs").status_code == 200  # the cookie reads the API
    assert secured.post(f"{API}/training/jobs", json={"name": "z"}).status_code == 401  # not writes
    secured.post(f"{API}/logout")
    assert secured.get(f"{API}/training/jobs").status_code == 401


def test_static_files_stay_public(secured: TestClient) -> None:
    assert secured.get(f"{API}/static/style.css").status_code == 200


def test_security_headers_and_cache_control(client: TestClient) -> None:
    job = make_job(client)
    api = client.get(f"{API}/training/jobs/{job}")
    assert api.headers["x-content-type-options"] == "nosniff"
    assert api.headers["referrer-policy"] == "same-origin"
    assert api.headers["cache-control"] == "no-store"
    error = client.get(f"{API}/training/jobs/ghost")
    assert error.headers["x-content-type-options"] == "nosniff"
    page = client.get(f"{API}/dashboard", headers={"Accept": "text/html"})
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp


def test_cors_is_off_by_default(client: TestClient) -> None:
    response = client.get(f"{API}/training/jobs", headers={"Origin": "http://elsewhere.test"})
    assert "access-control-allow-origin" not in response.headers


def test_cors_allows_listed_origins(tmp_path: Path) -> None:
    settings = Settings(db=str(tmp_path / "c.db"), cors_origins=("http://ui.test",))
    with TestClient(create_app(settings)) as client:
        ok = client.get(f"{API}/training/jobs", headers={"Origin": "http://ui.test"})
        assert ok.headers["access-control-allow-origin"] == "http://ui.test"
        other = client.get(f"{API}/training/jobs", headers={"Origin": "http://evil.test"})
        assert "access-control-allow-origin" not in other.headers
        preflight = client.options(
            f"{API}/training/jobs",
            headers={"Origin": "http://ui.test", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 200


def test_hostile_strings_are_stored_verbatim(client: TestClient) -> None:
    nasty = "'; DROP TABLE jobs; -- <script>alert(1)</script> \u202e"
    response = client.post(
        f"{API}/training/jobs",
        json={
            "name": nasty,
            "model_name": "x' OR '1'='1",
            "tags": ["a'--", "%_\\"],
            "config": {nasty: nasty},
        },
    )
    assert response.status_code == 201
    job = response.json()["data"]
    got = client.get(f"{API}/training/jobs/{job['id']}").json()["data"]
    assert got["name"] == nasty and got["model_name"] == "x' OR '1'='1"
    assert got["tags"] == ["a'--", "%_\\"] and got["config"] == {nasty: nasty}
    assert [
        j["id"] for j in client.get(f"{API}/training/jobs", params={"tag": "%_\\"}).json()["data"]
    ] == [job["id"]]
    assert client.get(f"{API}/training/jobs", params={"q": "%"}).json()["meta"]["total"] == 0
    assert (
        client.get(f"{API}/training/jobs", params={"q": "drop table"}).json()["meta"]["total"] == 1
    )
    metric = "_--DROP/table.jobs--"  # metric names allow only [A-Za-z0-9_./-]
    assert (
        client.post(
            f"{API}/training/{job['id']}/metrics", json={"step": 1, metric: 1.0}
        ).status_code
        == 201
    )
    assert (
        client.get(f"{API}/training/{job['id']}/metrics/history").json()["data"][0][metric] == 1.0
    )


def test_ten_thousand_metric_names_then_the_limit(client: TestClient) -> None:
    job = make_job(client)
    row = {"step": 1, **{f"m{i}": float(i) for i in range(10_000)}}
    assert client.post(f"{API}/training/{job}/metrics", json=row).status_code == 201
    detail = client.get(f"{API}/training/jobs/{job}").json()["data"]
    assert len(detail["metric_names"]) == 10_000
    over = client.post(
        f"{API}/training/{job}/metrics", json=[{"step": 2, "m1": 1.0}, {"step": 3, "extra": 1.0}]
    )
    assert over.status_code == 422
    assert over.json()["error"]["details"][0]["loc"] == ["body", 1, "extra"]
    assert (
        client.get(f"{API}/training/jobs/{job}").json()["data"]["current_step"] == 1
    )  # nothing stored


def test_deeply_nested_and_invalid_utf8(client: TestClient) -> None:
    job = make_job(client)
    headers = {"Content-Type": "application/json"}
    for url in (f"{API}/training/jobs", f"{API}/training/{job}/metrics"):
        deep = client.post(url, content="[" * 200_000 + "]" * 200_000, headers=headers)
        assert deep.status_code == 400 and deep.json()["error"]["code"] == "malformed_json"
        nested = client.post(
            url, content='{"step": 1, "x": ' + "[" * 5000 + "]" * 5000 + "}", headers=headers
        )
        assert nested.status_code in (400, 422)
        utf8 = client.post(url, content=b'{"name": "\xff\xfe", "step": 1}', headers=headers)
        assert utf8.status_code == 400 and utf8.json()["error"]["code"] == "malformed_json"
    assert client.get(f"{API}/training/jobs").status_code == 200


def test_nul_characters_are_rejected_naming_the_field(client: TestClient) -> None:
    cases = [
        ({"name": "a\u0000b"}, ["body", "name"]),
        ({"name": "a", "tags": ["ok", "b\u0000"]}, ["body", "tags", 1]),
    ]
    for body, loc in cases:
        response = client.post(f"{API}/training/jobs", json=body)
        assert response.status_code == 422, body
        assert response.json()["error"]["details"][0]["loc"] == loc
    assert client.get(f"{API}/training/jobs").json()["meta"]["total"] == 0
    config = {"k\u0000": ["\u0000"]}  # free JSON keeps it (stored as escaped JSON text)
    job = client.post(f"{API}/training/jobs", json={"name": "a", "config": config}).json()["data"]
    assert client.get(f"{API}/training/jobs/{job['id']}").json()["data"]["config"] == config
