"""Storage faults on both stores, through the API in process (issue 13, item 6).

A full database is 507 ``insufficient_storage`` and nothing of the request is
stored; a database that cannot be written answers writes with 503
``store_read_only``; reads keep working in both cases, and a store opened on a
read-only database serves reads instead of refusing to start. Nothing is
mocked: SQLite is filled for real (``PRAGMA max_page_count``, which works
without privileges; ``tests/live/test_storage_faults.py`` fills a real small
filesystem), PostgreSQL is made read-only with ``default_transaction_read_only``
on this test's own database, and filled on a throwaway cluster whose tablespace
is a tmpfs of 2 MiB.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import API, _fresh_pg_schema
from tests.filesystems import remount, tmpfs
from tests.pgcluster import throwaway_cluster
from trainvis.api.app import create_app
from trainvis.config import Settings
from trainvis.store import open_store
from trainvis.store.sqlite import SQLiteStore
from trainvis.store.sqlite_schema import MIGRATIONS


def rows(first: int, count: int, metrics: int = 20) -> list[dict[str, Any]]:
    return [
        {"step": step, **{f"m{k}": step + k / 7 for k in range(metrics)}}
        for step in range(first, first + count)
    ]


def steps(client: TestClient, job: str) -> list[int]:
    response = client.get(f"{API}/training/{job}/metrics/history")
    assert response.status_code == 200, response.text
    return [row["step"] for row in response.json()["data"]]


def fill_until_refused(client: TestClient, job: str, *, batch: int = 100) -> tuple[int, Any]:
    """Post batches until one is refused; the number of rows stored and the refusal."""
    stored = 0
    for _ in range(1000):
        response = client.post(f"{API}/training/{job}/metrics", json=rows(stored, batch))
        if response.status_code != 201:
            return stored, response
        stored += batch
    pytest.fail("the database never filled")


def assert_error(response: Any, status: int, code: str, words: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and words in error["message"]


def assert_reads_work(client: TestClient, job: str, expected_steps: list[int]) -> None:
    assert steps(client, job) == expected_steps
    for path in (
        f"/training/jobs/{job}",
        "/training/jobs",
        f"/training/{job}/metrics/chart",
        f"/training/{job}/events",
        f"/dashboard/job/{job}?format=json",
    ):
        response = client.get(API + path)
        assert response.status_code == 200, (path, response.text)


# ---------------------------------------------------------------------- SQLite


def test_a_full_sqlite_database_is_507_and_reads_keep_working(tmp_path: Path) -> None:
    """issue 13: SQLITE_FULL was a 500 ``internal_error`` (and the failed rollback hid
    it); now 507, nothing of the request stored, reads fine, writes resume."""
    store = SQLiteStore(str(tmp_path / "capped.db"))
    try:
        with TestClient(create_app(Settings(db=store.path), store=store)) as client:
            job = client.post(f"{API}/training/jobs", json={"name": "capped"}).json()["data"]
            pages = store._writer.execute("PRAGMA page_count").fetchone()[0]
            store._writer.execute(f"PRAGMA max_page_count = {pages + 40}")
            stored, refused = fill_until_refused(client, job["id"])
            assert stored > 0
            assert_error(refused, 507, "insufficient_storage", "disk is full")
            assert_reads_work(client, job["id"], list(range(stored)))
            assert client.get(f"{API}/training/jobs/{job['id']}").json()["data"]["point_count"] == (
                stored * 20
            )
            created = client.post(f"{API}/training/jobs", json={"name": "x" * 200})
            assert created.status_code in (201, 507)  # a small write may still fit a page
            store._writer.execute("PRAGMA max_page_count = 1073741823")
            again = client.post(f"{API}/training/{job['id']}/metrics", json=rows(stored, 100))
            assert again.status_code == 201, again.text
            assert steps(client, job["id"]) == list(range(stored + 100))
    finally:
        store.close()


def test_an_outdated_read_only_sqlite_database_is_a_clear_startup_error(tmp_path: Path) -> None:
    """issue 13: a read-only database opens without migrating when its schema is
    current; an older one cannot be upgraded, which the error says."""
    with tmpfs(tmp_path / "ro", "4m") as disk:
        current, old = disk / "current.db", disk / "old.db"
        open_store(str(current)).close()
        with contextlib.closing(SQLiteStore(str(old))) as store:
            store._writer.execute("PRAGMA user_version = 1")
        remount(disk, "ro")
        try:
            reopened = open_store(str(current))
            try:
                assert reopened.list_jobs() == ([], 0)
            finally:
                reopened.close()
            with pytest.raises(RuntimeError, match="read-only") as caught:
                open_store(str(old))
            assert f"version 1 is older than this trainvis ({len(MIGRATIONS)})" in str(caught.value)
        finally:
            remount(disk, "rw")


# ---------------------------------------------------------------------- PostgreSQL


def pg_execute(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(
        url, autocommit=True, connect_timeout=5, options="-c default_transaction_read_only=off"
    ) as conn:
        conn.execute(sql.encode())


def set_read_only(url: str, on: bool) -> None:
    """``default_transaction_read_only`` for this test's own database (new sessions)."""
    name = url.rsplit("/", 1)[1]
    value = (
        "SET default_transaction_read_only = on" if on else "RESET default_transaction_read_only"
    )
    pg_execute(url, f'ALTER DATABASE "{name}" {value}')


def renew_sessions(url: str) -> None:
    """End every other session of this test's own database (the pools reconnect)."""
    name = url.rsplit("/", 1)[1].replace("'", "''")
    pg_execute(
        url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{name}' AND pid <> pg_backend_pid()",
    )


@pytest.mark.postgres
def test_a_read_only_postgres_database_refuses_writes_and_serves_reads(pg_url: str) -> None:
    """issue 13: a PostgreSQL database that turns read-only (and one that is read-only
    when the server starts) answers writes with 503 ``store_read_only``, reads 200;
    an outdated schema on a read-only database is a clear startup error."""
    _fresh_pg_schema(pg_url)
    settings = Settings(db=pg_url)
    try:
        with TestClient(create_app(settings)) as running:
            job = running.post(f"{API}/training/jobs", json={"name": "ro"}).json()["data"]["id"]
            posted = running.post(f"{API}/training/{job}/metrics", json=rows(0, 50))
            assert posted.status_code == 201
            set_read_only(pg_url, True)
            renew_sessions(pg_url)  # a read-only database for the running server's pool
            for method, path, body in (
                ("POST", f"/training/{job}/metrics", rows(50, 10)),
                ("POST", "/training/jobs", {"name": "more"}),
                ("PUT", f"/training/jobs/{job}/status", {"status": "running"}),
                ("DELETE", f"/training/jobs/{job}", None),
            ):
                response = running.request(method, API + path, json=body)
                assert_error(response, 503, "store_read_only", "read-only")
            assert_reads_work(running, job, list(range(50)))
        with TestClient(create_app(settings)) as started:  # started on a read-only database
            assert_reads_work(started, job, list(range(50)))
            refused = started.post(f"{API}/training/{job}/metrics", json=rows(50, 10))
            assert_error(refused, 503, "store_read_only", "read-only")
        set_read_only(pg_url, False)
        pg_execute(  # the newest migration "not yet applied": an older schema
            pg_url,
            "DELETE FROM schema_version WHERE version = (SELECT max(version) FROM schema_version)",
        )
        set_read_only(pg_url, True)
        with pytest.raises(RuntimeError, match="read-only and its schema is older"):
            open_store(pg_url)
    finally:
        set_read_only(pg_url, False)


@pytest.mark.postgres
def test_a_full_postgres_disk_is_507_and_reads_keep_working(tmp_path: Path) -> None:
    """issue 13: PostgreSQL's disk-full error (SQLSTATE 53100) was a 503 with the
    driver's text; it is 507 ``insufficient_storage``, and reads keep working. The
    metric tables live in a tablespace on a 2 MiB tmpfs of a throwaway cluster."""
    base = Path(tempfile.mkdtemp(prefix="trainvis-pgspace-"))
    base.chmod(0o755)  # the postgres user must reach the tablespace
    try:
        with tmpfs(base / "small", "2m") as disk, throwaway_cluster() as cluster:
            space = disk / "space"
            space.mkdir()
            postgres = pwd.getpwnam("postgres")
            os.chown(space, postgres.pw_uid, postgres.pw_gid)
            url = cluster.new_database()
            with TestClient(create_app(Settings(db=url))) as client:
                pg_execute(url, f"CREATE TABLESPACE small LOCATION '{space}'")
                for table in ("points", "steps"):
                    pg_execute(url, f"ALTER TABLE {table} SET TABLESPACE small")
                job = client.post(f"{API}/training/jobs", json={"name": "full"}).json()["data"]
                stored, refused = fill_until_refused(client, job["id"])
                assert stored > 0
                assert_error(refused, 507, "insufficient_storage", "disk is full")
                assert "53100" not in refused.text and "could not" not in refused.text
                assert_reads_work(client, job["id"], list(range(stored)))
    finally:
        shutil.rmtree(base, ignore_errors=True)
