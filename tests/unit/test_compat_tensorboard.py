"""``trainvis.compat.tensorboard.SummaryWriter`` (issue 17, part 1) in local mode.

A real SQLite store, no server; the job is read back from the store.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests import localdb
from trainvis.client.local import LocalClient
from trainvis.compat import _common
from trainvis.compat.tensorboard import SummaryWriter


@pytest.fixture(autouse=True)
def local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.delenv("TRAINVIS_URL", raising=False)
    monkeypatch.setitem(sys.modules, "pynvml", None)
    db = str(tmp_path / "tb.db")
    monkeypatch.setenv("TRAINVIS_DB", db)
    monkeypatch.setattr(_common, "_warned", set())
    yield db


def read(db: str, job_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return localdb.job(db, job_id), localdb.history(db, job_id, timestamps=False)


def test_scalars_keep_their_tags_and_steps(local: str) -> None:
    """Issue 17: ``add_scalar`` tags are metric names; ``add_scalars`` gives ``main/key``."""
    with SummaryWriter("runs/exp-1", comment="-lr0.1") as writer:
        for step in range(3):
            writer.add_scalar("train/loss", 1.0 / (step + 1), step)
            writer.add_scalar("Accuracy/val", np.float32(0.5), global_step=step)
            writer.add_scalars("lr", {"backbone": 0.01, "head": 0.1}, step)
        run = writer.run
    assert run is not None
    job, history = read(local, run.id)
    assert job["name"] == "exp-1-lr0.1" and job["status"] == "completed"
    assert job["config"] == {"log_dir": "runs/exp-1"}
    assert history[2] == {
        "step": 2,
        "train/loss": 1.0 / 3,
        "Accuracy/val": 0.5,
        "lr/backbone": 0.01,
        "lr/head": 0.1,
    }


def test_walltime_is_the_rows_time_and_no_step_continues_the_tag(local: str) -> None:
    """Issue 17: ``walltime`` sets the time; without ``global_step`` a tag goes on by one."""
    writer = SummaryWriter("runs/w")
    writer.add_scalar("loss", 1.0, 10, walltime=1_700_000_000.5)
    writer.add_scalar("loss", 0.5)
    writer.add_scalar("other", 2.0)
    writer.close()
    assert writer.run is not None
    client = LocalClient(local)
    history = client.history(writer.run.id)
    client.close()
    assert [(row["step"], row.get("loss"), row.get("other")) for row in history] == [
        (0, None, 2.0),
        (10, 1.0, None),
        (11, 0.5, None),
    ]
    assert history[1]["timestamp"].startswith("2023-11-14T22:13:20.5")


def test_hparams_before_the_first_scalar_reach_the_config(local: str) -> None:
    """Issue 17: hyper-parameters → config, their metrics logged."""
    writer = SummaryWriter("runs/hp", tags=["tb"], total_steps=10)
    writer.add_hparams({"lr": 0.1, "optimizer": "sgd", "bs": np.int64(16)}, {"hparam/acc": 0.9})
    writer.add_scalar("loss", 1.0, 1)
    writer.close()
    assert writer.run is not None
    job, history = read(local, writer.run.id)
    assert job["config"] == {"log_dir": "runs/hp", "lr": 0.1, "optimizer": "sgd", "bs": 16.0}
    assert job["tags"] == ["tb"] and job["total_steps"] == 10
    assert history == [{"step": 0, "hparam/acc": 0.9}, {"step": 1, "loss": 1.0}]


def test_hparams_after_the_scalars_log_their_metrics_and_edit_the_config(local: str) -> None:
    """Issue 16: add_hparams after the first scalar edits the job's config (PATCH)."""
    writer = SummaryWriter("runs/late")
    writer.add_scalar("loss", 1.0, 7)
    writer.add_hparams({"lr": 0.1}, {"hparam/loss": 0.5})
    writer.add_hparams({"bs": 8}, {})
    writer.close()
    assert writer.run is not None
    job, history = read(local, writer.run.id)
    assert job["config"] == {"log_dir": "runs/late", "lr": 0.1, "bs": 8}
    assert history == [{"step": 7, "loss": 1.0, "hparam/loss": 0.5}]


def test_other_add_calls_and_bad_values_warn_once_and_never_raise(
    local: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 17: images, histograms, graphs, text: one warning each, nothing written."""
    writer = SummaryWriter("runs/other")
    with caplog.at_level(logging.WARNING, logger="trainvis.compat"):
        for step in range(2):
            writer.add_image("input", np.zeros((3, 4, 4)), step)
            writer.add_histogram("weights", np.arange(5.0), step)
            writer.add_text("note", "hello", step)
            writer.add_graph(object())
            writer.add_scalar("loss", "not a number", step)
            writer.add_scalar("val loss", 0.5, step)
        writer.flush()
        writer.close()
        writer.add_scalar("loss", 1.0, 5)
    assert writer.run is not None
    job, history = read(local, writer.run.id)
    assert history == [{"step": 0, "val_loss": 0.5}, {"step": 1, "val_loss": 0.5}]
    for name in ("add_image", "add_histogram", "add_text", "add_graph"):
        assert caplog.text.count(f"SummaryWriter.{name} is not supported") == 1, name
    assert caplog.text.count("'loss' dropped") == 1
    assert caplog.text.count("'val loss' logged as 'val_loss'") == 1
    assert caplog.text.count("after close") == 1


def test_an_exception_in_the_with_block_fails_the_job(local: str) -> None:
    """Issue 17: leaving the ``with`` on an exception marks the job failed."""
    with pytest.raises(RuntimeError), SummaryWriter("runs/crash") as writer:
        writer.add_scalar("loss", 1.0, 0)
        raise RuntimeError("diverged")
    assert writer.run is not None
    job, _history = read(local, writer.run.id)
    assert job["status"] == "failed"
