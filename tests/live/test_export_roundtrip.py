"""``trainvis export`` from a live server and back in (issue 8).

A job with NaN, ±Infinity, custom metrics, GPU readings and fractional epochs
is exported over HTTP as CSV (byte for byte the server's CSV), JSON and
Parquet; the JSON goes into a second, empty server and the Parquet into an
empty store, and both give the same history back.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import API, ServerProcess, require_service
from trainvis import exporters
from trainvis.client.http import encode_json
from trainvis.exporters import export_job
from trainvis.importers import import_file
from trainvis.store import open_store

pytestmark = pytest.mark.live
T0 = 1_780_000_000.0


def tricky_rows(count: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for step in range(count):
        row: dict[str, Any] = {
            "step": step * 2,
            "epoch": step / 1000,
            "timestamp": T0 + step * 0.01,
            "train_loss": math.nan if step == 7 else 1.0 / (step + 1),
            "my.custom/metric-1": math.inf if step == 8 else -math.inf if step == 9 else step,
        }
        if step % 50 == 0:
            row["val_loss"] = 0.5
            row["gpus"] = [{"index": 1, "utilization": 40.0, "power": 120.5}]
        rows.append(row)
    return rows


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trainvis", *args], capture_output=True, text=True, timeout=180
    )


def history(url: str, job_id: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}{API}/training/{job_id}/metrics/history", timeout=60)
    response.raise_for_status()
    rows: list[dict[str, Any]] = response.json()["data"]
    return rows


@pytest.fixture
def source(live_server: ServerProcess) -> tuple[str, str]:
    """The live server's URL and a tricky job of 12,000 rows (more than one page)."""
    spec = {"id": "tricky", "name": "tricky", "config": {"seed": 1}, "tags": ["x"]}
    httpx.post(f"{live_server.url}{API}/training/jobs", json=spec).raise_for_status()
    rows = tricky_rows(12_000)
    for start in range(0, len(rows), 5000):
        httpx.post(
            f"{live_server.url}{API}/training/tricky/metrics",
            content=encode_json(rows[start : start + 5000]),
            headers={"Content-Type": "application/json"},
            timeout=60,
        ).raise_for_status()
    httpx.put(
        f"{live_server.url}{API}/training/jobs/tricky/status", json={"status": "failed"}
    ).raise_for_status()
    return live_server.url, "tricky"


def test_csv_export_is_the_servers_csv(source: tuple[str, str], tmp_path: Path) -> None:
    url, job_id = source
    out = tmp_path / "tricky.csv"
    done = cli("export", job_id, "--format", "csv", "-o", str(out), "--url", url)
    assert done.returncode == 0, done.stderr
    assert "12000 rows" in done.stderr
    served = httpx.get(f"{url}{API}/training/{job_id}/metrics/history?format=csv", timeout=60)
    assert out.read_bytes() == served.content
    stdout = cli("export", job_id, "--format", "csv", "-o", "-", "--url", url)
    assert stdout.stdout.encode() == served.content


def test_json_export_into_a_fresh_server(source: tuple[str, str], tmp_path: Path) -> None:
    url, job_id = source
    out = tmp_path / "tricky.json"
    assert cli("export", job_id, "--format", "json", "-o", str(out), "--url", url).returncode == 0
    with ServerProcess(str(tmp_path / "fresh.db")) as fresh:
        done = cli("import", "json", str(out), "--url", fresh.url, "--no-progress")
        assert done.returncode == 0, done.stderr
        assert done.stdout.split("\t")[:2] == [job_id, "created"]
        assert history(fresh.url, job_id) == history(url, job_id)
        original = httpx.get(f"{url}{API}/training/jobs/{job_id}").json()["data"]
        copy = httpx.get(f"{fresh.url}{API}/training/jobs/{job_id}").json()["data"]
        for key in ("name", "config", "tags", "status", "point_count", "summary", "metric_names"):
            assert copy[key] == original[key], key
        again = cli("import", "json", str(out), "--url", fresh.url, "--no-progress")
        assert again.stdout.split("\t")[:2] == [job_id, "unchanged"]


def test_parquet_export_over_http_into_a_fresh_store(
    source: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        require_service("pyarrow", "not installed (pip install -e '.[parquet]')")
    url, job_id = source
    monkeypatch.setattr(exporters, "PAGE", 999)  # many history pages, odd boundaries
    out = tmp_path / "tricky.parquet"
    assert export_job(job_id, "parquet", out, url=url) == 12_000
    fresh = str(tmp_path / "fresh.db")
    assert import_file(out, db=fresh) == job_id
    store = open_store(fresh)
    try:
        assert list(store.iter_rows(job_id)) == history(url, job_id)
        assert store.get_job(job_id).status.value == "failed"
    finally:
        store.close()
    document = tmp_path / "paged.json"
    export_job(job_id, "json", document, url=url)
    assert json.loads(document.read_text())["rows"] == history(url, job_id)


def test_unknown_job_fails_cleanly(live_server: ServerProcess, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    missing = str(tmp_path / "missing.db")
    done = cli("export", "nope", "--format", "json", "-o", str(out / "x.json"), "--db", missing)
    assert done.returncode == 1 and "no store at" in done.stderr
    done = cli("export", "x", "--format", "csv", "-o", str(out / "x.csv"), "--url", live_server.url)
    assert done.returncode == 1 and "no job 'x'" in done.stderr
    done = cli("export", "x", "--format", "csv", "-o", "-", "--db", live_server.db)
    assert done.returncode == 1 and "no job 'x'" in done.stderr
    assert not list(out.iterdir()) and not Path(missing).exists()
