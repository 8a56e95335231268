"""What the W&B and SwanLab import tests check alike (issue 17).

Both write runs with the tool itself (a finished run, a failed one, a third
one and a run resumed in a second process), record what each run logged,
then check the import three ways: through the store, value for value;
importing twice changes nothing; ``trainvis import <source>`` against a live
server, read back through the REST API. :func:`snapshot` and
:func:`assert_unchanged` serve the other importers' "twice" tests too.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import API, ServerProcess
from trainvis.models import TrainingJob
from trainvis.store import MetricStore, open_store

STEPS = 1000

#: Logged key → trainvis metric name.
NAMES = {
    "train/loss": "train_loss",
    "lr": "learning_rate",
    "grad norm": "grad_norm",
    "eval/loss": "val_loss",
    "eval/accuracy": "accuracy",
    "loss": "train_loss",
    "train_loss": "train_loss",
}

#: Run name → (status, tags, config) of its job, in the order the runs were written.
Expected = dict[str, tuple[str, list[str], dict[str, Any]]]
Importer = Callable[..., list[str]]


def merge_parts(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """What one run logged, from the records of its parts (a resumed run has two)."""
    rows: dict[int, dict[str, Any]] = {}
    for part in parts:
        for step, values in part["rows"].items():
            rows.setdefault(int(step), {}).update(values)
    return {
        "rows": rows,
        "started": min(part["started"] for part in parts),
        "ended": max(part["ended"] for part in parts),
    }


def _unix(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def assert_same_history(rows: list[dict[str, Any]], run: dict[str, Any]) -> None:
    """Every step and value as logged; timestamps within the writer's window."""
    expected = {
        step: {"step": step, **{NAMES[key]: value for key, value in values.items()}}
        for step, values in run["rows"].items()
    }
    assert [row["step"] for row in rows] == sorted(expected)
    for row in rows:
        stamp = _unix(row.pop("timestamp"))
        assert run["started"] - 0.002 <= stamp <= run["ended"] + 0.002
        assert row == expected[row["step"]]


def assert_jobs_value_for_value(
    importer: Importer,
    path: Path,
    *,
    source: str,
    runs: dict[str, Any],
    expected: Expected,
    db_url: str,
    store: MetricStore,
) -> None:
    """``importer(path)`` makes one job per run, in order, with every value logged."""
    seen: list[tuple[str, str]] = []
    ids = importer(
        path,
        db=db_url,
        on_job=lambda job, outcome: seen.append((job.spec["name"], outcome)),
    )
    # In the order the runs were written; the resumed run's two directories are one job.
    assert seen == [(name, "created") for name in expected]
    for job_id, name in zip(ids, expected, strict=True):
        assert job_id.startswith(f"{source}-")
        job = store.get_job(job_id)
        status, tags, config = expected[name]
        assert (job.name, job.status.value, job.tags, job.config) == (name, status, tags, config)
        assert_same_history(list(store.iter_rows(job_id)), runs[name])
    finished = store.get_job(ids[0])
    assert finished.metric_names == [
        "accuracy",
        "grad_norm",
        "learning_rate",
        "train_loss",
        "val_loss",
    ]
    assert finished.summary["has_nan"] and finished.total_steps == STEPS - 1
    assert store.get_job(ids[3]).point_count == 10


Snapshot = dict[str, tuple[TrainingJob, int, list[dict[str, Any]]]]


def snapshot(store: MetricStore, ids: list[str]) -> Snapshot:
    """Each job, its last sequence number and its rows, by job id."""
    return {
        job_id: (store.get_job(job_id), store.last_seq(job_id), list(store.iter_rows(job_id)))
        for job_id in ids
    }


def assert_unchanged(store: MetricStore, before: Snapshot) -> None:
    """Every job of ``before`` still has the same rows, sequence number, point
    count, summary and status."""
    for job_id, (old_job, old_seq, old_rows) in before.items():
        job = store.get_job(job_id)
        assert (store.last_seq(job_id), list(store.iter_rows(job_id))) == (old_seq, old_rows)
        assert (job.point_count, job.summary, job.status) == (
            old_job.point_count,
            old_job.summary,
            old_job.status,
        )


def assert_importing_twice_changes_nothing(
    importer: Importer, root: Path, one: Path, *, expected: Expected, db: str
) -> None:
    """A second import of ``root`` leaves every job as it was; ``one`` (the third
    run's directory) alone imports that run under the same id."""
    ids = importer(root, db=db)
    store = open_store(db)
    try:
        before = snapshot(store, ids)
        outcomes: list[str] = []
        assert importer(root, db=db, on_job=lambda j, o: outcomes.append(o)) == ids
        assert outcomes == ["unchanged"] * len(ids)
        assert_unchanged(store, before)
        assert store.list_jobs()[1] == len(expected)
        assert importer(one, db=db) == [ids[2]]
    finally:
        store.close()


def assert_cli_sends_runs_to_a_server(
    source: str, path: Path, *, runs: dict[str, Any], expected: Expected, tmp_path: Path
) -> None:
    """``trainvis import <source> <path> --url`` creates the jobs on a live server
    (read back through the REST API); running it again changes nothing."""
    with ServerProcess(str(tmp_path / "live.db")) as server:
        command = [sys.executable, "-m", "trainvis", "import", source, str(path)]
        command += ["--url", server.url]
        done = subprocess.run(command, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stderr
        lines = [line.split("\t") for line in done.stdout.splitlines()]
        assert [(line[1], line[-1]) for line in lines] == [("created", name) for name in expected]
        for line, name in zip(lines, expected, strict=True):
            response = httpx.get(f"{server.url}{API}/training/jobs/{line[0]}", timeout=30)
            job = response.json()["data"]
            status, tags, config = expected[name]
            assert (job["name"], job["status"], job["tags"], job["config"]) == (
                name,
                status,
                tags,
                config,
            )
            response = httpx.get(
                f"{server.url}{API}/training/{line[0]}/metrics/history", timeout=30
            )
            assert_same_history(response.json()["data"], runs[name])
        again = subprocess.run(command, capture_output=True, text=True, timeout=240)
        assert [line.split("\t")[1] for line in again.stdout.splitlines()] == ["unchanged"] * 4
