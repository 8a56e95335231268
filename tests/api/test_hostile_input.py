"""Hostile but well-formed input on every backend (issue 13, items 1, 2 and 8).

Rule under test: everything is validated before it is stored, integers are
64-bit at most (DESIGN "Integers"), and no valid request can make a job
unreadable or break job creation for everyone.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from trainvis.api.app import create_app
from trainvis.api.stream import _resume_point
from trainvis.config import Settings
from trainvis.models import MAX_CONFIG_BYTES

API = "/api/v1/visualization"
BIG = [2**63, 10**20, 10**30]


def new_job(client: TestClient, **fields: Any) -> str:
    response = client.post(f"{API}/training/jobs", json={"name": "hostile", **fields})
    assert response.status_code == 201, response.text
    return str(response.json()["data"]["id"])


def post_rows(client: TestClient, job: str, rows: Any) -> None:
    response = client.post(f"{API}/training/{job}/metrics", json=rows)
    assert response.status_code == 201, response.text


def full_history(client: TestClient, job: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"{API}/training/{job}/metrics/history", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()  # a cut body would not parse
    return body


def csv_steps(client: TestClient, job: str) -> list[int]:
    response = client.get(f"{API}/training/{job}/metrics/history", params={"format": "csv"})
    assert response.status_code == 200, response.text
    return [int(row["step"]) for row in csv.DictReader(io.StringIO(response.text))]


def assert_422_naming(response: Any, loc: list[Any]) -> None:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"][0]["loc"][: len(loc)] == loc, error


# ---------------------------------------------------------------- item 1: unreadable jobs


def test_history_is_whole_across_a_large_step_gap(client: TestClient) -> None:
    """issue 13: PostgreSQL history and CSV stopped at the first large step gap."""
    job = new_job(client)
    post_rows(client, job, [{"step": 0, "x": 1}, {"step": 1, "x": 1}, {"step": 100000, "x": 2}])
    body = full_history(client, job)
    assert [row["step"] for row in body["data"]] == [0, 1, 100000]
    assert [row["x"] for row in body["data"]] == [1, 1, 2]
    assert body["meta"]["total"] == 3
    assert csv_steps(client, job) == [0, 1, 100000]
    assert [r["step"] for r in full_history(client, job, metrics="x")["data"]] == [0, 1, 100000]
    assert [r["step"] for r in full_history(client, job, offset=1)["data"]] == [1, 100000]


def test_history_of_a_job_logging_every_20000_steps(client: TestClient) -> None:
    """issue 13: a job logging every 20,000 steps returned one row on PostgreSQL."""
    job = new_job(client)
    steps = list(range(0, 40 * 20_000, 20_000))
    post_rows(client, job, [{"step": s, "loss": s / 1e6} for s in steps])
    assert [row["step"] for row in full_history(client, job)["data"]] == steps
    assert csv_steps(client, job) == steps
    page = full_history(client, job, limit=5, offset=30)
    assert [row["step"] for row in page["data"]] == steps[30:35]


OUT_OF_RANGE_TIMESTAMPS = [
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-14:00",
    "1969-12-31T23:59:59Z",
    "3000-01-01T00:00:01Z",
    1e30,
    10**30,
    -1,
]


@pytest.mark.parametrize("stamp", OUT_OF_RANGE_TIMESTAMPS)
def test_out_of_range_row_timestamps_are_422_and_not_stored(
    client: TestClient, stamp: object
) -> None:
    """issue 13: such a timestamp was stored (201) and then cut every history read."""
    job = new_job(client)
    response = client.post(
        f"{API}/training/{job}/metrics", json=[{"step": 0, "x": 1, "timestamp": stamp}]
    )
    assert_422_naming(response, ["body", 0, "timestamp"])
    assert full_history(client, job)["data"] == []
    post_rows(client, job, {"step": 1, "x": 2, "timestamp": "2024-05-01T12:00:00+02:00"})
    [row] = full_history(client, job)["data"]
    assert row["timestamp"] == "2024-05-01T10:00:00.000Z"


@pytest.mark.parametrize("stamp", OUT_OF_RANGE_TIMESTAMPS)
def test_out_of_range_note_timestamps_are_422_and_not_stored(
    client: TestClient, stamp: object
) -> None:
    """issue 13: such a note was stored (500) and broke the job's charts and events."""
    job = new_job(client)
    post_rows(client, job, {"step": 0, "train_loss": 1.0})
    response = client.post(
        f"{API}/training/{job}/events", json={"message": "m", "timestamp": stamp}
    )
    assert_422_naming(response, ["body", "timestamp"])
    listed = client.get(f"{API}/training/{job}/events")
    assert listed.status_code == 200 and listed.json()["meta"]["total"] == 0
    assert client.get(f"{API}/training/{job}/loss").status_code == 200
    assert client.get(f"{API}/dashboard/job/{job}", params={"format": "json"}).status_code == 200


def test_note_fields_are_not_coerced_from_strings(client: TestClient) -> None:
    """issue 13: numeric strings are not numbers (DESIGN "Contract details")."""
    job = new_job(client)
    for body, loc in [
        ({"message": "m", "step": "3"}, ["body", "step"]),
        ({"message": "m", "step": 3.5}, ["body", "step"]),
        ({"message": "m", "value": "0.5"}, ["body", "value"]),
        ({"message": "m", "timestamp": "1700000000"}, ["body", "timestamp"]),
    ]:
        assert_422_naming(client.post(f"{API}/training/{job}/events", json=body), loc)
    ok = client.post(f"{API}/training/{job}/events", json={"message": "m", "timestamp": 1.7e9})
    assert ok.status_code == 201, ok.text
    assert ok.json()["data"]["timestamp"] == "2023-11-14T22:13:20.000Z"


JOB_PATHS = [
    "/training/jobs/{job}",
    "/training/{job}/metrics/history",
    "/training/{job}/loss",
    "/training/{job}/gpu",
    "/training/{job}/metrics/chart",
    "/training/{job}/learning-rate",
    "/training/{job}/events",
    "/training/{job}/stream",
    "/dashboard/job/{job}",
]


@pytest.mark.parametrize("path", JOB_PATHS)
def test_a_nul_in_the_path_job_id_is_404(client: TestClient, path: str) -> None:
    """issue 13: a NUL in a job id in the path was a 500 on PostgreSQL."""
    response = client.get(API + path.format(job="job%00x"), params={"format": "json"})
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "job_not_found"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/training/{job}/metrics", {"step": 1, "x": 1}),
        ("POST", "/training/{job}/events", {"message": "m"}),
        ("PUT", "/training/jobs/{job}/status", {"status": "running"}),
        ("DELETE", "/training/jobs/{job}", None),
    ],
)
def test_a_nul_in_the_path_job_id_is_404_on_writes(
    client: TestClient, method: str, path: str, body: Any
) -> None:
    """issue 13: the write routes answer the same 404 for a NUL job id."""
    response = client.request(method, API + path.format(job="job%00x"), json=body)
    assert response.status_code == 404, response.text


def test_a_stale_last_event_id_of_unicode_digits_is_ignored() -> None:
    """issue 13: '²'.isdigit() is true but int('²') fails: a 500 before the stream."""
    assert _resume_point(None, "²") is None
    assert _resume_point(7, "٣") == 7
    assert _resume_point(None, " 12 ") == 12


# ---------------------------------------------------------------- item 2: integers and ids


def test_huge_client_ids_do_not_break_generated_ids(settings: Settings) -> None:
    """issue 13: after job-9223372036854775807 every generated id was a 500, for good;
    job-99999999999999999999999 was a 500 at once."""
    with TestClient(create_app(settings)) as client:
        for job_id in [
            "job-9223372036854775807",
            "job-99999999999999999999999",
            "job-" + "9" * 120,
        ]:
            assert new_job(client, id=job_id) == job_id
        assert new_job(client) == "job-001"
        # a client id within the counted range still raises the counter (DESIGN "Ids")
        assert new_job(client, id="job-4611686018427387903") == "job-4611686018427387903"
        assert new_job(client) == "job-4611686018427387904"
        assert client.delete(f"{API}/training/jobs/job-4611686018427387904").status_code == 204
    with TestClient(create_app(settings)) as client:  # a restart on the same database
        assert new_job(client) == "job-4611686018427387905"
        assert new_job(client, id="job-4611686018427387906") == "job-4611686018427387906"
        assert new_job(client) == "job-4611686018427387907"
        listed = client.get(f"{API}/training/jobs", params={"limit": 1000}).json()
        assert listed["meta"]["total"] == 8


QUERY_INTEGERS = [
    ("/training/jobs", "limit"),
    ("/training/jobs", "offset"),
    ("/training/{job}/metrics/history", "start_step"),
    ("/training/{job}/metrics/history", "end_step"),
    ("/training/{job}/metrics/history", "max_points"),
    ("/training/{job}/metrics/history", "limit"),
    ("/training/{job}/metrics/history", "offset"),
    *[
        (chart, name)
        for chart in (
            "/training/{job}/loss",
            "/training/{job}/gpu",
            "/training/{job}/metrics/chart",
            "/training/{job}/learning-rate",
        )
        for name in ("start_step", "end_step", "max_points", "window")
    ],
    ("/training/{job}/events", "start_step"),
    ("/training/{job}/events", "end_step"),
    ("/training/{job}/events", "limit"),
    ("/training/{job}/events", "offset"),
    ("/training/{job}/stream", "since"),
]


@pytest.fixture
def job(client: TestClient) -> str:
    job_id = new_job(client)
    post_rows(client, job_id, [{"step": s, "train_loss": 1 / (s + 1)} for s in range(30)])
    return job_id


@pytest.mark.parametrize(("path", "name"), QUERY_INTEGERS)
def test_integer_query_parameters_are_64_bit_integers(
    client: TestClient, job: str, path: str, name: str
) -> None:
    """issue 13: offset=1e19 and start_step >= 2**63 were 500s, limit=1e20 a cut 200."""
    for value in [*BIG, -(2**63) - 1, "1.5", "1e3", "1e19"]:
        response = client.get(API + path.format(job=job), params={name: str(value)})
        assert_422_naming(response, ["query", name])


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("start_step", 2**63 - 1),
        ("end_step", 2**63 - 1),
        ("limit", 2**63 - 1),
        ("offset", 2**63 - 1),
    ],
)
def test_history_takes_the_largest_64_bit_values(
    client: TestClient, job: str, name: str, value: int
) -> None:
    """issue 13: the bounds themselves are valid and answer a whole body."""
    body = full_history(client, job, **{name: value})
    if name in ("limit", "offset"):
        assert body["meta"][name] == value
    expected = {"start_step": 0, "end_step": 30, "limit": 30, "offset": 0}[name]
    assert len(body["data"]) == expected
    csv_response = client.get(
        f"{API}/training/{job}/metrics/history", params={name: value, "format": "csv"}
    )
    assert csv_response.status_code == 200
    assert len(csv_response.text.splitlines()) == expected + 1


def test_list_and_events_take_the_largest_offset(client: TestClient, job: str) -> None:
    """issue 13: offsets up to 2**63 - 1 answer an empty page, not a 500."""
    for path in ("/training/jobs", f"/training/{job}/events"):
        response = client.get(API + path, params={"offset": 2**63 - 1})
        assert response.status_code == 200, response.text
        assert response.json()["data"] == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("total_steps", "10"),
        ("total_steps", 10.5),
        ("total_steps", 2**63),
        ("total_steps", True),
        ("total_epochs", "3"),
        ("total_epochs", 10**30),
    ],
)
def test_job_integers_are_json_integers(client: TestClient, field: str, value: object) -> None:
    """issue 13: "total_steps": "10" was coerced although numeric strings are not numbers."""
    response = client.post(f"{API}/training/jobs", json={"name": "x", field: value})
    assert_422_naming(response, ["body", field])
    assert client.get(f"{API}/training/jobs").json()["meta"]["total"] == 0


@pytest.mark.parametrize("step", [2**63, 1e20, 10**30, "5", 1.5])
def test_huge_or_fractional_steps_are_422(client: TestClient, job: str, step: object) -> None:
    """issue 13: steps are 64-bit integers at most (DESIGN "Integers")."""
    response = client.post(f"{API}/training/{job}/metrics", json={"step": step, "x": 1})
    assert_422_naming(response, ["body", "step"])


# ---------------------------------------------------------------- deep and big bodies


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize("config", [nested(500), {"seed": 2**70}, {"x": "y" * MAX_CONFIG_BYTES}])
def test_an_unstorable_config_is_422_naming_config(
    client: TestClient, config: dict[str, Any]
) -> None:
    """issue 13: a 500-level nested config was a 500; a 10 MB config was stored and
    returned by every job list."""
    response = client.post(f"{API}/training/jobs", json={"name": "x", "config": config})
    assert_422_naming(response, ["body", "config"])
    assert client.get(f"{API}/training/jobs").json()["meta"]["total"] == 0


def test_a_config_at_the_cap_round_trips(client: TestClient) -> None:
    """issue 13: the 64 KiB cap counts the serialized config, and is inclusive."""
    config: dict[str, Any] = {"n": nested(100), "x": ""}
    config["x"] = "y" * (MAX_CONFIG_BYTES - len(orjson.dumps(config)))
    assert len(orjson.dumps(config)) == MAX_CONFIG_BYTES
    job = new_job(client, config=config)
    assert client.get(f"{API}/training/jobs/{job}").json()["data"]["config"] == config
    config["x"] += "y"
    response = client.post(f"{API}/training/jobs", json={"name": "x", "config": config})
    assert_422_naming(response, ["body", "config"])


def deep_body(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/training/jobs"),
        ("PUT", "/training/jobs/{job}/status"),
        ("POST", "/training/{job}/metrics"),
        ("POST", "/training/{job}/events"),
    ],
)
@pytest.mark.parametrize("depth", [500, 100_000])
def test_deeply_nested_bodies_are_client_errors(
    client: TestClient, job: str, method: str, path: str, depth: int
) -> None:
    """issue 13: any deeply nested JSON body is a 400/422 envelope, never a 500."""
    response = client.request(
        method,
        API + path.format(job=job),
        content=deep_body(depth),
        headers={"content-type": "application/json"},
    )
    assert response.status_code in (400, 422), response.text
    assert response.json()["error"]["code"] in ("malformed_json", "validation_error")


# ---------------------------------------------------------------- item 8: flat GPU keys


@pytest.mark.parametrize(
    ("row", "key"),
    [
        ({"gpu0.utilization": 150}, "gpu0.utilization"),
        ({"gpu3.utilization": -1}, "gpu3.utilization"),
        ({"gpu1024.memory_used": 1}, "gpu1024.memory_used"),
    ],
)
def test_flat_gpu_readings_validate_like_nested_ones(
    client: TestClient, job: str, row: dict[str, Any], key: str
) -> None:
    """issue 13: flat gpu0.utilization 150 was accepted while the nested form was 422."""
    response = client.post(f"{API}/training/{job}/metrics", json={"step": 40, **row})
    assert_422_naming(response, ["body", key])
    index = int(key[3 : key.index(".")])
    field = key.split(".", 1)[1]
    nested_response = client.post(
        f"{API}/training/{job}/metrics",
        json={"step": 40, "gpus": [{"index": index, field: row[key]}]},
    )
    assert nested_response.status_code == 422
    assert [r["step"] for r in full_history(client, job)["data"]] == list(range(30))


def test_flat_gpu_readings_in_range_are_stored(client: TestClient, job: str) -> None:
    """issue 13: valid flat readings (NaN included) are stored as before."""
    post_rows(client, job, {"step": 40, "gpu0.utilization": 100, "gpu1.memory_used": 5.0})
    post_rows(client, job, {"step": 41, "gpu0.utilization": "NaN", "gpu0.temperature": 300})
    rows = full_history(client, job, start_step=40)["data"]
    assert rows[0]["gpu0.utilization"] == 100 and rows[1]["gpu0.utilization"] == "NaN"


# ---------------------------------------------------------------- streaming: fail first


class _FailingReads:
    """The real store, except that streaming reads fail on their first chunk
    (what a broken row or a lost database does to a read)."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def iter_row_chunks(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        raise RuntimeError("the first chunk cannot be read")
        yield  # pragma: no cover


def test_a_history_that_fails_at_once_is_an_error_envelope(settings: Settings) -> None:
    """issue 13: a failure in the first chunk answered 200 and then cut the body."""
    from trainvis.store import open_store

    store = open_store(settings.db)
    try:
        app = create_app(settings, store=_FailingReads(store))  # type: ignore[arg-type]
        with TestClient(app, raise_server_exceptions=False) as client:
            job = new_job(client)
            post_rows(client, job, {"step": 0, "x": 1})
            for params in ({}, {"format": "csv"}):
                response = client.get(f"{API}/training/{job}/metrics/history", params=params)
                assert response.status_code == 500
                assert response.json() == {
                    "error": {"code": "internal_error", "message": "Internal server error"}
                }
    finally:
        store.close()


# ---------------------------------------------------------------- found by the fuzzing


@pytest.mark.parametrize("epoch", [1e20, 2**63, "1", "1e400"])
def test_an_epoch_beyond_the_step_range_is_422(client: TestClient, job: str, epoch: object) -> None:
    """issue 13 (fuzzing): epoch 1e20 was stored and then every read of the job
    failed writing it as a 64-bit integer."""
    body = {"step": 40, "x": 1, "epoch": epoch}
    response = client.post(
        f"{API}/training/{job}/metrics",
        content=orjson.dumps(body).replace(b'"1e400"', b"1e400"),
        headers={"content-type": "application/json"},
    )
    assert_422_naming(response, ["body", "epoch"])
    assert client.get(f"{API}/training/jobs/{job}").status_code == 200


@pytest.mark.parametrize("name", ["tag", "q"])
def test_a_nul_in_the_job_list_filters_is_422(client: TestClient, name: str) -> None:
    """issue 13 (fuzzing): a NUL in tag or q was a 500 on PostgreSQL."""
    assert_422_naming(client.get(f"{API}/training/jobs", params={name: "a\x00b"}), ["query", name])


def test_whole_floats_are_integers_as_in_json_schema(client: TestClient) -> None:
    """issue 13: 10.0 is the JSON integer 10 (the OpenAPI schema says so); "10" is not."""
    job = client.post(f"{API}/training/jobs", json={"name": "x", "total_steps": 10.0})
    assert job.status_code == 201, job.text
    assert job.json()["data"]["total_steps"] == 10
