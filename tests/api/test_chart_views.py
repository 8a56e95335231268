"""Issue 16 on the four overview charts (both stores): smoothing that never depends
on the window, light charts of wide jobs, the GPU chart's aggregate view and the
learning-rate axis."""

from __future__ import annotations

import math

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.api.test_charts import API, chart, new_job
from trainvis.charts.smoothing import ema

STEPS = 1_200
# The issue's example: val_loss at step 800, full view against 663–1022.
ZOOM = {"start_step": 663, "end_step": 1022}
SMOOTHING = [
    {"smooth_factor": 0.1},
    {"smooth_method": "moving_average", "window": 50},
    {"smooth_method": "gaussian", "sigma": 20},
]


def noisy(seed: int, scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return scale * (1.0 / (1.0 + np.arange(STEPS) / 100) + rng.normal(0, 0.05, STEPS))


def wide_rows() -> list[dict]:
    """Every overview chart has data: losses, GPU (aggregate and per device), eval, LR."""
    train, val, acc = noisy(1), noisy(2, 1.2), 1 - noisy(3) / 2
    util = [50 + 40 * np.sin(np.arange(STEPS) / (30 + d)) for d in range(3)]
    rows = []
    for s in range(STEPS):
        row: dict = {
            "step": s,
            "train_loss": train[s],
            "accuracy": acc[s],
            "learning_rate": 3e-4 * (1 + math.cos(math.pi * s / STEPS)) / 2 + 1e-6 * (s % 7),
            "gpu_utilization": float(np.mean([u[s] for u in util])),
            "gpus": [{"index": d, "utilization": util[d][s]} for d in range(3)],
        }
        if s % 3 == 0:
            row["val_loss"] = val[s]
        rows.append(row)
    return rows


def smoothed_by_x(body: dict) -> dict[str, dict[float, float | None]]:
    """``{metric: {x: smoothed y}}`` of a chart response."""
    found: dict[str, dict[float, float | None]] = {}
    for dataset in body["data"]["data"]["datasets"]:
        if dataset["role"] == "smoothed":
            found[dataset["metric"]] = {p["x"]: p["y"] for p in dataset["data"]}
    return found


@pytest.fixture
def wide_job(client: TestClient) -> str:
    return new_job(client, wide_rows())


@pytest.mark.parametrize("smoothing", SMOOTHING)
@pytest.mark.parametrize("kind", ["loss", "gpu", "metrics/chart", "learning-rate"])
def test_smoothed_value_at_a_step_is_the_same_in_the_full_view_and_a_zoom(
    client: TestClient, wide_job: str, kind: str, smoothing: dict
) -> None:
    """issue 16: smoothing runs on the whole series, then the range is cut."""
    full = smoothed_by_x(chart(client, wide_job, kind, smooth="true", **smoothing))
    zoomed_body = chart(client, wide_job, kind, smooth="true", **smoothing, **ZOOM)
    zoomed = smoothed_by_x(zoomed_body)
    assert full and set(zoomed) == set(full)
    for metric, points in zoomed.items():
        assert points, metric
        assert min(points) >= ZOOM["start_step"] and max(points) <= ZOOM["end_step"]
        for x, y in points.items():
            assert y == full[metric][x], (metric, x)
    # and the points counted are the window's
    series_meta = zoomed_body["meta"]["series"]["train_loss" if kind == "loss" else metric]
    assert series_meta["points_total"] < STEPS


def test_the_issue_example_val_loss_near_step_800(client: TestClient, wide_job: str) -> None:
    """val_loss (every third step) near 800: the full view, a zoom, a one-step window and
    the compact series all give the EMA of the whole series."""
    val = noisy(2, 1.2)[::3]
    expected = float(ema(val, 0.1)[801 // 3])
    for params in ({}, ZOOM, {"start_step": 801, "end_step": 801}):
        body = chart(client, wide_job, "loss", smooth="true", smooth_factor=0.1, **params)
        assert smoothed_by_x(body)["val_loss"][801] == pytest.approx(expected, rel=1e-9), params
    compact = client.get(
        f"{API}/training/{wide_job}/series",
        params={"metrics": "val_loss", "smooth": "true", "smooth_factor": 0.1, **ZOOM},
    ).json()["data"]["val_loss"]
    assert compact["smoothed"][compact["x"].index(801)] == pytest.approx(expected, rel=1e-9)


def test_downsampled_zoom_keeps_the_whole_series_smoothing(
    client: TestClient, wide_job: str
) -> None:
    full = smoothed_by_x(chart(client, wide_job, "loss", smooth="true"))["train_loss"]
    zoomed = smoothed_by_x(chart(client, wide_job, "loss", smooth="true", max_points=16, **ZOOM))
    points = zoomed["train_loss"]
    assert 0 < len(points) <= 16
    assert all(full[x] == y for x, y in points.items())


# ------------------------------------------------------------------ wide jobs


def test_metrics_chart_draws_twenty_metrics_by_default_and_names_the_rest(
    client: TestClient,
) -> None:
    names = [f"m{i:02d}" for i in range(30)]
    job = new_job(
        client, [{"step": s, "train_loss": 1.0, **dict.fromkeys(names, 0.5)} for s in range(3)]
    )
    body = chart(client, job, "metrics/chart")
    drawn = [d["metric"] for d in body["data"]["data"]["datasets"]]
    assert drawn == names[:20]
    meta = body["meta"]
    assert meta["metrics"] == names[:20]
    assert (meta["metrics_total"], meta["metrics_omitted"]) == (30, 10)
    assert meta["metrics_omitted_names"] == names[20:]
    picked = chart(client, job, "metrics/chart", metrics="m25,m03")
    assert [d["metric"] for d in picked["data"]["data"]["datasets"]] == ["m25", "m03"]
    note = {key: picked["meta"][key] for key in meta if key.startswith("metrics_")}
    assert note == {"metrics_total": 2, "metrics_omitted": 0, "metrics_omitted_names": []}
    dashboard = client.get(f"{API}/dashboard/job/{job}", params={"format": "json"}).json()
    metrics = dashboard["data"]["charts"]["metrics"]["data"]["datasets"]
    assert [d["metric"] for d in metrics] == names[:20]


def test_omitted_names_list_is_short(client: TestClient) -> None:
    names = [f"eval/{i:03d}" for i in range(300)]
    job = new_job(client, [{"step": 0, **dict.fromkeys(names, 1.0)}])
    meta = chart(client, job, "metrics/chart")["meta"]
    assert (meta["metrics_total"], meta["metrics_omitted"]) == (300, 280)
    assert meta["metrics_omitted_names"] == names[20:40]


def test_an_explicit_list_of_more_than_100_metrics_is_422(client: TestClient) -> None:
    job = new_job(client, [{"step": 0, "a": 1.0}])
    response = client.get(
        f"{API}/training/{job}/metrics/chart",
        params={"metrics": ",".join(f"m{i}" for i in range(101))},
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["loc"] == ["query", "metrics"]


# ------------------------------------------------------------------ GPU aggregate


def gpu_rows(devices: int, steps: int) -> tuple[list[dict], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    util = rng.uniform(0, 100, (devices, steps))
    memory = rng.uniform(1000, 80_000, (devices, steps))
    util[3, steps // 2] = 100.0  # one device's one-step spike
    util[2, 5] = np.nan  # a device that failed to read
    rows = [
        {
            "step": s,
            "gpu_utilization": 50.0,
            "gpus": [
                {
                    "index": d,
                    "utilization": "NaN" if np.isnan(util[d, s]) else util[d, s],
                    "memory_used": memory[d, s],
                }
                for d in range(devices)
            ],
        }
        for s in range(steps)
    ]
    return rows, util, memory


def by_label(body: dict) -> dict[str, dict]:
    return {d["label"]: d for d in body["data"]["data"]["datasets"]}


def test_gpu_aggregate_is_the_mean_with_the_devices_min_max_band(client: TestClient) -> None:
    rows, util, memory = gpu_rows(12, 100)
    job = new_job(client, rows)
    body = chart(client, job, "gpu", aggregate="true")
    sets = by_label(body)
    assert set(sets) == {
        "GPU Utilization (%)",
        "GPU Utilization (%), mean of 12",
        "GPU Utilization (%), mean of 12 (min)",
        "GPU Utilization (%), mean of 12 (max)",
        "GPU Memory (MiB), mean of 12",
        "GPU Memory (MiB), mean of 12 (min)",
        "GPU Memory (MiB), mean of 12 (max)",
    }
    mean = sets["GPU Utilization (%), mean of 12"]
    low = sets["GPU Utilization (%), mean of 12 (min)"]
    high = sets["GPU Utilization (%), mean of 12 (max)"]
    assert (mean["role"], low["role"], high["role"]) == ("mean", "band_min", "band_max")
    assert (high["fill"], mean["yAxisID"]) == ("-1", "y")
    assert sets["GPU Memory (MiB), mean of 12"]["yAxisID"] == "y1"
    ys = [p["y"] for p in mean["data"]]
    assert ys == pytest.approx(np.nanmean(util, axis=0).tolist())  # the NaN reading is left out
    assert [p["y"] for p in low["data"]] == pytest.approx(np.nanmin(util, axis=0).tolist())
    assert [p["y"] for p in high["data"]] == pytest.approx(np.nanmax(util, axis=0).tolist())
    memory_mean = [p["y"] for p in sets["GPU Memory (MiB), mean of 12"]["data"]]
    assert memory_mean == pytest.approx(memory.mean(axis=0).tolist())
    meta = body["meta"]
    assert meta["aggregate"]["gpu_mean.utilization"] == [f"gpu{d}.utilization" for d in range(12)]
    assert body["data"]["options"]["plugins"]["legend"]["position"] == "top"


def test_gpu_aggregate_band_keeps_a_spike_when_downsampled_and_smooths_the_mean(
    client: TestClient,
) -> None:
    rows, util, _ = gpu_rows(4, 400)
    util[1, 300] = 100.0
    rows[300]["gpus"][1]["utilization"] = 100.0
    job = new_job(client, rows)
    body = chart(client, job, "gpu", aggregate="true", max_points=16, smooth="true")
    sets = by_label(body)
    high = sets["GPU Utilization (%), mean of 4 (max)"]["data"]
    assert len(high) <= 16 and max(p["y"] for p in high) == 100.0
    smoothed = sets["GPU Utilization (%), mean of 4 (smoothed)"]
    assert smoothed["role"] == "smoothed"
    full = ema(np.nanmean(util, axis=0), 0.4)
    for point in smoothed["data"]:
        assert point["y"] == pytest.approx(full[point["x"]])


def test_gpu_chart_with_many_devices_keeps_its_legend_aside(client: TestClient) -> None:
    rows, _, _ = gpu_rows(12, 20)
    job = new_job(client, rows)
    body = chart(client, job, "gpu")
    roles = [d["role"] for d in body["data"]["data"]["datasets"]]
    assert roles.count("raw") == 25  # one line per device and field, and gpu_utilization
    legend = body["data"]["options"]["plugins"]["legend"]
    assert legend["position"] == "right" and legend["maxWidth"] <= 200
    assert body["meta"]["legend"] == {"entries": len(roles), "position": "right"}


def test_gpu_aggregate_without_devices_keeps_the_plain_series(client: TestClient) -> None:
    job = new_job(client, [{"step": s, "gpu_utilization": 10.0 * s} for s in range(5)])
    plain = chart(client, job, "gpu")["data"]["data"]["datasets"]
    folded = chart(client, job, "gpu", aggregate="true")["data"]["data"]["datasets"]
    assert folded == plain


def test_bad_aggregate_value_is_422(client: TestClient) -> None:
    job = new_job(client, [{"step": 0, "gpu_utilization": 1.0}])
    response = client.get(f"{API}/training/{job}/gpu", params={"aggregate": "sometimes"})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["loc"] == ["query", "aggregate"]


# ------------------------------------------------------------------ learning-rate axis


def test_learning_rate_log_axis_spans_whole_decades(client: TestClient) -> None:
    rates = [0.0, 2e-5, 1e-4, 3e-4, 2.5e-4]
    job = new_job(client, [{"step": s, "learning_rate": r} for s, r in enumerate(rates)])
    y = chart(client, job, "learning-rate", log_scale="true")["data"]["options"]["scales"]["y"]
    assert y["type"] == "logarithmic"
    assert (y["min"], y["max"]) == pytest.approx((1e-5, 1e-3))
    linear = chart(client, job, "learning-rate")["data"]["options"]["scales"]["y"]
    assert linear["type"] == "linear" and linear["beginAtZero"] is True


def test_constant_learning_rate_log_axis_spans_a_decade(client: TestClient) -> None:
    job = new_job(client, [{"step": s, "learning_rate": 3e-3} for s in range(5)])
    y = chart(client, job, "learning-rate", log_scale="true")["data"]["options"]["scales"]["y"]
    assert (y["min"], y["max"]) == pytest.approx((1e-3, 1e-2))


def test_dashboard_json_of_a_wide_job_stays_small(client: TestClient) -> None:
    names = [f"eval/{i:03d}" for i in range(300)]
    rows = [{"step": s, "train_loss": 1.0 / (s + 1), **dict.fromkeys(names, 0.5)} for s in range(3)]
    job = new_job(client, rows)
    body = client.get(f"{API}/dashboard/job/{job}", params={"format": "json"}).json()
    data = body["data"]
    assert len(data["job"]["metric_names"]) == 301
    drawn = {"train_loss", *names[:20]}
    assert set(data["job"]["summary"]["last"]) == drawn
    assert set(data["job"]["summary"]["best"]) == {"train_loss"}
    assert body["meta"] == {"summary_omitted": 280}
    full = client.get(f"{API}/training/jobs/{job}").json()["data"]
    assert len(full["summary"]["last"]) == 301  # the job itself keeps everything
    small = new_job(client, [{"step": 0, "train_loss": 1.0, "foo": 2.0}])
    small_body = client.get(f"{API}/dashboard/job/{small}", params={"format": "json"}).json()
    assert small_body["data"]["job"]["summary"]["last"] == {"train_loss": 1.0, "foo": 2.0}
    assert small_body["meta"] == {"summary_omitted": 0}
