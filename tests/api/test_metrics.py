"""Metrics ingest: validation, upsert semantics, non-finite values, GPU lists."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from trainvis.api.app import create_app
from trainvis.config import Settings

API = "/api/v1/visualization"
SEED_ROW = {
    "step": 100,
    "epoch": 1,
    "train_loss": 0.85,
    "val_loss": 0.92,
    "learning_rate": 2e-5,
    "gpu_utilization": 75.5,
    "gpu_memory": 6144,
    "accuracy": 0.78,
    "f1": 0.76,
}


@pytest.fixture
def job(client: TestClient) -> str:
    response = client.post(f"{API}/training/jobs", json={"name": "run"})
    return str(response.json()["data"]["id"])


def post(client: TestClient, job: str, body: object) -> dict:
    response = client.post(f"{API}/training/{job}/metrics", json=body)
    assert response.status_code == 201, response.text
    return response.json()["data"]


def history(client: TestClient, job: str, **params: object) -> list[dict]:
    response = client.get(f"{API}/training/{job}/metrics/history", params=params)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_seed_row(client: TestClient, job: str) -> None:
    result = post(client, job, SEED_ROW)
    assert result == {"job_id": job, "accepted": 1, "points": 7, "last_step": 100}
    [row] = history(client, job)
    assert {k: v for k, v in row.items() if k != "timestamp"} == SEED_ROW
    detail = client.get(f"{API}/training/jobs/{job}").json()["data"]
    assert detail["current_step"] == 100 and detail["current_epoch"] == 1
    assert detail["point_count"] == 7
    assert detail["summary"]["last"]["train_loss"] == 0.85
    assert detail["summary"]["best"]["val_loss"] == {"value": 0.92, "step": 100}
    assert detail["summary"]["best"]["accuracy"] == {"value": 0.78, "step": 100}
    assert "learning_rate" not in detail["summary"]["best"]


def test_batch_custom_metrics_and_out_of_order(client: TestClient, job: str) -> None:
    rows = [{"step": s, "my_metric/x": s * 1.5, "bleu": s / 10} for s in (5, 3, 4)]
    result = post(client, job, rows)
    assert result["accepted"] == 3 and result["points"] == 6 and result["last_step"] == 5
    got = history(client, job)
    assert [row["step"] for row in got] == [3, 4, 5]
    assert got[0]["my_metric/x"] == 4.5 and got[0]["bleu"] == 0.3
    assert "epoch" not in got[0]


def test_repost_replaces_and_merges(client: TestClient, job: str) -> None:
    post(client, job, {"step": 1, "train_loss": 1.0, "accuracy": 0.5})
    post(client, job, {"step": 1, "train_loss": 0.7, "accuracy": None})
    [row] = history(client, job)
    assert row["train_loss"] == 0.7 and row["accuracy"] == 0.5
    detail = client.get(f"{API}/training/jobs/{job}").json()["data"]
    assert detail["point_count"] == 2
    assert detail["summary"]["best"]["train_loss"] == {"value": 0.7, "step": 1}


def test_retrying_a_batch_is_idempotent(client: TestClient, job: str) -> None:
    rows = [{"step": s, "train_loss": 1 / (s + 1)} for s in range(100)]
    post(client, job, rows)
    post(client, job, rows)
    assert len(history(client, job)) == 100
    assert client.get(f"{API}/training/jobs/{job}").json()["data"]["point_count"] == 100


def test_replacing_the_best_value_rescans(client: TestClient, job: str) -> None:
    post(
        client,
        job,
        [
            {"step": 1, "train_loss": 0.5},
            {"step": 2, "train_loss": 0.1},
            {"step": 3, "train_loss": 0.3},
        ],
    )
    post(client, job, {"step": 2, "train_loss": 0.9})
    best = client.get(f"{API}/training/jobs/{job}").json()["data"]["summary"]["best"]
    assert best["train_loss"] == {"value": 0.3, "step": 3}


def test_best_ties_go_to_earliest_step(client: TestClient, job: str) -> None:
    post(
        client,
        job,
        [
            {"step": 5, "val_loss": 0.2},
            {"step": 2, "val_loss": 0.2},
            {"step": 9, "val_accuracy": 0.9},
        ],
    )
    post(client, job, {"step": 1, "val_accuracy": 0.9})
    best = client.get(f"{API}/training/jobs/{job}").json()["data"]["summary"]["best"]
    assert best["val_loss"] == {"value": 0.2, "step": 2}
    assert best["val_accuracy"] == {"value": 0.9, "step": 1}


def test_nonfinite_values_are_kept(client: TestClient, job: str) -> None:
    body = (
        '[{"step": 1, "train_loss": NaN},'
        ' {"step": 2, "train_loss": Infinity, "val_loss": -Infinity},'
        ' {"step": 3, "train_loss": "NaN", "val_loss": 0.5}]'
    )
    response = client.post(
        f"{API}/training/{job}/metrics", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 201, response.text
    got = history(client, job)
    assert [row["train_loss"] for row in got] == ["NaN", "Infinity", "NaN"]
    assert got[1]["val_loss"] == "-Infinity"
    summary = client.get(f"{API}/training/jobs/{job}").json()["data"]["summary"]
    assert summary["has_nan"] is True
    assert summary["last"]["train_loss"] == "NaN"
    assert "train_loss" not in summary["best"]  # best ignores non-finite values
    assert summary["best"]["val_loss"] == {"value": 0.5, "step": 3}
    # history round-trips through ingest
    post(client, job, got)
    assert history(client, job) == [
        {**row, "timestamp": new["timestamp"]}
        for row, new in zip(got, history(client, job), strict=True)
    ]


def test_replacing_nan_clears_has_nan(client: TestClient, job: str) -> None:
    post(client, job, {"step": 1, "train_loss": "NaN"})
    post(client, job, {"step": 1, "train_loss": 1.0})
    assert client.get(f"{API}/training/jobs/{job}").json()["data"]["summary"]["has_nan"] is False


def test_gpus_list_is_flattened(client: TestClient, job: str) -> None:
    gpus = [
        {
            "index": 0,
            "utilization": 90,
            "memory_used": 1000,
            "memory_total": 16000,
            "temperature": 70,
            "power": 250,
        },
        {"index": 1, "utilization": 40, "memory_used": 800},
    ]
    result = post(client, job, {"step": 1, "gpus": gpus})
    assert result["points"] == 7
    [row] = history(client, job)
    assert row["gpu0.utilization"] == 90 and row["gpu1.memory_used"] == 800
    assert row["gpu0.power"] == 250
    post(client, job, {"step": 2, "gpu0.utilization": 10})
    assert history(client, job)[1]["gpu0.utilization"] == 10


def test_timestamps_iso_and_unix(client: TestClient, job: str) -> None:
    post(
        client,
        job,
        [
            {"step": 1, "timestamp": "2024-01-02T03:04:05.678Z", "x": 1},
            {"step": 2, "timestamp": 1704164645.5, "x": 2},
        ],
    )
    got = history(client, job)
    assert got[0]["timestamp"] == "2024-01-02T03:04:05.678Z"
    assert got[1]["timestamp"] == "2024-01-02T03:04:05.500Z"


def test_metrics_for_terminal_job_are_accepted(client: TestClient, job: str) -> None:
    client.put(f"{API}/training/jobs/{job}/status", json={"status": "completed"})
    post(client, job, {"step": 10, "val_loss": 0.3})
    # issue 13: read the row back; a late row does not reopen a finished job
    assert [(row["step"], row["val_loss"]) for row in history(client, job)] == [(10, 0.3)]
    got = client.get(f"{API}/training/jobs/{job}").json()["data"]
    assert got["status"] == "completed" and got["point_count"] == 1


def test_points_count_values_stored_not_values_posted(client: TestClient, job: str) -> None:
    """issue 13: rows repeating a step within one request count once per metric."""
    result = post(
        client,
        job,
        [
            {"step": 1, "train_loss": 1.0, "acc": 0.1},
            {"step": 1, "train_loss": 0.9},  # same step, same metric: one value stored
            {"step": 1, "lr": 0.01, "acc": None},  # a null stores nothing
            {"step": 2, "train_loss": 0.8},
        ],
    )
    assert (result["accepted"], result["points"]) == (4, 4)
    got = client.get(f"{API}/training/jobs/{job}").json()["data"]
    assert got["point_count"] == 4
    assert history(client, job)[0] == {
        "step": 1,
        "timestamp": history(client, job)[0]["timestamp"],
        "train_loss": 0.9,
        "acc": 0.1,
        "lr": 0.01,
    }


def test_first_metrics_start_a_pending_job(client: TestClient, job: str) -> None:
    """issue 13: a pending job that receives its first row becomes running."""
    before = client.get(f"{API}/training/jobs/{job}").json()["data"]
    assert (before["status"], before["started_at"]) == ("pending", None)
    post(client, job, {"step": 0, "train_loss": 1.0})
    started = client.get(f"{API}/training/jobs/{job}").json()["data"]
    assert started["status"] == "running" and started["started_at"] is not None
    post(client, job, {"step": 1, "train_loss": 0.9})
    again = client.get(f"{API}/training/jobs/{job}").json()["data"]
    assert (again["status"], again["started_at"]) == ("running", started["started_at"])
    listed = client.get(f"{API}/training/jobs", params={"status": "running"}).json()["data"]
    assert [item["id"] for item in listed] == [job]


def test_metric_limit_is_422_naming_the_field_and_stores_nothing(db_url: str) -> None:
    """issue 13: the per-job metric-count limit (checked inside the write transaction)."""
    settings = Settings(db=db_url, max_metrics_per_job=3)
    with TestClient(create_app(settings)) as client:
        job = client.post(f"{API}/training/jobs", json={"name": "run"}).json()["data"]["id"]
        post(client, job, {"step": 0, "a": 1, "b": 1})
        response = client.post(
            f"{API}/training/{job}/metrics",
            json=[{"step": 1, "a": 2, "c": 1}, {"step": 2, "c": 2, "b": 2, "d": 1, "e": 1}],
        )
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "validation_error"
        assert error["details"][0]["loc"] == ["body", 1, "d"]
        assert error["details"][0]["type"] == "limit_exceeded"
        got = client.get(f"{API}/training/jobs/{job}").json()["data"]
        assert got["metric_names"] == ["a", "b"] and got["point_count"] == 2
        post(client, job, [{"step": 1, "a": 2, "c": 1}, {"step": 2, "b": 2, "c": 2}])
        too_many = client.post(f"{API}/training/{job}/metrics", json={"step": 3, "z": 1})
        assert too_many.json()["error"]["details"][0]["loc"] == ["body", 0, "z"]


def test_unknown_job_is_404(client: TestClient) -> None:
    response = client.post(f"{API}/training/nope/metrics", json={"step": 1, "loss": 1})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "job_not_found"


BAD_ROWS = [
    ({"train_loss": 1}, ["body", "step"]),
    ({"step": -1}, ["body", "step"]),
    ({"step": 1.5}, ["body", "step"]),
    ({"step": "1"}, ["body", "step"]),
    ({"step": True}, ["body", "step"]),
    ({"step": 1, "train_loss": "0.5"}, ["body", "train_loss"]),
    ({"step": 1, "train_loss": "abc"}, ["body", "train_loss"]),
    ({"step": 1, "train_loss": True}, ["body", "train_loss"]),
    ({"step": 1, "train_loss": {"a": 1}}, ["body", "train_loss"]),
    ({"step": 1, "train_loss": [1]}, ["body", "train_loss"]),
    ({"step": 1, "gpu_utilization": 101}, ["body", "gpu_utilization"]),
    ({"step": 1, "gpu_utilization": -1}, ["body", "gpu_utilization"]),
    ({"step": 1, "gpu_memory": -5}, ["body", "gpu_memory"]),
    ({"step": 1, "epoch": -1}, ["body", "epoch"]),
    ({"step": 1, "epoch": "one"}, ["body", "epoch"]),
    ({"step": 1, "timestamp": "yesterday"}, ["body", "timestamp"]),
    ({"step": 1, "bad name": 1}, ["body", "bad name"]),
    ({"step": 1, "1abc": 1}, ["body", "1abc"]),
    ({"step": 1, "x" * 129: 1}, ["body", "x" * 129]),
    ({"step": 1, "gpus": {"index": 0}}, ["body", "gpus"]),
    ({"step": 1, "gpus": [{"index": 0, "utilization": 200}]}, ["body", "gpus", 0, "utilization"]),
    ({"step": 1, "gpus": [{"index": 0, "fan": 2}]}, ["body", "gpus", 0, "fan"]),
    ({"step": 1, "gpus": [{"index": -1}]}, ["body", "gpus", 0, "index"]),
    ({"step": 1, "gpus": [5]}, ["body", "gpus", 0]),
]


@pytest.mark.parametrize(("row", "loc"), BAD_ROWS)
def test_bad_rows_are_422_naming_the_field(
    client: TestClient, job: str, row: dict, loc: list
) -> None:
    response = client.post(f"{API}/training/{job}/metrics", json=row)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"][0]["loc"] == loc
    assert history(client, job) == []


def test_one_bad_row_stores_nothing(client: TestClient, job: str) -> None:
    rows = [{"step": s, "train_loss": 1.0} for s in range(50)] + [{"step": 50, "train_loss": "bad"}]
    response = client.post(f"{API}/training/{job}/metrics", json=rows)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["loc"] == ["body", 50, "train_loss"]
    assert history(client, job) == []
    assert client.get(f"{API}/training/jobs/{job}").json()["data"]["point_count"] == 0


def test_body_shape_errors(client: TestClient, job: str) -> None:
    url = f"{API}/training/{job}/metrics"
    headers = {"Content-Type": "application/json"}
    assert (
        client.post(url, content="{bad", headers=headers).json()["error"]["code"]
        == "malformed_json"
    )
    assert client.post(url, content="{bad", headers=headers).status_code == 400
    assert client.post(url, content=b"\xff\xfe", headers=headers).status_code == 400
    assert client.post(url, content="[" * 100_000, headers=headers).status_code == 400
    assert client.post(url, json=[]).status_code == 422
    assert client.post(url, json="text").status_code == 422
    assert client.post(url, json=[1, 2]).json()["error"]["details"][0]["loc"] == ["body", 0]
    wrong_type = client.post(
        url, content=json.dumps({"step": 1}), headers={"Content-Type": "text/plain"}
    )
    assert wrong_type.status_code == 415
    assert wrong_type.json()["error"]["code"] == "unsupported_media_type"


def test_too_many_rows_is_413(client: TestClient, job: str) -> None:
    rows = [{"step": s, "x": 1.0} for s in range(10_001)]
    response = client.post(f"{API}/training/{job}/metrics", json=rows)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert history(client, job) == []
    ok = client.post(f"{API}/training/{job}/metrics", json=rows[:10_000])
    assert ok.status_code == 201 and ok.json()["data"]["accepted"] == 10_000


def test_body_over_limit_is_413(client: TestClient, job: str) -> None:
    huge = b'{"step": 1, "x": 1, "pad": "' + b"a" * (17 * 1024 * 1024) + b'"}'
    response = client.post(
        f"{API}/training/{job}/metrics", content=huge, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_duplicate_steps_in_one_request_merge(client: TestClient, job: str) -> None:
    post(client, job, [{"step": 1, "a": 1.0}, {"step": 1, "b": 2.0}, {"step": 1, "a": 3.0}])
    assert [{k: v for k, v in r.items() if k != "timestamp"} for r in history(client, job)] == [
        {"step": 1, "a": 3.0, "b": 2.0}
    ]
