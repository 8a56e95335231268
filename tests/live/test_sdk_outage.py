"""``run.finish`` after a server outage, against a real ``trainvis serve`` (issue 13).

The SDK logs at about 100 rows/s; the server is SIGKILLed and restarted on the
same database and port. ``finish`` must deliver every row and the final
status within its timeout; what it cannot deliver (rows and status) it reports
and leaves in the journal, where ``trainvis sync`` finds both. A server that
refuses the token (401) holds the run without making ``finish`` wait; a
deleted job (404) ends it with nothing left to sync.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

import trainvis
from tests.conftest import API, ServerProcess
from tests.live.test_sdk import child_env, get_history, get_job
from trainvis.client.run import Run
from trainvis.client.spool import read_journal, spooled_files

pytestmark = pytest.mark.live

TOKEN = "first-token-0123456789"
OTHER_TOKEN = "second-token-0123456789"


@pytest.fixture
def spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "spool"
    monkeypatch.setenv("TRAINVIS_SPOOL_DIR", str(path))
    for name in ("TRAINVIS_URL", "TRAINVIS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(sys.modules, "pynvml", None)
    return path


class Logger:
    """Logs one row every 10 ms (about 100 rows/s) with consecutive steps."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.step = 0

    def log_for(self, seconds: float) -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            self.log_one()

    def log_one(self) -> None:
        self.run.log({"train_loss": 1 / (self.step + 1), "step_copy": self.step})
        self.step += 1
        time.sleep(0.01)


def sync(spool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trainvis", "sync", *args],
        env=child_env(spool),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_finish_after_a_server_kill_and_restart_delivers_every_row_and_the_status(
    db_url: str, spool: Path
) -> None:
    """Issue 13: all rows arrived but the job stayed ``running``.

    ``finish`` came while the sender was uploading the backlog; the sender
    finished that pass, found nothing pending and stopped without ever
    queuing the status.
    """
    server = ServerProcess(db_url).start()
    try:
        # Small batches: the backlog takes many requests, so finish() surely
        # comes while the sender is uploading it.
        run = trainvis.init(name="outage", url=server.url, batch_size=5, flush_interval=0.2)
        logger = Logger(run)
        logger.log_for(1.0)
        server.kill()
        logger.log_for(3.0)
        before = run._sender.delivered_rows
        server.start()  # same database, same port
        deadline = time.monotonic() + 30
        while run._sender.delivered_rows == before:  # the backlog upload has begun
            assert time.monotonic() < deadline, "the SDK did not come back"
            time.sleep(0.001)
        assert run.spooled_rows > 100
        result = run.finish("completed", timeout=60)
        job = get_job(server.url, run.id)
        rows = get_history(server.url, run.id)
    finally:
        server.stop()
    assert [row["step"] for row in rows] == list(range(logger.step))
    assert all(row["step_copy"] == row["step"] for row in rows)
    assert job["status"] == "completed"
    assert list(spooled_files(spool)) == []
    assert (result, result.status_pending) == (0, False)


def test_finish_timing_out_in_an_outage_reports_and_trainvis_sync_delivers_rows_and_status(
    db_url: str, spool: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 13: what ``finish`` cannot deliver, rows and status, is reported and synced."""
    server = ServerProcess(db_url).start()
    try:
        run = trainvis.init(name="timeout", url=server.url, flush_interval=0.2)
        logger = Logger(run)
        while logger.step < 100:
            logger.log_one()
        assert run.flush(30)
        server.kill()
        while logger.step < 300:
            logger.log_one()
        with caplog.at_level(logging.WARNING, logger="trainvis.client"):
            result = run.finish("failed", message="diverged", timeout=1)
        assert (result, result.status_pending) == (200, True)
        [journal] = spooled_files(spool)
        assert f"200 rows and the final status 'failed' of job {run.id}" in caplog.text
        assert str(journal) in caplog.text and "'trainvis sync'" in caplog.text
        spooled = read_journal(journal)
        assert spooled is not None and spooled.rows == 200
        assert spooled.pending[-1].kind == "status"

        server.start()
        assert get_job(server.url, run.id)["status"] == "running"
        result_sync = sync(spool)
        assert result_sync.returncode == 0, result_sync.stdout + result_sync.stderr
        assert "200 rows uploaded" in result_sync.stdout
        job = get_job(server.url, run.id)
        rows = get_history(server.url, run.id)
    finally:
        server.stop()
    assert (job["status"], job["message"]) == ("failed", "diverged")
    assert [row["step"] for row in rows] == list(range(300))
    assert not journal.exists()


def test_a_server_that_refuses_the_token_holds_the_run_without_making_finish_wait(
    tmp_path: Path, spool: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 13, ``held``: restarted with another token, the server answers 401.

    ``finish`` tries once more, does not wait out its timeout, and leaves rows
    and status for ``trainvis sync`` with the new token.
    """
    server = ServerProcess(str(tmp_path / "held.db"), args=["--api-token", TOKEN]).start()
    try:
        run = trainvis.init(name="held", url=server.url, token=TOKEN, flush_interval=0.2)
        logger = Logger(run)
        while logger.step < 50:
            logger.log_one()
        assert run.flush(30)
        server.kill()
        server.args = ["--api-token", OTHER_TOKEN]
        server.start()
        while logger.step < 100:
            logger.log_one()
        deadline = time.monotonic() + 30
        while run._sender.state != "held":
            assert time.monotonic() < deadline, run._sender.state
            time.sleep(0.05)
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="trainvis.client"):
            result = run.finish("completed", timeout=60)
        assert time.monotonic() - started < 30  # did not wait for the server
        assert (result, result.status_pending) == (50, True)
        assert "401/403" in caplog.text and "'trainvis sync'" in caplog.text
        assert get_job(server.url, run.id)["status"] == "running"

        refused = sync(spool)
        assert refused.returncode == 1 and "1 left" in refused.stdout
        accepted = sync(spool, "--token", OTHER_TOKEN)
        assert accepted.returncode == 0, accepted.stdout + accepted.stderr
        job = get_job(server.url, run.id)
        rows = get_history(server.url, run.id)
    finally:
        server.stop()
    assert job["status"] == "completed"
    assert [row["step"] for row in rows] == list(range(100))
    assert list(spooled_files(spool)) == []


def test_a_deleted_job_ends_the_run_with_nothing_left_to_sync(tmp_path: Path, spool: Path) -> None:
    """Issue 13, ``gone``: after a 404 nothing is retried, spooled or reported pending."""
    with ServerProcess(str(tmp_path / "gone.db")) as server:
        run = trainvis.init(name="gone", url=server.url, flush_interval=0.2)
        logger = Logger(run)
        while logger.step < 20:
            logger.log_one()
        assert run.flush(30)
        response = httpx.delete(f"{server.url}{API}/training/jobs/{run.id}", timeout=10)
        assert response.status_code == 204
        while logger.step < 40:
            logger.log_one()
        started = time.monotonic()
        result = run.finish("completed", timeout=60)
        assert time.monotonic() - started < 30
        missing: Any = httpx.get(f"{server.url}{API}/training/jobs/{run.id}", timeout=10)
    assert (result, result.status_pending) == (0, False)
    assert missing.status_code == 404
    assert list(spooled_files(spool)) == []
