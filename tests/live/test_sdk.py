"""The SDK end to end against a real ``trainvis serve`` (issue 7).

Rows arrive in order; a server that goes away for 5 s loses nothing and
duplicates nothing; a process killed before it flushed leaves a spool that
``trainvis sync`` uploads; local mode writes a file ``trainvis serve`` shows.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import trainvis
from tests.conftest import API, ServerProcess
from trainvis.client import ApiError
from trainvis.client.spool import spooled_files

pytestmark = pytest.mark.live


class FixedPortServer(ServerProcess):
    """A ``trainvis serve`` on a port of our choosing (to restart it in place)."""

    def __init__(self, db: str, port: int, **kwargs: Any) -> None:
        super().__init__(db, **kwargs)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = self.log_path.with_name(f"trainvis-server-{port}-{time.time_ns()}.log")
        self.args = [*self.args]


@pytest.fixture
def spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "spool"
    monkeypatch.setenv("TRAINVIS_SPOOL_DIR", str(path))
    monkeypatch.delenv("TRAINVIS_URL", raising=False)
    monkeypatch.setitem(sys.modules, "pynvml", None)  # GPU sampling is tested on its own
    return path


def get_job(url: str, job_id: str) -> dict[str, Any]:
    response = httpx.get(f"{url}{API}/training/jobs/{job_id}", timeout=10)
    response.raise_for_status()
    data: dict[str, Any] = response.json()["data"]
    return data


def get_history(url: str, job_id: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}{API}/training/{job_id}/metrics/history", timeout=30)
    response.raise_for_status()
    rows: list[dict[str, Any]] = response.json()["data"]
    return rows


def child_env(spool: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "TRAINVIS_SPOOL_DIR": str(spool), **extra}
    env.pop("TRAINVIS_URL", None)
    return env


def test_rows_arrive_in_order_with_their_steps(live_server: ServerProcess, spool: Path) -> None:
    run = trainvis.init(
        name="ordered", url=live_server.url, total_steps=2000, config={"lr": 0.1}, tags=["sdk"]
    )
    assert get_job(live_server.url, run.id)["status"] == "running"
    for step in range(2000):
        run.log({"train_loss": np.float32(1 / (step + 1)), "learning_rate": 0.1 * 0.999**step})
        if step % 500 == 0:
            run.log({"val_loss": 2.0 / (step + 1), "accuracy": step / 2000}, step=step)
    run.log({"train_loss": math.nan}, step=2000)
    assert run.finish() == 0

    rows = get_history(live_server.url, run.id)
    assert [row["step"] for row in rows] == list(range(2001))
    assert rows[10]["train_loss"] == pytest.approx(1 / 11)
    assert rows[500]["val_loss"] == pytest.approx(2 / 501) and rows[500]["train_loss"]
    assert rows[2000]["train_loss"] == "NaN"
    job = get_job(live_server.url, run.id)
    assert job["status"] == "completed" and job["tags"] == ["sdk"]
    assert job["point_count"] == 2000 * 2 + 4 * 2 + 1
    assert list(spooled_files(spool)) == []


def test_a_value_the_server_rejects_costs_only_that_value(
    live_server: ServerProcess, spool: Path
) -> None:
    run = trainvis.init(name="reject", url=live_server.url)
    for step in range(20):
        run.log({"train_loss": 1.0, "gpu_utilization": 150.0 if step == 7 else 50.0})
    assert run.finish() == 0
    rows = get_history(live_server.url, run.id)
    assert len(rows) == 20 and all(row["train_loss"] == 1.0 for row in rows)
    assert "gpu_utilization" not in rows[7] and rows[8]["gpu_utilization"] == 50.0


def test_server_down_for_five_seconds_loses_and_duplicates_nothing(
    tmp_path: Path, spool: Path
) -> None:
    from tests.conftest import free_port

    db, port = str(tmp_path / "outage.db"), free_port()
    server = FixedPortServer(db, port).start()
    run = trainvis.init(name="outage", url=server.url, flush_interval=0.2)
    step = 0

    def log_for(seconds: float) -> None:
        nonlocal step
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            run.log({"train_loss": 1 / (step + 1), "step_copy": step})
            step += 1
            time.sleep(0.002)

    try:
        log_for(1.0)
        server.stop()
        log_for(5.0)
        assert run.spooled_rows > 0
        server = FixedPortServer(db, port).start()
        log_for(1.0)
        assert run.finish(timeout=60) == 0
        rows = get_history(server.url, run.id)
        job = get_job(server.url, run.id)
    finally:
        server.stop()
    assert [row["step"] for row in rows] == list(range(step))
    assert all(row["step_copy"] == row["step"] for row in rows)
    assert job["point_count"] == 2 * step and job["status"] == "completed"
    assert list(spooled_files(spool)) == []


KILLED_CHILD = """
import os, sys, trainvis
run = trainvis.init(name="killed", url=sys.argv[1], flush_interval=0.1, monitor_gpu=False)
print(run.id, flush=True)
sys.stdin.readline()  # the test stops the server, then lets us go on
for step in range(300):
    run.log({"train_loss": 1 / (step + 1)}, step=step)
run.flush(timeout=1.5)  # the server is down: this only journals the rows
os._exit(0)  # killed: no finish(), no atexit
"""


def test_a_killed_process_leaves_a_spool_that_trainvis_sync_uploads(
    tmp_path: Path, spool: Path
) -> None:
    from tests.conftest import free_port

    db, port = str(tmp_path / "killed.db"), free_port()
    server = FixedPortServer(db, port).start()
    with subprocess.Popen(
        [sys.executable, "-c", KILLED_CHILD, server.url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(spool),
    ) as child:
        assert child.stdout is not None and child.stdin is not None
        job_id = child.stdout.readline().strip()
        server.stop()
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.wait(60) == 0
    [journal] = spooled_files(spool)
    server = FixedPortServer(db, port).start()
    try:
        assert get_history(server.url, job_id) == []
        result = subprocess.run(
            [sys.executable, "-m", "trainvis", "sync"],
            env=child_env(spool),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "300 rows uploaded" in result.stdout
        rows = get_history(server.url, job_id)
        status = get_job(server.url, job_id)["status"]
    finally:
        server.stop()
    assert [row["step"] for row in rows] == list(range(300))
    assert status == "running"  # nobody said how it ended
    assert not journal.exists()


def test_init_while_the_server_is_down_spools_the_job_and_the_next_init_uploads_it(
    tmp_path: Path, spool: Path
) -> None:
    from tests.conftest import free_port

    db, port = str(tmp_path / "offline.db"), free_port()
    url = f"http://127.0.0.1:{port}"
    run = trainvis.init(name="offline", url=url, connect_timeout=0.3, tags=["t"])
    assert run.id.startswith("run-")
    for step in range(50):
        run.log({"train_loss": 1.0 / (step + 1)})
    assert run.finish(timeout=0.5) == 50
    [journal] = spooled_files(spool)

    with FixedPortServer(db, port) as server:
        later = trainvis.init(name="later", url=server.url)
        deadline = time.monotonic() + 20
        while journal.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        later.finish()
        job = get_job(server.url, run.id)
        rows = get_history(server.url, run.id)
    assert (job["name"], job["tags"], job["status"]) == ("offline", ["t"], "completed")
    assert [row["step"] for row in rows] == list(range(50))
    assert list(spooled_files(spool)) == []


EXITING_CHILD = """
import sys, trainvis
run = trainvis.init(name="atexit", url=sys.argv[1], monitor_gpu=False)
print(run.id, flush=True)
for step in range(100):
    run.log({"train_loss": 1.0}, step=step)
if sys.argv[2] == "raise":
    raise RuntimeError("diverged")
"""


@pytest.mark.parametrize(("mode", "status"), [("exit", "completed"), ("raise", "failed")])
def test_atexit_finishes_an_unfinished_run(
    live_server: ServerProcess, spool: Path, mode: str, status: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", EXITING_CHILD, live_server.url, mode],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(spool),
    )
    job = get_job(live_server.url, result.stdout.strip())
    assert job["status"] == status and job["point_count"] == 100
    if mode == "raise":
        assert "RuntimeError: diverged" in job["message"]


def test_local_mode_writes_a_store_that_trainvis_serve_shows(
    tmp_path: Path, spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = str(tmp_path / "offline.db")
    monkeypatch.setenv("TRAINVIS_DB", db)
    run = trainvis.init(name="local-run", total_steps=100)
    for step in range(100):
        run.log({"train_loss": 1.0 / (step + 1), "accuracy": step / 100})
    run.finish()
    assert not spool.exists() or list(spooled_files(spool)) == []
    with ServerProcess(db) as server:
        listed = httpx.get(f"{server.url}{API}/training/jobs", timeout=10).json()["data"]
        rows = get_history(server.url, run.id)
    assert [(job["id"], job["name"], job["status"]) for job in listed] == [
        (run.id, "local-run", "completed")
    ]
    assert listed[0]["progress"] == pytest.approx(0.99)
    assert [row["step"] for row in rows] == list(range(100))


@pytest.fixture
def token_server(tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess(
        str(tmp_path / "auth.db"), args=["--api-token", "s3cret-token-0123456"]
    ) as server:
        yield server


def test_the_token_comes_from_trainvis_token(
    token_server: ServerProcess, spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRAINVIS_TOKEN", raising=False)
    with pytest.raises(ApiError) as caught:
        trainvis.init(name="nope", url=token_server.url)
    assert caught.value.status_code == 401
    monkeypatch.setenv("TRAINVIS_TOKEN", "s3cret-token-0123456")
    monkeypatch.setenv("TRAINVIS_URL", token_server.url)
    run = trainvis.init(name="yes")
    run.log({"loss": 1.0})
    assert run.finish() == 0
    assert get_job(token_server.url, run.id)["point_count"] == 1


def test_gpu_watch_attaches_to_a_running_job(
    live_server: ServerProcess, spool: Path, tmp_path: Path
) -> None:
    from tests.unit.test_gpu import FAKE_PYNVML

    fake_dir = tmp_path / "fake"
    fake_dir.mkdir()
    (fake_dir / "pynvml.py").write_text(textwrap.dedent(FAKE_PYNVML))
    run = trainvis.init(name="watched", url=live_server.url, monitor_gpu=False)
    run.log({"train_loss": 1.0}, step=42)
    run.flush()
    env = child_env(spool, PYTHONPATH=f"{fake_dir}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    result = subprocess.run(
        [sys.executable, "-m", "trainvis", "gpu-watch", "--job", run.id, "--url",
         live_server.url, "--interval", "0.1", "--count", "2"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    run.finish()
    [row] = get_history(live_server.url, run.id)
    assert row["step"] == 42 and row["train_loss"] == 1.0
    assert row["gpu_utilization"] == 60.0 and row["gpu1.memory_used"] == 3072.0
