"""`trainvis serve`: flags, environment variables and the startup line."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import API, ServerProcess, free_port

pytestmark = pytest.mark.live


def test_serve_with_flags_runs_seed_sequence(tmp_path: Path) -> None:
    with ServerProcess(str(tmp_path / "a.db")) as server, httpx.Client(base_url=server.url) as http:
        created = http.post(
            f"{API}/training/jobs",
            json={
                "name": "BERT Fine-tuning",
                "model_name": "bert-base-uncased",
                "total_epochs": 10,
                "total_steps": 10000,
            },
        )
        assert created.status_code == 201 and created.json()["data"]["id"] == "job-001"
        posted = http.post(
            f"{API}/training/job-001/metrics", json={"step": 100, "epoch": 1, "train_loss": 0.85}
        )
        assert posted.status_code == 201
        assert http.get("/openapi.json").json()["paths"]
        log = server.log()
    assert "dashboard http://127.0.0.1:" in log and "/docs" in log
    assert (tmp_path / "a.db").exists()
    conn = sqlite3.connect(tmp_path / "a.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_serve_reads_environment(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "TRAINVIS_DB": str(tmp_path / "env.db"), "TRAINVIS_PORT": str(port)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainvis", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}{API}/training/jobs").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            pytest.fail("server on TRAINVIS_PORT did not answer")
        assert (tmp_path / "env.db").exists()
    finally:
        proc.terminate()
        proc.wait(10)


def test_serve_rejects_bad_environment(tmp_path: Path) -> None:
    env = {**os.environ, "TRAINVIS_PORT": "eighty"}
    result = subprocess.run(
        [sys.executable, "-m", "trainvis", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "TRAINVIS_PORT" in result.stderr
