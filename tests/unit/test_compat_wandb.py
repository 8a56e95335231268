"""``trainvis.compat.wandb`` (issue 17, part 1) in local mode: a real SQLite store, no server.

Each test drives the module as a W&B script would and reads the job back from
the store. The step rules are W&B's own (``handle_request_partial_history``):
a test per rule.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import trainvis.compat.wandb as wandb
from tests.localdb import history, job
from trainvis.compat import _common


@pytest.fixture(autouse=True)
def local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Local mode into a fresh store; no GPU; warn-once state and open runs reset."""
    for name in ("TRAINVIS_URL", "WANDB_PROJECT", "WANDB_NAME", "WANDB_RUN_ID", "WANDB_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(sys.modules, "pynvml", None)
    db = str(tmp_path / "wandb.db")
    monkeypatch.setenv("TRAINVIS_DB", db)
    monkeypatch.setattr(_common, "_warned", set())
    yield db
    while wandb.run is not None:
        wandb.finish()


def rows(db: str, job_id: str) -> list[dict[str, Any]]:
    return history(db, job_id, timestamps=False)


def test_log_without_step_writes_one_row_per_call_from_step_0(local: str) -> None:
    """Issue 17: each ``log`` commits a step; ``commit=False`` adds to the current one."""
    run = wandb.init(project="steps", name="counter")
    wandb.log({"loss": 1.0})
    wandb.log({"lr": 0.1}, commit=False)
    wandb.log({"loss": 0.5})
    wandb.log({"loss": 0.25, "acc": 0.9})
    assert run.step == 3
    wandb.finish()
    assert rows(local, run.id) == [
        {"step": 0, "loss": 1.0},
        {"step": 1, "loss": 0.5, "lr": 0.1},
        {"step": 2, "loss": 0.25, "acc": 0.9},
    ]


def test_log_with_step_collects_until_a_higher_step_or_finish(local: str) -> None:
    """Issue 17: with ``step`` the row waits (W&B's commit default) and merges."""
    run = wandb.init(name="explicit")
    wandb.log({"a": 1}, step=5)
    wandb.log({"b": 2}, step=5)
    wandb.log({"a": 3}, step=7)  # writes step 5
    wandb.log({"c": 4})  # no step: commits step 7 with it
    wandb.log({"d": 5})  # the counter went on from 7
    wandb.log({"e": 6}, step=20, commit=True)
    wandb.log({"late": 7}, step=3)  # below the current step: W&B drops it, trainvis keeps it
    wandb.log({"f": 8}, step=30)  # pending at finish
    wandb.finish()
    assert rows(local, run.id) == [
        {"step": 3, "late": 7.0},
        {"step": 5, "a": 1.0, "b": 2.0},
        {"step": 7, "a": 3.0, "c": 4.0},
        {"step": 8, "d": 5.0},
        {"step": 20, "e": 6.0},
        {"step": 30, "f": 8.0},
    ]


def test_nested_dicts_flatten_with_dots_and_names_are_made_legal(
    local: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 17: ``{"train": {"loss": x}}`` is ``train.loss`` (as W&B shows it);
    ``val acc`` becomes ``val_acc`` and ``step`` ``step_value``, each with one warning."""
    run = wandb.init(name="names")
    with caplog.at_level(logging.WARNING, logger="trainvis.compat"):
        for step in range(3):
            wandb.log({"train": {"loss": 1.0, "opt": {"lr": 0.1}}, "val acc": 0.5, "step": step})
    wandb.finish()
    assert rows(local, run.id)[0] == {
        "step": 0,
        "train.loss": 1.0,
        "train.opt.lr": 0.1,
        "val_acc": 0.5,
        "step_value": 0.0,
    }
    assert caplog.text.count("'val acc' logged as 'val_acc'") == 1
    assert caplog.text.count("'step' logged as 'step_value'") == 1


def test_media_strings_and_arrays_are_dropped_with_one_warning_and_never_raise(
    local: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 17: images, tables, histograms, strings warn once per key; scalars of
    numpy and torch kinds are numbers; the step still advances as in W&B."""
    torch = pytest.importorskip("torch")
    run = wandb.init(name="media")
    with caplog.at_level(logging.WARNING, logger="trainvis.compat"):
        table = wandb.Table(columns=["a", "b"])
        table.add_data(1, 2)
        for _ in range(3):
            wandb.log(
                {
                    "image": wandb.Image(np.zeros((4, 4))),
                    "table": table,
                    "hist": wandb.Histogram([1, 2, 3]),
                    "text": "hello",
                    "vector": np.arange(3.0),
                    "none": None,
                    "flag": True,
                    "np": np.float32(0.5),
                    "tensor": torch.tensor(2.0),
                    "one": torch.tensor([3.0]),
                }
            )
        wandb.log({"only_image": wandb.Image(None)})  # nothing storable, still a step
        wandb.log({"loss": 1.0})
    wandb.finish()
    stored = rows(local, run.id)
    assert stored[0] == {"step": 0, "np": 0.5, "tensor": 2.0, "one": 3.0}
    assert stored[-1] == {"step": 4, "loss": 1.0}
    for key in ("image", "table", "hist", "text", "vector", "flag"):
        assert caplog.text.count(f"metric {key!r} dropped") == 1, key
    assert caplog.text.count("wandb.Image is not supported") == 1


def test_config_reaches_the_job_with_updates_made_before_the_first_log(local: str) -> None:
    """Issue 17: attribute and item access, ``update`` (dict, Namespace), ``setdefaults``;
    the project becomes a tag and, with group and notes, ``config.wandb``."""
    args = argparse.Namespace(lr=0.01, batch_size=32)
    run = wandb.init(
        project="mnist",
        name="cfg",
        config={"arch": "cnn", "epochs": 3},
        tags=["baseline"],
        group="sweep-1",
        notes="first try",
    )
    assert wandb.config is run.config
    wandb.config.update(args)
    wandb.config.dropout = 0.1
    wandb.config["layers"] = [64, 32]
    wandb.config.setdefaults({"epochs": 99, "seed": 7})
    assert wandb.config.lr == 0.01 and wandb.config["epochs"] == 3 and "seed" in wandb.config
    assert wandb.config.get("missing", "x") == "x" and not hasattr(wandb.config, "missing")
    wandb.log({"loss": 1.0})
    wandb.finish()
    stored = job(local, run.id)
    assert stored["name"] == "cfg" and stored["status"] == "completed"
    assert stored["tags"] == ["baseline", "mnist"]
    assert stored["config"] == {
        "arch": "cnn",
        "epochs": 3,
        "lr": 0.01,
        "batch_size": 32,
        "dropout": 0.1,
        "layers": [64, 32],
        "seed": 7,
        "wandb": {"project": "mnist", "group": "sweep-1", "notes": "first try"},
    }


def test_a_config_file_path_is_ignored_with_a_warning(
    local: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 17: W&B reads ``config="config.yaml"``; trainvis says it does not."""
    with caplog.at_level(logging.WARNING, logger="trainvis.compat"):
        run = wandb.init(name="yaml", config="config-defaults.yaml")
        wandb.log({"loss": 1.0})
        wandb.finish()
    assert job(local, run.id)["config"] == {}
    assert "config given as str is ignored" in caplog.text


def test_config_changes_after_the_first_log_reach_the_job(local: str) -> None:
    """Issue 16: config changes after the job exists replace the job's config."""
    run = wandb.init(name="late-config", project="p", config={"lr": 0.1})
    wandb.log({"loss": 1.0})
    wandb.config.update({"lr": 0.2})
    wandb.config.extra = 1
    assert wandb.config.lr == 0.2 and wandb.config.extra == 1
    wandb.log({"loss": 0.5})
    wandb.finish()
    assert job(local, run.id)["config"] == {"lr": 0.2, "extra": 1, "wandb": {"project": "p"}}


def test_define_metric_step_metric_writes_at_that_metrics_value(local: str) -> None:
    """Issue 17: ``define_metric("val/*", step_metric="epoch_idx")`` puts val metrics
    at the epoch, whether it comes in the same ``log`` or was logged before."""
    run = wandb.init(name="step-metric")
    wandb.define_metric("epoch_idx")
    wandb.define_metric("val/*", step_metric="epoch_idx")
    for epoch in range(2):
        for _batch in range(3):
            wandb.log({"train/loss": 1.0})
        wandb.log({"val/loss": 0.5 - epoch / 10, "epoch_idx": epoch})
    wandb.log({"val/acc": 0.9})  # no epoch in this log: the last one (1)
    wandb.finish()
    stored = rows(local, run.id)
    by_step = {row["step"]: row for row in stored}
    assert by_step[0]["val/loss"] == 0.5 and by_step[1]["val/loss"] == 0.4
    assert by_step[1]["val/acc"] == 0.9
    assert [row["step"] for row in stored if "train/loss" in row] == [0, 1, 2, 4, 5, 6]
    assert [row["step"] for row in stored if "epoch_idx" in row] == [3, 7]


def test_summary_reads_last_values_and_stores_what_is_set(local: str) -> None:
    """Issue 17: ``run.summary`` gives the last logged value; values set are
    logged as ``summary/<key>`` at the last step (non-numbers: one warning)."""
    run = wandb.init(name="summary")
    for step in range(4):
        wandb.log({"loss": 1.0 / (step + 1), "nested": {"acc": step / 4}})
    assert run.summary["loss"] == 0.25 and run.summary["nested.acc"] == 0.75
    run.summary["best_loss"] = 0.25
    wandb.summary.update({"best_acc": np.float64(0.75), "note": "fine"})
    assert run.summary["best_loss"] == 0.25 and "loss" in run.summary
    wandb.finish()
    last = rows(local, run.id)[-1]
    assert last["step"] == 3
    assert last["summary/best_loss"] == 0.25 and last["summary/best_acc"] == 0.75
    assert "summary/note" not in last


@pytest.mark.parametrize(
    ("exit_code", "status"), [(None, "completed"), (0, "completed"), (1, "failed")]
)
def test_finish_exit_code_sets_the_status(local: str, exit_code: int | None, status: str) -> None:
    """Issue 17: ``wandb.finish(exit_code=)``: 0 or none completes, anything else fails."""
    run = wandb.init(name="exit")
    wandb.log({"loss": 1.0})
    wandb.finish(exit_code=exit_code)
    assert job(local, run.id)["status"] == status
    assert wandb.run is None


def test_with_block_fails_the_job_on_an_exception(local: str) -> None:
    """Issue 17: ``with wandb.init() as run`` finishes the job, failed on an exception."""
    with pytest.raises(ZeroDivisionError), wandb.init(name="ctx") as run:
        run.log({"loss": 1.0})
        1 / 0  # noqa: B018
    stored = job(local, run.id)
    assert stored["status"] == "failed"
    assert wandb.run is None


def test_unsupported_calls_warn_once_and_do_nothing(
    local: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 17: watch, save, alert, artifacts, unknown init keywords: never raise."""
    with caplog.at_level(logging.WARNING, logger="trainvis.compat"):
        run = wandb.init(name="noop", settings=wandb.Settings(start_method="thread"), magic=True)
        for _ in range(2):
            wandb.watch(object(), log="all", log_freq=10)
            wandb.save("*.pt")
            wandb.alert(title="t", text="x")
            artifact = wandb.Artifact("model", type="model")
            artifact.add_file("model.pt")
            run.log_artifact(artifact)
            run.mark_preempting()
            with wandb.plot.something():
                pass
        wandb.log({"loss": 1.0})
        wandb.finish()
    for name in ("wandb.watch", "wandb.save", "wandb.alert", "wandb.Artifact", "wandb.plot"):
        assert caplog.text.count(f"{name} is not supported") == 1, name
    assert caplog.text.count("wandb.Run.log_artifact is not supported") == 1
    assert caplog.text.count("wandb.init(magic) ignored") == 1
    assert "settings" not in caplog.text
    assert job(local, run.id)["status"] == "completed"


def test_job_is_created_at_the_first_log(local: str) -> None:
    """Issue 17: nothing reaches the store before the first ``log`` (or reading ``run.id``)."""
    run = wandb.init(name="lazy")
    assert run.trainvis_run is None
    assert run.id == "job-001"  # reading the id creates the job
    assert run.trainvis_run is not None and job(local, "job-001")["status"] == "running"
    wandb.finish()


def test_resume_with_an_id_continues_the_job_and_its_steps(local: str) -> None:
    """Issue 17: ``id=`` + ``resume="allow"`` continues the job after its last step."""
    first = wandb.init(name="resumable", id="my-run-1")
    for _ in range(3):
        wandb.log({"loss": 1.0})
    wandb.finish()
    second = wandb.init(name="resumable", id="my-run-1", resume="allow")
    wandb.log({"loss": 0.5})
    assert second.step == 4
    wandb.finish()
    assert first.id == second.id == "my-run-1"
    assert [row["step"] for row in rows(local, "my-run-1")] == [0, 1, 2, 3]


def test_second_init_returns_the_active_run_unless_reinit(local: str) -> None:
    """Issue 17: W&B's ``reinit`` rules (scripts: the active run comes back)."""
    first = wandb.init(name="one")
    assert wandb.init(name="two") is first
    second = wandb.init(name="three", reinit="finish_previous")
    assert first.finished and wandb.run is second
    third = wandb.init(name="four", reinit="create_new")
    assert not second.finished and wandb.run is third
    third.finish()
    assert wandb.run is second
    second.finish()
    assert wandb.run is None


def test_disabled_mode_records_nothing(local: str) -> None:
    """Issue 17: ``mode="disabled"``: every call works, no job is created."""
    run = wandb.init(name="off", mode="disabled", config={"a": 1})
    wandb.log({"loss": 1.0})
    wandb.config.update({"b": 2})
    wandb.finish()
    assert run.trainvis_run is None and not Path(local).exists()


def test_log_before_init_raises_like_wandb() -> None:
    """Issue 17: as W&B, ``wandb.log`` without ``init`` is an error (not a silent loss)."""
    with pytest.raises(RuntimeError, match=r"wandb\.init\(\)"):
        wandb.log({"loss": 1.0})


def test_a_script_that_dies_before_its_first_log_leaves_a_failed_job(
    local: str, tmp_path: Path
) -> None:
    """Issue 17: the job is created at exit (config included) and marked failed."""
    script = tmp_path / "early.py"
    script.write_text(
        "import trainvis.compat.wandb as wandb\n"
        "wandb.init(project='p', name='early', config={'lr': 1})\n"
        "wandb.config.update({'bs': 2})\n"
        "raise MemoryError('out of memory while loading the model')\n"
    )
    env = {**os.environ, "TRAINVIS_DB": local}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 1 and "MemoryError" in done.stderr
    stored = job(local, "job-001")
    assert stored["name"] == "early" and stored["status"] == "failed"
    assert stored["config"] == {"lr": 1, "bs": 2, "wandb": {"project": "p"}}
