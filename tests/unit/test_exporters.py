"""Exports (CSV, JSON, Parquet) of a store's job and their round trip (issue 8).

Also the pure helpers the importers share: metric-name mapping, batching,
MLflow param parsing. Stores are real (SQLite and PostgreSQL, ``store`` fixture).
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_service
from trainvis.exporters import export_job
from trainvis.importers import TransferError, import_file
from trainvis.importers.mlflow import parse_param
from trainvis.importers.names import canonical_metric, job_id, map_metric_names, sanitize_metric
from trainvis.importers.rows import RowBuilder, iter_batches
from trainvis.models import JobCreate, JobStatus, parse_metric_rows
from trainvis.store import MetricStore, open_store

T0 = 1_780_000_000.0


def tricky_rows() -> list[dict[str, Any]]:
    """NaN, ±Infinity, custom names, fractional epochs, GPUs, sparse metrics."""
    rows: list[dict[str, Any]] = []
    for step in range(0, 300, 3):
        row: dict[str, Any] = {
            "step": step,
            "epoch": step / 100,
            "timestamp": T0 + step * 0.25,
            "train_loss": 1.0 / (step + 1),
            "custom/grad-norm.l2": step * 0.5,
        }
        if step % 30 == 0:
            row["val_loss"] = 2.0 / (step + 1)
            row["accuracy"] = step / 300
        if step == 42:
            row["train_loss"] = math.nan
        if step == 45:
            row["custom/grad-norm.l2"] = math.inf
        if step == 48:
            row["custom/grad-norm.l2"] = -math.inf
        if step % 60 == 0:
            row["gpus"] = [{"index": 0, "utilization": 50.0, "memory_used": 1024.0}]
        rows.append(row)
    rows.append({"step": 1000, "timestamp": T0 + 999, "only_here": 7})  # no epoch, one metric
    return rows


def make_job(store: MetricStore, job_id: str = "tricky-1") -> str:
    store.create_job(
        JobCreate(
            id=job_id,
            name="tricky run",
            model_name="resnet",
            total_steps=1000,
            config={"lr": 0.1, "layers": [1, 2]},
            tags=["a", "b"],
        )
    )
    store.write_metrics(job_id, parse_metric_rows(tricky_rows(), max_rows=10_000))
    store.set_status(job_id, JobStatus.FAILED, message="diverged")
    return job_id


def history(db: str, job_id: str) -> list[dict[str, Any]]:
    opened = open_store(db)
    try:
        return list(opened.iter_rows(job_id))
    finally:
        opened.close()


# ---------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("train/loss", "train_loss"),
        ("loss/train", "train_loss"),
        ("train_loss", "train_loss"),
        ("Loss", "train_loss"),
        ("eval/loss", "val_loss"),
        ("val/loss", "val_loss"),
        ("Loss/Validation", "val_loss"),
        ("lr", "learning_rate"),
        ("learning_rate", "learning_rate"),
        ("train/learning_rate", "learning_rate"),
        ("eval/accuracy", "accuracy"),
        ("val_acc", "accuracy"),
        ("eval/f1", "f1"),
        ("epoch", "epoch"),
        ("train/epoch", "epoch"),
        ("train/accuracy", None),
        ("test/loss", None),
        ("lr-Adam", None),
        ("epoch_loss", None),
    ],
)
def test_obvious_seed_fields_are_recognised(tag: str, expected: str | None) -> None:
    assert canonical_metric(tag) == expected


def test_sanitize_keeps_legal_names_and_fixes_others() -> None:
    assert sanitize_metric("custom/grad-norm.l2") == "custom/grad-norm.l2"
    assert sanitize_metric("weird tag!") == "weird_tag_"
    assert sanitize_metric("1st") == "_1st"
    assert sanitize_metric("step") == "step_value"
    assert sanitize_metric("timestamp") == "timestamp_value"
    assert len(sanitize_metric("x" * 300)) == 128


def test_two_tags_for_one_field_keep_distinct_names() -> None:
    mapping = map_metric_names(["train/loss", "train_loss", "loss", "a b", "a_b"])
    assert mapping["train_loss"] == "train_loss"
    assert mapping["train/loss"] == "train/loss"
    assert mapping["loss"] == "loss"
    assert {mapping["a b"], mapping["a_b"]} == {"a_b", "a_b_2"}
    assert len(set(mapping.values())) == len(mapping)


def test_job_ids_are_deterministic_and_legal() -> None:
    first = job_id("tb", "runs/exp 1/seed=3", "/logs\0runs/exp 1/seed=3")
    assert first == job_id("tb", "runs/exp 1/seed=3", "/logs\0runs/exp 1/seed=3")
    assert first != job_id("tb", "runs/exp 1/seed=3", "/other\0runs/exp 1/seed=3")
    assert JobCreate(name="x", id=first).id == first
    assert JobCreate(name="x", id=job_id("tb", "é/" * 200, "k")).id


def test_row_builder_merges_by_step_and_purges_on_restart() -> None:
    builder = RowBuilder()
    for step in range(10):
        builder.add("train/loss", step, float(step), T0 + step)
        builder.add("epoch", step, step / 5, T0 + step + 0.5)
    builder.add("eval/loss", 4, math.nan, T0 + 100)
    builder.add("train/loss", -1, 1.0)
    builder.purge_from(8)
    rows, points = builder.build()
    assert [row["step"] for row in rows] == list(range(8))
    assert rows[4] == {
        "step": 4,
        "train_loss": 4.0,
        "epoch": 0.8,
        "val_loss": rows[4]["val_loss"],
        "timestamp": T0 + 100,
    }
    assert math.isnan(rows[4]["val_loss"])
    assert points == 9 and builder.skipped == 1


def test_a_negative_epoch_stays_a_metric() -> None:
    builder = RowBuilder()
    builder.add("epoch", 0, -1.0)
    rows, points = builder.build()
    assert rows == [{"step": 0, "epoch_value": -1.0}] and points == 1


def test_batches_respect_rows_and_bytes() -> None:
    rows = [{"step": step, "x" * 100: 1.0} for step in range(25)]
    assert [len(batch) for batch in iter_batches(rows, max_rows=10, max_bytes=10**9)] == [
        10,
        10,
        5,
    ]
    small = list(iter_batches(rows, max_rows=10, max_bytes=700))
    assert all(len(batch) <= 4 for batch in small) and sum(map(len, small)) == 25
    assert list(iter_batches([], max_rows=10, max_bytes=10)) == []


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("32", 32),
        ("0.001", 0.001),
        ("1e-3", "1e-3"),
        ("01", "01"),
        ("nan", "nan"),
        ("adam", "adam"),
    ],
)
def test_mlflow_params_become_numbers_only_when_lossless(text: str, value: Any) -> None:
    assert parse_param(text) == value and type(parse_param(text)) is type(value)


# ---------------------------------------------------------------------- exports


def test_csv_export_matches_the_history(store: MetricStore, db_url: str, tmp_path: Path) -> None:
    job_id = make_job(store)
    out = tmp_path / "job.csv"
    assert export_job(job_id, "csv", out, db=db_url) == len(tricky_rows())
    records = list(csv.DictReader(io.StringIO(out.read_text(), newline="")))
    names = store.get_job(job_id).metric_names
    assert list(records[0]) == ["step", "epoch", "timestamp", *names]
    for record, row in zip(records, history(db_url, job_id), strict=True):
        for key, cell in record.items():
            assert cell == ("" if key not in row else str(row[key])), key
    nan_row = next(record for record in records if record["step"] == "42")
    assert nan_row["train_loss"] == "NaN"
    assert records[-1]["epoch"] == "" and records[-1]["only_here"] == "7.0"


def test_json_export_is_strict_and_round_trips(
    store: MetricStore, db_url: str, tmp_path: Path
) -> None:
    job_id = make_job(store)
    out = tmp_path / "job.json"
    export_job(job_id, "json", out, db=db_url)
    text = out.read_text()
    document = json.loads(text, parse_constant=lambda token: pytest.fail(f"bare {token}"))
    assert document["format"] == "trainvis-export" and document["version"] == 1
    assert document["job"]["id"] == job_id and document["job"]["status"] == "failed"
    assert document["rows"] == history(db_url, job_id)

    fresh = str(tmp_path / "fresh.db")
    assert import_file(out, db=fresh) == job_id
    assert history(fresh, job_id) == history(db_url, job_id)
    copied = open_store(fresh)
    try:
        job, original = copied.get_job(job_id), store.get_job(job_id)
    finally:
        copied.close()
    for field in ("name", "model_name", "total_steps", "config", "tags", "status"):
        assert getattr(job, field) == getattr(original, field), field
    assert job.point_count == original.point_count
    assert job.summary == original.summary


def test_json_import_into_the_same_backend_under_a_new_id(
    store: MetricStore, db_url: str, tmp_path: Path
) -> None:
    job_id = make_job(store)
    out = tmp_path / "job.json"
    export_job(job_id, "json", out, db=db_url)
    outcomes: list[str] = []
    copy_id = import_file(
        out, db=db_url, job_id="tricky-copy", on_job=lambda j, o: outcomes.append(o)
    )
    again = import_file(
        out, db=db_url, job_id="tricky-copy", on_job=lambda j, o: outcomes.append(o)
    )
    assert copy_id == again == "tricky-copy" and outcomes == ["created", "unchanged"]
    assert history(db_url, copy_id) == history(db_url, job_id)
    with pytest.raises(TransferError, match="another name"):
        import_file(out, db=db_url, job_id="tricky-copy", name="someone else")


def test_parquet_export_round_trips(store: MetricStore, db_url: str, tmp_path: Path) -> None:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        require_service("pyarrow", "not installed (pip install -e '.[parquet]')")
    job_id = make_job(store)
    out = tmp_path / "job.parquet"
    export_job(job_id, "parquet", out, db=db_url)
    table = pq.read_table(out)
    assert table.column_names[:3] == ["step", "epoch", "timestamp"]
    assert str(table.schema.field("timestamp").type) == "timestamp[ms, tz=UTC]"
    values = table.column("train_loss").to_pylist()
    assert math.isnan(values[14]) and table.column("val_loss").to_pylist()[1] is None
    assert json.loads(table.schema.metadata[b"trainvis.job"])["id"] == job_id

    fresh = str(tmp_path / "fresh.db")
    assert import_file(out, db=fresh) == job_id
    assert history(fresh, job_id) == history(db_url, job_id)


def test_csv_import_round_trips_the_history(
    store: MetricStore, db_url: str, tmp_path: Path
) -> None:
    job_id = make_job(store)
    out = tmp_path / "tricky.csv"
    export_job(job_id, "csv", out, db=db_url)
    fresh = str(tmp_path / "fresh.db")
    copy_id = import_file(out, db=fresh)
    assert copy_id.startswith("file-tricky-")
    assert history(fresh, copy_id) == history(db_url, job_id)


def test_export_to_a_file_object_and_errors(
    store: MetricStore, db_url: str, tmp_path: Path
) -> None:
    job_id = make_job(store)
    buffer = io.BytesIO()
    export_job(job_id, "json", buffer, db=db_url)
    assert json.loads(buffer.getvalue())["rows"][0]["step"] == 0
    with pytest.raises(TransferError, match="no job"):
        export_job("nope", "csv", tmp_path / "x.csv", db=db_url)
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "x.csv.partial").exists()
    with pytest.raises(TransferError, match="unknown format"):
        export_job(job_id, "xml", tmp_path / "x.xml", db=db_url)


def test_an_empty_job_exports_and_imports(store: MetricStore, db_url: str, tmp_path: Path) -> None:
    store.create_job(JobCreate(id="empty-1", name="empty"))
    out = tmp_path / "empty.json"
    assert export_job("empty-1", "json", out, db=db_url) == 0
    assert json.loads(out.read_text())["rows"] == []
    fresh = str(tmp_path / "fresh.db")
    assert import_file(out, db=fresh) == "empty-1"
    assert history(fresh, "empty-1") == []
