"""Jobs endpoints: the seed's examples and DESIGN.md's Jobs contract."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from fastapi.testclient import TestClient
from httpx import Response

from trainvis.api.app import create_app
from trainvis.config import Settings

API = "/api/v1/visualization"
WRITE_TOKEN = "s3cret-token-0123456"
SEED_JOB = {
    "name": "BERT Fine-tuning",
    "model_name": "bert-base-uncased",
    "total_epochs": 10,
    "total_steps": 10000,
}


def create(client: TestClient, **body: object) -> dict:
    response = client.post(f"{API}/training/jobs", json={"name": "run", **body})
    assert response.status_code == 201, response.text
    return response.json()["data"]


def test_seed_create_gives_job_001_with_location(client: TestClient) -> None:
    response = client.post(f"{API}/training/jobs", json=SEED_JOB)
    assert response.status_code == 201
    assert response.headers["location"] == f"{API}/training/jobs/job-001"
    job = response.json()["data"]
    assert job["id"] == "job-001"
    assert job["status"] == "pending"
    assert job["name"] == "BERT Fine-tuning"
    assert job["model_name"] == "bert-base-uncased"
    assert job["total_steps"] == 10000
    assert job["created_at"].endswith("Z") and len(job["created_at"]) == 24
    assert job["summary"] == {"last": {}, "best": {}, "has_nan": False}
    assert job["point_count"] == 0 and job["metric_names"] == []


def test_generated_ids_skip_client_ids_and_never_reuse(client: TestClient) -> None:
    assert create(client)["id"] == "job-001"
    assert create(client, id="job-002")["id"] == "job-002"
    assert create(client)["id"] == "job-003"
    assert client.delete(f"{API}/training/jobs/job-003").status_code == 204
    assert create(client)["id"] == "job-004"
    assert create(client, id="job-10")["id"] == "job-10"
    assert create(client)["id"] == "job-011"


def test_client_id_taken_is_409(client: TestClient) -> None:
    create(client, id="my-run.1")
    response = client.post(f"{API}/training/jobs", json={"name": "x", "id": "my-run.1"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "job_exists"
    client.delete(f"{API}/training/jobs/my-run.1")
    again = client.post(f"{API}/training/jobs", json={"name": "x", "id": "my-run.1"})
    assert again.status_code == 201  # a deleted client id may be created again (issue 13)
    taken = client.post(f"{API}/training/jobs", json={"name": "x", "id": "my-run.1"})
    assert taken.status_code == 409


def test_job_fields_round_trip(client: TestClient) -> None:
    job = create(client, config={"lr": 2e-5, "layers": [1, 2]}, tags=["bert", "glue"])
    got = client.get(f"{API}/training/jobs/{job['id']}").json()["data"]
    assert got["config"] == {"lr": 2e-5, "layers": [1, 2]}
    assert got["tags"] == ["bert", "glue"]
    for key in (
        "started_at",
        "finished_at",
        "current_step",
        "current_epoch",
        "progress",
        "eta_seconds",
    ):
        assert got[key] is None


def test_list_newest_first_with_filters_and_meta(client: TestClient) -> None:
    create(client, name="Alpha", model_name="bert-base", tags=["nlp"])
    create(client, name="beta", model_name="ResNet50", tags=["vision"])
    third = create(client, name="Gamma", tags=["nlp"])
    client.put(f"{API}/training/jobs/{third['id']}/status", json={"status": "running"})
    body = client.get(f"{API}/training/jobs").json()
    assert [job["id"] for job in body["data"]] == ["job-003", "job-002", "job-001"]
    assert body["meta"] == {"total": 3, "limit": 50, "offset": 0}

    def ids(**params: object) -> list[str]:
        listed = client.get(f"{API}/training/jobs", params=params).json()["data"]
        return [job["id"] for job in listed]

    assert ids(status="running") == ["job-003"]
    assert ids(tag="nlp") == ["job-003", "job-001"]
    assert ids(q="RESNET") == ["job-002"]
    assert ids(q="a", tag="nlp", status="pending") == ["job-001"]
    assert ids(limit=1, offset=1) == ["job-002"]
    paged = client.get(f"{API}/training/jobs", params={"limit": 1}).json()["meta"]
    assert paged == {"total": 3, "limit": 1, "offset": 0}


def test_list_limit_over_1000_is_422(client: TestClient) -> None:
    response = client.get(f"{API}/training/jobs", params={"limit": 1001})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["loc"] == ["query", "limit"]


def test_status_lifecycle(client: TestClient) -> None:
    job = create(client)
    url = f"{API}/training/jobs/{job['id']}/status"
    running = client.put(url, json={"status": "running"})
    assert running.status_code == 200
    started = running.json()["data"]["started_at"]
    assert started is not None and running.json()["data"]["finished_at"] is None
    done = client.put(url, json={"status": "completed", "message": "ok"}).json()["data"]
    assert done["finished_at"] is not None and done["message"] == "ok"
    resumed = client.put(url, json={"status": "running"}).json()["data"]
    assert resumed["finished_at"] is None and resumed["started_at"] == started
    back = client.put(url, json={"status": "pending"})
    assert back.status_code == 409
    assert back.json()["error"]["code"] == "invalid_status_transition"
    same = client.put(url, json={"status": "running"})
    assert same.status_code == 200 and same.json()["data"]["updated_at"] == resumed["updated_at"]


def test_pending_to_completed_is_allowed(client: TestClient) -> None:
    job = create(client)
    response = client.put(f"{API}/training/jobs/{job['id']}/status", json={"status": "completed"})
    assert response.status_code == 200
    assert response.json()["data"]["finished_at"] is not None


def test_bad_status_is_422_naming_field(client: TestClient) -> None:
    job = create(client)
    response = client.put(f"{API}/training/jobs/{job['id']}/status", json={"status": "exploded"})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["loc"] == ["body", "status"]


def _stored(db_url: str) -> dict[str, int]:
    """Rows per table, read from the database itself (not through the store)."""
    tables = ("jobs", "metrics", "steps", "points", "events")
    if db_url.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(db_url) as conn:
            found = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone() for t in tables}
            return {t: int(row[0]) if row else -1 for t, row in found.items()}
    with sqlite3.connect(db_url) as conn:
        return {t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in tables}


def test_delete_removes_job_and_metrics(client: TestClient, db_url: str) -> None:
    job = create(client)
    kept = create(client)
    for target in (job, kept):
        rows = [{"step": s, "train_loss": "NaN" if s == 2 else 1.0, "acc": 0.5} for s in range(3)]
        response = client.post(f"{API}/training/{target['id']}/metrics", json=rows)
        assert response.status_code == 201
        client.post(f"{API}/training/{target['id']}/events", json={"step": 1, "message": "n"})
    one_job = {"jobs": 1, "metrics": 2, "steps": 3, "points": 6, "events": 2}  # note + NaN alert
    assert _stored(db_url) == {table: 2 * count for table, count in one_job.items()}
    assert client.delete(f"{API}/training/jobs/{job['id']}").status_code == 204
    assert client.get(f"{API}/training/jobs/{job['id']}").status_code == 404
    assert client.get(f"{API}/training/{job['id']}/metrics/history").status_code == 404
    # issue 13: the rows, points, metrics and events are gone from the database
    # (status codes alone would pass with orphans left behind); the other job's stay.
    assert _stored(db_url) == one_job
    kept_history = client.get(f"{API}/training/{kept['id']}/metrics/history").json()["data"]
    assert [row["step"] for row in kept_history] == [0, 1, 2]
    summary = client.get(f"{API}/dashboard").json()["data"]["totals"]
    assert summary == {"jobs": 1, "points": 6}
    assert client.delete(f"{API}/training/jobs/{job['id']}").status_code == 404


def test_create_validation(client: TestClient) -> None:
    cases = [
        ({}, ["body", "name"]),
        ({"name": ""}, ["body", "name"]),
        ({"name": "x" * 201}, ["body", "name"]),
        ({"name": "x", "total_steps": 0}, ["body", "total_steps"]),
        ({"name": "x", "total_epochs": -1}, ["body", "total_epochs"]),
        ({"name": "x", "id": "-bad"}, ["body", "id"]),
        ({"name": "x", "tags": "nlp"}, ["body", "tags"]),
        ({"name": "x", "config": [1]}, ["body", "config"]),
        ({"name": "x", "unknown": 1}, ["body", "unknown"]),
    ]
    for body, loc in cases:
        response = client.post(f"{API}/training/jobs", json=body)
        assert response.status_code == 422, body
        assert response.json()["error"]["details"][0]["loc"] == loc, body
    assert client.get(f"{API}/training/jobs").json()["meta"]["total"] == 0


def test_progress_and_eta(client: TestClient) -> None:
    job = create(client, total_steps=1000)
    client.put(f"{API}/training/jobs/{job['id']}/status", json={"status": "running"})
    rows = [
        {"step": step, "timestamp": 1_700_000_000 + step / 10, "train_loss": 1.0}
        for step in range(0, 101, 10)
    ]
    client.post(f"{API}/training/{job['id']}/metrics", json=rows)
    got = client.get(f"{API}/training/jobs/{job['id']}").json()["data"]
    assert got["current_step"] == 100
    assert got["progress"] == 0.1
    assert got["eta_seconds"] == 90.0  # 10 steps/s, 900 steps to go


# ---------------------------------------------------------------- PATCH (issue 16: job edits)


def patch(client: TestClient, job_id: str, body: object, **kwargs: object) -> Response:
    return client.patch(f"{API}/training/jobs/{job_id}", json=body, **kwargs)  # type: ignore[arg-type]


def test_patch_edits_each_field_and_bumps_updated_at(client: TestClient) -> None:
    """Issue 16: name, model_name, tags and config are editable, one at a time."""
    job = create(client, model_name="m1", config={"lr": 0.1}, tags=["a"])
    updated = job["updated_at"]
    edits = [
        ({"name": "renamed"}, "name", "renamed"),
        ({"model_name": "m2"}, "model_name", "m2"),
        ({"model_name": None}, "model_name", None),
        ({"tags": ["x", "y"]}, "tags", ["x", "y"]),
        ({"tags": []}, "tags", []),
        ({"config": {"opt": {"name": "AdamW"}}}, "config", {"opt": {"name": "AdamW"}}),
    ]
    for body, key, value in edits:
        time.sleep(0.002)  # updated_at has millisecond resolution on the wire
        response = patch(client, job["id"], body)
        assert response.status_code == 200, response.text
        got = response.json()["data"]
        assert got[key] == value, body
        assert got["updated_at"] > updated, body
        updated = got["updated_at"]
        assert client.get(f"{API}/training/jobs/{job['id']}").json()["data"][key] == value
    final = client.get(f"{API}/training/jobs/{job['id']}").json()["data"]
    assert (final["name"], final["model_name"], final["tags"]) == ("renamed", None, [])
    assert final["created_at"] == job["created_at"] and final["status"] == "pending"


def test_patch_config_replaces_and_several_fields_at_once(client: TestClient) -> None:
    job = create(client, config={"lr": 0.1, "batch": 32}, tags=["a"])
    response = patch(client, job["id"], {"config": {"lr": 0.2}, "name": "both"})
    assert response.status_code == 200, response.text
    got = response.json()["data"]
    assert got["config"] == {"lr": 0.2}  # replaced, not merged
    assert got["name"] == "both" and got["tags"] == ["a"]  # tags untouched


def test_patch_new_name_shows_in_list_and_search(client: TestClient) -> None:
    job = create(client, name="before")
    assert patch(client, job["id"], {"name": "after-edit"}).status_code == 200
    listed = client.get(f"{API}/training/jobs").json()["data"]
    assert [item["name"] for item in listed] == ["after-edit"]
    found = client.get(f"{API}/training/jobs", params={"q": "after-edit"}).json()["data"]
    assert [item["id"] for item in found] == [job["id"]]
    tagged = patch(client, job["id"], {"tags": ["new"]})
    assert tagged.status_code == 200
    by_tag = client.get(f"{API}/training/jobs", params={"tag": "new"}).json()["data"]
    assert [item["id"] for item in by_tag] == [job["id"]]


def test_patch_unknown_job_is_404(client: TestClient) -> None:
    response = patch(client, "job-404", {"name": "x"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "job_not_found"


def test_patch_bad_values_are_422_naming_the_field(client: TestClient) -> None:
    """Issue 16: the same validation as create; nothing is changed by a rejected edit."""
    job = create(client, config={"lr": 0.1})
    cases: list[tuple[object, list[object]]] = [
        ({"name": ""}, ["body", "name"]),
        ({"name": None}, ["body", "name"]),
        ({"name": "x" * 201}, ["body", "name"]),
        ({"name": "a\x00b"}, ["body", "name"]),
        ({"model_name": "m" * 201}, ["body", "model_name"]),
        ({"model_name": 5}, ["body", "model_name"]),
        ({"tags": [""]}, ["body", "tags", 0]),
        ({"tags": "x"}, ["body", "tags"]),
        ({"tags": None}, ["body", "tags"]),
        ({"tags": [f"t{i}" for i in range(101)]}, ["body", "tags"]),
        ({"config": [1, 2]}, ["body", "config"]),
        ({"config": None}, ["body", "config"]),
        ({"config": {"big": 2**70}}, ["body", "config"]),
        ({"config": {"x": "y" * 70_000}}, ["body", "config"]),
        ({"status": "running"}, ["body", "status"]),
        ({"name": "ok", "unknown": 1}, ["body", "unknown"]),
        ({}, ["body"]),
        ([], ["body"]),
    ]
    for body, loc in cases:
        response = patch(client, job["id"], body)
        assert response.status_code == 422, (body, response.text)
        error = response.json()["error"]
        assert error["code"] == "validation_error", body
        assert error["details"][0]["loc"] == loc, (body, error)
    assert client.get(f"{API}/training/jobs/{job['id']}").json()["data"]["config"] == {"lr": 0.1}
    no_body = client.patch(f"{API}/training/jobs/{job['id']}")
    assert no_body.status_code == 422


def test_patch_needs_the_write_token(tmp_path: Path) -> None:
    """Issue 16: an edit is a write: 401 without the write token when one is set."""
    settings = Settings(db=str(tmp_path / "t.db"), api_token=WRITE_TOKEN)
    auth = {"Authorization": f"Bearer {WRITE_TOKEN}"}
    with TestClient(create_app(settings)) as secured:
        job = secured.post(f"{API}/training/jobs", json={"name": "run"}, headers=auth)
        job_id = job.json()["data"]["id"]
        denied = patch(secured, job_id, {"name": "x"})
        assert denied.status_code == 401
        assert denied.json()["error"]["code"] == "unauthorized"
        wrong = patch(secured, job_id, {"name": "x"}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        allowed = patch(secured, job_id, {"name": "x"}, headers=auth)
        assert allowed.status_code == 200 and allowed.json()["data"]["name"] == "x"


def test_patch_is_documented_and_allowed_by_cors(tmp_path: Path) -> None:
    spec = create_app(Settings(db=str(tmp_path / "t.db"))).openapi()
    operation = spec["paths"][f"{API}/training/jobs/{{job_id}}"]["patch"]
    assert {"200", "default"} <= set(operation["responses"])  # default: the error envelope
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/JobUpdate"}
    settings = Settings(db=str(tmp_path / "c.db"), cors_origins=("http://ui.example",))
    with TestClient(create_app(settings)) as cors:
        preflight = cors.options(
            f"{API}/training/jobs/job-001",
            headers={
                "Origin": "http://ui.example",
                "Access-Control-Request-Method": "PATCH",
            },
        )
        assert preflight.status_code == 200, preflight.text
        assert "PATCH" in preflight.headers["access-control-allow-methods"]
