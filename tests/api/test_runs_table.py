"""The runs table (issue 16): ``GET /training/jobs`` with ``sort``, ``config.<path>=``
filters and ``stats=``, on both stores."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from trainvis.api.schemas import JobListResponse

API = "/api/v1/visualization"


def make_job(client: TestClient, rows: list[dict[str, Any]] | None = None, **body: Any) -> str:
    response = client.post(f"{API}/training/jobs", json=body)
    assert response.status_code == 201, response.text
    job = str(response.json()["data"]["id"])
    if rows:
        posted = client.post(f"{API}/training/{job}/metrics", json=rows)
        assert posted.status_code == 201, posted.text
    return job


@pytest.fixture
def runs(client: TestClient) -> TestClient:
    """Five jobs: job-001…job-005 (see each one's comment)."""
    # best val_loss 0.5 (last 0.7), val_accuracy up to 0.8, progress 0.03
    make_job(
        client,
        [
            {"step": 1, "val_loss": 0.9, "val_accuracy": 0.6},
            {"step": 2, "val_loss": 0.5, "val_accuracy": 0.8},
            {"step": 3, "val_loss": 0.7, "eval.top1_accuracy": 0.4},
        ],
        name="alpha",
        total_steps=100,
        tags=["base"],
        config={"optimizer": {"name": "AdamW"}, "lr": 0.001, "flag": True, "layers": [1, 2]},
    )
    # best val_loss 0.4, last NaN, progress 0.5
    make_job(
        client,
        [{"step": 1, "val_loss": 0.4}, {"step": 2, "val_loss": "NaN"}],
        name="Beta",
        total_steps=4,
        config={"optimizer": {"name": "SGD"}, "lr": 1e-05},
    )
    # no metrics, no progress, lr is a string
    make_job(client, name="gamma", config={"lr": "0.001"})
    # val_loss 0.6, progress clamped to 1 (step 5 of 1)
    make_job(
        client,
        [{"step": 5, "val_loss": 0.6}],
        name="delta",
        total_steps=1,
        config={"optimizer": {"name": "AdamW"}, "lr": 0.1},
    )
    # no val_loss, progress 1
    make_job(client, [{"step": 2, "train_loss": 1.0}], name="epsilon", total_steps=2, config={})
    return client


def listing(client: TestClient, **params: Any) -> dict[str, Any]:
    response = client.get(f"{API}/training/jobs", params=params)
    assert response.status_code == 200, response.text
    JobListResponse.model_validate(response.json())  # the documented schema
    return dict(response.json())


def ids(client: TestClient, **params: Any) -> list[str]:
    return [job["id"].removeprefix("job-00") for job in listing(client, **params)["data"]]


def test_sort_by_metric_stats_puts_lacking_jobs_last_both_ways(runs: TestClient) -> None:
    assert ids(runs, sort="metric.val_loss.best") == ["2", "1", "4", "5", "3"]
    assert ids(runs, sort="-metric.val_loss.best") == ["4", "1", "2", "5", "3"]
    assert ids(runs, sort="metric.val_loss.min") == ["2", "1", "4", "5", "3"]
    assert ids(runs, sort="-metric.val_loss.max") == ["1", "4", "2", "5", "3"]
    # a NaN last value lacks the key, like a missing metric
    assert ids(runs, sort="metric.val_loss.last") == ["4", "1", "5", "3", "2"]
    assert ids(runs, sort="-metric.val_loss.last") == ["1", "4", "5", "3", "2"]
    # best of an accuracy is its maximum; of an unranked metric, nothing
    assert ids(runs, sort="metric.val_accuracy.best") == ["1", "5", "4", "3", "2"]
    assert ids(runs, sort="metric.train_loss.best") == ["5", "4", "3", "2", "1"]
    assert ids(runs, sort="metric.nope.best") == ["5", "4", "3", "2", "1"]
    # a metric name with dots: the statistic is what follows the last one
    assert ids(runs, sort="-metric.eval.top1_accuracy.best") == ["1", "5", "4", "3", "2"]


def test_sort_by_config_orders_numbers_then_strings(runs: TestClient) -> None:
    assert ids(runs, sort="config.lr") == ["2", "1", "4", "3", "5"]
    assert ids(runs, sort="-config.lr") == ["3", "4", "1", "2", "5"]
    assert ids(runs, sort="config.optimizer.name") == ["4", "1", "2", "5", "3"]
    assert ids(runs, sort="-config.optimizer.name") == ["2", "4", "1", "5", "3"]
    assert ids(runs, sort="config.optimizer.name.deeper") == ["5", "4", "3", "2", "1"]
    # object keys only: an array is not indexed (the same on both stores)
    assert ids(runs, sort="config.layers.0") == ["5", "4", "3", "2", "1"]


def test_sort_by_columns(runs: TestClient) -> None:
    assert ids(runs) == ["5", "4", "3", "2", "1"]  # default -created_at
    assert ids(runs, sort="created_at") == ["1", "2", "3", "4", "5"]
    assert ids(runs, sort="name") == ["1", "2", "4", "5", "3"]  # case-insensitive
    assert ids(runs, sort="-name") == ["3", "5", "4", "2", "1"]
    assert ids(runs, sort="progress") == ["1", "2", "5", "4", "3"]  # clamped ties by id
    assert ids(runs, sort="-progress") == ["5", "4", "2", "1", "3"]
    runs.put(f"{API}/training/jobs/job-001/status", json={"status": "completed"})
    runs.patch(f"{API}/training/jobs/job-003", json={"name": "gamma 2"})
    jobs = listing(runs, sort="status")["data"]
    expected = sorted(jobs, key=lambda job: job["id"], reverse=True)
    expected.sort(key=lambda job: job["status"])
    assert [job["id"] for job in jobs] == [job["id"] for job in expected]
    assert ids(runs, sort="-updated_at")[0] == "3"


def test_sort_pages_with_limit_and_offset(runs: TestClient) -> None:
    body = listing(runs, sort="metric.val_loss.best", limit=2, offset=2)
    assert [job["id"] for job in body["data"]] == ["job-004", "job-005"]
    assert body["meta"] == {"total": 5, "limit": 2, "offset": 2}


def test_config_filters_match_json_text_and_numbers(runs: TestClient) -> None:
    def matching(*pairs: tuple[str, str], **params: Any) -> list[str]:
        query = [*pairs, *params.items()]
        response = runs.get(f"{API}/training/jobs", params=query)
        assert response.status_code == 200, response.text
        return [job["id"].removeprefix("job-00") for job in response.json()["data"]]

    assert matching(("config.optimizer.name", "AdamW")) == ["4", "1"]
    assert matching(("config.optimizer.name", "adamw")) == []
    assert matching(("config.lr", "0.001")) == ["3", "1"]  # the string and the number
    assert matching(("config.lr", "1e-05")) == ["2"]
    assert matching(("config.lr", "0.00001")) == ["2"]  # numerically equal
    assert matching(("config.flag", "true")) == ["1"]
    assert matching(("config.layers", "[1,2]")) == ["1"]
    assert matching(("config.optimizer", '{"name":"SGD"}')) == ["2"]
    # objects and arrays compare as JSON, whatever the spacing
    assert matching(("config.optimizer", '{"name": "SGD"}')) == ["2"]
    assert matching(("config.layers", "[1, 2]")) == ["1"]
    assert matching(("config.layers", "[1, 2")) == []  # not JSON: compared as text
    assert matching(("config.optimizer.name", "AdamW"), ("config.lr", "0.1")) == ["4"]
    assert matching(("config.nope", "x")) == []
    assert matching(("config.optimizer.name", "AdamW"), sort="name") == ["1", "4"]
    both = runs.get(
        f"{API}/training/jobs", params=[("config.optimizer.name", "AdamW"), ("limit", "1")]
    ).json()
    assert both["meta"]["total"] == 2 and len(both["data"]) == 1


def test_stats_gives_each_listed_metric_as_the_summary_does(runs: TestClient) -> None:
    body = listing(runs, stats="val_loss, val_accuracy,nope,val_loss", sort="created_at")
    stats = {job["id"]: job["stats"] for job in body["data"]}
    assert stats["job-001"] == {
        "val_loss": {
            "last": 0.7,
            "min": 0.5,
            "max": 0.9,
            "best": 0.5,
            "best_step": 2,
            "count": 3,
        },
        "val_accuracy": {
            "last": 0.8,
            "min": 0.6,
            "max": 0.8,
            "best": 0.8,
            "best_step": 2,
            "count": 2,
        },
    }
    assert stats["job-002"]["val_loss"]["last"] == "NaN"
    assert stats["job-003"] == {} and stats["job-005"] == {}
    keys = ("last", "min", "max", "best", "best_step", "count")
    for job_id, metrics in stats.items():  # the same numbers as metrics/summary
        summary = runs.get(f"{API}/training/{job_id}/metrics/summary").json()["data"]
        by_name = {item["name"]: item for item in summary}
        for name, item in metrics.items():
            assert item == {key: by_name[name][key] for key in keys}
    assert all("stats" not in job for job in listing(runs)["data"])
    assert all(job["stats"] == {} for job in listing(runs, stats="")["data"])


@pytest.mark.parametrize(
    "sort",
    [
        "bogus",
        "metric.val_loss",
        "metric.val_loss.mean",
        "metric..best",
        "config",
        "config.",
        "config.a..b",
        'config.a"b',
        "-",
        "--name",
        "name ",
        "x" * 301,
    ],
)
def test_bad_sort_is_422_naming_sort(client: TestClient, sort: str) -> None:
    response = client.get(f"{API}/training/jobs", params={"sort": sort})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"][0]["loc"] == ["query", "sort"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("config", "1"),
        ("config.", "1"),
        ("config..lr", "1"),
        ("config.a\\b", "1"),
        ("config.lr", "x" * 201),
        ("config.lr", "a\x00b"),
    ],
)
def test_bad_config_filter_is_422_naming_it(client: TestClient, key: str, value: str) -> None:
    response = client.get(f"{API}/training/jobs", params={key: value})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["loc"] == ["query", key]


def test_too_many_config_filters_is_422(client: TestClient) -> None:
    params = [(f"config.k{index}", "1") for index in range(21)]
    response = client.get(f"{API}/training/jobs", params=params)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["loc"] == ["query", "config"]


def test_bad_stats_is_422(client: TestClient) -> None:
    for value in ("a\x00b", "a" * 4001):
        response = client.get(f"{API}/training/jobs", params={"stats": value})
        assert response.status_code == 422, response.text
        assert response.json()["error"]["details"][0]["loc"] == ["query", "stats"]


def test_list_parameters_are_in_the_openapi_schema(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"][f"{API}/training/jobs"]["get"]
    params = {param["name"]: param for param in operation["parameters"]}
    assert {"sort", "stats", "status", "tag", "q", "limit", "offset"} <= set(params)
    assert params["sort"]["schema"]["default"] == "-created_at"
    assert "metric" in params["sort"]["schema"]["pattern"]
    assert "config.<dotted path>" in operation["description"]
