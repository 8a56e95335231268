"""The sender thread, the journal and ``sync_spool`` over an in-memory server.

The fake stands in for the network only: it answers like the REST API (201,
4xx with the contract's details, or unreachable). Real-server behaviour is in
``tests/live/test_sdk.py``.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from trainvis.client import spool as spool_module
from trainvis.client.http import ApiError, ServerUnavailable
from trainvis.client.run import Run
from trainvis.client.sender import Sender
from trainvis.client.spool import Journal, Op, read_journal, spooled_files
from trainvis.client.sync import sync_spool


class FakeServer:
    """Stores rows by (step, metric) like the real upsert; can be switched off."""

    target = "http://fake"

    def __init__(self) -> None:
        self.up = True
        self.jobs: dict[str, dict[str, Any]] = {}
        self.points: dict[tuple[int, str], float] = {}
        self.posts: list[list[int]] = []
        self.statuses: list[str] = []
        self.updates: list[tuple[int, dict[str, Any]]] = []  # (points stored before, fields)
        self.reject: dict[str, ApiError] = {}
        self.max_rows = 10_000

    def _check(self) -> None:
        if not self.up:
            raise ServerUnavailable("connection refused")
        if "all" in self.reject:
            raise self.reject["all"]

    def create_job(self, spec: dict[str, Any]) -> dict[str, Any]:
        self._check()
        if spec["id"] in self.jobs:
            raise ApiError(409, "job_exists", "exists")
        self.jobs[spec["id"]] = {**spec, "status": "pending"}
        return self.jobs[spec["id"]]

    def get_job(self, job_id: str) -> dict[str, Any]:
        self._check()
        return self.jobs[job_id]

    def set_status(self, job_id: str, status: str, message: str | None = None) -> dict[str, Any]:
        self._check()
        self.statuses.append(status)
        return {"id": job_id, "status": status}

    def update_job(self, job_id: str, **fields: Any) -> dict[str, Any]:
        self._check()
        self.updates.append((len(self.points), fields))
        return {"id": job_id, **fields}

    def post_metrics(
        self, job_id: str, rows: list[dict[str, Any]], *, encoded: bytes | None = None
    ) -> dict[str, Any]:
        self._check()
        if len(rows) > self.max_rows:
            raise ApiError(413, "payload_too_large", "too many")
        for index, row in enumerate(rows):
            for key in row:
                if key in self.reject:
                    error = self.reject[key]
                    error.details = [{"loc": ["body", index, key], "msg": "bad value"}]
                    raise error
        self.posts.append([row["step"] for row in rows])
        for row in rows:
            for key, value in row.items():
                if key not in ("step", "timestamp", "epoch"):
                    self.points[(row["step"], key)] = value
        return {"accepted": len(rows)}

    def close(self) -> None:
        pass

    def steps(self, metric: str = "loss") -> list[int]:
        return sorted(step for step, name in self.points if name == metric)


def rows(start: int, stop: int) -> list[dict[str, Any]]:
    return [
        {"step": step, "loss": 1.0 / (step + 1), "timestamp": 1.0} for step in range(start, stop)
    ]


def sender_for(server: FakeServer, spool: Path, **kwargs: Any) -> Sender:
    journal = Journal.create(spool, url=server.target, job_id="job-1")
    options: dict[str, Any] = {"batch_size": 10, "flush_interval": 0.02, "max_backoff": 0.05}
    options.update(kwargs)
    sender = Sender(server, "job-1", journal=journal, **options)
    sender.start()
    return sender


def feed(sender: Sender, batch: list[dict[str, Any]]) -> None:
    sender.queue.extend(batch)
    sender.wake.set()


def test_rows_are_sent_in_order_in_batches_and_the_journal_goes(tmp_path: Path) -> None:
    server = FakeServer()
    sender = sender_for(server, tmp_path)
    feed(sender, rows(0, 95))
    assert sender.close("completed", None, timeout=5) == 0
    assert server.steps() == list(range(95))
    assert all(len(post) <= 10 for post in server.posts)
    assert [step for post in server.posts for step in post] == list(range(95))
    assert server.statuses == ["completed"]
    assert list(spooled_files(tmp_path)) == []


def test_an_outage_is_retried_and_nothing_is_lost(tmp_path: Path) -> None:
    server = FakeServer()
    sender = sender_for(server, tmp_path)
    feed(sender, rows(0, 20))
    assert sender.flush(5)
    server.up = False
    feed(sender, rows(20, 60))
    time.sleep(0.3)
    assert sender.state == "down" and sender.undelivered_rows == 40
    server.up = True
    assert sender.flush(5)
    assert sender.close("completed", None, timeout=5) == 0
    assert server.steps() == list(range(60))


def test_a_server_that_stays_away_leaves_a_spool_that_sync_uploads(tmp_path: Path) -> None:
    server = FakeServer()
    server.up = False
    sender = sender_for(server, tmp_path)
    feed(sender, rows(0, 35))
    started = time.monotonic()
    assert sender.close("completed", "done", timeout=0.3) == 35
    assert time.monotonic() - started < 2
    [path] = spooled_files(tmp_path)
    spool = read_journal(path)
    assert spool is not None and spool.rows == 35 and spool.pending[-1].kind == "status"

    server.up = True
    report = sync_spool(tmp_path, client_factory=lambda url: server)
    assert (report.uploaded_rows, report.files_done, report.files_left) == (35, 1, [])
    assert server.steps() == list(range(35))
    assert server.statuses == ["completed"]
    assert list(spooled_files(tmp_path)) == []


def test_a_job_edit_is_sent_in_order_with_the_rows_and_spooled_for_sync(tmp_path: Path) -> None:
    """Issue 16: ``enqueue("update")`` goes after the rows queued before it; while the
    server is away it waits in the journal and ``trainvis sync`` replays it in order."""
    server = FakeServer()
    sender = sender_for(server, tmp_path)
    feed(sender, rows(0, 5))
    sender.enqueue("update", {"fields": {"config": {"lr": 0.1}}})
    feed(sender, rows(5, 8))
    assert sender.flush(5)
    assert server.updates == [(5, {"config": {"lr": 0.1}})] and server.steps() == list(range(8))

    server.up = False
    feed(sender, rows(8, 12))
    sender.enqueue("update", {"fields": {"config": {"lr": 0.2}, "name": "n"}})
    feed(sender, rows(12, 15))
    assert sender.close("completed", None, timeout=0.3) == 7  # the edit is no row
    [path] = spooled_files(tmp_path)
    spool = read_journal(path)
    assert spool is not None
    assert [op.kind for op in spool.pending] == ["rows", "update", "rows", "status"]

    server.up = True
    report = sync_spool(tmp_path, client_factory=lambda url: server)
    assert (report.files_done, report.files_left) == (1, [])
    assert server.updates[1] == (12, {"config": {"lr": 0.2}, "name": "n"})
    assert server.steps() == list(range(15)) and server.statuses == ["completed"]


def test_sync_skips_the_journal_of_a_live_run(tmp_path: Path) -> None:
    server = FakeServer()
    server.up = False
    sender = sender_for(server, tmp_path)
    feed(sender, rows(0, 5))
    time.sleep(0.1)
    report = sync_spool(tmp_path, client_factory=lambda url: server)
    assert report.skipped_live == 1 and report.uploaded_rows == 0
    server.up = True
    sender.close(None, None, timeout=5)


def test_rows_beyond_the_memory_cap_wait_in_the_journal(tmp_path: Path) -> None:
    server = FakeServer()
    server.up = False
    sender = sender_for(server, tmp_path, max_pending_rows=15)
    for start in range(0, 200, 10):
        feed(sender, rows(start, start + 10))
        time.sleep(0.01)
    time.sleep(0.2)
    assert sender._pending_rows <= 30  # the rest is only on disk
    assert sender.undelivered_rows == 200
    server.up = True
    assert sender.flush(10)
    assert sender.close("completed", None, timeout=5) == 0
    assert server.steps() == list(range(200))
    assert [step for post in server.posts for step in post] == list(range(200))


def test_a_deleted_job_stops_logging_without_spooling(tmp_path: Path) -> None:
    server = FakeServer()
    server.reject["all"] = ApiError(404, "job_not_found", "gone")
    sender = sender_for(server, tmp_path)
    feed(sender, rows(0, 5))
    time.sleep(0.1)
    assert sender.state == "gone"
    feed(sender, rows(5, 10))
    assert sender.close("completed", None, timeout=1) == 0
    assert list(spooled_files(tmp_path)) == []
    assert server.statuses == [] and not sender.status_pending  # nothing left to set it on


def test_unauthorized_keeps_everything_spooled(tmp_path: Path) -> None:
    server = FakeServer()
    server.reject["all"] = ApiError(401, "unauthorized", "token")
    sender = sender_for(server, tmp_path)
    feed(sender, rows(0, 5))
    wait_for(lambda: sender.state == "held")
    assert sender.close("completed", None, timeout=1) == 5
    assert sender.status_pending
    [path] = spooled_files(tmp_path)
    assert read_journal(path).rows == 5  # type: ignore[union-attr]


class GatedServer(FakeServer):
    """Holds every ``post_metrics`` until ``gate`` opens (a slow backlog upload)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.gate = threading.Event()

    def post_metrics(
        self, job_id: str, rows: list[dict[str, Any]], *, encoded: bytes | None = None
    ) -> dict[str, Any]:
        self.entered.set()
        self.gate.wait(10)
        return super().post_metrics(job_id, rows, encoded=encoded)


def wait_for(condition: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_finish_while_the_backlog_is_being_sent_still_sends_the_status(tmp_path: Path) -> None:
    """Issue 13: ``close`` arriving while the thread sends the backlog lost the status.

    The thread saw ``_closing`` only after it had passed the step that queues
    the status, found nothing pending and stopped: every row arrived, the job
    stayed ``running`` and the journal held no status for ``trainvis sync``.
    """
    server = GatedServer()
    sender = sender_for(server, tmp_path)
    feed(sender, rows(0, 30))
    assert server.entered.wait(5)  # the thread is inside a request
    threading.Timer(0.2, server.gate.set).start()
    assert sender.close("completed", "done", timeout=5) == 0
    assert server.steps() == list(range(30))
    assert server.statuses == ["completed"] and not sender.status_pending
    assert list(spooled_files(tmp_path)) == []


def test_a_refusal_is_retried_and_the_run_goes_on_once_the_server_accepts(
    tmp_path: Path,
) -> None:
    """Issue 13: a 401/403 mid-run (a server restarted with another token) is not forever."""
    server = FakeServer()
    server.reject["all"] = ApiError(403, "forbidden", "token")
    sender = sender_for(server, tmp_path)
    feed(sender, rows(0, 5))
    wait_for(lambda: sender.state == "held")
    del server.reject["all"]
    assert sender.flush(5)
    assert sender.state == "ok"
    assert sender.close("completed", None, timeout=5) == 0
    assert server.steps() == list(range(5)) and server.statuses == ["completed"]
    assert list(spooled_files(tmp_path)) == []


def test_a_refusal_at_finish_stops_at_once_and_sync_delivers_rows_and_status(
    tmp_path: Path,
) -> None:
    """Issue 13: 401 at finish: one more try, then rows and status wait for ``trainvis sync``.

    Only a person can change a refused token, so ``close`` does not wait out
    its timeout.
    """
    server = FakeServer()
    server.reject["all"] = ApiError(401, "unauthorized", "token")
    sender = sender_for(server, tmp_path, max_backoff=30.0)
    feed(sender, rows(0, 25))
    wait_for(lambda: sender.state == "held")
    started = time.monotonic()
    assert sender.close("failed", "diverged", timeout=60) == 25
    assert time.monotonic() - started < 30  # did not wait for the 60 s
    assert sender.status_pending and server.statuses == []
    [path] = spooled_files(tmp_path)
    spool = read_journal(path)
    assert spool is not None and spool.rows == 25
    assert spool.pending[-1].kind == "status" and spool.pending[-1].data["status"] == "failed"

    report = sync_spool(tmp_path, client_factory=lambda url: server)
    assert report.files_left == [str(path)]  # still refused: the file stays
    del server.reject["all"]
    report = sync_spool(tmp_path, client_factory=lambda url: server)
    assert (report.uploaded_rows, report.files_done) == (25, 1)
    assert server.steps() == list(range(25)) and server.statuses == ["failed"]


def test_finish_reports_rows_and_status_it_could_not_deliver(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 13: the result and the warning name the rows and the pending status."""
    server = FakeServer()
    server.up = False
    sender = sender_for(server, tmp_path)
    run = Run(server, {"id": "job-1"}, sender)
    for step in range(35):
        run.log({"loss": 1.0}, step=step)
    with caplog.at_level(logging.WARNING, logger="trainvis.client"):
        result = run.finish("completed", timeout=0.3)
    assert result == 35 and result.rows == 35 and result.status_pending
    assert not result.delivered
    [path] = spooled_files(tmp_path)
    warning = caplog.records[-1].getMessage()
    assert "35 rows and the final status 'completed' of job job-1" in warning
    assert str(path) in warning and "trainvis sync" in warning

    server.up = True
    report = sync_spool(tmp_path, client_factory=lambda url: server)
    assert report.uploaded_rows == 35 and server.statuses == ["completed"]


def test_finish_reports_a_pending_status_when_every_row_arrived(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 13: 0 rows left is not "delivered" while the status still waits."""
    server = FakeServer()
    sender = sender_for(server, tmp_path)
    run = Run(server, {"id": "job-1"}, sender)
    run.log({"loss": 1.0}, step=0)
    assert run.flush(5)
    server.up = False
    with caplog.at_level(logging.WARNING, logger="trainvis.client"):
        result = run.finish("completed", timeout=0.3)
    assert result == 0 and result.status_pending and not result.delivered
    assert "the final status 'completed' of job job-1 is not delivered" in caplog.text
    assert run.finish() == 0  # a second call does nothing

    server.up = True
    report = sync_spool(tmp_path, client_factory=lambda url: server)
    assert report.files_done == 1 and server.statuses == ["completed"]


def test_finish_that_delivers_everything_says_so(tmp_path: Path) -> None:
    server = FakeServer()
    run = Run(server, {"id": "job-1"}, sender_for(server, tmp_path))
    run.log({"loss": 1.0}, step=0)
    result = run.finish("completed", timeout=5)
    assert result == 0 and not result.status_pending and result.delivered
    assert server.statuses == ["completed"] and list(spooled_files(tmp_path)) == []


def test_a_rejected_field_is_dropped_and_the_rest_of_the_batch_arrives(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_module, "_warned", set())  # warned once per process
    server = FakeServer()
    server.reject["gpu_utilization"] = ApiError(422, "validation_error", "bad")
    sender = sender_for(server, tmp_path)
    batch = rows(0, 10)
    batch[3]["gpu_utilization"] = 150.0
    feed(sender, batch)
    assert sender.close("completed", None, timeout=5) == 0
    assert server.steps() == list(range(10))
    assert not any(name == "gpu_utilization" for _step, name in server.points)
    assert "rejected 'gpu_utilization'" in caplog.text


def test_a_batch_too_large_is_split(tmp_path: Path) -> None:
    server = FakeServer()
    server.max_rows = 3
    sender = sender_for(server, tmp_path)
    feed(sender, rows(0, 10))
    assert sender.close("completed", None, timeout=5) == 0
    assert server.steps() == list(range(10))
    assert max(len(post) for post in server.posts) <= 3


def test_a_torn_last_line_is_skipped_and_acks_count(tmp_path: Path) -> None:
    journal = Journal.create(tmp_path, url="http://x", job_id="j")
    for n_rows in (2, 3):
        op = Op(journal.next_n(), "rows", {"rows": rows(0, n_rows)})
        journal.append(op)
    journal.ack(1)
    journal.close(delete=False)
    with journal.path.open("ab") as handle:
        handle.write(b'{"t":"rows","n":3,"rows":[{"st')
    spool = read_journal(journal.path)
    assert spool is not None
    assert (spool.url, spool.job_id) == ("http://x", "j")
    assert [op.n for op in spool.pending] == [2] and spool.rows == 3

    server = FakeServer()
    report = sync_spool(tmp_path, client_factory=lambda url: server)
    assert report.uploaded_rows == 3 and report.files_done == 1


def test_sync_for_another_server_leaves_the_file(tmp_path: Path) -> None:
    journal = Journal.create(tmp_path, url="http://elsewhere", job_id="j")
    journal.append(Op(journal.next_n(), "rows", {"rows": rows(0, 2)}))
    journal.close(delete=False)
    report = sync_spool(tmp_path, only_url="http://fake", client_factory=lambda url: FakeServer())
    assert report.uploaded_rows == 0 and len(list(spooled_files(tmp_path))) == 1
