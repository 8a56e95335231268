"""Chart endpoints end to end: real store, real cache, real builders."""

from __future__ import annotations

import math

import numpy as np
import pytest
from fastapi.testclient import TestClient

from trainvis.charts import build_chart
from trainvis.charts.downsample import grid_width
from trainvis.errors import InvalidArgument

API = "/api/v1/visualization"
CHARTS = ["loss", "gpu", "metrics/chart", "learning-rate"]


def new_job(client: TestClient, rows: list[dict] | None = None) -> str:
    job = str(client.post(f"{API}/training/jobs", json={"name": "c"}).json()["data"]["id"])
    if rows:
        for start in range(0, len(rows), 10_000):
            response = client.post(
                f"{API}/training/{job}/metrics", json=rows[start : start + 10_000]
            )
            assert response.status_code == 201, response.text
    return job


def chart(client: TestClient, job: str, kind: str, **params: object) -> dict:
    response = client.get(f"{API}/training/{job}/{kind}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def datasets(body: dict) -> dict[str, dict]:
    return {d["label"]: d for d in body["data"]["data"]["datasets"]}


@pytest.mark.parametrize("kind", CHARTS)
def test_empty_job_gives_empty_chartjs_config(client: TestClient, kind: str) -> None:
    body = chart(client, new_job(client), kind)
    config = body["data"]
    assert config["type"] == "line"
    assert config["data"]["datasets"] == []
    assert "options" in config
    assert body["meta"]["points_total"] == 0


@pytest.mark.parametrize("kind", CHARTS)
def test_unknown_job_is_404(client: TestClient, kind: str) -> None:
    response = client.get(f"{API}/training/ghost/{kind}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "job_not_found"


def test_seed_loss_request(client: TestClient) -> None:
    rows = [
        {"step": s, "train_loss": 1 / (s + 1), "val_loss": 2 / (s + 1)} for s in range(0, 500, 10)
    ]
    job = new_job(client, rows)
    body = chart(client, job, "loss", smooth="true", smooth_factor=0.1)
    sets = datasets(body)
    assert set(sets) >= {"Train Loss", "Val Loss", "Train Loss (smoothed)", "Val Loss (smoothed)"}
    assert (
        sets["Train Loss"]["role"] == "raw" and sets["Train Loss (smoothed)"]["role"] == "smoothed"
    )
    assert sets["Train Loss"]["metric"] == "train_loss"
    assert sets["Train Loss"]["data"][0] == {"x": 0, "y": 1.0}
    assert sets["Train Loss (smoothed)"]["data"][0]["y"] == pytest.approx(1.0)  # debiased
    assert body["data"]["options"]["scales"]["x"]["type"] == "linear"
    assert body["meta"]["points_total"] == 100


def test_only_val_loss(client: TestClient) -> None:
    job = new_job(client, [{"step": s, "val_loss": 0.5} for s in range(5)])
    assert list(datasets(chart(client, job, "loss"))) == ["Val Loss"]


def test_nonfinite_values_are_gaps_and_counted(client: TestClient) -> None:
    rows = [{"step": s, "train_loss": "NaN" if s == 3 else 1.0} for s in range(10)]
    body = chart(client, new_job(client, rows), "loss")
    points = datasets(body)["Train Loss"]["data"]
    assert points[3] == {"x": 3, "y": None}
    # issue 13: the counts themselves (a substring check on the meta always passed)
    meta = body["meta"]
    assert (meta["nonfinite_count"], meta["first_nonfinite_step"]) == (1, 3)
    series = meta["series"]["train_loss"]
    assert (series["nonfinite_count"], series["first_nonfinite_step"]) == (1, 3)
    assert (meta["points_total"], meta["points_returned"]) == (10, 10)


def test_multi_gpu_chart(client: TestClient) -> None:
    rows = [
        {
            "step": s,
            "gpu_utilization": 50,
            "gpu_memory": 1000,
            "gpus": [
                {"index": 0, "utilization": 60, "memory_used": 1200},
                {"index": 1, "utilization": 40, "memory_used": 800},
            ],
        }
        for s in range(5)
    ]
    body = chart(client, new_job(client, rows), "gpu")
    sets = datasets(body)
    assert {"GPU 0 Utilization (%)", "GPU 1 Utilization (%)", "GPU 0 Memory (MiB)"} <= set(sets)
    scales = body["data"]["options"]["scales"]
    memory_axis = sets["GPU 0 Memory (MiB)"]["yAxisID"]
    assert scales[memory_axis]["position"] == "right"


def test_metrics_chart_default_and_selection(client: TestClient) -> None:
    rows = [
        {"step": s, "accuracy": 0.5, "f1": 0.4, "bleu": 3.0, "train_loss": 1.0, "lr": 0.1}
        for s in range(5)
    ]
    job = new_job(client, rows)
    assert set(datasets(chart(client, job, "metrics/chart"))) == {"accuracy", "f1", "bleu"}
    assert set(datasets(chart(client, job, "metrics/chart", metrics="bleu"))) == {"bleu"}


def test_learning_rate_log_scale(client: TestClient) -> None:
    job = new_job(client, [{"step": s, "learning_rate": 10 ** -(s + 1)} for s in range(5)])
    body = chart(client, job, "learning-rate", log_scale="true")
    assert body["data"]["options"]["scales"]["y"]["type"] == "logarithmic"
    assert list(datasets(body)) == ["Learning Rate"]


def test_spike_survives_downsampling(client: TestClient) -> None:
    rows = [
        {"step": s, "train_loss": 1.0 + (50.0 if s == 123_457 else 0.0) - (9.0 if s == 7 else 0.0)}
        for s in range(200_000)
    ]
    body = chart(client, new_job(client, rows), "loss")
    points = datasets(body)["Train Loss"]["data"]
    assert len(points) <= 2000
    ys = [p["y"] for p in points]
    assert max(ys) == 51.0 and min(ys) == -8.0
    assert body["meta"]["downsampled"] is True


def test_x_axes(client: TestClient) -> None:
    rows = [
        {"step": s, "epoch": s / 10, "timestamp": 1_700_000_000 + s, "train_loss": 1.0}
        for s in range(10)
    ]
    job = new_job(client, rows)
    time_chart = chart(client, job, "loss", x="time")
    assert time_chart["data"]["options"]["scales"]["x"]["type"] == "time"
    assert datasets(time_chart)["Train Loss"]["data"][0]["x"] == 1_700_000_000_000
    relative = datasets(chart(client, job, "loss", x="relative_time"))["Train Loss"]["data"]
    assert [p["x"] for p in relative[:3]] == [0, 1, 2]
    epochs = datasets(chart(client, job, "loss", x="epoch"))["Train Loss"]["data"]
    assert epochs[5]["x"] == pytest.approx(0.5)


def test_recharts_format(client: TestClient) -> None:
    rows = [
        {"step": 100, "train_loss": 1.0, "val_loss": 2.0},
        {"step": 200, "train_loss": 0.5},
        {"step": 300, "train_loss": 0.25, "val_loss": 1.5},
        {"step": 400, "train_loss": 0.125},
    ]
    body = chart(client, new_job(client, rows), "loss", format="recharts")
    sets = body["data"]["data"]["datasets"]
    assert [d["label"] for d in sets] == ["Train Loss", "Val Loss"]
    # issue 13: every row, and every dataset carries the same row list. Between
    # two points of a series a row holds the line's value; outside its range none.
    expected = [
        {"step": 100, "Train Loss": 1.0, "Val Loss": 2.0},
        {"step": 200, "Train Loss": 0.5, "Val Loss": 1.75},
        {"step": 300, "Train Loss": 0.25, "Val Loss": 1.5},
        {"step": 400, "Train Loss": 0.125},
    ]
    for dataset in sets:
        assert dataset["data"] == expected
        assert dataset["borderColor"] and dataset["label"]


def test_band_minmax(client: TestClient) -> None:
    rows = [{"step": s, "train_loss": math.sin(s)} for s in range(10_000)]
    body = chart(client, new_job(client, rows), "loss", band="minmax", max_points=100)
    roles = [d["role"] for d in body["data"]["data"]["datasets"]]
    assert {"raw", "band_min", "band_max"} <= set(roles)
    # issue 13: the values. One band point per raw point, at its x, holding the
    # minimum and maximum of the stable-grid bucket the point stands for.
    sets = datasets(body)
    raw, low, high = (
        sets[label]["data"] for label in ("Train Loss", "Train Loss (min)", "Train Loss (max)")
    )
    assert len(raw) <= 100 and [p["x"] for p in low] == [p["x"] for p in raw] == [
        p["x"] for p in high
    ]
    steps = np.arange(10_000)
    values = np.sin(steps)
    width = grid_width(0, 9_999, (100 - 2) // 2)
    for point, lo, hi in zip(raw, low, high, strict=True):
        bucket = values[steps // width == point["x"] // width]
        assert point["y"] == values[point["x"]]
        assert (lo["y"], hi["y"]) == (bucket.min(), bucket.max())
    assert min(p["y"] for p in low) == values.min() and max(p["y"] for p in high) == values.max()


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"smooth_factor": 0}, "smooth_factor"),
        ({"smooth_factor": 1.5}, "smooth_factor"),
        ({"x": "wall"}, "x"),
        ({"max_points": 1}, "max_points"),
        ({"smooth_method": "median"}, "smooth_method"),
        ({"band": "iqr"}, "band"),
        ({"start_step": -2}, "start_step"),
    ],
)
def test_bad_chart_params_are_422(client: TestClient, params: dict, name: str) -> None:
    job = new_job(client, [{"step": 1, "train_loss": 1.0}])
    response = client.get(f"{API}/training/{job}/loss", params=params)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["loc"] == ["query", name]


def test_history_max_points_keeps_spike(client: TestClient) -> None:
    rows = [
        {"step": s, "train_loss": 100.0 if s == 4321 else 1.0, "acc": 0.5} for s in range(20_000)
    ]
    job = new_job(client, rows)
    body = client.get(
        f"{API}/training/{job}/metrics/history", params={"max_points": 200, "metrics": "train_loss"}
    ).json()
    assert len(body["data"]) <= 200
    assert any(row["train_loss"] == 100.0 for row in body["data"])
    assert all(set(row) <= {"step", "timestamp", "train_loss"} for row in body["data"])
    assert body["meta"]["total"] == 20_000


def test_chart_sees_new_points(client: TestClient) -> None:
    job = new_job(client, [{"step": 1, "train_loss": 1.0}])
    chart(client, job, "loss")
    client.post(f"{API}/training/{job}/metrics", json={"step": 2, "train_loss": 0.5})
    points = datasets(chart(client, job, "loss"))["Train Loss"]["data"]
    assert points[-1] == {"x": 2, "y": 0.5}


def test_chart_of_a_recreated_job_shows_only_the_new_jobs_points(client: TestClient) -> None:
    """issue 13: a deleted id created again is a new, empty job; the series cache
    (which follows a job by sequence number) must not serve the deleted job's points."""
    body = {"name": "again", "id": "again"}
    assert client.post(f"{API}/training/jobs", json=body).status_code == 201
    old = [{"step": s, "train_loss": 5.0, "val_loss": 6.0} for s in range(10)]
    assert client.post(f"{API}/training/again/metrics", json=old).status_code == 201
    assert len(datasets(chart(client, "again", "loss"))["Train Loss"]["data"]) == 10  # cached
    assert client.delete(f"{API}/training/jobs/again").status_code == 204
    assert client.post(f"{API}/training/jobs", json=body).status_code == 201
    assert datasets(chart(client, "again", "loss")) == {}
    new = [{"step": s, "train_loss": 1.0} for s in range(3)]
    assert client.post(f"{API}/training/again/metrics", json=new).status_code == 201
    sets = datasets(chart(client, "again", "loss", metrics="train_loss,val_loss"))
    assert list(sets) == ["Train Loss"]
    assert sets["Train Loss"]["data"] == [{"x": s, "y": 1.0} for s in range(3)]


@pytest.mark.parametrize(
    ("name", "value"),
    [("window", 100_001), ("sigma", 100_001), ("max_points", 100_001), ("end_step", 2**63)],
)
def test_chart_limits_are_the_same_in_the_api_and_the_builders(
    client: TestClient, name: str, value: int
) -> None:
    """issue 14: one declaration of the chart options (``ChartQuery``): a value the
    API refuses is refused by the builders too, and the schema says the same bound."""
    job = new_job(client, [{"step": 1, "train_loss": 1.0}])
    response = client.get(f"{API}/training/{job}/loss", params={name: value})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["loc"] == ["query", name]
    with pytest.raises(InvalidArgument) as caught:
        build_chart("loss", {}, **{name: value})
    assert caught.value.details[0]["loc"] == ["query", name]
    schema = client.get("/openapi.json").json()
    parameters = schema["paths"][f"{API}/training/{{job_id}}/loss"]["get"]["parameters"]
    bound = next(p for p in parameters if p["name"] == name)["schema"]
    bound = next(s for s in bound.get("anyOf", [bound]) if s.get("type") != "null")
    assert bound.get("maximum", bound.get("exclusiveMaximum")) == value - 1
