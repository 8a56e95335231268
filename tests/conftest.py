"""Shared fixtures: settings, stores over every backend, in-process and live servers.

PostgreSQL: ``TRAINVIS_TEST_PG`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``)
names a server on which each test run creates and drops its own database. When
it is unreachable the PostgreSQL half skips with the reason, except under
``CI=true``, where it fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from trainvis.api.app import create_app
from trainvis.config import Settings
from trainvis.store import MetricStore, open_store

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Shared check modules: their asserts explain a failure as a test's own do.
pytest.register_assert_rewrite("tests.live.import_checks")

PG_ADMIN_URL = os.environ.get("TRAINVIS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
API = "/api/v1/visualization"


def require_service(what: str, reason: str) -> None:
    """Skip with ``reason`` outside CI; fail under ``CI=true``."""
    message = f"{what} unavailable: {reason}"
    if IN_CI:
        pytest.fail(message + " (required under CI=true)")
    pytest.skip(message)


# ---------------------------------------------------------------------- PostgreSQL


@contextlib.contextmanager
def new_pg_database(prefix: str) -> Iterator[str]:
    """A new database ``<prefix>_<random>`` on the test server; its URL. Dropped
    afterwards. No psycopg or no server: skip (fail under ``CI=true``)."""
    try:
        import psycopg
    except ImportError:
        require_service("PostgreSQL", "psycopg is not installed (pip install -e '.[dev]')")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        require_service("PostgreSQL", f"cannot connect to {PG_ADMIN_URL}: {exc}")
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (dropped afterwards)."""
    with new_pg_database("trainvis_test") as url:
        yield url


def _fresh_pg_schema(url: str) -> None:
    """Empty the test database between tests (drop every table of ours)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL for an empty store, once per backend."""
    if request.param == "sqlite":
        return str(tmp_path / "trainvis.db")
    url: str = request.getfixturevalue("pg_url")
    _fresh_pg_schema(url)
    return url


@pytest.fixture
def store(db_url: str) -> Iterator[MetricStore]:
    opened = open_store(db_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def settings(db_url: str) -> Settings:
    return Settings(db=db_url, sse_heartbeat=1.0)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """An in-process client on a fresh app (lifespan run) for every backend."""
    with TestClient(create_app(settings), base_url="http://testserver") as test_client:
        yield test_client


# ---------------------------------------------------------------------- live servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``trainvis serve`` in a subprocess on a free port."""

    #: The module run with ``python -m`` (a test wrapper may add test-only routes).
    module = "trainvis"

    def __init__(
        self, db: str, *, env: dict[str, str] | None = None, args: list[str] | None = None
    ):
        self.db = db
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **(env or {})}
        self.args = args or []
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self.log_path = Path(
            os.environ.get("TMPDIR", "/tmp"),
            f"trainvis-server-{self.port}-{uuid.uuid4().hex[:6]}.log",
        )

    def start(self, timeout: float = 20.0) -> ServerProcess:
        log = self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                self.module,
                "serve",
                "--db",
                self.db,
                "--port",
                str(self.port),
                *self.args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                if httpx.get(self.url + "/openapi.json", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not answer within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers run."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_log()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A real uvicorn server on a temp SQLite file (heartbeat 1 s)."""
    with ServerProcess(str(tmp_path / "live.db"), args=["--sse-heartbeat", "1"]) as server:
        yield server
