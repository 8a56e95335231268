"""Property-based fuzzing of the whole OpenAPI schema (schemathesis).

Every documented operation gets generated inputs (fixed seed, bounded count);
no response may be a 5xx and every response must match its documented status,
content type and schema. The SSE stream never ends, so it is fuzzed only for
its error answers elsewhere (tests/live/test_stream.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.conftest import API, ServerProcess

pytestmark = [pytest.mark.live, pytest.mark.xdist_group("fuzz")]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db = tmp_path_factory.mktemp("fuzz") / "fuzz.db"
    with ServerProcess(str(db)) as server:
        with httpx.Client(base_url=server.url) as http:  # something to find
            job = http.post(f"{API}/training/jobs", json={"name": "fuzz", "id": "job-001"})
            assert job.status_code == 201
            rows = [{"step": s, "train_loss": 1 / (s + 1), "accuracy": s / 10} for s in range(20)]
            http.post(f"{API}/training/job-001/metrics", json=rows)
        yield server


def operations(server: ServerProcess) -> list[schemathesis.APIOperation]:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    found = [result.ok() for result in schema.get_all_operations()]
    return [op for op in found if not op.path.endswith("/stream")]


def test_every_operation_conforms(fuzz_server: ServerProcess) -> None:
    ops = operations(fuzz_server)
    assert len(ops) >= 12, [op.label for op in ops]
    failures: list[str] = []
    for op in ops:

        @given(case=op.as_strategy())
        @settings(
            max_examples=60,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            response = case.call(base_url=fuzz_server.url, timeout=30)
            assert response.status_code < 500, f"{response.status_code}: {response.text[:300]}"
            case.validate_response(response)

        try:
            check()
        except Exception as exc:  # collect every operation's failure, then report all
            failures.append(f"{op.label}: {exc}")
    assert not failures, "\n\n".join(failures)


def test_server_survived(fuzz_server: ServerProcess) -> None:
    assert httpx.get(f"{fuzz_server.url}{API}/training/jobs").status_code == 200
