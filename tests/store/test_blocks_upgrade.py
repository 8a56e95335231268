"""Upgrading a database whose points are one row each to column blocks (issue 15).

``tests/fixtures/points-v3.db`` was written by the release before blocks
(schema version 3, see ``tests/fixtures/make_points_db.py``), and
``points-v3.json`` holds what the API answered on it then. The current code
opens a copy, moves the points into blocks on start and must answer the same.
PostgreSQL gets the same data: the fixture's tables are copied into a database
at schema version 3, which the PostgreSQL store then upgrades.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from trainvis.api.app import create_app
from trainvis.config import Settings

FIXTURES = Path(__file__).parent.parent / "fixtures"
API = "/api/v1/visualization"
#: Tables of schema 3, in the order they are copied, with PostgreSQL casts.
TABLES: dict[str, dict[str, str]] = {
    "counters": {},
    "used_ids": {},
    "deleted_ids": {},
    "jobs": {"config": "json", "tags": "jsonb"},
    "metrics": {},
    "steps": {},
    "points": {},
    "events": {},
}
IDENTITY = {"jobs": "pk", "metrics": "id", "events": "id"}


def _expected() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / "points-v3.json").read_text())
    return loaded


def _recorded(body: Any) -> Any:
    """The recorded form of an answer: make_points_db.py's ``recorded``."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return body if len(text) <= 4000 else {"sha256": hashlib.sha256(text).hexdigest()}


def _answers_match(client: TestClient) -> None:
    expected = _expected()
    for job_id, answers in expected["jobs"].items():
        job = client.get(f"{API}/training/jobs/{job_id}").json()["data"]
        assert job == answers["job"], job_id
        for path, params, recorded in answers["queries"]:
            reply = client.get(f"{API}/training/{job_id}/{path}", params=params)
            assert _recorded(reply.json()) == recorded, (job_id, path, params)


def _keeps_working(client: TestClient) -> None:
    """Writes after the upgrade: a re-posted step inside a block, a new step."""
    job = "job-001"
    before = client.get(f"{API}/training/jobs/{job}").json()["data"]["point_count"]
    rows = [{"step": 5, "train_loss": 123.0}, {"step": 9000, "train_loss": 1.0}]
    assert client.post(f"{API}/training/{job}/metrics", json=rows).status_code == 201
    history = client.get(
        f"{API}/training/{job}/metrics/history", params={"metrics": "train_loss"}
    ).json()["data"]
    by_step = {row["step"]: row["train_loss"] for row in history}
    assert by_step[5] == 123.0 and by_step[9000] == 1.0 and by_step[10] == -10.0
    after = client.get(f"{API}/training/jobs/{job}").json()["data"]["point_count"]
    assert after == before + 1


def test_sqlite_points_move_into_blocks_and_answer_the_same(tmp_path: Path) -> None:
    db = tmp_path / "points.db"
    shutil.copyfile(FIXTURES / "points-v3.db", db)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
        stored = conn.execute("SELECT count(*) FROM points").fetchone()[0]
    with TestClient(create_app(Settings(db=str(db)))) as client:
        _answers_match(client)
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT count(*) FROM points").fetchone()[0] == 0
            moved = conn.execute("SELECT sum(count) FROM blocks").fetchone()[0]
        assert moved == stored
        _keeps_working(client)


@pytest.mark.postgres
def test_postgres_points_move_into_blocks_and_answer_the_same(pg_url: str) -> None:
    import psycopg

    from tests.conftest import _fresh_pg_schema
    from trainvis.store.postgres_schema import MIGRATIONS, migrate

    _fresh_pg_schema(pg_url)
    source = sqlite3.connect(FIXTURES / "points-v3.db")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        migrate(conn, MIGRATIONS[:3])
        with conn.transaction():
            conn.execute("DELETE FROM counters")  # migration 1 seeded it
            for table, casts in TABLES.items():
                cursor = source.execute(f"SELECT * FROM {table}")
                columns = [column[0] for column in cursor.description]
                rows = [_pg_row(table, dict(zip(columns, row, strict=True))) for row in cursor]
                # SQLite's NaN flag of events: PostgreSQL keeps the NaN itself
                names = [name for name in columns if name != "value_nan"]
                marks = ", ".join(f"%s::{casts[name]}" if name in casts else "%s" for name in names)
                override = " OVERRIDING SYSTEM VALUE" if table in IDENTITY else ""
                conn.cursor().executemany(
                    f"INSERT INTO {table} ({', '.join(names)}){override} VALUES ({marks})",
                    [[row[name] for name in names] for row in rows],
                )
            for table, column in IDENTITY.items():
                conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                    f"(SELECT coalesce(max({column}), 0) + 1 FROM {table}), false)"
                )
        stored = conn.execute("SELECT count(*) FROM points").fetchone()
    with TestClient(create_app(Settings(db=pg_url))) as client:
        _answers_match(client)
        with psycopg.connect(pg_url) as conn:
            assert conn.execute("SELECT count(*) FROM points").fetchone() == (0,)
            assert conn.execute("SELECT sum(count) FROM blocks").fetchone() == stored
        _keeps_working(client)


def _pg_row(table: str, row: dict[str, Any]) -> dict[str, Any]:
    """A schema-3 SQLite row as PostgreSQL stores it (SQLite's NULL NaN back to NaN)."""
    if table == "points" and row["value"] is None:
        row["value"] = float("nan")
    if table == "events" and row.pop("value_nan"):
        row["value"] = float("nan")
    return row
