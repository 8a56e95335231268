"""``trainvis import mlflow`` from a real MLflow tracking store (SQLite, no server) (issue 8).

Two experiments, runs in every status, metric histories of thousands of points
logged with ``log_batch`` and ``mlflow.log_metric``, NaN values and a step
logged twice. Every value of every history is compared; importing twice
changes nothing; ``--url`` sends through a live server.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import API, ServerProcess, require_service
from trainvis.importers import TransferError, import_mlflow
from trainvis.importers import mlflow as mlflow_importer
from trainvis.models import encode_value, format_timestamp
from trainvis.store import MetricStore, open_store

pytestmark = [
    pytest.mark.slow,
    # MLflow's SQLAlchemy store uses APIs SQLAlchemy deprecates; not ours to fix.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]

STEPS = 3000


def _mlflow() -> Any:
    try:
        import mlflow
    except ImportError as exc:
        require_service("MLflow", f"{exc} (pip install -e '.[mlflow]')")
    return mlflow


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any]]]:
    """A populated tracking store: its URI and ``{run name: run id}``."""
    mlflow = _mlflow()
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    artifacts = (root / "artifacts").as_uri()
    vision = client.create_experiment("vision", artifact_location=artifacts)
    nlp = client.create_experiment("nlp", artifact_location=artifacts)
    ids: dict[str, Any] = {}
    now = int(time.time() * 1000)

    run = client.create_run(vision, run_name="resnet-finished", tags={"team": "cv"})
    ids["resnet-finished"] = run.info.run_id
    metrics = []
    for step in range(STEPS):
        metrics.append(Metric("train_loss", 1.0 / (step + 1), now + step, step))
        metrics.append(Metric("lr", 0.1 * 0.999**step, now + step, step))
        if step % 100 == 0:
            metrics.append(Metric("eval_loss", 2.0 / (step + 1), now + step, step))
            metrics.append(Metric("eval/accuracy", step / STEPS, now + step, step))
    params = [Param("lr", "0.1"), Param("batch_size", "32"), Param("optimizer", "adam")]
    for start in range(0, len(metrics), 1000):
        client.log_batch(run.info.run_id, metrics=metrics[start : start + 1000])
    client.log_batch(run.info.run_id, params=params, tags=[RunTag("note", "baseline")])
    client.set_terminated(run.info.run_id, "FINISHED")

    run = client.create_run(vision, run_name="vit-failed")
    ids["vit-failed"] = run.info.run_id
    client.log_metric(run.info.run_id, "loss", 1.0, timestamp=now, step=0)
    client.log_metric(run.info.run_id, "loss", math.nan, timestamp=now + 5, step=1)
    client.log_metric(run.info.run_id, "loss", 0.5, timestamp=now + 1, step=1)  # logged earlier
    client.log_metric(run.info.run_id, "grad norm", math.inf, timestamp=now + 2, step=1)
    client.set_terminated(run.info.run_id, "FAILED")

    run = client.create_run(nlp, run_name="bert-killed")
    ids["bert-killed"] = run.info.run_id
    client.log_metric(run.info.run_id, "val_loss", 0.7, timestamp=now, step=3)
    client.set_terminated(run.info.run_id, "KILLED")

    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run(experiment_id=nlp, run_name="gpt-running") as active:
            ids["gpt-running"] = active.info.run_id
            for step in range(50):
                mlflow.log_metric("train_loss", 3.0 - step / 50, step=step)
            mlflow.log_param("layers", "12")
            mlflow.set_tag("stage", "pretrain")
    finally:
        mlflow.set_tracking_uri(None)
    client.update_run(ids["gpt-running"], status="RUNNING")  # as if it were still training
    yield uri, ids


def expected_rows(uri: str, run_id: str) -> list[dict[str, Any]]:
    """The run's histories merged by step, straight from MLflow (latest value per step wins)."""
    from mlflow import MlflowClient

    from trainvis.importers.names import map_metric_names

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    mapping = map_metric_names(run.data.metrics)
    rows: dict[int, dict[str, Any]] = {}
    stamps: dict[int, int] = {}
    for key in run.data.metrics:
        history = sorted(
            client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp)
        )
        for metric in history:
            value = metric.value
            if abs(value) == sys.float_info.max:  # how MLflow's SQL store keeps ±Infinity
                value = math.copysign(math.inf, value)
            rows.setdefault(metric.step, {"step": metric.step})[mapping[key]] = encode_value(value)
            stamps[metric.step] = max(stamps.get(metric.step, 0), metric.timestamp)
    for step, row in rows.items():
        row["timestamp"] = format_timestamp(stamps[step] / 1000)
    return [rows[step] for step in sorted(rows)]


def test_runs_become_jobs_value_for_value(
    tracking: tuple[str, dict[str, Any]], db_url: str, store: MetricStore
) -> None:
    uri, ids = tracking
    imported = import_mlflow(uri, db=db_url)
    assert sorted(imported) == sorted(f"mlflow-{run_id}" for run_id in ids.values())
    for run_id in ids.values():
        rows = list(store.iter_rows(f"mlflow-{run_id}"))
        assert rows == expected_rows(uri, run_id)

    finished = store.get_job(f"mlflow-{ids['resnet-finished']}")
    assert finished.name == "resnet-finished" and finished.status.value == "completed"
    assert finished.config == {"batch_size": 32, "lr": 0.1, "optimizer": "adam"}
    assert finished.tags == ["mlflow", "experiment=vision", "note=baseline", "team=cv"]
    assert finished.metric_names == ["accuracy", "learning_rate", "train_loss", "val_loss"]
    assert finished.point_count == 2 * STEPS + 2 * (STEPS // 100)

    statuses = {name: store.get_job(f"mlflow-{rid}").status.value for name, rid in ids.items()}
    assert statuses == {
        "resnet-finished": "completed",
        "vit-failed": "failed",
        "bert-killed": "cancelled",
        "gpt-running": "running",
    }
    failed = list(store.iter_rows(f"mlflow-{ids['vit-failed']}"))
    assert failed[1]["train_loss"] == "NaN" and failed[1]["grad_norm"] == "Infinity"
    running = store.get_job(f"mlflow-{ids['gpt-running']}")
    assert running.config == {"layers": 12} and "stage=pretrain" in running.tags


def test_one_experiment_paged_and_imported_twice(
    tracking: tuple[str, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri, ids = tracking
    monkeypatch.setattr(mlflow_importer, "PAGE", 1)  # one run per search_runs page
    db = str(tmp_path / "twice.db")
    first: list[tuple[str, str]] = []
    import_mlflow(
        uri, experiment="vision", db=db, on_job=lambda j, o: first.append((j.spec["name"], o))
    )
    assert first == [("resnet-finished", "created"), ("vit-failed", "created")]
    store = open_store(db)
    try:
        job_id = f"mlflow-{ids['resnet-finished']}"
        before = (store.last_seq(job_id), list(store.iter_rows(job_id)))
        again: list[str] = []
        import_mlflow(uri, experiment="vision", db=db, on_job=lambda j, o: again.append(o))
        assert again == ["unchanged", "unchanged"]
        assert (store.last_seq(job_id), list(store.iter_rows(job_id))) == before
        assert store.list_jobs()[1] == 2
    finally:
        store.close()
    with pytest.raises(TransferError, match="no MLflow experiment"):
        import_mlflow(uri, experiment="audio", db=db)


@pytest.mark.live
def test_cli_sends_runs_to_a_server(tracking: tuple[str, dict[str, Any]], tmp_path: Path) -> None:
    uri, ids = tracking
    with ServerProcess(str(tmp_path / "live.db")) as server:
        done = subprocess.run(
            [sys.executable, "-m", "trainvis", "import", "mlflow", "--tracking-uri", uri]
            + ["--experiment", "nlp", "--url", server.url],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stderr
        names = sorted(line.split("\t")[-1] for line in done.stdout.splitlines())
        assert names == ["bert-killed", "gpt-running"]
        for name in names:
            job_id = f"mlflow-{ids[name]}"
            response = httpx.get(f"{server.url}{API}/training/{job_id}/metrics/history", timeout=30)
            assert response.json()["data"] == expected_rows(uri, ids[name])
