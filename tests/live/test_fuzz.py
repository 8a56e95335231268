"""Property-based fuzzing of the whole OpenAPI schema (schemathesis), on both stores.

Every documented operation gets generated inputs (fixed seed, bounded count);
no response may be a 5xx and every response must match its documented status,
content type and schema. The SSE stream never ends, so it is fuzzed only for
its error answers elsewhere (tests/live/test_stream.py).

Schema-conforming data never reaches the edges that broke the server in
issue 13 (integers >= 2**63, huge floats, deep JSON, long strings, NUL, client
ids ``job-<huge>``), so a second pass takes each generated case and puts a
hostile value in one of its parameters (query, path or a body field, the
stream included): still no 5xx, and every 2xx body must be whole. Last, the
server must still serve every stored job and create jobs with generated ids.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.core import NotSet

from tests.conftest import API, ServerProcess, new_pg_database

pytestmark = [pytest.mark.live, pytest.mark.xdist_group("fuzz")]


@pytest.fixture(scope="module")
def fuzz_db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A database of its own on each store (the PostgreSQL one is dropped afterwards)."""
    if request.param == "sqlite":
        yield str(tmp_path_factory.mktemp("fuzz") / "fuzz.db")
        return
    with new_pg_database("trainvis_fuzz") as url:
        yield url


@pytest.fixture(scope="module")
def fuzz_server(fuzz_db: str) -> Iterator[ServerProcess]:
    with ServerProcess(fuzz_db) as server:
        with httpx.Client(base_url=server.url) as http:  # something to find
            job = http.post(f"{API}/training/jobs", json={"name": "fuzz", "id": "job-001"})
            assert job.status_code == 201
            rows = [{"step": s, "train_loss": 1 / (s + 1), "accuracy": s / 10} for s in range(20)]
            rows.append({"step": 200_000, "train_loss": 0.01})  # a large step gap
            http.post(f"{API}/training/job-001/metrics", json=rows)
        yield server


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "fuzz_db" in metafunc.fixturenames:
        metafunc.parametrize(
            "fuzz_db",
            ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
            indirect=True,
            scope="module",
        )


def operations(server: ServerProcess, *, stream: bool = False) -> list[schemathesis.APIOperation]:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    found = [result.ok() for result in schema.get_all_operations()]
    return [op for op in found if stream or not op.path.endswith("/stream")]


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


# ---------------------------------------------------------------------- hostile values

BIG_INTEGERS = st.one_of(
    st.sampled_from(
        [2**63 - 1, 2**63, 2**64, 10**19, 10**20, -(2**63) - 1, 99999999999999999999999]
    ),
    st.integers(min_value=2**63, max_value=2**256),
    st.integers(min_value=-(2**256), max_value=-(2**63) - 1),
)
#: Numbers as JSON text: some beyond float range, which JSON allows.
HUGE_FLOATS = st.sampled_from(
    ["1e19", "9.3e18", "1e20", "1.7976931348623157e308", "1e400", "-1e400", "1.5", "-0.0"]
)
LONG_TEXT = st.one_of(  # (URLs stay under the server's 16 KB request line)
    st.builds(
        lambda unit, count: unit * count,
        st.sampled_from(["x", "é", "\x00", "9", "/", "%"]),
        st.sampled_from([129, 201, 2001]),
    ),
    st.just("x" * 8000),
)
ODD_TEXT = st.sampled_from(["\x00", "a\x00b", "²", "٣", "1_000", " 1", "NaN", "-1", "1.0", ""])
#: Client ids that once broke id generation (``job-N`` beyond 64 bits).
HUGE_IDS = BIG_INTEGERS.map(lambda n: f"job-{abs(n)}")

#: A hostile query or path value, as text.
HOSTILE_TEXT = st.one_of(BIG_INTEGERS.map(str), HUGE_FLOATS, LONG_TEXT, ODD_TEXT, HUGE_IDS)


def _deep(depth: int, kind: str) -> str:
    return '{"a":' * depth + "0" + "}" * depth if kind == "object" else "[" * depth + "]" * depth


#: A hostile JSON value, as JSON text (so it can hold what ``json.dumps`` cannot).
HOSTILE_JSON = st.one_of(
    BIG_INTEGERS.map(str),
    HUGE_FLOATS,
    st.builds(
        _deep, st.sampled_from([100, 300, 600, 3000, 100_000]), st.sampled_from(["object", "array"])
    ),
    LONG_TEXT.map(json.dumps),
    ODD_TEXT.map(json.dumps),
    HUGE_IDS.map(json.dumps),
    st.just(json.dumps({"x": "y" * 70_000})),
)
#: The same classes as fixed values, each tried on every parameter (below).
EDGE_TEXT = [
    str(2**63), str(10**20), str(-(2**63) - 1), "1e19", "1e400", "x" * 8000, "\x00", "a\x00b",
    "²", "job-99999999999999999999999",
]  # fmt: skip
EDGE_JSON = [
    str(2**63), str(10**20), "1e400", "-1e400", "1.7976931348623157e308",
    _deep(600, "object"), _deep(100_000, "array"), json.dumps("x" * 70_000),
    json.dumps("\x00"), json.dumps("10"), json.dumps({"x": "y" * 70_000}),
    json.dumps("job-9223372036854775807"), json.dumps("job-99999999999999999999999"),
    json.dumps("0001-01-01T00:00:00+01:00"), json.dumps("9999-12-31T23:59:59-14:00"),
]  # fmt: skip
#: A valid body per operation, so that one hostile field is what gets judged.
BASE_BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/training/jobs"): {"name": "edge"},
    ("PUT", "/training/jobs/{job_id}/status"): {"status": "running"},
    ("POST", "/training/{job_id}/metrics"): [{"step": 1, "train_loss": 0.5}],
    ("POST", "/training/{job_id}/events"): {"message": "edge"},
}
#: Row keys the metrics schema does not list as properties of an object.
ROW_KEYS = ["step", "epoch", "timestamp", "train_loss", "gpu0.utilization", "gpus"]
_SLOT = "\x01hostile\x01"

Target = tuple[str, str | None]  # ("query"|"path", name) or ("body", key or None: all of it)


def _targets(op: schemathesis.APIOperation) -> list[Target]:
    """Every parameter of ``op``: query, path, each body field and the whole body."""
    targets: list[Target] = [("query", p.name) for p in op.query]
    targets += [("path", p.name) for p in op.path_parameters]
    if list(op.body):
        keys: list[str] = []
        for alternative in op.body:
            keys += list(alternative.definition.get("schema", {}).get("properties", {}))
        if op.path.endswith("/metrics"):
            keys += ROW_KEYS
        targets += [("body", key) for key in dict.fromkeys(keys)] + [("body", None)]
    return targets


def _send(
    http: httpx.Client,
    op: schemathesis.APIOperation,
    path_params: dict[str, Any],
    query: dict[str, Any],
    body: Any,
    target: Target,
    raw: str,
) -> httpx.Response:
    """Send one request with the hostile ``raw`` (text; JSON text for a body) at ``target``."""
    where, name = target
    path_params = {key: str(value) for key, value in path_params.items()}
    query = dict(query)
    if where == "path" and name is not None:
        path_params[name] = raw
    elif where == "query" and name is not None:
        query[name] = raw
    content: bytes | None = None
    if where == "body":
        if name is None:
            content = raw.encode()
        else:
            rows = body if isinstance(body, list) else [body]
            first = rows[0] if rows and isinstance(rows[0], dict) else {}
            placed = [{**first, name: _SLOT}, *rows[1:]]
            text = json.dumps(placed if isinstance(body, list) else placed[0])
            content = text.replace(json.dumps(_SLOT), raw).encode()
    elif not isinstance(body, NotSet) and body is not None:
        content = json.dumps(body).encode()
    path = op.path
    for key, value in path_params.items():
        path = path.replace("{" + key + "}", urllib.parse.quote(value, safe=""))
    request = http.build_request(
        op.method.upper(),
        path,
        params=query,
        content=content,
        headers={"content-type": "application/json"} if content is not None else None,
    )
    response = http.send(request, stream=True)
    try:
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            response.read()  # a body cut mid-way raises here
    finally:
        response.close()  # a stream that opened never ends: leave it
    return response


def _judge(response: httpx.Response, target: Target, raw: str) -> None:
    """No 5xx; JSON bodies whole; errors in the envelope."""
    shown = f"{target[0]}:{target[1]}={raw[:80]!r}"
    assert response.status_code < 500, f"{shown}: {response.status_code} {response.text[:300]}"
    if response.headers.get("content-type", "").startswith("application/json"):
        body = response.json()  # whole, strict JSON
        if response.status_code >= 400:
            assert set(body) == {"error"}, f"{shown}: {body}"


def test_every_parameter_takes_edge_values(fuzz_server: ServerProcess) -> None:
    """issue 13: each edge value in each parameter of each operation (on the stored
    job-001, so a write that would store a poisoned value reaches the store)."""
    ops = operations(fuzz_server, stream=True)
    failures: list[str] = []
    with httpx.Client(base_url=fuzz_server.url, timeout=60) as http:
        for op in ops:
            short = op.path.removeprefix(API)
            body = BASE_BODIES.get((op.method.upper(), short), NotSet())
            job = "job-not-there" if op.method.upper() == "DELETE" else "job-001"
            params = {p.name: job for p in op.path_parameters}
            for target in _targets(op):
                for raw in EDGE_JSON if target[0] == "body" else EDGE_TEXT:
                    try:
                        _judge(_send(http, op, params, {}, body, target, raw), target, raw)
                    except Exception as exc:  # every failure, then report all
                        failures.append(f"{op.label}: {exc}")
                        break
    assert not failures, "\n\n".join(failures)


def _hostile_check(http: httpx.Client, op: schemathesis.APIOperation) -> Any:
    """A Hypothesis test of ``op``: a generated case with one hostile parameter."""

    @given(case=op.as_strategy(), target=st.sampled_from(_targets(op)), data=st.data())
    @settings(
        max_examples=40,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: schemathesis.Case, target: Target, data: st.DataObject) -> None:
        raw = data.draw(HOSTILE_JSON if target[0] == "body" else HOSTILE_TEXT)
        query = case.query or {}
        response = _send(http, op, case.path_parameters or {}, query, case.body, target, raw)
        _judge(response, target, raw)

    return check


def test_every_parameter_takes_hostile_values(fuzz_server: ServerProcess) -> None:
    """issue 13: generated cases with a hostile value (integers >= 2**63, huge floats,
    deep JSON, long strings, NUL) in one parameter: client errors or success, never
    a 5xx or a cut body."""
    ops = [op for op in operations(fuzz_server, stream=True) if _targets(op)]
    assert len(ops) >= 12, [op.label for op in ops]
    failures: list[str] = []
    with httpx.Client(base_url=fuzz_server.url, timeout=60) as http:
        for op in ops:
            try:
                _hostile_check(http, op)()
            except Exception as exc:
                failures.append(f"{op.label}: {exc}")
    assert not failures, "\n\n".join(failures)


def test_server_survived(fuzz_server: ServerProcess) -> None:
    """After all of it, every stored job reads whole and generated ids still work
    (issue 13: one accepted request made a job unreadable or broke job creation)."""
    with httpx.Client(base_url=fuzz_server.url, timeout=60) as http:
        created = http.post(f"{API}/training/jobs", json={"name": "after the fuzz"})
        assert created.status_code == 201, created.text
        listed = http.get(f"{API}/training/jobs", params={"limit": 1000})
        assert listed.status_code == 200
        for job in listed.json()["data"]:
            quoted = urllib.parse.quote(job["id"], safe="")
            for path in ("metrics/history", "events", "loss", "metrics/chart"):
                response = http.get(f"{API}/training/{quoted}/{path}")
                assert response.status_code == 200, f"{job['id']} {path}: {response.text[:300]}"
                response.json()
            assert (
                http.get(
                    f"{API}/training/{quoted}/metrics/history", params={"format": "csv"}
                ).status_code
                == 200
            )
        history = http.get(f"{API}/training/job-001/metrics/history")
        if history.status_code == 200:  # (unless a fuzzed DELETE found it)
            assert {0, 19, 200_000} <= {row["step"] for row in history.json()["data"]}
