"""``trainvis ls`` and ``trainvis tail`` against a real server (issue 17, part 6).

Both commands run as subprocesses, as a user runs them: stdout is a pipe, so
the output is plain text (``FORCE_COLOR=1`` makes it rich). ``tail`` is
followed line by line while rows, alerts and status changes are posted, and
across two restarts of the server: rows posted while it was away appear once,
in order (resumed with ``Last-Event-ID``), before any row had been seen as
well as after.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import API, ServerProcess, free_port
from trainvis.client.terminal import COLUMNS

pytestmark = pytest.mark.live


def trainvis(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m trainvis ARGS`` with stdout and stderr captured (pipes: plain output)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("TRAINVIS_", "FORCE_"))}
    return subprocess.run(
        [sys.executable, "-m", "trainvis", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**environ, "COLUMNS": "200", **(env or {})},
    )


def post(url: str, path: str, body: Any, method: str = "POST") -> Any:
    response = httpx.request(
        method,
        f"{url}{API}{path}",
        content=json.dumps(body),  # Python's json writes NaN as the bare token
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code in (200, 201), response.text
    return response.json()["data"]


def table(stdout: str) -> list[list[str]]:
    """The plain ``ls`` table split on its column gaps (two spaces or more)."""
    return [re.split(r"\s{2,}", line.strip()) for line in stdout.splitlines() if line.strip()]


@pytest.fixture
def server(db_url: str) -> Iterator[ServerProcess]:
    with ServerProcess(db_url) as started:
        yield started


def seed_jobs(url: str) -> None:
    """job-001: a running BERT run; job-002: a paused sweep with only val_loss; job-003: done."""
    post(url, "/training/jobs", {"name": "bert-sst2", "model_name": "bert", "total_steps": 100})
    post(url, "/training/job-001/metrics", [{"step": s, "train_loss": 1.0 / s} for s in (1, 2, 4)])
    post(url, "/training/job-001/metrics", {"step": 5, "train_loss": 0.4})
    post(url, "/training/jobs/job-001/status", {"status": "running"}, method="PUT")
    post(url, "/training/jobs", {"name": "lr sweep", "tags": ["sweep"]})
    post(
        url,
        "/training/job-002/metrics",
        [{"step": 10, "val_loss": 0.75}, {"step": 20, "val_loss": 0.8}],
    )
    post(url, "/training/jobs/job-002/status", {"status": "paused"}, method="PUT")
    post(url, "/training/jobs", {"name": "resnet", "total_steps": 3})
    post(url, "/training/job-003/metrics", [{"step": s, "train_loss": 2.0 - s} for s in (1, 2, 3)])
    post(url, "/training/jobs/job-003/status", {"status": "completed"}, method="PUT")


def test_ls_shows_the_runs_with_their_columns(server: ServerProcess) -> None:
    """Issue 17: id, name, status, step, last and best loss, ETA; newest first."""
    seed_jobs(server.url)
    done = trainvis("ls", "--url", server.url)
    assert done.returncode == 0, done.stderr
    header, *rows = table(done.stdout)
    assert header == list(COLUMNS)
    assert [row[0] for row in rows] == ["job-003", "job-002", "job-001"]
    by_id = {row[0]: row for row in rows}
    assert by_id["job-001"][1:6] == ["bert-sst2", "running", "5/100", "0.4", "0.25 @4"]
    assert by_id["job-002"][1:6] == ["lr sweep", "paused", "20", "0.8 (val_loss)", "0.75 @10"]
    assert by_id["job-003"][1:] == ["resnet", "completed", "3/3", "-1", "-1 @3", "-"]
    assert "\x1b[" not in done.stdout  # a pipe gets plain text


def test_ls_filters_like_the_api(server: ServerProcess) -> None:
    seed_jobs(server.url)

    def ids(*args: str) -> list[str]:
        done = trainvis("ls", *args, env={"TRAINVIS_URL": server.url})
        assert done.returncode == 0, done.stderr
        return [row[0] for row in table(done.stdout)[1:]]

    assert ids("--status", "completed") == ["job-003"]
    assert ids("--tag", "sweep") == ["job-002"]
    assert ids("-q", "bert") == ["job-001"]
    limited = trainvis("ls", "--limit", "1", "--url", server.url)
    assert [row[0] for row in table(limited.stdout)[1:]] == ["job-003"]
    assert "1 of 3 jobs" in limited.stderr
    assert ids("--offset", "2") == ["job-001"]
    metric = trainvis("ls", "--metric", "val_loss", "--tag", "sweep", "--url", server.url)
    assert table(metric.stdout)[1][4:6] == ["0.8", "0.75 @10"]
    empty = trainvis("ls", "--status", "failed", "--url", server.url)
    assert empty.returncode == 0 and empty.stdout == "" and "no jobs" in empty.stderr


def test_ls_is_rich_on_a_terminal(server: ServerProcess) -> None:
    """``FORCE_COLOR`` stands in for a terminal: a boxed, coloured table; names never markup."""
    pytest.importorskip("rich")
    post(server.url, "/training/jobs", {"name": "[bold]not markup[/bold]"})
    done = trainvis("ls", "--url", server.url, env={"FORCE_COLOR": "1"})
    assert done.returncode == 0, done.stderr
    assert "\x1b[" in done.stdout and "┃" in done.stdout
    assert "[bold]not markup[/bold]" in done.stdout
    plain = trainvis("ls", "--plain", "--url", server.url, env={"FORCE_COLOR": "1"})
    assert "\x1b[" not in plain.stdout and "[bold]not markup[/bold]" in plain.stdout


def test_ls_and_tail_report_an_unreachable_server_and_an_unknown_job(
    server: ServerProcess,
) -> None:
    gone = f"http://127.0.0.1:{free_port()}"
    for args in (["ls"], ["tail", "job-001"]):
        done = trainvis(*args, "--url", gone)
        assert done.returncode == 1 and gone in done.stderr and "Traceback" not in done.stderr
    missing = trainvis("tail", "job-404", "--url", server.url)
    assert missing.returncode == 1 and "job_not_found" in missing.stderr


class Tail:
    """``trainvis tail`` in a subprocess; its stdout and stderr lines collected as they come."""

    def __init__(self, url: str, *args: str) -> None:
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("TRAINVIS_", "FORCE_"))}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "trainvis", "tail", *args, "--url", url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environ,
        )
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._new: queue.Queue[None] = queue.Queue()
        self._readers = [
            threading.Thread(target=self._read, args=(stream, into), daemon=True)
            for stream, into in ((self.proc.stdout, self.lines), (self.proc.stderr, self.errors))
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))
            self._new.put(None)

    def wait_for(self, pattern: str, *, count: int = 1, timeout: float = 60.0) -> None:
        """Until ``count`` stdout lines match ``pattern``."""
        deadline = time.monotonic() + timeout
        while sum(bool(re.search(pattern, line)) for line in self.lines) < count:
            left = deadline - time.monotonic()
            assert left > 0 and self.proc.poll() is None, f"no {pattern!r} in time:\n" + "\n".join(
                self.lines + self.errors
            )
            try:
                self._new.get(timeout=min(left, 0.5))
            except queue.Empty:
                pass

    def steps(self) -> list[int]:
        return [int(m.group(1)) for line in self.lines if (m := re.search(r" step=(\d+) ", line))]

    def interrupt(self) -> int:
        """Ctrl-C; the exit status."""
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(20)

    def kill(self) -> None:
        """Kill it if it still runs; close its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for reader in self._readers:
            reader.join(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def restart(server: ServerProcess) -> ServerProcess:
    """Stop ``server`` and start another on the same port and database."""
    server.stop()
    again = ServerProcess(server.db, args=server.args)
    again.port, again.url = server.port, server.url
    return again.start()


def rows(url: str, steps: range, **extra: Any) -> None:
    post(
        url, "/training/job-001/metrics", [{"step": s, "train_loss": 1 / s, **extra} for s in steps]
    )


def test_tail_follows_rows_alerts_and_status_across_restarts(db_url: str) -> None:
    """Issue 17: rows posted after ``tail`` started, each once and in order, across two
    restarts (the first before ``tail`` saw any row); alerts live and missed; Ctrl-C exits 0."""
    # The server advises a 2 s reconnect delay: rows posted right after a restart are
    # usually stored before ``tail`` is back, so they come as a Last-Event-ID replay.
    server = ServerProcess(db_url, args=["--sse-retry-ms", "2000"]).start()
    tail: Tail | None = None
    try:
        post(server.url, "/training/jobs", {"name": "follow me", "total_steps": 100})
        rows(server.url, range(1, 4))  # before tail: not shown
        tail = Tail(server.url, "job-001")
        tail.wait_for(r"following job-001 'follow me': status=\w+ step=3/100")

        server = restart(server)  # no row seen yet: resumes from the snapshot's last_id
        rows(server.url, range(4, 7))
        tail.wait_for(r" step=6 ")
        assert any("connection lost" in line for line in tail.errors)
        tail.wait_for(r"resumed job-001")

        post(server.url, "/training/job-001/metrics", {"step": 7, "train_loss": "NaN"})
        tail.wait_for(r"ALERT critical nonfinite step=7: train_loss is NaN")
        server = restart(server)
        rows(server.url, range(8, 11), epoch=1.5)
        post(server.url, "/training/job-001/events", {"message": "restarted from checkpoint"})
        tail.wait_for(r" step=10 ")
        tail.wait_for(r"ALERT info note step=\d+: restarted from checkpoint")
        post(server.url, "/training/jobs/job-001/status", {"status": "completed"}, method="PUT")
        tail.wait_for(r"STATUS \w+ -> completed")

        assert tail.steps() == list(range(4, 11)), "\n".join(tail.lines)
        assert sum("ALERT" in line for line in tail.lines) == 2
        assert any(re.search(r"step=9 epoch=1\.5 train_loss=0\.111111", ln) for ln in tail.lines)
        assert all("\x1b[" not in line for line in tail.lines)
        assert tail.interrupt() == 0
        assert not any("Traceback" in line for line in tail.errors), tail.errors
    finally:
        if tail is not None:
            tail.kill()
        server.stop()


def test_tail_replays_from_since_and_filters_metrics(server: ServerProcess) -> None:
    """``--since 0`` replays the whole run first; ``--metrics`` keeps the named ones."""
    post(server.url, "/training/jobs", {"name": "replay"})
    post(
        server.url,
        "/training/job-001/metrics",
        [{"step": s, "train_loss": 1 / s, "learning_rate": 0.1} for s in range(1, 4)],
    )
    tail = Tail(server.url, "job-001", "--since", "0", "--metrics", "learning_rate")
    try:
        tail.wait_for(r" step=3 ")
        post(server.url, "/training/job-001/metrics", [{"step": 4, "train_loss": 0.2}])
        post(server.url, "/training/job-001/metrics", [{"step": 5, "learning_rate": 0.05}])
        tail.wait_for(r" step=5 ")
        assert tail.steps() == [1, 2, 3, 5]  # step 4 has none of the metrics asked for
        assert all("train_loss" not in line for line in tail.lines)
        assert tail.lines[-1].endswith("step=5 learning_rate=0.05")
    finally:
        assert tail.interrupt() == 0
        tail.kill()


def test_terminal_commands_run_without_rich(server: ServerProcess, tmp_path: Path) -> None:
    """``rich`` is optional: without it a terminal gets the plain table."""
    post(server.url, "/training/jobs", {"name": "plain"})
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        "import sys\n"
        "class NoRich:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.partition('.')[0] == 'rich':\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, NoRich())\n"
    )
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    done = trainvis("ls", "--url", server.url, env={"FORCE_COLOR": "1", "PYTHONPATH": path})
    assert done.returncode == 0, done.stderr
    assert table(done.stdout)[0] == list(COLUMNS) and "\x1b[" not in done.stdout


def test_a_read_token_is_sent_by_ls_and_tail(tmp_path: Path) -> None:
    """Where reads are protected, ``--token``/``TRAINVIS_TOKEN`` reaches both requests of
    ``tail`` (the events list and the stream) and ``ls``; without it the refusal is named."""
    token = "read-token-0123456789"
    with ServerProcess(str(tmp_path / "locked.db"), args=["--read-token", token]) as server:
        httpx.post(
            f"{server.url}{API}/training/jobs",
            json={"name": "locked"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        ).raise_for_status()
        refused = trainvis("ls", "--url", server.url)
        assert refused.returncode == 1 and "401" in refused.stderr
        listed = trainvis("ls", "--url", server.url, env={"TRAINVIS_TOKEN": token})
        assert listed.returncode == 0 and "locked" in listed.stdout
        assert trainvis("tail", "job-001", "--url", server.url).returncode == 1
        tail = Tail(server.url, "job-001", "--token", token)
        try:
            tail.wait_for(r"following job-001 'locked'")
        finally:
            assert tail.interrupt() == 0
            tail.kill()
