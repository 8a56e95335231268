"""The drop-ins end to end (issue 17, part 1): scripts written for W&B and for
TensorBoard's ``SummaryWriter`` run unmodified but for their import line, in a
child process, against a real ``trainvis serve``; the job is read back over REST.

The scripts below are written as users write them for those APIs; :func:`swap`
changes the one import line and nothing else.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import API, ServerProcess, require_service

pytestmark = pytest.mark.live

WANDB_IMPORT = ("import wandb\n", "import trainvis.compat.wandb as wandb\n")
TB_IMPORT = (
    "from torch.utils.tensorboard import SummaryWriter\n",
    "from trainvis.compat.tensorboard import SummaryWriter\n",
)

#: A W&B quick-start style script: config, a loop of ``wandb.log``, ``finish``.
WANDB_QUICKSTART = """\
import random

import wandb

random.seed(7)
wandb.init(
    project="cifar-sweeps",
    name="cnn-baseline",
    config={"learning_rate": 0.02, "architecture": "CNN", "dataset": "CIFAR-100", "epochs": 10},
    tags=["baseline"],
)

offset = random.random() / 5
for epoch in range(2, wandb.config.epochs):
    acc = 1 - 2 ** -epoch - random.random() / epoch - offset
    loss = 2 ** -epoch + random.random() / epoch + offset
    wandb.log({"acc": acc, "loss": loss})
    print(f"epoch={epoch} acc={acc!r} loss={loss!r}")

wandb.finish()
"""

#: A W&B script that changes its config after the first ``log`` (issue 16).
WANDB_LATE_CONFIG = """\
import wandb

wandb.init(project="late", name="late-config", config={"lr": 0.1})
wandb.log({"loss": 1.0})
wandb.config.update({"lr": 0.05, "best_epoch": 3})
wandb.log({"loss": 0.5})
wandb.finish()
"""

#: A W&B script that dies mid-training without ``finish`` (the last step is uncommitted).
WANDB_CRASH = """\
import wandb

wandb.init(project="crashes", name="diverged", config={"lr": 10.0})
for step in range(3):
    wandb.log({"loss": 10.0 ** step})
wandb.log({"grad_norm": 1e9}, commit=False)
raise FloatingPointError("loss is inf")
"""

#: A tiny PyTorch regression logged the W&B way: watch, define_metric, val per epoch, summary.
WANDB_TORCH = """\
import torch
from torch import nn

import wandb

torch.manual_seed(0)
run = wandb.init(project="tiny-regression", config={"lr": 0.05, "epochs": 3, "batch_size": 16})
config = wandb.config

features = torch.randn(256, 8)
target = features @ torch.randn(8, 1) + 0.1 * torch.randn(256, 1)
train_x, val_x = features[:192], features[192:]
train_y, val_y = target[:192], target[192:]
model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
loss_fn = nn.MSELoss()
wandb.watch(model, log="gradients", log_freq=10)
wandb.define_metric("epoch")
wandb.define_metric("val/*", step_metric="epoch")

best = float("inf")
for epoch in range(config.epochs):
    model.train()
    for start in range(0, len(train_x), config.batch_size):
        batch_x = train_x[start : start + config.batch_size]
        batch_y = train_y[start : start + config.batch_size]
        optimizer.zero_grad()
        loss = loss_fn(model(batch_x), batch_y)
        loss.backward()
        optimizer.step()
        wandb.log({"train/loss": loss.item(), "train/lr": optimizer.param_groups[0]["lr"]})
    model.eval()
    with torch.no_grad():
        predictions = model(val_x)
        val_loss = loss_fn(predictions, val_y)
    wandb.log(
        {"val/loss": val_loss, "val/predictions": wandb.Histogram(predictions), "epoch": epoch}
    )
    best = min(best, val_loss.item())
    print(f"epoch {epoch} val_loss {val_loss.item()!r}")

run.summary["best_val_loss"] = best
wandb.finish()
"""

#: A tiny PyTorch classifier logged through TensorBoard's SummaryWriter.
TB_TORCH = """\
import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter

torch.manual_seed(0)
writer = SummaryWriter(log_dir="runs/tiny_classifier")
inputs = torch.randn(200, 4)
labels = (inputs.sum(dim=1) > 0).long()
model = nn.Linear(4, 2)
optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
criterion = nn.CrossEntropyLoss()

global_step = 0
for epoch in range(5):
    for start in range(0, 200, 20):
        optimizer.zero_grad()
        loss = criterion(model(inputs[start : start + 20]), labels[start : start + 20])
        loss.backward()
        optimizer.step()
        writer.add_scalar("Loss/train", loss.item(), global_step)
        global_step += 1
    with torch.no_grad():
        accuracy = (model(inputs).argmax(dim=1) == labels).float().mean().item()
    writer.add_scalar("Accuracy/train", accuracy, epoch)
    writer.add_scalars("Loss", {"last_batch": loss.item(), "scaled": loss.item() * 2}, global_step)
    writer.add_histogram("fc/weight", model.weight, epoch)
    print(f"epoch {epoch} accuracy {accuracy!r} loss {loss.item()!r}")

writer.add_hparams({"lr": 0.05, "optimizer": "Adam", "epochs": 5}, {"hparam/accuracy": accuracy})
writer.flush()
writer.close()
"""


def swap(script: str, imports: tuple[str, str]) -> str:
    """``script`` with its one import of the original logger replaced by the drop-in."""
    original, drop_in = imports
    assert script.count(original) == 1
    return script.replace(original, drop_in)


def run_script(
    script: str, server: ServerProcess, tmp_path: Path, name: str = "train.py"
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / name
    path.write_text(script)
    env = {
        **os.environ,
        "TRAINVIS_URL": server.url,
        "TRAINVIS_SPOOL_DIR": str(tmp_path / "spool"),
        "PYTHONWARNINGS": "ignore",
    }
    return subprocess.run(
        [sys.executable, str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def only_job(server: ServerProcess) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The server's one job and its history."""
    jobs = httpx.get(f"{server.url}{API}/training/jobs", timeout=10).json()["data"]
    assert len(jobs) == 1, jobs
    job_id = jobs[0]["id"]
    job = httpx.get(f"{server.url}{API}/training/jobs/{job_id}", timeout=10).json()["data"]
    history = httpx.get(f"{server.url}{API}/training/{job_id}/metrics/history", timeout=10)
    return job, history.json()["data"]


def series(history: list[dict[str, Any]], name: str) -> list[tuple[int, float]]:
    return [(row["step"], row[name]) for row in history if name in row]


def printed(output: str, pattern: str) -> list[tuple[float, ...]]:
    matches = re.finditer(pattern, output)
    return [tuple(float(group) for group in match.groups()) for match in matches]


def needs_torch() -> None:
    if importlib.util.find_spec("torch") is None:
        require_service("PyTorch", "torch is not installed (bash scripts/test installs it)")


def test_wandb_quickstart_script_runs_unmodified(
    live_server: ServerProcess, tmp_path: Path
) -> None:
    """Issue 17: names, steps (0, 1, ...), exact values, config, tags and status."""
    done = run_script(swap(WANDB_QUICKSTART, WANDB_IMPORT), live_server, tmp_path)
    assert done.returncode == 0, done.stderr
    job, history = only_job(live_server)
    assert job["name"] == "cnn-baseline" and job["status"] == "completed"
    assert job["tags"] == ["baseline", "cifar-sweeps"]
    assert job["config"] == {
        "learning_rate": 0.02,
        "architecture": "CNN",
        "dataset": "CIFAR-100",
        "epochs": 10,
        "wandb": {"project": "cifar-sweeps"},
    }
    logged = printed(done.stdout, r"epoch=\d+ acc=(\S+) loss=(\S+)")
    assert len(logged) == 8
    assert series(history, "acc") == [(step, acc) for step, (acc, _loss) in enumerate(logged)]
    assert series(history, "loss") == [(step, loss) for step, (_acc, loss) in enumerate(logged)]
    assert job["summary"]["last"]["loss"] == logged[-1][1]


def test_wandb_config_update_after_the_first_log_reaches_the_server(
    live_server: ServerProcess, tmp_path: Path
) -> None:
    """Issue 16: ``wandb.config.update`` after the first ``log`` ends with the new
    config on the server (a PATCH sent in order with the rows), no warning."""
    done = run_script(swap(WANDB_LATE_CONFIG, WANDB_IMPORT), live_server, tmp_path)
    assert done.returncode == 0, done.stderr
    job, history = only_job(live_server)
    assert job["config"] == {"lr": 0.05, "best_epoch": 3, "wandb": {"project": "late"}}
    assert job["status"] == "completed"
    assert series(history, "loss") == [(0, 1.0), (1, 0.5)]
    assert "config" not in done.stderr
    assert not list((tmp_path / "spool").glob("*.jsonl"))  # everything delivered


def test_wandb_script_that_crashes_fails_its_job_with_the_pending_step(
    live_server: ServerProcess, tmp_path: Path
) -> None:
    """Issue 17: no ``finish``, an uncaught exception: the job is failed at exit and
    the uncommitted last step is written first."""
    done = run_script(swap(WANDB_CRASH, WANDB_IMPORT), live_server, tmp_path)
    assert done.returncode == 1 and "FloatingPointError" in done.stderr
    job, history = only_job(live_server)
    assert job["status"] == "failed" and job["name"] == "diverged"
    assert series(history, "loss") == [(0, 1.0), (1, 10.0), (2, 100.0)]
    assert series(history, "grad_norm") == [(3, 1e9)]


@pytest.mark.slow
def test_wandb_pytorch_training_loop(live_server: ServerProcess, tmp_path: Path) -> None:
    """Issue 17: a real PyTorch loop through the W&B drop-in: train metrics every batch,
    ``val/*`` at the epoch (``define_metric``), the summary, watch/Histogram ignored."""
    needs_torch()
    done = run_script(swap(WANDB_TORCH, WANDB_IMPORT), live_server, tmp_path, "regress.py")
    assert done.returncode == 0, done.stderr
    assert "wandb.watch is not supported" in done.stderr
    job, history = only_job(live_server)
    assert job["name"] == "regress" and job["status"] == "completed"
    assert job["tags"] == ["tiny-regression"]
    assert job["config"] == {
        "lr": 0.05,
        "epochs": 3,
        "batch_size": 16,
        "wandb": {"project": "tiny-regression"},
    }
    train = series(history, "train/loss")
    assert [step for step, _ in train] == [*range(12), *range(13, 25), *range(26, 38)]
    assert train[-1][1] < train[0][1]
    assert {value for _, value in series(history, "train/lr")} == {0.05}
    val = printed(done.stdout, r"epoch \d+ val_loss (\S+)")
    assert series(history, "val/loss") == [(epoch, value) for epoch, (value,) in enumerate(val)]
    assert [row["epoch"] for row in history if row["step"] in (12, 25, 38)] == [0, 1, 2]
    assert series(history, "summary/best_val_loss") == [(38, min(val)[0])]
    assert not any("predictions" in key for row in history for key in row)


@pytest.mark.slow
def test_summarywriter_pytorch_training_loop(live_server: ServerProcess, tmp_path: Path) -> None:
    """Issue 17: a real PyTorch loop through the SummaryWriter drop-in: tags kept,
    ``add_scalars`` as ``main/key``, hparam metrics logged, histograms ignored."""
    needs_torch()
    done = run_script(swap(TB_TORCH, TB_IMPORT), live_server, tmp_path)
    assert done.returncode == 0, done.stderr
    job, history = only_job(live_server)
    assert job["name"] == "tiny_classifier" and job["status"] == "completed"
    assert job["config"] == {
        "log_dir": "runs/tiny_classifier",
        "lr": 0.05,
        "optimizer": "Adam",
        "epochs": 5,
    }
    logged = printed(done.stdout, r"epoch \d+ accuracy (\S+) loss (\S+)")
    assert [step for step, _ in series(history, "Loss/train")] == list(range(50))
    assert series(history, "Accuracy/train") == [
        (epoch, accuracy) for epoch, (accuracy, _loss) in enumerate(logged)
    ]
    assert series(history, "Loss/last_batch") == [
        (10 * (epoch + 1), loss) for epoch, (_accuracy, loss) in enumerate(logged)
    ]
    assert series(history, "Loss/scaled") == [
        (10 * (epoch + 1), 2 * loss) for epoch, (_accuracy, loss) in enumerate(logged)
    ]
    assert series(history, "hparam/accuracy") == [(50, logged[-1][0])]
    assert "SummaryWriter.add_histogram is not supported" in done.stderr
    assert "config" not in done.stderr  # add_hparams after the scalars edits it (issue 16)
