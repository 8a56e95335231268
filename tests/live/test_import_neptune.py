"""``trainvis import neptune`` on files in neptune-exporter's documented Parquet layout (issue 17).

neptune-exporter (github.com/neptune-ai/neptune-exporter) writes each run to
``<data-path>/<sanitized project>/<sanitized run>_part_<n>.parquet`` with the
schema of its ``model.py`` (``SCHEMA`` below is that schema, column for
column); a path part is sanitized to ``[A-Za-z0-9_-]`` plus ``-`` and an
8-byte BLAKE2b digest of the original. The fixture writes three projects the
way it does: a Neptune 2 run in two parts with every parameter type, float
series of 3,000 steps and series the importer leaves out; a failed, forked
Neptune 3 run with a custom run id; a run with decimal steps; and an export
cut off before its ``part_0``. Every value and timestamp is compared exactly,
through the store and through the REST API; importing twice changes nothing.
"""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import API, ServerProcess, require_service
from tests.live.import_checks import assert_unchanged, snapshot
from trainvis.importers import TransferError
from trainvis.importers.neptune import import_neptune
from trainvis.models import encode_value, format_timestamp
from trainvis.store import MetricStore, open_store

pytestmark = pytest.mark.slow

STEPS = 3000
T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def _pyarrow() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        require_service("pyarrow", f"{exc} (pip install -e '.[parquet]')")
    return pa, pq


def schema() -> Any:
    """neptune-exporter's ``model.SCHEMA``."""
    pa, _ = _pyarrow()
    return pa.schema(
        [
            ("project_id", pa.string()),
            ("run_id", pa.string()),
            ("attribute_path", pa.string()),
            ("attribute_type", pa.string()),
            ("step", pa.decimal128(18, 6)),
            ("timestamp", pa.timestamp("ms", tz="UTC")),
            ("int_value", pa.int64()),
            ("float_value", pa.float64()),
            ("string_value", pa.string()),
            ("bool_value", pa.bool_()),
            ("datetime_value", pa.timestamp("ms", tz="UTC")),
            ("string_set_value", pa.list_(pa.string())),
            ("file_value", pa.struct([("path", pa.string())])),
            (
                "histogram_value",
                pa.struct(
                    [
                        ("type", pa.string()),
                        ("edges", pa.list_(pa.float64())),
                        ("values", pa.list_(pa.float64())),
                    ]
                ),
            ),
        ]
    )


def sanitize(part: str) -> str:
    """neptune-exporter's path sanitizing, as its docs describe it."""
    digest = hashlib.blake2b(part.encode("utf-8"), digest_size=8).hexdigest()
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in part) + "-" + digest


@dataclass
class Run:
    """One exported run: its records and what the import must make of them."""

    project: str
    run_id: str
    records: list[dict[str, Any]] = field(default_factory=list)
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    stamps: dict[int, datetime] = field(default_factory=dict)

    def param(self, path: str, kind: str, value: Any) -> None:
        column = {"string_set": "string_set_value"}.get(kind, f"{kind}_value")
        self.records.append({"attribute_path": path, "attribute_type": kind, column: value})

    def series(
        self, path: str, target: str, step: Decimal, value: float, stamp: datetime, scale: int = 1
    ) -> None:
        self.records.append(
            {
                "attribute_path": path,
                "attribute_type": "float_series",
                "step": step.quantize(Decimal("0.000001")),
                "timestamp": stamp,
                "float_value": value,
            }
        )
        whole = int(step * scale)
        self.rows.setdefault(whole, {"step": whole})[target] = encode_value(value)
        self.stamps[whole] = max(self.stamps.get(whole, stamp), stamp)

    def expected_rows(self) -> list[dict[str, Any]]:
        return [
            {**self.rows[step], "timestamp": format_timestamp(self.stamps[step].timestamp())}
            for step in sorted(self.rows)
        ]

    def write(self, data: Path, parts: int = 1, suffix: str = "") -> None:
        """Write the records as neptune-exporter does: snappy parts, ``part_0`` first."""
        pa, pq = _pyarrow()
        directory = data / sanitize(self.project)
        directory.mkdir(parents=True, exist_ok=True)
        rows = [{"project_id": self.project, "run_id": self.run_id, **r} for r in self.records]
        size = math.ceil(len(rows) / parts)
        for number in range(parts):
            table = pa.Table.from_pylist(rows[number * size : (number + 1) * size], schema=schema())
            name = f"{sanitize(self.run_id)}_part_{number}.parquet{suffix}"
            pq.write_table(table, directory / name, compression="snappy")


def neptune2_run() -> Run:
    run = Run("ws/vision", "SAN-1")
    run.param("sys/id", "string", "SAN-1")
    run.param("sys/name", "string", "resnet baseline")
    run.param("sys/tags", "string_set", ["cv", "baseline"])
    run.param("sys/failed", "bool", False)
    run.param("sys/creation_time", "datetime", T0)
    run.param("sys/owner", "string", "alice")
    run.param("parameters/lr", "float", 0.1)
    run.param("parameters/batch_size", "int", 32)
    run.param("parameters/optimizer", "string", "adam")
    run.param("parameters/nesterov", "bool", True)
    run.param("parameters/started", "datetime", T0)
    run.param("parameters/layers", "string_set", ["conv2", "conv1"])
    run.param("seed", "int", 7)
    for step in range(STEPS):
        stamp = T0 + timedelta(milliseconds=10 * step)
        loss = math.nan if step == 1500 else 2.0 / (step + 1)
        run.series("train/loss", "train_loss", Decimal(step), loss, stamp)
        run.series("train/lr", "learning_rate", Decimal(step), 0.1 * 0.999**step, stamp)
        if step % 100 == 0:
            late = stamp + timedelta(milliseconds=3)
            run.series("eval/loss", "val_loss", Decimal(step), 3.0 / (step + 2), late)
            run.series("eval/accuracy", "accuracy", Decimal(step), step / STEPS, late)
            run.series("metrics/grad norm", "metrics/grad_norm", Decimal(step), step * 1.5, stamp)
    # Series the importer leaves out: strings, histograms, files.
    run.records.append(
        {
            "attribute_path": "monitoring/stdout",
            "attribute_type": "string_series",
            "step": Decimal("0.000000"),
            "timestamp": T0,
            "string_value": "epoch 1",
        }
    )
    run.records.append(
        {
            "attribute_path": "weights",
            "attribute_type": "histogram_series",
            "step": Decimal("1.000000"),
            "timestamp": T0,
            "histogram_value": {"type": "COUNTING", "edges": [0.0, 1.0], "values": [3.0]},
        }
    )
    run.records.append(
        {
            "attribute_path": "model/checkpoint",
            "attribute_type": "file",
            "file_value": {"path": "ws_vision/SAN-1/model/checkpoint.pt"},
        }
    )
    return run


def neptune3_run() -> Run:
    run = Run("ws/nlp", "llama-ft-7")
    run.param("sys/custom_run_id", "string", "llama-ft-7")
    run.param("sys/name", "string", "finetune")
    run.param("sys/tags", "string_set", ["llm"])
    run.param("sys/group_tags", "string_set", ["team-a"])
    run.param("sys/failed", "bool", True)
    run.param("sys/forking/parent", "string", "llama-ft-6")
    run.param("sys/forking/step", "float", 100.0)
    run.param("config/model", "string", "llama")
    for step in range(100, 200):
        run.series("loss", "train_loss", Decimal(step), 1.0 / step, T0 + timedelta(seconds=step))
    return run


def decimal_run() -> Run:
    run = Run("ws/scale", "half-steps")
    for index in range(20):
        step = Decimal(index) / 2
        run.series("val/loss", "val_loss", step, index * 0.25, T0 + timedelta(seconds=index), 2)
    return run


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Run]]:
    """An exporter data path and ``{run name: Run}``."""
    data = tmp_path_factory.mktemp("neptune") / "exports" / "data"
    runs = {"SAN-1": neptune2_run(), "llama-ft-7": neptune3_run(), "half-steps": decimal_run()}
    runs["SAN-1"].write(data, parts=2)
    runs["llama-ft-7"].write(data)
    runs["half-steps"].write(data)
    cut_off = Run("ws/vision", "SAN-2")
    cut_off.param("sys/name", "string", "never finished")
    cut_off.write(data, suffix=".tmp")  # the exporter renames part_0 last
    return data, runs


EXPECTED_JOBS = {
    "SAN-1": (
        "completed",
        ["neptune", "project=ws/vision", "experiment=resnet baseline", "baseline", "cv"],
        {
            "parameters": {
                "batch_size": 32,
                "layers": ["conv1", "conv2"],
                "lr": 0.1,
                "nesterov": True,
                "optimizer": "adam",
                "started": "2025-03-01T12:00:00+00:00",
            },
            "seed": 7,
        },
    ),
    "llama-ft-7": (
        "failed",
        [
            "neptune",
            "project=ws/nlp",
            "experiment=finetune",
            "forked_from=llama-ft-6",
            "llm",
            "team-a",
        ],
        {"config": {"model": "llama"}},
    ),
}


def test_runs_become_jobs_value_for_value(
    exported: tuple[Path, dict[str, Run]], db_url: str, store: MetricStore
) -> None:
    data, runs = exported
    seen: list[tuple[str, str]] = []
    ids = import_neptune(
        data / sanitize("ws/nlp"),
        db=db_url,
        on_job=lambda job, outcome: seen.append((job.spec["name"], outcome)),
    )
    ids += import_neptune(
        data / sanitize("ws/vision"),
        db=db_url,
        on_job=lambda job, outcome: seen.append((job.spec["name"], outcome)),
    )
    assert seen == [("llama-ft-7", "created"), ("SAN-1", "created")]
    for job_id, name in zip(ids, ["llama-ft-7", "SAN-1"], strict=True):
        assert job_id.startswith(f"neptune-{name}-")
        job = store.get_job(job_id)
        status, tags, config = EXPECTED_JOBS[name]
        assert (job.name, job.status.value, job.tags, job.config) == (name, status, tags, config)
        assert list(store.iter_rows(job_id)) == runs[name].expected_rows()
    san = store.get_job(ids[1])
    assert san.metric_names == [
        "accuracy",
        "learning_rate",
        "metrics/grad_norm",
        "train_loss",
        "val_loss",
    ]
    assert san.point_count == 2 * STEPS + 3 * (STEPS // 100) and san.summary["has_nan"]


def test_decimal_steps_need_a_multiplier(
    exported: tuple[Path, dict[str, Run]], tmp_path: Path
) -> None:
    data, runs = exported
    db = str(tmp_path / "steps.db")
    project = data / sanitize("ws/scale")
    with pytest.raises(TransferError, match=r"step 0\.5.* step multiplier"):
        import_neptune(project, db=db)
    (job_id,) = import_neptune(project, db=db, step_multiplier=2)
    store = open_store(db)
    try:
        assert list(store.iter_rows(job_id)) == runs["half-steps"].expected_rows()
        assert store.get_job(job_id).tags == ["neptune", "project=ws/scale"]
    finally:
        store.close()


def test_importing_twice_changes_nothing(
    exported: tuple[Path, dict[str, Run]], tmp_path: Path
) -> None:
    data, _ = exported
    db = str(tmp_path / "twice.db")
    first: list[str] = []
    ids = import_neptune(data, db=db, step_multiplier=2, on_job=lambda j, o: first.append(o))
    assert first == ["created"] * 3  # the cut-off export is not a run yet
    store = open_store(db)
    try:
        before = snapshot(store, ids)
        again: list[str] = []
        assert import_neptune(data, db=db, step_multiplier=2, on_job=lambda j, o: again.append(o))
        assert again == ["unchanged"] * 3
        assert_unchanged(store, before)
        assert store.list_jobs()[1] == 3
    finally:
        store.close()


@pytest.mark.live
def test_cli_sends_runs_to_a_server(exported: tuple[Path, dict[str, Run]], tmp_path: Path) -> None:
    data, runs = exported
    with ServerProcess(str(tmp_path / "live.db")) as server:
        command = [sys.executable, "-m", "trainvis", "import", "neptune", str(data)]
        command += ["--url", server.url, "--step-multiplier", "2"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr
        lines = [line.split("\t") for line in done.stdout.splitlines()]
        # Project directories in sorted order (by sanitized name), runs in each.
        assert sorted(line[-1] for line in lines) == ["SAN-1", "half-steps", "llama-ft-7"]
        for line in lines:
            name = line[-1]
            if name in EXPECTED_JOBS:
                response = httpx.get(f"{server.url}{API}/training/jobs/{line[0]}", timeout=30)
                job = response.json()["data"]
                status, tags, config = EXPECTED_JOBS[name]
                assert (job["status"], job["tags"], job["config"]) == (status, tags, config)
            history = httpx.get(
                f"{server.url}{API}/training/{line[0]}/metrics/history", timeout=30
            ).json()["data"]
            run = runs[name]
            if name == "half-steps":
                assert history == run.expected_rows()
            else:  # every step doubled by the multiplier
                assert [row["step"] for row in history] == [2 * s for s in sorted(run.rows)]
                assert [{**row, "step": row["step"] // 2} for row in history] == (
                    run.expected_rows()
                )


def test_nothing_to_import_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TransferError, match="not a directory"):
        import_neptune(tmp_path / "nope", db=str(tmp_path / "x.db"))
    (tmp_path / "data" / "ws_p-0011223344556677").mkdir(parents=True)
    with pytest.raises(TransferError, match="no neptune-exporter runs"):
        import_neptune(tmp_path / "data", db=str(tmp_path / "x.db"))
