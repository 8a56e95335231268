"""``trainvis.init`` / ``Run`` in local mode: real SQLite store, no server."""

from __future__ import annotations

import logging
import math
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import trainvis
from tests.localdb import history, job
from trainvis.client import ApiError, ClientSettings
from trainvis.client.run import Run


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.delenv("TRAINVIS_URL", raising=False)
    monkeypatch.setitem(sys.modules, "pynvml", None)  # no GPU sampling in these tests
    path = str(tmp_path / "local.db")
    monkeypatch.setenv("TRAINVIS_DB", path)
    yield path


class FakeTensor:
    """Quacks like a 0-d torch tensor: ``float()`` works, it is not a float."""

    def __init__(self, value: float) -> None:
        self.value = value

    def __float__(self) -> float:
        return self.value

    def item(self) -> float:
        return self.value


def test_init_creates_a_running_job_with_its_fields(db: str) -> None:
    run = trainvis.init(
        name="bert",
        model_name="bert-tiny",
        total_epochs=3,
        total_steps=300,
        config={"lr": 1e-3, "path": Path("/x")},
        tags=["a", "b"],
    )
    stored = job(db, run.id)
    assert stored["status"] == "running" and stored["started_at"]
    assert (stored["name"], stored["model_name"]) == ("bert", "bert-tiny")
    assert (stored["total_epochs"], stored["total_steps"]) == (3, 300)
    assert stored["config"] == {"lr": 1e-3, "path": "/x"}
    assert stored["tags"] == ["a", "b"]
    assert run.finish() == 0
    assert job(db, run.id)["status"] == "completed"


def test_log_converts_numpy_and_tensor_scalars_and_auto_increments(db: str) -> None:
    run = trainvis.init(name="values")
    run.log({"loss": np.float32(0.5), "acc": np.float64(0.25), "n": np.int64(3)})
    run.log({"loss": FakeTensor(0.4), "nan": math.nan, "inf": -math.inf})
    run.log({"loss": 0.3, "skip": None}, epoch=1.5)
    run.finish()
    rows = history(db, run.id)
    assert [row["step"] for row in rows] == [0, 1, 2]
    assert rows[0]["loss"] == 0.5 and rows[0]["acc"] == 0.25 and rows[0]["n"] == 3
    assert rows[1]["loss"] == pytest.approx(0.4)
    assert rows[1]["nan"] == "NaN" and rows[1]["inf"] == "-Infinity"
    assert rows[2]["epoch"] == 1.5 and "skip" not in rows[2]


def test_explicit_steps_and_the_step_key_move_the_counter(db: str) -> None:
    run = trainvis.init(name="steps")
    run.log({"loss": 1.0}, step=100)
    run.log({"loss": 0.9})
    run.log({"loss": 0.8, "step": 500, "epoch": 2})
    assert run.step == 500
    run.finish()
    rows = history(db, run.id)
    assert [(row["step"], row.get("epoch")) for row in rows] == [
        (100, None),
        (101, None),
        (500, 2),
    ]


def test_training_metrics_are_accepted_subclass_fields_included(db: str) -> None:
    @dataclass
    class MyMetrics(trainvis.TrainingMetrics):
        perplexity: float | None = None

    run = trainvis.init(name="dataclass")
    run.log(MyMetrics(step=7, epoch=1.0, train_loss=0.7, perplexity=2.0, custom={"bleu": 30.0}))
    run.finish()
    [row] = history(db, run.id)
    assert row["step"] == 7 and row["epoch"] == 1
    assert (row["train_loss"], row["perplexity"], row["bleu"]) == (0.7, 2.0, 30.0)


def test_bad_names_and_non_numbers_are_skipped_with_one_warning(
    db: str, caplog: pytest.LogCaptureFixture
) -> None:
    run = trainvis.init(name="bad")
    with caplog.at_level(logging.WARNING, logger="trainvis.client"):
        for _ in range(3):
            run.log({"ok": 1.0, "bad name": 1.0, "text": "0.5", "flag": True, "arr": [1, 2]})
    run.finish()
    assert {key for row in history(db, run.id) for key in row} == {"step", "timestamp", "ok"}
    warnings = [record.message for record in caplog.records if "skipped" in record.message]
    assert len(warnings) == 4  # once per key, not once per call


def test_log_after_finish_raises(db: str) -> None:
    run = trainvis.init(name="done")
    run.finish()
    assert run.finish() == 0  # idempotent
    with pytest.raises(RuntimeError):
        run.log({"loss": 1.0})


@pytest.mark.parametrize(
    ("error", "status"),
    [(ValueError("boom"), "failed"), (KeyboardInterrupt(), "cancelled")],
)
def test_context_manager_marks_the_outcome(db: str, error: BaseException, status: str) -> None:
    with pytest.raises(type(error)):
        with trainvis.init(name="ctx") as run:
            run.log({"loss": 1.0})
            raise error
    stored = job(db, run.id)
    assert stored["status"] == status
    assert stored["point_count"] == 1
    if status == "failed":
        assert "ValueError: boom" in stored["message"]


def test_context_manager_completes_without_error(db: str) -> None:
    with trainvis.init(name="ok") as run:
        run.log({"loss": 1.0})
    assert job(db, run.id)["status"] == "completed"


def test_resume_continues_the_job_and_its_steps(db: str) -> None:
    first = trainvis.init(name="resumable", id="my-run")
    for _ in range(5):
        first.log({"loss": 1.0})
    first.finish()
    second = trainvis.init(id="my-run", resume=True)
    assert job(db, "my-run")["status"] == "running"
    second.log({"loss": 0.5})
    second.finish()
    assert [row["step"] for row in history(db, "my-run")] == [0, 1, 2, 3, 4, 5]


def test_a_taken_id_without_resume_is_an_error(db: str) -> None:
    trainvis.init(name="one", id="taken").finish()
    with pytest.raises(ApiError) as caught:
        trainvis.init(name="two", id="taken")
    assert caught.value.code == "job_exists"


def test_resume_without_id_is_a_value_error(db: str) -> None:
    with pytest.raises(ValueError):
        trainvis.init(name="x", resume=True)


def test_module_level_log_and_finish_use_the_current_run(db: str) -> None:
    run = trainvis.init(name="module")
    trainvis.log({"loss": 2.0}, step=3)
    assert trainvis.finish() == 0
    assert run.finished and history(db, run.id)[0]["step"] == 3


def test_settings_read_arguments_then_environment() -> None:
    env = {
        "TRAINVIS_URL": "http://env:1",
        "TRAINVIS_TOKEN": "t",
        "TRAINVIS_SPOOL_DIR": "/tmp/sp",
        "TRAINVIS_DB": "/tmp/x.db",
    }
    settings = ClientSettings.resolve(environ=env)
    assert (settings.url, settings.token, settings.db) == ("http://env:1", "t", "/tmp/x.db")
    assert settings.spool_dir == Path("/tmp/sp")
    assert ClientSettings.resolve(url="http://arg:2", environ=env).url == "http://arg:2"
    local = ClientSettings.resolve(environ={})
    assert local.url is None and local.spool_dir == Path.home() / ".trainvis" / "spool"


def test_run_is_exported_from_the_package() -> None:
    assert trainvis.Run is Run and callable(trainvis.init)


def test_a_remote_run_imports_neither_the_server_nor_the_store(tmp_path: Path) -> None:
    script = f"""
import sys, trainvis
run = trainvis.init(name="remote", url="http://127.0.0.1:9", connect_timeout=0.1,
                    spool_dir={str(tmp_path)!r}, monitor_gpu=False)
run.log({{"loss": 1.0}})
run.finish(timeout=0.2)
print(sorted(m for m in sys.modules if m.startswith(("trainvis.api", "trainvis.store"))))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]", result.stderr
