"""Storage faults under a real server on SQLite (issue 13, item 6).

A full disk is a real tmpfs of a few MiB; a database that turns read-only
while the server runs is an ext4 image that the kernel remounts read-only on
a (triggered) filesystem error; a database that is read-only when the server
starts sits on a tmpfs remounted read-only. See ``tests/filesystems.py`` for
why ``chmod`` would prove nothing here (the tests run as root).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import API, ServerProcess
from tests.filesystems import Ext4Image, fill, remount, tmpfs

pytestmark = pytest.mark.live


def rows(first: int, count: int, metrics: int = 20) -> list[dict[str, Any]]:
    return [
        {"step": step, **{f"m{k}": step + k / 7 for k in range(metrics)}}
        for step in range(first, first + count)
    ]


def history_steps(api: httpx.Client, job: str) -> list[int]:
    response = api.get(f"/training/{job}/metrics/history")
    assert response.status_code == 200, response.text
    return [row["step"] for row in response.json()["data"]]


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


def test_a_full_disk_is_507_reads_keep_working_and_writes_resume(tmp_path: Path) -> None:
    """issue 13: disk full → 507 ``insufficient_storage`` (was 500 ``internal_error``);
    nothing of the refused request is stored, every acknowledged row reads back, and
    writes succeed again once space is freed (no restart)."""
    with tmpfs(tmp_path / "small", "8m") as disk:
        server = ServerProcess(str(disk / "full.db")).start()
        try:
            with httpx.Client(base_url=server.url + API, timeout=60) as api:
                job = api.post("/training/jobs", json={"name": "fills the disk"}).json()["data"]
                filler = fill(disk, leave=512 * 1024)
                stored, refused = 0, None
                for _ in range(400):
                    response = api.post(f"/training/{job['id']}/metrics", json=rows(stored, 100))
                    if response.status_code != 201:
                        refused = response
                        break
                    stored += 100
                assert refused is not None, "the disk never filled"
                assert refused.status_code == 507, refused.text
                assert error_code(refused) == "insufficient_storage"
                assert "disk" in refused.json()["error"]["message"].lower()
                assert history_steps(api, job["id"]) == list(range(stored))
                detail = api.get(f"/training/jobs/{job['id']}")
                assert detail.status_code == 200
                assert detail.json()["data"]["point_count"] == stored * 20
                assert api.get("/training/jobs").status_code == 200
                assert api.get(f"/training/{job['id']}/loss").status_code == 200
                filler.unlink()
                again = api.post(f"/training/{job['id']}/metrics", json=rows(stored, 100))
                assert again.status_code == 201, again.text
                assert history_steps(api, job["id"]) == list(range(stored + 100))
        finally:
            server.stop()
        assert "Traceback" not in server.log(), server.log()


def test_a_database_that_turns_read_only_refuses_writes_with_503(tmp_path: Path) -> None:
    """issue 13: the filesystem under a running server goes read-only (the kernel's
    reaction to a disk error): writes answer 503 saying so, reads keep working."""
    with Ext4Image(tmp_path / "disk.img", tmp_path / "ext4") as disk:
        server = ServerProcess(str(disk.where / "turns.db")).start()
        try:
            with httpx.Client(base_url=server.url + API, timeout=60) as api:
                job = api.post("/training/jobs", json={"name": "before"}).json()["data"]["id"]
                assert api.post(f"/training/{job}/metrics", json=rows(0, 50)).status_code == 201
                disk.fail()
                writes = [
                    api.post(f"/training/{job}/metrics", json=rows(50, 50)),
                    api.post("/training/jobs", json={"name": "after"}),
                    # (first rows made the job running: a PUT of the same status writes nothing)
                    api.put(f"/training/jobs/{job}/status", json={"status": "paused"}),
                    api.delete(f"/training/jobs/{job}"),
                ]
                for response in writes:
                    assert response.status_code == 503, response.text
                    assert error_code(response) == "store_read_only"
                    assert "read-only" in response.json()["error"]["message"]
                assert history_steps(api, job) == list(range(50))
                listed = api.get("/training/jobs").json()
                assert [j["id"] for j in listed["data"]] == [job]
                assert api.get(f"/training/jobs/{job}").json()["data"]["status"] == "running"
        finally:
            server.stop()


@pytest.mark.parametrize("shutdown", ["stopped", "killed"])
def test_a_server_started_on_a_read_only_database_serves_reads(
    tmp_path: Path, shutdown: str
) -> None:
    """issue 13: a server started on a read-only database (its filesystem mounted
    read-only) serves every read and answers writes with 503, instead of refusing
    to start. ``killed`` leaves a write-ahead log behind that must be read too."""
    with tmpfs(tmp_path / "ro", "16m") as disk:
        db = str(disk / "ro.db")
        with httpx.Client(timeout=60) as http:
            first = ServerProcess(db).start()
            try:
                base = first.url + API
                job = http.post(f"{base}/training/jobs", json={"name": "frozen"}).json()["data"]
                for start in (0, 100):  # two commits: the second stays in the log if killed
                    posted = http.post(
                        f"{base}/training/{job['id']}/metrics", json=rows(start, 100)
                    )
                    assert posted.status_code == 201
                http.put(f"{base}/training/jobs/{job['id']}/status", json={"status": "running"})
            finally:
                first.kill() if shutdown == "killed" else first.stop()
            assert (disk / "ro.db-wal").exists() == (shutdown == "killed")
            remount(disk, "ro")
            try:
                with ServerProcess(db) as server:
                    api = httpx.Client(base_url=server.url + API, timeout=60)
                    detail = api.get(f"/training/jobs/{job['id']}").json()["data"]
                    assert (detail["status"], detail["point_count"]) == ("running", 200 * 20)
                    assert history_steps(api, job["id"]) == list(range(200))
                    assert api.get("/dashboard", params={"format": "json"}).status_code == 200
                    assert api.get(f"/training/{job['id']}/metrics/chart").status_code == 200
                    with api.stream("GET", f"/training/{job['id']}/stream") as stream:
                        assert stream.status_code == 200
                        line = next(
                            line for line in stream.iter_lines() if line.startswith("data:")
                        )
                        assert json.loads(line[5:])["job"]["status"] == "running"
                    refused = api.post(f"/training/{job['id']}/metrics", json=rows(200, 1))
                    assert refused.status_code == 503 and error_code(refused) == "store_read_only"
                    created = api.post("/training/jobs", json={"name": "new"})
                    assert created.status_code == 503 and error_code(created) == "store_read_only"
                    api.close()
                assert "Traceback" not in server.log(), server.log()
            finally:
                remount(disk, "rw")
