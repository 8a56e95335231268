"""One source for wire shapes (issue 14): the OpenAPI schema of a metric row says
what the parser accepts.

The ingest parser (``models.parse_metric_rows``) validates rows by hand, for
speed; the schema (``MetricRowIn``, ``GpuReading``) documents it. Each edge case
below goes through both: the parser's verdict and the schema's (validated with
``jsonschema_rs`` against ``/openapi.json`` as served) must agree.
"""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import pytest
from fastapi.testclient import TestClient

from trainvis.api.app import API_PREFIX, create_app
from trainvis.config import Settings
from trainvis.errors import InvalidArgument
from trainvis.models import MAX_GPU_INDEX, parse_metric_rows

EDGE_CASES: list[Any] = [
    {"step": 0},
    {"step": -1},
    {"step": 1.5},
    {"step": 10.0},
    {"step": "1"},
    {"step": True},
    {"epoch": 1},
    {"step": 1, "epoch": -1},
    {"step": 1, "epoch": "NaN"},
    {"step": 1, "epoch": 0.5},
    {"step": 1, "loss": "NaN"},
    {"step": 1, "loss": "-Infinity"},
    {"step": 1, "loss": "nan"},
    {"step": 1, "loss": "0.5"},
    {"step": 1, "loss": True},
    {"step": 1, "loss": {"a": 1}},
    {"step": 1, "loss": [1]},
    {"step": 1, "loss": None},
    {"step": 1, "1abc": 1},
    {"step": 1, "a b": 1},
    {"step": 1, "train/loss": 0.1, "eval.acc": 0.5, "x-y": 1, "_z": 2},
    {"step": 1, "gpus": [{"utilization": 50}]},
    {"step": 1, "gpus": [{"index": None, "utilization": 50}]},
    {"step": 1, "gpus": [{"index": 3, "memory_used": "NaN", "power": 120.5}]},
    {"step": 1, "gpus": [{"index": MAX_GPU_INDEX}]},
    {"step": 1, "gpus": [{"index": -1}]},
    {"step": 1, "gpus": [{"index": 1.5}]},
    {"step": 1, "gpus": [{"utilization": "NaN"}]},
    {"step": 1, "gpus": [{"utilization": 150}]},
    {"step": 1, "gpus": [{"utilization": "150"}]},
    {"step": 1, "gpus": [{"fan": 1}]},
    {"step": 1, "gpus": {}},
    {"step": 1, "gpus": [1]},
    {"step": 1, "gpu_utilization": "NaN"},
    {"step": 1, "gpu_utilization": 100.5},
    {"step": 1, "gpu_utilization": -0.5},
    {"step": 1, "gpu_memory": -1},
    {"step": 1, "gpu_memory": "Infinity"},
    {"step": 1, "gpu0.utilization": 150},
    {"step": 1, "gpu0.utilization": 50},
    {"step": 1, "gpu7.utilization": "NaN"},
    {"step": 1, "gpu1023.power": 1},
    {"step": 1, "gpu01023.power": 1},
    {"step": 1, f"gpu{MAX_GPU_INDEX}.power": 1},
    {"step": 1, "gpu99999.memory_used": 1},
    {"step": 1, "gpu0.fan": 1},
    {"step": 1, "timestamp": "2024-01-01T00:00:00Z"},
    {"step": 1, "timestamp": "2024-01-01T00:00:00.123+02:00"},
    {"step": 1, "timestamp": 1_700_000_000},
    {"step": 1, "timestamp": -1},
    {"step": 1, "timestamp": "0001-01-01T00:00:00+01:00"},
    {"step": 1, "timestamp": "9999-12-31T23:59:59-14:00"},
    {"step": 1, "timestamp": "yesterday"},
    [],
    [{"step": 1}, {"step": 2, "loss": 1}],
    [{"step": 1}, {"step": -2}],
    "row",
    7,
]


@pytest.fixture(scope="module")
def row_schema(tmp_path_factory: pytest.TempPathFactory) -> Any:
    db = str(tmp_path_factory.mktemp("schema") / "s.db")
    with TestClient(create_app(Settings(db=db))) as client:
        openapi = client.get("/openapi.json").json()
    operation = openapi["paths"][f"{API_PREFIX}/training/{{job_id}}/metrics"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    # The body's refs point at #/components/schemas: resolve them in one document.
    return jsonschema_rs.Draft202012Validator({**body, "components": openapi["components"]})


def parser_accepts(body: Any) -> bool:
    try:
        parse_metric_rows(body, max_rows=10_000)
    except InvalidArgument:
        return False
    return True


@pytest.mark.parametrize("body", EDGE_CASES, ids=[repr(case)[:60] for case in EDGE_CASES])
def test_the_schema_and_the_parser_agree(row_schema: Any, body: Any) -> None:
    assert row_schema.is_valid(body) == parser_accepts(body), (
        "the OpenAPI row schema and the parser disagree: fix the schema in models.py "
        "(MetricRowIn/GpuReading) or the parser"
    )


def test_the_edge_cases_cover_both_verdicts() -> None:
    verdicts = [parser_accepts(case) for case in EDGE_CASES]
    assert verdicts.count(True) >= 15 and verdicts.count(False) >= 25
