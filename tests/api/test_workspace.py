"""Workspace reads (issue 16): ``metrics/summary`` and ``series``, on both stores."""

from __future__ import annotations

import math

import pytest
from fastapi.testclient import TestClient

from trainvis.api.workspace import MetricSummaryResponse, SeriesResponse
from trainvis.charts.smoothing import ema

API = "/api/v1/visualization"


def new_job(client: TestClient, *batches: list[dict]) -> str:
    job = str(client.post(f"{API}/training/jobs", json={"name": "w"}).json()["data"]["id"])
    for rows in batches:
        response = client.post(f"{API}/training/{job}/metrics", json=rows)
        assert response.status_code == 201, response.text
    return job


def summary(client: TestClient, job: str) -> dict:
    response = client.get(f"{API}/training/{job}/metrics/summary")
    assert response.status_code == 200, response.text
    MetricSummaryResponse.model_validate(response.json())  # the documented schema
    return response.json()


def series(client: TestClient, job: str, **params: object) -> dict:
    response = client.get(f"{API}/training/{job}/series", params=params)
    assert response.status_code == 200, response.text
    SeriesResponse.model_validate(response.json())  # the documented schema
    return response.json()


def small_job(client: TestClient) -> str:
    """NaN/Inf values and re-posted steps (the second batch replaces steps 2 and 4)."""
    first = [
        {"step": 1, "val_loss": 0.9, "val_accuracy": 0.5, "grad_norm": 1.0},
        {"step": 2, "val_loss": 0.2, "val_accuracy": "NaN", "grad_norm": 3.0},
        {"step": 3, "val_loss": "NaN", "val_accuracy": 0.7},
        {"step": 4, "val_loss": 0.5, "val_accuracy": 0.9, "grad_norm": "Infinity"},
    ]
    again = [
        {"step": 2, "val_loss": 0.6, "val_accuracy": 0.8},  # the old minimum goes away
        {"step": 4, "val_loss": "-Infinity", "val_accuracy": 0.6},  # the old maximum goes away
        {"step": 5, "nan_only": "NaN"},
    ]
    return new_job(client, first, again)


def test_metrics_summary_exact_values_after_reposted_steps(client: TestClient) -> None:
    """Issue 16: per-metric count/first/last/min/max/best/nonfinite, exact after upserts."""
    job = small_job(client)
    summary(client, job)  # warm the series cache before the re-posts below
    client.post(f"{API}/training/{job}/metrics", json=[{"step": 1, "grad_norm": 0.5}])
    body = summary(client, job)
    assert body["meta"] == {"total": 4}
    items = {item["name"]: item for item in body["data"]}
    assert [item["name"] for item in body["data"]] == sorted(items)
    assert items["val_loss"] == {
        "name": "val_loss",
        "count": 4,
        "first_step": 1,
        "last_step": 4,
        "last": "-Infinity",
        "min": 0.6,
        "max": 0.9,
        "best": 0.6,
        "best_step": 2,
        "nonfinite": 2,
    }
    assert items["val_accuracy"] == {
        "name": "val_accuracy",
        "count": 4,
        "first_step": 1,
        "last_step": 4,
        "last": 0.6,
        "min": 0.5,
        "max": 0.8,
        "best": 0.8,
        "best_step": 2,
        "nonfinite": 0,
    }
    assert items["grad_norm"] == {
        "name": "grad_norm",
        "count": 3,
        "first_step": 1,
        "last_step": 4,
        "last": "Infinity",
        "min": 0.5,
        "max": 3.0,
        "best": None,  # neither a loss nor a max-metric
        "best_step": None,
        "nonfinite": 1,
    }
    assert items["nan_only"] == {
        "name": "nan_only",
        "count": 1,
        "first_step": 5,
        "last_step": 5,
        "last": "NaN",
        "min": None,
        "max": None,
        "best": None,
        "best_step": None,
        "nonfinite": 1,
    }


def test_metrics_summary_sorted_by_name_and_best_direction(client: TestClient) -> None:
    rows = [
        {"step": s, "zeta_loss": v, "Alpha_f1": v, "beta": v, "accuracy": v}
        for s, v in ((10, 0.3), (20, 0.1), (30, 0.7))
    ]
    body = summary(client, new_job(client, rows))
    assert [item["name"] for item in body["data"]] == ["Alpha_f1", "accuracy", "beta", "zeta_loss"]
    best = {item["name"]: (item["best"], item["best_step"]) for item in body["data"]}
    assert best == {
        "zeta_loss": (0.1, 20),
        "Alpha_f1": (0.7, 30),
        "accuracy": (0.7, 30),
        "beta": (None, None),
    }


def test_metrics_summary_of_empty_and_unknown_job(client: TestClient) -> None:
    assert summary(client, new_job(client)) == {"data": [], "meta": {"total": 0}}
    response = client.get(f"{API}/training/ghost/metrics/summary")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "job_not_found"


def test_series_shapes_nonfinite_and_unknown_names(client: TestClient) -> None:
    job = small_job(client)
    body = series(client, job, metrics="val_loss,ghost,grad_norm")
    data = body["data"]
    assert list(data) == ["val_loss", "ghost", "grad_norm"]
    assert data["val_loss"] == {
        "x": [1, 2, 3, 4],
        "y": [0.9, 0.6, None, None],
        "nonfinite_x": [3, 4],
    }
    assert data["grad_norm"] == {"x": [1, 2, 4], "y": [1.0, 3.0, None], "nonfinite_x": [4]}
    assert data["ghost"] == {"x": [], "y": [], "nonfinite_x": []}
    assert body["meta"]["missing"] == ["ghost"]
    assert body["meta"]["points_total"] == 7
    windowed = series(client, job, metrics="val_loss", start_step=2, end_step=3)
    assert windowed["data"]["val_loss"]["x"] == [2, 3]
    reversed_range = series(client, job, metrics="val_loss", start_step=4, end_step=2)
    assert reversed_range["data"]["val_loss"] == {"x": [], "y": [], "nonfinite_x": []}
    no_epochs = series(client, job, metrics="val_loss", x="epoch")  # x unknown: left out
    assert no_epochs["data"]["val_loss"]["x"] == []
    with_smooth = series(client, job, metrics="val_loss,ghost", smooth="true", band="minmax")
    assert set(with_smooth["data"]["ghost"]) == {"x", "y", "nonfinite_x", "smoothed", "min", "max"}
    smoothed = with_smooth["data"]["val_loss"]["smoothed"]
    assert len(smoothed) == 4
    assert smoothed[2:] == [None, None]  # null where y is


def test_series_smoothing_does_not_depend_on_the_window(client: TestClient) -> None:
    """Issue 16: val_loss@800 smoothed was 0.374 in the full view, 0.287 zoomed to 663-1022."""
    rows = [
        {"step": s, "val_loss": 1.0 / (1 + s / 100) + (0.2 if s % 30 == 0 else 0.0)}
        for s in range(0, 2000, 1)
    ]
    job = new_job(client, rows)
    params = {"metrics": "val_loss", "smooth": "true", "smooth_factor": 0.1}
    full = series(client, job, max_points=4000, **params)["data"]["val_loss"]
    zoomed = series(client, job, start_step=663, end_step=1022, max_points=4000, **params)
    zoom = zoomed["data"]["val_loss"]
    assert zoom["x"][0] == 663 and zoom["x"][-1] == 1022
    at_full = full["smoothed"][full["x"].index(800)]
    at_zoom = zoom["smoothed"][zoom["x"].index(800)]
    assert at_zoom == at_full
    expected = ema([r["val_loss"] for r in rows], 0.1)[800]
    assert at_full == pytest.approx(float(expected), rel=1e-12)
    # Downsampled views agree too, at every step both return.
    small = series(client, job, max_points=100, **params)["data"]["val_loss"]
    by_step = dict(zip(full["x"], full["smoothed"], strict=True))
    for x, value in zip(small["x"], small["smoothed"], strict=True):
        assert value == by_step[x]


def test_series_band_min_max(client: TestClient) -> None:
    rows = [{"step": s, "loss": float(s % 7) + (50.0 if s == 333 else 0.0)} for s in range(1000)]
    job = new_job(client, rows)
    whole = series(client, job, metrics="loss", band="minmax")["data"]["loss"]
    assert whole["min"] == whole["y"] == whole["max"]  # nothing merged
    merged = series(client, job, metrics="loss", band="minmax", max_points=64)
    data = merged["data"]["loss"]
    assert merged["meta"]["downsampled"] is True
    assert len(data["x"]) <= 64
    assert len(data["min"]) == len(data["max"]) == len(data["x"])
    assert all(lo <= y <= hi for lo, y, hi in zip(data["min"], data["y"], data["max"], strict=True))
    assert max(data["max"]) == 54.0  # the spike (333 % 7 + 50) survives
    assert min(data["min"]) == 0.0


def test_series_rejects_bad_metric_lists_and_params(client: TestClient) -> None:
    job = new_job(client, [{"step": 1, "loss": 1.0}])
    url = f"{API}/training/{job}/series"
    for params in (
        {},
        {"metrics": ""},
        {"metrics": " , "},
        {"metrics": ",".join(f"m{i}" for i in range(101))},
    ):
        response = client.get(url, params=params)
        assert response.status_code == 422, params
        error = response.json()["error"]
        assert error["code"] == "validation_error"
        assert any("metrics" in detail["loc"] for detail in error["details"]), error
    assert client.get(url, params={"metrics": ",".join(f"m{i}" for i in range(100))}).is_success
    for name, value in (
        ("max_points", 3),
        ("smooth_factor", 0),
        ("x", "nope"),
        ("band", "x"),
        ("start_step", -1),
    ):
        response = client.get(url, params={"metrics": "loss", name: value})
        assert response.status_code == 422, name
        details = response.json()["error"]["details"]
        assert any(name in detail["loc"] for detail in details), details
    response = client.get(f"{API}/training/ghost/series", params={"metrics": "loss"})
    assert response.status_code == 404


def test_series_time_axis(client: TestClient) -> None:
    job = new_job(
        client,
        [{"step": s, "loss": 1.0 / s, "timestamp": 1_700_000_000 + s} for s in (1, 2, 3)],
    )
    data = series(client, job, metrics="loss", x="relative_time")["data"]["loss"]
    assert data["x"] == [0.0, 1.0, 2.0]
    assert all(math.isfinite(y) for y in data["y"])


def test_openapi_documents_the_workspace_endpoints(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "get" in paths[f"{API}/training/{{job_id}}/metrics/summary"]
    parameters = paths[f"{API}/training/{{job_id}}/series"]["get"]["parameters"]
    by_name = {p["name"]: p for p in parameters}
    assert by_name["metrics"]["required"] is True
    assert {"max_points", "smooth", "smooth_factor", "x", "start_step", "end_step", "band"} <= set(
        by_name
    )
