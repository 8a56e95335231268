"""Every error path answers with the contract's envelope, never a bare 500."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

API = "/api/v1/visualization"
JSON = {"Content-Type": "application/json"}


def assert_envelope(response, status: int, code: str) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    if status == 422:
        assert isinstance(error["details"], list) and error["details"]
        for item in error["details"]:
            assert isinstance(item["loc"], list) and item["msg"]
    return error


@pytest.fixture
def job(client: TestClient) -> str:
    return str(client.post(f"{API}/training/jobs", json={"name": "e"}).json()["data"]["id"])


def test_unknown_job_everywhere_is_job_not_found(client: TestClient) -> None:
    calls = [
        ("GET", f"{API}/training/jobs/ghost", None),
        ("DELETE", f"{API}/training/jobs/ghost", None),
        ("PUT", f"{API}/training/jobs/ghost/status", {"status": "running"}),
        ("POST", f"{API}/training/ghost/metrics", {"step": 1, "x": 1}),
        ("GET", f"{API}/training/ghost/metrics/history", None),
    ]
    for method, url, body in calls:
        error = assert_envelope(client.request(method, url, json=body), 404, "job_not_found")
        assert error["details"] == {"job_id": "ghost"}


def test_unknown_route_and_method(client: TestClient) -> None:
    assert_envelope(client.get(f"{API}/nope"), 404, "not_found")
    assert_envelope(client.patch(f"{API}/training/jobs", json={}), 405, "method_not_allowed")


def test_malformed_and_media_type(client: TestClient, job: str) -> None:
    for url in (f"{API}/training/jobs", f"{API}/training/{job}/metrics"):
        assert_envelope(client.post(url, content="{", headers=JSON), 400, "malformed_json")
        assert_envelope(
            client.post(
                url, content="a=b", headers={"Content-Type": "application/x-www-form-urlencoded"}
            ),
            415,
            "unsupported_media_type",
        )
    assert_envelope(
        client.put(f"{API}/training/jobs/{job}/status", content="{", headers=JSON),
        400,
        "malformed_json",
    )


def test_validation_errors(client: TestClient, job: str) -> None:
    assert_envelope(client.post(f"{API}/training/jobs", json={}), 422, "validation_error")
    assert_envelope(
        client.post(f"{API}/training/{job}/metrics", json={"x": 1}), 422, "validation_error"
    )
    assert_envelope(
        client.get(f"{API}/training/jobs", params={"limit": "many"}), 422, "validation_error"
    )
    assert_envelope(
        client.put(f"{API}/training/jobs/{job}/status", json={"status": 3}), 422, "validation_error"
    )


def test_conflicts(client: TestClient, job: str) -> None:
    assert_envelope(
        client.post(f"{API}/training/jobs", json={"name": "x", "id": job}), 409, "job_exists"
    )
    client.put(f"{API}/training/jobs/{job}/status", json={"status": "running"})
    assert_envelope(
        client.put(f"{API}/training/jobs/{job}/status", json={"status": "pending"}),
        409,
        "invalid_status_transition",
    )


def test_too_large(client: TestClient, job: str) -> None:
    rows = [{"step": s} for s in range(10_001)]
    assert_envelope(
        client.post(f"{API}/training/{job}/metrics", json=rows), 413, "payload_too_large"
    )


def test_write_token(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from trainvis.api.app import create_app
    from trainvis.config import Settings

    settings = Settings(db=str(tmp_path / "t.db"), api_token="s3cret-token-0123456")
    with TestClient(create_app(settings)) as client:
        error = assert_envelope(
            client.post(f"{API}/training/jobs", json={"name": "x"}), 401, "unauthorized"
        )
        assert "s3cret-token-0123456" not in error["message"]
        response = client.post(
            f"{API}/training/jobs", json={"name": "x"}, headers={"Authorization": "Bearer wrong"}
        )
        assert_envelope(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"
        ok = client.post(
            f"{API}/training/jobs",
            json={"name": "x"},
            headers={"Authorization": "Bearer s3cret-token-0123456"},
        )
        assert ok.status_code == 201
        assert client.get(f"{API}/training/jobs").status_code == 200  # reads stay open
