"""Opening a SQLite database written by an earlier release (issue 13).

``tests/fixtures/release-v1.db`` was written by the release before schema
version 3 (see ``tests/fixtures/make_release_db.py``); ``release-v1.json`` holds
what the API answered on it then. The current code must open a copy, migrate
it and answer the same, and keep working on it.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from trainvis.api.app import create_app
from trainvis.config import Settings
from trainvis.store.sqlite_schema import MIGRATIONS

FIXTURES = Path(__file__).parent.parent / "fixtures"
API = "/api/v1/visualization"


def _released(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    db = tmp_path / "release.db"
    shutil.copyfile(FIXTURES / "release-v1.db", db)
    expected = json.loads((FIXTURES / "release-v1.json").read_text())
    return db, expected


def test_release_database_opens_migrates_and_answers_the_same(tmp_path: Path) -> None:
    db, expected = _released(tmp_path)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == expected["schema_version"]
    with TestClient(create_app(Settings(db=str(db)))) as client:
        for job_id, answers in expected["jobs"].items():
            job = client.get(f"{API}/training/jobs/{job_id}").json()["data"]
            for key, value in answers["job"].items():
                assert job[key] == value, (job_id, key)
            history = client.get(f"{API}/training/{job_id}/metrics/history").json()
            assert history == answers["history"]
            assert client.get(f"{API}/training/{job_id}/events").json()["data"] == answers["events"]
        listed = client.get(f"{API}/training/jobs").json()
        assert sorted(job["id"] for job in listed["data"]) == sorted(expected["jobs"])
        gone = expected["deleted"]
        assert client.get(f"{API}/training/jobs/{gone}").status_code == 404

        # The migrated database keeps working: writes, a new generated id that
        # skips every released one, and the deleted id created again.
        job_id = "job-001"
        points = client.get(f"{API}/training/jobs/{job_id}").json()["data"]["point_count"]
        reply = client.post(f"{API}/training/{job_id}/metrics", json={"step": 99, "train_loss": 0})
        assert reply.status_code == 201
        job = client.get(f"{API}/training/jobs/{job_id}").json()["data"]
        assert job["current_step"] == 99 and job["point_count"] == points + 1
        created = client.post(f"{API}/training/jobs", json={"name": "after upgrade"})
        assert created.status_code == 201 and created.json()["data"]["id"] == "job-003"
        again = client.post(f"{API}/training/jobs", json={"id": gone, "name": "again"})
        assert again.status_code == 201
        assert client.get(f"{API}/training/{gone}/metrics/history").json()["data"] == []
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
