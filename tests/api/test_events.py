"""The events API on every backend: findings from ingest, notes, charts, job alerts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.unit.test_webhooks import Receiver
from trainvis.api.app import create_app
from trainvis.config import Settings
from trainvis.demo import simulate

API = "/api/v1/visualization"


def new_job(client: TestClient, **extra: Any) -> str:
    response = client.post(f"{API}/training/jobs", json={"name": "events", **extra})
    assert response.status_code == 201, response.text
    return str(response.json()["data"]["id"])


def post_rows(client: TestClient, job: str, rows: list[dict[str, Any]] | dict[str, Any]) -> None:
    response = client.post(f"{API}/training/{job}/metrics", json=rows)
    assert response.status_code == 201, response.text


def events(client: TestClient, job: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"{API}/training/{job}/events", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def demo_job(client: TestClient, steps: int = 300) -> str:
    job = new_job(client)
    rows = list(simulate(steps, eval_every=50, seed=3))
    post_rows(client, job, rows[: steps // 2])
    post_rows(client, job, rows[steps // 2 :])
    return job


def test_a_job_without_events_lists_none(client: TestClient) -> None:
    job = new_job(client)
    assert events(client, job) == {"data": [], "meta": {"total": 0, "limit": 100, "offset": 0}}
    assert client.get(f"{API}/training/jobs/{job}").json()["data"]["alerts"] == {
        "info": 0,
        "warning": 0,
        "critical": 0,
    }


def test_ingest_stores_the_demo_spike_and_a_nan(client: TestClient) -> None:
    job = demo_job(client)
    post_rows(client, job, {"step": 301, "train_loss": "NaN"})
    body = events(client, job)
    assert [(e["kind"], e["metric"], e["step"]) for e in body["data"]] == [
        ("nonfinite", "train_loss", 301),
        ("spike", "train_loss", 135),
    ]
    nan, spike = body["data"]
    assert nan["severity"] == "critical" and nan["value"] == "NaN"
    assert spike["severity"] == "warning" and spike["value"] > 1.0
    assert set(spike) == {
        "id",
        "job_id",
        "kind",
        "metric",
        "step",
        "value",
        "message",
        "severity",
        "timestamp",
    }
    assert spike["timestamp"].endswith("Z") and spike["job_id"] == job
    job_body = client.get(f"{API}/training/jobs/{job}").json()["data"]
    assert job_body["alerts"] == {"info": 0, "warning": 1, "critical": 1}
    listed = client.get(f"{API}/training/jobs").json()["data"]
    assert listed[0]["alerts"]["critical"] == 1
    # The same NaN posted again (a retried request) is not reported twice.
    post_rows(client, job, {"step": 301, "train_loss": "NaN"})
    assert events(client, job)["meta"]["total"] == 2


def test_order_kind_and_paging(client: TestClient) -> None:
    job = demo_job(client)
    for step, message in ((50, "warmup done"), (250, "lr decay"), (10, "started")):
        response = client.post(
            f"{API}/training/{job}/events", json={"message": message, "step": step}
        )
        assert response.status_code == 201
    by_step = events(client, job, order="step")["data"]
    assert [e["step"] for e in by_step] == [10, 50, 135, 250]
    newest = events(client, job)["data"]
    assert [e["message"] for e in newest[:3]] == ["started", "lr decay", "warmup done"]
    notes = events(client, job, kind="note", order="step", limit=2, offset=1)
    assert [e["step"] for e in notes["data"]] == [50, 250]
    assert notes["meta"] == {"total": 3, "limit": 2, "offset": 1}
    ranged = events(client, job, order="step", start_step=50, end_step=135)["data"]
    assert [e["step"] for e in ranged] == [50, 135]


def test_a_note_is_stored_at_the_current_step_by_default(client: TestClient) -> None:
    job = new_job(client)
    first = client.post(f"{API}/training/{job}/events", json={"message": "before any row"})
    assert first.status_code == 201 and first.json()["data"]["step"] == 0
    post_rows(client, job, [{"step": s, "x": 1.0} for s in range(40)])
    response = client.post(
        f"{API}/training/{job}/events",
        json={
            "kind": "note",
            "message": "restarted from checkpoint",
            "severity": "warning",
            "metric": "train_loss",
            "value": 0.5,
            "timestamp": "2024-05-01T12:00:00Z",
        },
    )
    assert response.status_code == 201, response.text
    note = response.json()["data"]
    assert note["step"] == 39 and note["kind"] == "note" and note["severity"] == "warning"
    assert note["timestamp"] == "2024-05-01T12:00:00.000Z" and note["value"] == 0.5
    assert events(client, job)["data"][0] == note


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "spike", "message": "x"}, "kind"),
        ({"message": ""}, "message"),
        ({}, "message"),
        ({"message": "x" * 2001}, "message"),
        ({"message": "x", "step": -1}, "step"),
        ({"message": "x", "metric": "bad name!"}, "metric"),
        ({"message": "x", "severity": "loud"}, "severity"),
        ({"message": "x", "timestamp": "yesterday"}, "timestamp"),
        ({"message": "x", "value": "NaN"}, "value"),
        ({"message": "x", "color": "red"}, "color"),
        ({"message": "a\u0000b"}, "message"),
    ],
)
def test_a_bad_note_is_422_naming_the_field(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    job = new_job(client)
    response = client.post(f"{API}/training/{job}/events", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert any(item["loc"][:2] == ["body", field] for item in error["details"]), error
    assert events(client, job)["meta"]["total"] == 0


def test_unknown_jobs_and_bad_queries(client: TestClient) -> None:
    for response in (
        client.get(f"{API}/training/ghost/events"),
        client.post(f"{API}/training/ghost/events", json={"message": "x"}),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "job_not_found"
    job = new_job(client)
    for params in ({"limit": 0}, {"limit": 1001}, {"order": "oldest"}, {"kind": "nope"}):
        response = client.get(f"{API}/training/{job}/events", params=params)
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "validation_error"


def test_notes_need_the_write_token(tmp_path: Path) -> None:
    settings = Settings(db=str(tmp_path / "secured.db"), api_token="s3cret-token-0123456")
    with TestClient(create_app(settings)) as secured:
        auth = {"Authorization": "Bearer s3cret-token-0123456"}
        job = secured.post(f"{API}/training/jobs", json={"name": "s"}, headers=auth).json()
        path = f"{API}/training/{job['data']['id']}/events"
        denied = secured.post(path, json={"message": "x"})
        assert denied.status_code == 401 and denied.json()["error"]["code"] == "unauthorized"
        assert secured.post(path, json={"message": "x"}, headers=auth).status_code == 201
        assert secured.get(path).status_code == 200  # reads stay open


def test_events_are_deleted_with_the_job(client: TestClient) -> None:
    job = demo_job(client)
    assert events(client, job)["meta"]["total"] == 1
    assert client.delete(f"{API}/training/jobs/{job}").status_code == 204
    assert client.get(f"{API}/training/{job}/events").status_code == 404


def test_charts_carry_the_events_of_their_metrics_as_markers(client: TestClient) -> None:
    job = demo_job(client)
    client.post(f"{API}/training/{job}/events", json={"message": "checkpoint", "step": 200})
    client.post(
        f"{API}/training/{job}/events",
        json={"message": "eval set changed", "step": 100, "metric": "accuracy"},
    )

    def markers(kind: str, **params: Any) -> list[tuple[str, int]]:
        config = client.get(f"{API}/training/{job}/{kind}", params=params).json()["data"]
        found = config["options"]["plugins"].get("trainvisEvents", {"markers": []})["markers"]
        return [(event["kind"], event["step"]) for event in found]

    assert markers("loss") == [("spike", 135), ("note", 200)]
    assert markers("metrics/chart") == [("note", 100), ("note", 200)]
    assert markers("gpu") == [("note", 200)]
    assert markers("loss", start_step=150) == [("note", 200)]
    recharts = client.get(f"{API}/training/{job}/loss", params={"format": "recharts"})
    assert "trainvisEvents" not in recharts.text
    dashboard = client.get(f"{API}/dashboard/job/{job}", params={"format": "json"}).json()
    loss = dashboard["data"]["charts"]["loss"]
    assert len(loss["options"]["plugins"]["trainvisEvents"]["markers"]) == 2


def test_charts_of_a_job_without_events_are_unchanged(client: TestClient) -> None:
    job = new_job(client)
    post_rows(client, job, [{"step": s, "train_loss": 1.0} for s in range(10)])
    config = client.get(f"{API}/training/{job}/loss").json()["data"]
    assert "trainvisEvents" not in config["options"]["plugins"]


def test_health_can_be_switched_off(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(db=str(tmp_path / "off.db"), health=False))) as off:
        job = new_job(off)
        post_rows(off, job, {"step": 1, "train_loss": "NaN"})
        assert events(off, job)["meta"]["total"] == 0
        assert off.post(f"{API}/training/{job}/events", json={"message": "x"}).status_code == 201


def test_ingest_alerts_reach_the_webhook(tmp_path: Path) -> None:
    with Receiver() as receiver:
        settings = Settings(db=str(tmp_path / "hook.db"), webhook_url=receiver.url)
        with TestClient(create_app(settings)) as hooked:
            job = new_job(hooked)
            post_rows(
                hooked, job, [{"step": 1, "train_loss": 1.0}, {"step": 2, "train_loss": "NaN"}]
            )
            hooked.post(f"{API}/training/{job}/events", json={"message": "not sent"})
            deadline = time.monotonic() + 10
            while not receiver.bodies:
                assert time.monotonic() < deadline, "no webhook call"
                time.sleep(0.02)
        [body] = receiver.bodies
    assert body["type"] == "trainvis.alert"
    assert body["event"]["kind"] == "nonfinite" and body["event"]["job_id"] == job
    assert body["event"]["step"] == 2
