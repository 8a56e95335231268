"""Framework integrations, each training a tiny model on CPU against a live server.

Each training runs in a child process (frameworks print warnings, read their
own environment and register exit hooks; none of that should touch pytest's
process). Nothing is downloaded: the models are built from configs.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import API, ServerProcess, require_service

pytestmark = [pytest.mark.live, pytest.mark.slow]


def needs(*modules: str) -> None:
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        require_service(
            "framework integrations",
            f"not installed: {', '.join(missing)} (pip install -e '.[integrations]')",
        )


def train(script: str, url: str, tmp_path: Path, **env: str) -> str:
    """Run ``script`` with the server URL and a work dir; returns the job id it prints."""
    child_env = {
        **os.environ,
        "TRAINVIS_SPOOL_DIR": str(tmp_path / "spool"),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONWARNINGS": "ignore",
        **env,
    }
    child_env.pop("TRAINVIS_URL", None)
    result = subprocess.run(
        [sys.executable, "-c", script, url, str(tmp_path / "work")],
        capture_output=True,
        text=True,
        timeout=600,
        env=child_env,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout.strip().splitlines()[-1]


def fetch(url: str, job_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    job = httpx.get(f"{url}{API}/training/jobs/{job_id}", timeout=10).json()["data"]
    rows = httpx.get(f"{url}{API}/training/{job_id}/metrics/history", timeout=10).json()["data"]
    return job, rows


def steps_with(rows: list[dict[str, Any]], metric: str) -> list[int]:
    return [row["step"] for row in rows if metric in row]


TRANSFORMERS = """
import sys
import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments
from trainvis.integrations.transformers import TrainvisCallback

url, work = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, max_position_embeddings=32, num_labels=2)
model = BertForSequenceClassification(config)


class Tokens(torch.utils.data.Dataset):
    def __init__(self, n):
        self.ids = torch.randint(0, 64, (n, 16))
        self.labels = torch.randint(0, 2, (n,))

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(16, dtype=torch.long),
                "labels": self.labels[i]}


def accuracy(prediction):
    return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}


args = TrainingArguments(
    output_dir=work, max_steps=20, per_device_train_batch_size=8, logging_steps=2,
    eval_strategy="steps", eval_steps=10, learning_rate=1e-3, report_to=[], use_cpu=True,
    save_strategy="no", run_name="tiny-bert", disable_tqdm=True,
)
callback = TrainvisCallback(url=url, monitor_gpu=False)
Trainer(model=model, args=args, train_dataset=Tokens(160), eval_dataset=Tokens(32),
        compute_metrics=accuracy, callbacks=[callback]).train()
print(callback.run.id)
"""


def test_transformers_trainer_callback(live_server: ServerProcess, tmp_path: Path) -> None:
    needs("torch", "transformers", "accelerate")
    job_id = train(TRANSFORMERS, live_server.url, tmp_path)
    job, rows = fetch(live_server.url, job_id)
    assert job["status"] == "completed"
    assert (job["name"], job["total_steps"]) == ("tiny-bert", 20)
    assert job["config"]["model_config"]["hidden_size"] == 32
    assert steps_with(rows, "train_loss") == list(range(2, 21, 2))
    assert steps_with(rows, "learning_rate") == list(range(2, 21, 2))
    lrs = [row["learning_rate"] for row in rows if "learning_rate" in row]
    assert lrs == sorted(lrs, reverse=True) and lrs[0] < 1e-3  # linear decay
    assert steps_with(rows, "val_loss") == [10, 20]
    assert steps_with(rows, "eval_accuracy") == [10, 20]
    assert all(0 < row["epoch"] <= 1 for row in rows if "train_loss" in row)
    assert "train_loss_avg" in rows[-1]


LIGHTNING = """
import sys
import torch
import lightning as L
from torch.utils.data import DataLoader, TensorDataset
from trainvis.integrations.lightning import TrainvisLogger

url, work = sys.argv[1], sys.argv[2]
torch.manual_seed(0)


class Tiny(L.LightningModule):
    def __init__(self, lr=0.05):
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Linear(4, 1)

    def training_step(self, batch, index):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, index):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def loader(n):
    return DataLoader(TensorDataset(torch.randn(n, 4), torch.randn(n, 1)), batch_size=8)


logger = TrainvisLogger(name="tiny-lightning", url=url, monitor_gpu=False, total_epochs=2)
trainer = L.Trainer(max_epochs=2, logger=logger, log_every_n_steps=2, accelerator="cpu",
                    enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, default_root_dir=work)
trainer.fit(Tiny(), loader(64), loader(16))
print(logger.version)
"""


def test_lightning_logger(live_server: ServerProcess, tmp_path: Path) -> None:
    needs("torch", "lightning")
    job_id = train(LIGHTNING, live_server.url, tmp_path)
    job, rows = fetch(live_server.url, job_id)
    assert job["status"] == "completed"
    assert (job["name"], job["total_epochs"], job["config"]) == ("tiny-lightning", 2, {"lr": 0.05})
    train_steps = steps_with(rows, "train_loss")
    assert len(train_steps) == 8 and train_steps == sorted(train_steps)  # 16 steps, every 2nd
    val = [(row["step"], row["epoch"]) for row in rows if "val_loss" in row]
    assert val == [(7, 0), (15, 1)]


KERAS = """
import sys
import numpy as np
import keras
from trainvis.integrations.keras import TrainvisKerasCallback

url = sys.argv[1]
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                          keras.layers.Dense(1)])
model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse", metrics=["mae"])
callback = TrainvisKerasCallback(name="tiny-keras", url=url, monitor_gpu=False)
model.fit(np.random.rand(64, 4), np.random.rand(64, 1), epochs=2, batch_size=16,
          validation_split=0.25, verbose=0, callbacks=[callback])
print(callback.run.id)
"""


def test_keras_callback_on_the_torch_backend(live_server: ServerProcess, tmp_path: Path) -> None:
    needs("torch", "keras")
    job_id = train(KERAS, live_server.url, tmp_path, KERAS_BACKEND="torch")
    job, rows = fetch(live_server.url, job_id)
    assert job["status"] == "completed"
    assert (job["name"], job["total_epochs"], job["total_steps"]) == ("tiny-keras", 2, 6)
    assert "backend:torch" in job["tags"]
    assert steps_with(rows, "train_loss") == [1, 2, 3, 4, 5, 6]
    assert steps_with(rows, "val_loss") == [3, 6]
    assert [row["learning_rate"] for row in rows if "val_loss" in row] == [
        pytest.approx(0.01),
        pytest.approx(0.01),
    ]
    assert [row["epoch"] for row in rows if "val_loss" in row] == [1, 2]
