"""``/dashboard`` and ``/dashboard/job/{id}``: JSON for API clients, HTML for browsers."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.conftest import API
from trainvis.api.dashboard import wants_html

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
STATUSES = ["pending", "running", "paused", "completed", "failed", "cancelled"]


def create(client: TestClient, name: str, **extra: object) -> str:
    response = client.post(f"{API}/training/jobs", json={"name": name, **extra})
    assert response.status_code == 201, response.text
    job_id: str = response.json()["data"]["id"]
    return job_id


def test_dashboard_json_on_an_empty_store_lists_every_status(client: TestClient) -> None:
    response = client.get(f"{API}/dashboard")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert "accept" in response.headers["vary"].lower()
    assert response.json() == {
        "data": {
            "counts": {status: 0 for status in STATUSES},
            "totals": {"jobs": 0, "points": 0},
            "recent_jobs": [],
        }
    }


def test_dashboard_json_counts_totals_and_ten_newest_jobs(client: TestClient) -> None:
    ids = [create(client, f"job {n}") for n in range(12)]
    client.put(f"{API}/training/jobs/{ids[0]}/status", json={"status": "running"})
    client.put(f"{API}/training/jobs/{ids[1]}/status", json={"status": "failed"})
    rows = [{"step": 1, "train_loss": 1.0, "accuracy": 0.5}, {"step": 2, "train_loss": 0.5}]
    client.post(f"{API}/training/{ids[-1]}/metrics", json=rows)
    data = client.get(f"{API}/dashboard", headers={"Accept": "application/json"}).json()["data"]
    assert data["counts"] == {  # the job with metrics was started by them
        "pending": 9, "running": 2, "paused": 0, "completed": 0, "failed": 1, "cancelled": 0
    }  # fmt: skip
    assert data["totals"] == {"jobs": 12, "points": 3}
    recent = data["recent_jobs"]
    assert [job["id"] for job in recent] == list(reversed(ids))[:10]
    newest = recent[0]
    assert newest["summary"]["last"] == {"train_loss": 0.5, "accuracy": 0.5}
    assert newest["summary"]["best"]["train_loss"] == {"value": 0.5, "step": 2}
    assert newest["point_count"] == 3


def test_job_dashboard_json_has_the_job_and_four_chart_configs(client: TestClient) -> None:
    job_id = create(client, "bert", model_name="bert-base-uncased")
    rows = [
        {
            "step": s,
            "train_loss": 1 / s,
            "val_loss": 1.1 / s,
            "learning_rate": 1e-5,
            "gpu_utilization": 80.0,
            "gpu_memory": 4096,
            "accuracy": 0.5 + s / 100,
        }
        for s in range(1, 21)
    ]
    client.post(f"{API}/training/{job_id}/metrics", json=rows)
    response = client.get(f"{API}/dashboard/job/{job_id}")
    assert response.status_code == 200
    assert "accept" in response.headers["vary"].lower()
    data = response.json()["data"]
    assert data["job"]["id"] == job_id and data["job"]["model_name"] == "bert-base-uncased"
    assert set(data["charts"]) == {"loss", "gpu", "metrics", "learning_rate"}
    for kind, config in data["charts"].items():
        assert config["type"] == "line", kind
        assert config["data"]["datasets"], kind
        assert "options" in config, kind
    loss = client.get(f"{API}/training/{job_id}/loss").json()["data"]
    assert data["charts"]["loss"] == loss
    labels = [d["label"] for d in data["charts"]["loss"]["data"]["datasets"]]
    assert labels == ["Train Loss", "Val Loss"]
    assert data["charts"]["learning_rate"]["data"]["datasets"][0]["label"] == "Learning Rate"


def test_job_dashboard_of_unknown_job_is_404_envelope(client: TestClient) -> None:
    """API clients get the envelope (browsers get the HTML 404 page: test_pages.py)."""
    for accept in ("application/json", "*/*"):
        response = client.get(f"{API}/dashboard/job/nope", headers={"Accept": accept})
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "job_not_found"


def test_browsers_get_html_with_a_strict_csp(client: TestClient) -> None:
    job_id = create(client, "x")
    for path, marker in (
        ("/dashboard", 'data-page="list"'),
        (f"/dashboard/job/{job_id}", 'data-page="job"'),
    ):
        response = client.get(API + path, headers={"Accept": BROWSER_ACCEPT})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert "accept" in response.headers["vary"].lower()
        assert marker in response.text
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp and "http" not in csp
        # No inline script, nothing from another origin.
        assert "<script>" not in response.text and "onclick" not in response.text
        assert "//cdn" not in response.text and "https://" not in response.text


@pytest.mark.parametrize(
    ("query", "accept", "html"),
    [
        ("?format=json", BROWSER_ACCEPT, False),
        ("?format=html", "application/json", True),
        ("", "*/*", False),
        ("", "", False),
        ("", "text/html", True),
        ("", "application/json, text/html;q=0.5", False),
    ],
)
def test_format_overrides_accept(client: TestClient, query: str, accept: str, html: bool) -> None:
    headers = {"Accept": accept} if accept else {}
    response = client.get(f"{API}/dashboard{query}", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html" if html else "application/json")


def test_bad_format_is_422(client: TestClient) -> None:
    response = client.get(f"{API}/dashboard?format=xml")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


def test_root_redirects_to_the_dashboard(client: TestClient) -> None:
    response = client.get("/", follow_redirects=False)
    assert response.status_code in (302, 307)
    assert response.headers["location"] == f"{API}/dashboard"


def test_static_files_are_served_with_the_csp(client: TestClient) -> None:
    for path, kind in (
        ("/static/vendor/chart.umd.min.js", "javascript"),
        ("/static/vendor/chartjs-adapter-date-fns.bundle.min.js", "javascript"),
        ("/static/js/job.js", "javascript"),
        ("/static/style.css", "text/css"),
        ("/static/index.html", "text/html"),
    ):
        response = client.get(API + path)
        assert response.status_code == 200, path
        assert kind in response.headers["content-type"], path
        assert "default-src 'self'" in response.headers["content-security-policy"]
    assert client.get(f"{API}/static/../api/dashboard.py").status_code == 404
    assert client.get(f"{API}/static/nope.js").status_code == 404


def test_browser_test_pages_are_not_served(client: TestClient) -> None:
    """Issue 14: the browser tests' pages (React, Recharts) are not in the package or served."""
    for path in (
        "/static/test/seed.html",
        "/static/test/seed-chartjs.js",
        "/static/vendor/test/Recharts.js",
        "/static/vendor/test/react.production.min.js",
        "/static/vendor/licenses/recharts.LICENSE",
    ):
        assert client.get(API + path).status_code == 404, path


def test_wants_html_reads_quality_values() -> None:
    assert wants_html("text/html;q=0.9, application/json;q=0.8", None)
    assert not wants_html("text/html;q=0.1, application/json", None)
    assert not wants_html("text/html;q=bogus", None)
    assert wants_html(None, "html") and not wants_html("text/html", "json")
