"""The sender thread, the journal and ``sync_spool`` over an in-memory server.

The fake stands in for the network only: it answers like the REST API (201,
4xx with the contract's details, or unreachable). Real-server behaviour is in
``tests/live/test_sdk.py``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from trainvis.client import spool as spool_module
from trainvis.client.http import ApiError, ServerUnavailable
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


def test_unauthorized_keeps_everything_spooled(tmp_path: Path) -> None:
    server = FakeServer()
    server.reject["all"] = ApiError(401, "unauthorized", "token")
    sender = sender_for(server, tmp_path)
    feed(sender, rows(0, 5))
    time.sleep(0.1)
    assert sender.state == "held"
    assert sender.close("completed", None, timeout=1) == 5
    [path] = spooled_files(tmp_path)
    assert read_journal(path).rows == 5  # type: ignore[union-attr]


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
