"""History: filters, paging, CSV and the meta block."""

from __future__ import annotations

import csv
import io

import pytest
from fastapi.testclient import TestClient

from trainvis.models import parse_metric_rows
from trainvis.store import open_store

API = "/api/v1/visualization"


@pytest.fixture
def job(client: TestClient) -> str:
    job_id = client.post(f"{API}/training/jobs", json={"name": "h"}).json()["data"]["id"]
    rows = [
        {
            "step": s,
            "epoch": s // 10,
            "train_loss": 1 / (s + 1),
            **({"val_loss": 0.5} if s % 10 == 0 else {}),
        }
        for s in range(100)
    ]
    assert client.post(f"{API}/training/{job_id}/metrics", json=rows).status_code == 201
    return str(job_id)


def get(client: TestClient, job: str, **params: object) -> dict:
    response = client.get(f"{API}/training/{job}/metrics/history", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_full_history_meta(client: TestClient, job: str) -> None:
    body = get(client, job)
    assert len(body["data"]) == 100
    assert body["meta"] == {"total": 100, "limit": None, "offset": 0}
    assert [row["step"] for row in body["data"]] == list(range(100))


def test_metric_filter_selects_columns_and_rows(client: TestClient, job: str) -> None:
    body = get(client, job, metrics="val_loss")
    assert body["meta"]["total"] == 10
    assert all(set(row) == {"step", "epoch", "timestamp", "val_loss"} for row in body["data"])
    assert [row["step"] for row in body["data"]] == list(range(0, 100, 10))


def test_step_range_inclusive_and_paging(client: TestClient, job: str) -> None:
    body = get(client, job, start_step=10, end_step=20)
    assert [row["step"] for row in body["data"]] == list(range(10, 21))
    assert body["meta"]["total"] == 11
    page = get(client, job, start_step=10, end_step=20, limit=3, offset=2)
    assert [row["step"] for row in page["data"]] == [12, 13, 14]
    assert page["meta"] == {"total": 11, "limit": 3, "offset": 2}


def test_unknown_metric_gives_empty(client: TestClient, job: str) -> None:
    assert get(client, job, metrics="nope")["data"] == []


def test_csv(client: TestClient, job: str) -> None:
    response = client.get(f"{API}/training/{job}/metrics/history", params={"format": "csv"})
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 100
    assert rows[0]["step"] == "0" and float(rows[0]["train_loss"]) == 1.0
    assert rows[1]["val_loss"] == ""
    by_accept = client.get(f"{API}/training/{job}/metrics/history", headers={"Accept": "text/csv"})
    assert by_accept.text == response.text


def test_bad_query_params_are_422(client: TestClient, job: str) -> None:
    for params, name in [
        ({"start_step": -1}, "start_step"),
        ({"limit": 0}, "limit"),
        ({"format": "xml"}, "format"),
    ]:
        response = client.get(f"{API}/training/{job}/metrics/history", params=params)
        assert response.status_code == 422
        assert response.json()["error"]["details"][0]["loc"] == ["query", name]


def test_history_reflects_every_write_between_reads(client: TestClient, job: str) -> None:
    first = get(client, job)["data"]
    assert first[5]["train_loss"] == 1 / 6
    client.post(f"{API}/training/{job}/metrics", json={"step": 5, "train_loss": 42.0})
    client.post(f"{API}/training/{job}/metrics", json={"step": 1000, "train_loss": 7.0, "epoch": 9})
    second = get(client, job)["data"]
    assert second[5]["train_loss"] == 42.0
    assert second[-1] == {**second[-1], "step": 1000, "train_loss": 7.0, "epoch": 9}
    assert len(second) == 101


def test_history_reflects_writes_from_another_store(
    client: TestClient, job: str, db_url: str
) -> None:
    get(client, job)
    other = open_store(db_url)
    try:
        other.write_metrics(job, parse_metric_rows({"step": 3, "train_loss": -1.0}, max_rows=1))
    finally:
        other.close()
    assert get(client, job)["data"][3]["train_loss"] == -1.0
