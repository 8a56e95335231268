"""A 2xx means committed: SIGKILL the server mid-ingest and find every acknowledged row."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import API, ServerProcess

pytestmark = pytest.mark.live


def test_sigkill_loses_no_acknowledged_row(tmp_path: Path) -> None:
    db = str(tmp_path / "durable.db")
    server = ServerProcess(db).start()
    acked: list[int] = []
    stop = threading.Event()
    try:
        with httpx.Client(base_url=server.url, timeout=5) as http:
            job = http.post(f"{API}/training/jobs", json={"name": "durable"}).json()["data"]["id"]

        def writer() -> None:
            step = 0
            with httpx.Client(base_url=server.url, timeout=5) as http:
                while not stop.is_set():
                    rows = [
                        {"step": s, "train_loss": s / 7, "acc": 1 / (s + 1)}
                        for s in range(step, step + 200)
                    ]
                    try:
                        response = http.post(f"{API}/training/{job}/metrics", json=rows)
                    except httpx.HTTPError:
                        return  # the server is gone: this batch was never acknowledged
                    if response.status_code == 201:
                        acked.extend(range(step, step + 200))
                    step += 200

        thread = threading.Thread(target=writer)
        thread.start()
        deadline = time.monotonic() + 20
        while len(acked) < 4000 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.kill()
        stop.set()
        thread.join(10)
    finally:
        server.kill()
    assert len(acked) >= 4000, "the writer did not get going"

    with ServerProcess(db) as restarted, httpx.Client(base_url=restarted.url, timeout=30) as http:
        rows = http.get(f"{API}/training/{job}/metrics/history").json()["data"]
        stored = {row["step"]: row for row in rows}
        missing = [step for step in acked if step not in stored]
        assert not missing, f"{len(missing)} acknowledged rows lost, first {missing[:5]}"
        for step in acked:
            assert stored[step]["train_loss"] == step / 7
            assert stored[step]["acc"] == 1 / (step + 1)
        detail = http.get(f"{API}/training/jobs/{job}").json()["data"]
        assert detail["point_count"] == 2 * len(stored)
