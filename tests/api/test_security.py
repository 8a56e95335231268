"""Access control and hardening (issue 9): tokens, read token and sign-in,
security headers, limits and hostile input — in process, on every backend."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from trainvis.api.app import create_app
from trainvis.api.deps import COOKIE
from trainvis.api.session import SESSION_SECONDS, SignInLimiter, issue, verify
from trainvis.config import Settings

API = "/api/v1/visualization"
WRITE, READ = "w-secret-token-0123", "r-secret-token-4567"


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
    secured.post(f"{API}/logout", headers={"Origin": "http://testserver"})
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


# ---------------------------------------------------------------------- issue 13: access

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
SAME_ORIGIN = {"Origin": "http://testserver"}


def sign_in(client: TestClient, token: str, headers: dict[str, str] | None = None) -> Any:
    return client.post(
        f"{API}/login",
        content=f"token={token}&next={API}/dashboard",
        headers={**FORM, **(headers or {})},
        follow_redirects=False,
    )


@pytest.fixture
def read_locked(db_url: str) -> Iterator[TestClient]:
    """Only a read token: it must protect the writes as well."""
    with TestClient(create_app(Settings(db=db_url, read_token=READ))) as client:
        yield client


def test_a_read_token_alone_also_protects_writes(read_locked: TestClient) -> None:
    """issue 13: with only a read token, nobody without it (nor a signed-in browser's
    cookie) may create, change or delete jobs; the read token as a bearer may."""
    job = make_job(read_locked, bearer(READ))
    assert sign_in(read_locked, READ).status_code == 303  # the cookie is set: reads work
    assert read_locked.get(f"{API}/training/jobs/{job}").status_code == 200
    for method, url, body in writes(job):
        for headers in ({}, bearer("wrong")):
            response = read_locked.request(method, url, json=body, headers=headers)
            assert response.status_code == 401, (method, url, headers, response.text)
            assert response.json()["error"]["code"] == "unauthorized"
    stored = read_locked.get(f"{API}/training/jobs/{job}").json()["data"]
    assert (stored["status"], stored["point_count"]) == ("pending", 0)
    assert read_locked.get(f"{API}/training/jobs").json()["meta"]["total"] == 1
    for method, url, body in writes(job):
        response = read_locked.request(method, url, json=body, headers=bearer(READ))
        assert response.status_code in (200, 201, 204), (method, url, response.text)


def test_the_sign_in_cookie_is_a_signed_expiring_session_not_the_token(db_url: str) -> None:
    """issue 13: the cookie holds a signed, expiring session (never a token); replicas
    with the same tokens accept it, a server with other tokens or a tampered,
    expired or raw-token cookie does not."""
    settings = Settings(db=db_url, api_token=WRITE, read_token=READ)
    other = Settings(db=db_url, api_token=WRITE, read_token="another-read-token-89")
    with (
        TestClient(create_app(settings)) as first,
        TestClient(create_app(settings)) as replica,
        TestClient(create_app(other)) as elsewhere,
    ):
        signed = sign_in(first, WRITE)
        assert signed.status_code == 303
        header = signed.headers["set-cookie"]
        assert f"max-age={SESSION_SECONDS}" in header.lower()
        value = first.cookies[COOKIE]
        assert WRITE not in value and READ not in value and WRITE not in header
        assert value.startswith("v1.write.")
        assert first.get(f"{API}/training/jobs").status_code == 200
        assert first.post(f"{API}/training/jobs", json={"name": "z"}).status_code == 401

        def reads_with(client: TestClient, cookie: str) -> int:
            client.cookies.clear()
            client.cookies.set(COOKIE, cookie)
            return client.get(f"{API}/training/jobs").status_code

        assert reads_with(replica, value) == 200
        assert reads_with(elsewhere, value) == 401
        _, privilege, expires, signature = value.split(".")
        assert reads_with(replica, f"v1.read.{expires}.{signature}") == 401
        assert reads_with(replica, f"v1.write.{int(expires) + 1}.{signature}") == 401
        assert reads_with(replica, value[:-2]) == 401
        for raw in (READ, WRITE):  # a token in the cookie is not a session
            assert reads_with(replica, raw) == 401
            replica.cookies.clear()
            replica.cookies.set("trainvis_token", raw)
            assert replica.get(f"{API}/training/jobs").status_code == 401
        stale = issue(settings, "read", now=time.time() - SESSION_SECONDS - 1)
        assert verify(settings, stale) is None
        assert reads_with(replica, stale) == 401
        assert reads_with(replica, issue(settings, "read")) == 200


def test_sign_in_is_rate_limited_per_client(db_url: str) -> None:
    """issue 13: a few failed sign-ins per minute, then 429 with Retry-After for
    that client address (the right token included); other clients are unaffected."""
    app = create_app(Settings(db=db_url, api_token=WRITE, read_token=READ))
    with TestClient(app, client=("203.0.113.7", 40000)) as attacker:
        for _ in range(5):
            assert sign_in(attacker, "guess-0000000000").status_code == 401
        limited = sign_in(attacker, "guess-0000000001")
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "too_many_requests"
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert sign_in(attacker, READ).status_code == 429
        browser = sign_in(attacker, READ, {"Accept": "text/html"})
        assert browser.status_code == 303 and "error=limited" in browser.headers["location"]
        assert COOKIE not in attacker.cookies
        neighbour = TestClient(app, client=("198.51.100.9", 40000))  # same app, other address
        assert sign_in(neighbour, READ).status_code == 303


def test_sign_in_limiter_window_and_memory() -> None:
    """issue 13: failures leave the window; a success forgets them; addresses are capped."""
    limiter = SignInLimiter(attempts=3, window=60.0, max_clients=2)
    for second in (0.0, 1.0, 2.0):
        assert limiter.retry_after("a", now=second) is None
        limiter.failed("a", now=second)
    assert limiter.retry_after("a", now=2.0) == 58
    assert limiter.retry_after("a", now=60.5) is None  # the first failure left the window
    limiter.failed("a", now=60.5)
    assert limiter.retry_after("a", now=60.5) == 1  # the second failure leaves at 61
    limiter.succeeded("a")
    assert limiter.retry_after("a", now=60.5) is None
    for client in ("b", "c", "d"):
        limiter.failed(client, now=70.0)
    assert len(limiter._failures) == 2


def test_logout_refuses_cross_site_requests(secured: TestClient) -> None:
    """issue 13: POST /logout needs an Origin (or Referer) of this server (CSRF)."""
    assert sign_in(secured, READ).status_code == 303
    for headers in (
        {},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Referer": "https://evil.example/page"},
    ):
        response = secured.post(f"{API}/logout", headers=headers, follow_redirects=False)
        assert response.status_code == 403, headers
        assert response.json()["error"]["code"] == "forbidden"
        assert secured.get(f"{API}/training/jobs").status_code == 200  # still signed in
    referer = {"Referer": f"http://testserver{API}/dashboard"}
    out = secured.post(f"{API}/logout", headers=referer, follow_redirects=False)
    assert out.status_code == 303
    assert secured.get(f"{API}/training/jobs").status_code == 401
    assert sign_in(secured, READ, {"Origin": "https://evil.example"}).status_code == 403
    assert sign_in(secured, READ, SAME_ORIGIN).status_code == 303


def test_tokens_shorter_than_16_characters_are_refused(tmp_path: Path) -> None:
    """issue 13: a short token is refused when the settings are built (serve exits)."""
    for field in ("api_token", "read_token"):
        for token in ("", "s3cret", "x" * 15):
            with pytest.raises(ValueError, match="at least 16 characters"):
                Settings(db=str(tmp_path / "t.db"), **{field: token})
        assert getattr(Settings(**{field: "x" * 16}), field) == "x" * 16
