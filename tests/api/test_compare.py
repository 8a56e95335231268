"""``GET /training/compare`` (issue 16): one metric of many runs, on both stores."""

from __future__ import annotations

import math
from typing import Any

import pytest
from fastapi.testclient import TestClient

from trainvis.api.compare import CompactMemo
from trainvis.api.schemas import ChartResponse
from trainvis.charts.compare import RunCompact
from trainvis.charts.config import PALETTE
from trainvis.charts.smoothing import ema

API = "/api/v1/visualization"
URL = f"{API}/training/compare"


def new_job(client: TestClient, rows: list[dict[str, Any]], **fields: Any) -> str:
    body = {"name": "run", **fields}
    response = client.post(f"{API}/training/jobs", json=body)
    assert response.status_code == 201, response.text
    job = str(response.json()["data"]["id"])
    if rows:
        response = client.post(f"{API}/training/{job}/metrics", json=rows)
        assert response.status_code == 201, response.text
    return job


def compare(client: TestClient, jobs: list[str], **params: Any) -> dict[str, Any]:
    response = client.get(URL, params={"jobs": ",".join(jobs), **params})
    assert response.status_code == 200, response.text
    ChartResponse.model_validate(response.json())  # the documented schema
    return dict(response.json())


def by_role(body: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return [d for d in body["data"]["data"]["datasets"] if d["role"] == role]


def ys(dataset: dict[str, Any]) -> list[float | None]:
    return [point["y"] for point in dataset["data"]]


def xs(dataset: dict[str, Any]) -> list[float]:
    return [point["x"] for point in dataset["data"]]


def loss_rows(scale: float, steps: range = range(0, 50, 10)) -> list[dict[str, Any]]:
    return [{"step": s, "val_loss": scale * (s + 1), "acc": s / 100} for s in steps]


def test_one_raw_line_per_job_labelled_and_coloured_by_position(client: TestClient) -> None:
    a = new_job(client, loss_rows(1.0), name="alpha")
    b = new_job(client, loss_rows(2.0), name="beta")
    c = new_job(client, loss_rows(3.0), name="beta")  # a repeated name gets the id
    body = compare(client, [c, a, b], metric="val_loss")
    raw = by_role(body, "raw")
    assert [d["job_id"] for d in raw] == [c, a, b]
    assert [d["label"] for d in raw] == [f"beta ({c})", "alpha", f"beta ({b})"]
    assert all(d["metric"] == "val_loss" for d in raw)
    assert [d["borderColor"] for d in raw] == list(PALETTE[:3])
    assert ys(raw[1]) == [1.0, 11.0, 21.0, 31.0, 41.0]
    assert xs(raw[0]) == [0, 10, 20, 30, 40]
    assert by_role(body, "smoothed") == []
    # the same job keeps its colour on another metric
    other = by_role(compare(client, [c, a, b], metric="acc"), "raw")
    assert [d["borderColor"] for d in other] == [d["borderColor"] for d in raw]
    meta = body["meta"]
    assert meta["metric"] == "val_loss"
    assert meta["points_total"] == meta["points_returned"] == 15
    assert meta["missing"] == []
    assert meta["group_by"] is None and meta["baseline"] is None


def test_smoothing_runs_on_the_full_series_before_the_window(client: TestClient) -> None:
    values = [math.sin(s / 7) + (s % 5) * 0.1 for s in range(300)]
    rows = [{"step": s, "loss": v} for s, v in enumerate(values)]
    a, b = new_job(client, rows), new_job(client, rows[:200])
    full = compare(client, [a, b], metric="loss", smooth="true", smooth_factor=0.3)
    zoom = compare(
        client, [a, b], metric="loss", smooth="true", smooth_factor=0.3, start_step=120,
        end_step=180, max_points=16,
    )  # fmt: skip
    expected = ema(values, 0.3)
    smoothed_full = {p["x"]: p["y"] for p in by_role(full, "smoothed")[0]["data"]}
    smoothed_zoom = by_role(zoom, "smoothed")[0]
    assert smoothed_zoom["job_id"] == a
    assert smoothed_zoom["label"] == f"run ({a}) (smoothed)"  # both runs are named "run"
    assert len(smoothed_zoom["data"]) <= 16
    for point in smoothed_zoom["data"]:
        assert 120 <= point["x"] <= 180
        assert point["y"] == pytest.approx(smoothed_full[point["x"]], abs=1e-12)
        assert point["y"] == pytest.approx(expected[int(point["x"])], abs=1e-12)
    assert zoom["meta"]["downsampled"] is True
    assert zoom["meta"]["smoothing"] == {"method": "ema", "smooth_factor": 0.3}


def test_band_per_run_without_group_by(client: TestClient) -> None:
    rows = [{"step": s, "loss": float(s % 7)} for s in range(400)]
    a, b = new_job(client, rows), new_job(client, rows[:100])
    body = compare(client, [a, b], metric="loss", band="minmax", max_points=20)
    lows, highs = by_role(body, "band_min"), by_role(body, "band_max")
    assert [d["job_id"] for d in lows] == [d["job_id"] for d in highs] == [a, b]
    assert min(ys(lows[0])) == 0.0 and max(ys(highs[0])) == 6.0
    assert highs[0]["fill"] == "-1"


def test_group_by_config_mean_and_band_across_runs(client: TestClient) -> None:
    # runs logged at different steps: the sparse run counts between its points
    a = new_job(client, [{"step": s, "loss": float(s)} for s in (0, 10, 20)],
                config={"optim": {"name": "adam"}})  # fmt: skip
    b = new_job(client, [{"step": s, "loss": 2.0 * s} for s in (0, 20)],
                config={"optim": {"name": "adam"}})  # fmt: skip
    c = new_job(client, [{"step": s, "loss": 5.0} for s in (0, 10)],
                config={"optim": {"name": "sgd"}})  # fmt: skip
    d = new_job(client, [{"step": 0, "loss": 1.0}], config={"lr": 0.1})
    body = compare(client, [a, b, c, d], metric="loss", group_by="config.optim.name", band="minmax")
    means = by_role(body, "mean")
    assert [(m["group"], m["runs"]) for m in means] == [
        ("adam", [a, b]),
        ("sgd", [c]),
        (None, [d]),
    ]
    assert [m["label"] for m in means] == [
        "config.optim.name=adam (mean)",
        "config.optim.name=sgd (mean)",
        "config.optim.name=(none) (mean)",
    ]
    adam = means[0]
    assert xs(adam) == [0, 10, 20]
    assert ys(adam) == [0.0, 15.0, 30.0]  # b at step 10: 20.0 between its points
    lows = [x for x in by_role(body, "band_min") if x.get("group") == "adam"]
    highs = [x for x in by_role(body, "band_max") if x.get("group") == "adam"]
    assert ys(lows[0]) == [0.0, 10.0, 20.0] and ys(highs[0]) == [0.0, 20.0, 40.0]
    assert lows[0]["runs"] == [a, b]
    assert ys(means[1]) == [5.0, 5.0] and xs(means[1]) == [0, 10]
    # bands go to the groups, not to each run; each run still has its raw line
    assert all("job_id" not in x for x in by_role(body, "band_min"))
    assert [x["job_id"] for x in by_role(body, "raw")] == [a, b, c, d]
    assert body["meta"]["groups"] == [
        {"group": "adam", "runs": [a, b]},
        {"group": "sgd", "runs": [c]},
        {"group": None, "runs": [d]},
    ]
    # a non-string config value is grouped by its JSON text
    lr = compare(client, [c, d], metric="loss", group_by="config.lr")
    assert [m["group"] for m in by_role(lr, "mean")] == [None, "0.1"]


def test_group_mean_in_buckets_ignores_nonfinite_values(client: TestClient) -> None:
    a = new_job(client, [{"step": s, "loss": 1.0} for s in range(100)], tags=["x"])
    rows = [{"step": s, "loss": 3.0} for s in range(100)]
    rows[5]["loss"] = "NaN"
    b = new_job(client, rows, tags=["x"])
    body = compare(client, [a, b], metric="loss", group_by="tag", max_points=20)
    (mean,) = by_role(body, "mean")
    assert len(mean["data"]) == 20
    assert set(ys(mean)) == {2.0}
    assert xs(mean)[0] == pytest.approx(2.0)  # the mean x of steps 0-4
    assert mean["group"] == "x"


def test_group_by_tag_puts_a_job_in_each_of_its_tags(client: TestClient) -> None:
    a = new_job(client, loss_rows(1.0), tags=["base", "long"])
    b = new_job(client, loss_rows(3.0), tags=["long"])
    c = new_job(client, loss_rows(5.0))
    body = compare(client, [a, b, c], metric="val_loss", group_by="tag")
    means = {m["group"]: m for m in by_role(body, "mean")}
    assert {g: m["runs"] for g, m in means.items()} == {"base": [a], "long": [a, b], None: [c]}
    assert ys(means["long"]) == [2.0, 22.0, 42.0, 62.0, 82.0]


def test_group_by_status_and_model_name(client: TestClient) -> None:
    a = new_job(client, loss_rows(1.0), model_name="m1")
    b = new_job(client, loss_rows(1.0), model_name="m2")
    client.put(f"{API}/training/jobs/{b}/status", json={"status": "completed"})
    status = compare(client, [a, b], metric="val_loss", group_by="status")
    assert [(m["group"], m["runs"]) for m in by_role(status, "mean")] == [
        ("running", [a]),
        ("completed", [b]),
    ]
    model = compare(client, [a, b], metric="val_loss", group_by="model_name")
    assert [m["group"] for m in by_role(model, "mean")] == ["m1", "m2"]


def test_baseline_deltas_of_last_and_best(client: TestClient) -> None:
    base = new_job(client, [{"step": 1, "val_loss": 0.5}, {"step": 2, "val_loss": 0.8}])
    better = new_job(client, [{"step": 1, "val_loss": 0.25}, {"step": 2, "val_loss": 0.4}])
    nan_last = new_job(client, [{"step": 1, "val_loss": 1.0}, {"step": 2, "val_loss": "NaN"}])
    without = new_job(client, [{"step": 1, "other": 1.0}])
    body = compare(client, [better, base, nan_last, without], metric="val_loss", baseline=base)
    jobs = {item["job_id"]: item for item in body["meta"]["jobs"]}
    assert [item["job_id"] for item in body["meta"]["jobs"]] == [better, base, nan_last, without]
    assert jobs[base] == {
        "job_id": base, "last": 0.8, "best": 0.5, "delta_pct": {"last": 0.0, "best": 0.0},
    }  # fmt: skip
    assert jobs[better]["delta_pct"] == {"last": pytest.approx(-50.0), "best": pytest.approx(-50.0)}
    assert jobs[nan_last]["last"] == "NaN" and jobs[nan_last]["best"] == 1.0
    assert jobs[nan_last]["delta_pct"] == {"last": None, "best": pytest.approx(100.0)}
    assert jobs[without] == {
        "job_id": without, "last": None, "best": None, "delta_pct": {"last": None, "best": None},
    }  # fmt: skip
    assert body["meta"]["missing"] == [without]
    missing_raw = [d for d in by_role(body, "raw") if d["job_id"] == without]
    assert missing_raw[0]["data"] == []
    # a baseline whose value is 0, or who lacks the metric: null deltas
    zero = new_job(client, [{"step": 1, "val_loss": 0.0}])
    body = compare(client, [zero, base], metric="val_loss", baseline=zero)
    assert body["meta"]["jobs"][1]["delta_pct"] == {"last": None, "best": None}
    body = compare(client, [without, base], metric="val_loss", baseline=without)
    assert body["meta"]["jobs"][1]["delta_pct"] == {"last": None, "best": None}
    # without a baseline the deltas are null too
    plain = compare(client, [better, base], metric="val_loss")
    assert plain["meta"]["jobs"][0]["delta_pct"] == {"last": None, "best": None}


def test_relative_time_counts_from_each_runs_start(client: TestClient) -> None:
    a = new_job(client, [{"step": s, "loss": 1.0, "timestamp": 1_700_000_000 + s} for s in (1, 2)])
    b = new_job(client, [{"step": s, "loss": 2.0, "timestamp": 1_700_009_000 + s} for s in (1, 3)])
    body = compare(client, [a, b], metric="loss", x="relative_time")
    assert [xs(d) for d in by_role(body, "raw")] == [[0.0, 1.0], [0.0, 2.0]]
    assert body["data"]["options"]["scales"]["x"]["title"]["text"] == "Time since start (s)"


def test_recharts_rows_keyed_by_run_label(client: TestClient) -> None:
    a = new_job(client, loss_rows(1.0), name="alpha")
    b = new_job(client, loss_rows(2.0), name="beta")
    body = compare(client, [a, b], metric="val_loss", format="recharts")
    datasets = body["data"]["data"]["datasets"]
    assert datasets[0]["data"] is not None and datasets[0]["data"] == datasets[1]["data"]
    assert datasets[0]["data"][1] == {"step": 10, "alpha": 11.0, "beta": 22.0}
    assert [d["borderColor"] for d in datasets] == list(PALETTE[:2])


def test_log_scale_and_duplicate_ids(client: TestClient) -> None:
    a, b = new_job(client, loss_rows(1.0)), new_job(client, loss_rows(1.0))
    body = compare(client, [a, b, a], metric="val_loss", log_scale="true")
    assert [d["job_id"] for d in by_role(body, "raw")] == [a, b]
    # one job listed twice is drawn once (the schema cannot tell a,a from a,b)
    assert [d["job_id"] for d in by_role(compare(client, [a, a], metric="val_loss"), "raw")] == [a]
    assert body["data"]["options"]["scales"]["y"]["type"] == "logarithmic"


def assert_422(response: Any, param: str) -> None:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert any(param in detail["loc"] for detail in error["details"]), error


def test_rejects_bad_job_lists_group_by_and_baseline(client: TestClient) -> None:
    a, b = new_job(client, loss_rows(1.0)), new_job(client, loss_rows(1.0))
    fifty_one = ",".join([a, b] + [f"job-x{i}" for i in range(49)])
    for jobs in (a, " , ", "", f"{a},,{b}", f"{a}, {b}", fifty_one):
        assert_422(client.get(URL, params={"jobs": jobs, "metric": "val_loss"}), "jobs")
    assert_422(client.get(URL, params={"metric": "val_loss"}), "jobs")
    assert_422(client.get(URL, params={"jobs": f"{a},{b}"}), "metric")
    assert_422(client.get(URL, params={"jobs": f"{a},{b}", "metric": ""}), "metric")
    for group_by in ("config", "config.", "config..a", "tags", "name", "Status", "tag\n"):
        response = client.get(URL, params={"jobs": f"{a},{b}", "metric": "val_loss",
                                           "group_by": group_by})  # fmt: skip
        assert_422(response, "group_by")
    response = client.get(URL, params={"jobs": f"{a},{b}", "metric": "val_loss", "baseline": "z"})
    assert_422(response, "baseline")
    for name, value in (("max_points", 3), ("smooth_factor", 0), ("x", "nope"), ("band", "x")):
        response = client.get(URL, params={"jobs": f"{a},{b}", "metric": "val_loss", name: value})
        assert_422(response, name)
    # an unknown job is 404 naming it (the first unknown one)
    response = client.get(URL, params={"jobs": f"{a},ghost,ghost2", "metric": "val_loss"})
    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "job_not_found",
        "message": "Training job 'ghost' does not exist",
        "details": {"job_id": "ghost"},
    }
    # fifty distinct jobs are fine when they exist
    many = [a, b] + [new_job(client, []) for _ in range(48)]
    body = compare(client, many, metric="val_loss")
    assert len(by_role(body, "raw")) == 50
    assert len({d["borderColor"] for d in by_role(body, "raw")}) == min(50, len(PALETTE))


def test_answers_follow_new_and_reposted_rows_and_renames(client: TestClient) -> None:
    """Each run's part is kept by the job's sequence number: new rows, a re-posted
    step and a rename all show in the next answer."""
    a, b = new_job(client, loss_rows(1.0), name="a"), new_job(client, loss_rows(2.0), name="b")
    before = compare(client, [a, b], metric="val_loss", smooth="true")
    again = compare(client, [a, b], metric="val_loss", smooth="true")
    assert again == before
    client.post(f"{API}/training/{b}/metrics", json=[{"step": 50, "val_loss": 0.5}])
    client.post(f"{API}/training/{a}/metrics", json=[{"step": 10, "val_loss": 7.0}])
    client.patch(f"{API}/training/jobs/{a}", json={"name": "renamed"})
    after = compare(client, [a, b], metric="val_loss", smooth="true")
    raw_a, raw_b = by_role(after, "raw")
    assert raw_a["label"] == "renamed"
    assert ys(raw_a) == [1.0, 7.0, 21.0, 31.0, 41.0]
    assert xs(raw_b)[-1] == 50 and ys(raw_b)[-1] == 0.5
    assert after["meta"]["jobs"][1]["last"] == 0.5
    assert by_role(after, "smoothed")[1]["data"][-1]["y"] == pytest.approx(
        ema([2.0, 22.0, 42.0, 62.0, 82.0, 0.5], 0.4)[-1]
    )


def test_compact_memo_is_bounded_by_points_least_recently_used_first() -> None:
    def compact(points: int) -> RunCompact:
        body = {"x": [0.0] * points, "y": [0.0] * points, "nonfinite_x": []}
        return RunCompact(True, body, {}, None, None)

    memo = CompactMemo(max_points=100)
    memo.put(("a",), compact(40))
    memo.put(("b",), compact(40))
    assert memo.get(("a",)) is not None  # "a" is now the most recent
    memo.put(("c",), compact(40))  # 120 > 100: "b" goes
    assert memo.get(("b",)) is None
    assert memo.get(("a",)) is not None and memo.get(("c",)) is not None
    memo.put(("d",), compact(500))  # bigger than the bound: only it stays
    assert [memo.get((k,)) is not None for k in "acd"] == [False, False, True]
