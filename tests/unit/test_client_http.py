"""The SDK's HTTP wrapper: paths, headers, body encoding and typed errors."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import httpx
import pytest

from trainvis.client.http import (
    ApiClient,
    ApiError,
    ServerUnavailable,
    encode_json,
    encode_rows,
)

Handler = Callable[[httpx.Request], httpx.Response]


def client_with(handler: Handler, **kwargs: object) -> ApiClient:
    return ApiClient("http://server:8000/", transport=httpx.MockTransport(handler), **kwargs)  # type: ignore[arg-type]


def test_requests_go_under_the_api_prefix_with_the_bearer_token() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"data": {"id": "job-001", "status": "pending"}})

    client = client_with(handler, token="s3cret")
    assert client.create_job({"name": "x"}) == {"id": "job-001", "status": "pending"}
    request = seen[0]
    assert request.url == "http://server:8000/api/v1/visualization/training/jobs"
    assert request.headers["authorization"] == "Bearer s3cret"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {"name": "x"}


def test_a_url_that_already_has_the_prefix_is_accepted() -> None:
    client = ApiClient("http://server:8000/api/v1/visualization")
    assert client.url == "http://server:8000"
    client.close()


def test_non_finite_values_use_pythons_json_tokens() -> None:
    body = encode_json([{"step": 1, "loss": math.nan, "x": math.inf, "y": -math.inf}])
    assert body == b'[{"step":1,"loss":NaN,"x":Infinity,"y":-Infinity}]'


def test_rows_keep_non_finite_values_as_the_contracts_strings() -> None:
    rows = [
        {"step": 1, "loss": math.nan, "x": math.inf, "y": -math.inf, "ok": 0.5},
        {"step": 2, "gpus": [{"index": 0, "power": math.nan, "utilization": 5.0}]},
        {"step": 3, "a": 1e308, "b": 1e308, "big": 2**70},  # fsum overflows: values are fine
    ]
    assert json.loads(encode_rows(rows)) == [
        {"step": 1, "loss": "NaN", "x": "Infinity", "y": "-Infinity", "ok": 0.5},
        {"step": 2, "gpus": [{"index": 0, "power": "NaN", "utilization": 5.0}]},
        {"step": 3, "a": 1e308, "b": 1e308, "big": 2**70},
    ]


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_5xx_and_429_are_server_unavailable(status: int) -> None:
    client = client_with(lambda request: httpx.Response(status, text="oops"))
    with pytest.raises(ServerUnavailable):
        client.post_metrics("job-001", [{"step": 0, "loss": 1.0}])


def test_connection_errors_and_timeouts_are_server_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    for handler in (refuse, slow):
        with pytest.raises(ServerUnavailable):
            client_with(handler).get_job("job-001")


def test_4xx_is_an_api_error_with_the_contracts_code_and_details() -> None:
    body = {
        "error": {
            "code": "validation_error",
            "message": "bad",
            "details": [{"loc": ["body", 0, "x"], "msg": "must be a number"}],
        }
    }
    client = client_with(lambda request: httpx.Response(422, json=body))
    with pytest.raises(ApiError) as caught:
        client.post_metrics("job-001", [{"step": 0, "x": 1.0}])
    error = caught.value
    assert (error.status_code, error.code, error.message) == (422, "validation_error", "bad")
    assert error.details == body["error"]["details"]


def test_an_error_without_the_envelope_still_has_a_code() -> None:
    client = client_with(lambda request: httpx.Response(404, text="nope"))
    with pytest.raises(ApiError) as caught:
        client.get_job("x")
    assert caught.value.code == "http_404"


def test_a_non_json_success_is_treated_as_unavailable() -> None:
    client = client_with(lambda request: httpx.Response(200, text="<html>proxy</html>"))
    with pytest.raises(ServerUnavailable):
        client.get_job("x")


def test_encoded_rows_are_sent_as_given() -> None:
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return httpx.Response(201, json={"data": {"accepted": 1}})

    client_with(handler).post_metrics("j", [{"step": 0}], encoded=b'[{"step":0,"a":1}]')
    assert seen == [b'[{"step":0,"a":1}]']
