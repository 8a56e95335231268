"""The health detectors on real training curves: a small PyTorch MLP, trained here.

Real minibatch losses are skewed and heavy-tailed near zero (0.02 → 0.3 is an
ordinary batch there), which synthetic Gaussian noise does not show. Healthy
runs (Adam and SGD with momentum) must report nothing; a mislabelled batch
must be a spike at its step; a learning rate raised 40-fold must be divergence.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.conftest import require_service
from trainvis.health.detectors import DetectorConfig, Finding, MetricWatch

try:
    import torch
except ImportError:  # skipped outside CI, a failure under CI=true (issue 13)
    torch = None

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _needs_torch() -> None:
    if torch is None:
        require_service("PyTorch", "not installed (a CPU build: pip install torch)")


def train(
    seed: int,
    *,
    steps: int,
    lr: float,
    adam: bool,
    bad_batch: int | None = None,
    boost_at: int | None = None,
) -> tuple[np.ndarray, list[tuple[int, float]]]:
    """Per-step training loss and (step, held-out accuracy) every 100 steps."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(4096, 20, generator=generator)
    weights = torch.randn(20, 5, generator=generator)
    labels = (inputs @ weights + 0.5 * torch.randn(4096, 5, generator=generator)).argmax(1)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 5))
    optimizer: Any = (
        torch.optim.Adam(model.parameters(), lr=lr)
        if adam
        else torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    )
    losses, accuracy = [], []
    for step in range(steps):
        index = torch.randint(0, 3072, (32,), generator=generator)
        batch, target = inputs[index], labels[index]
        if step == bad_batch:  # corrupt data: scaled inputs, every label wrong
            batch, target = batch * 30, (target + 1) % 5
        if step == boost_at:
            for group in optimizer.param_groups:
                group["lr"] = lr * 40
        loss = torch.nn.functional.cross_entropy(model(batch), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % 100 == 99:
            with torch.no_grad():
                hits = model(inputs[3072:]).argmax(1) == labels[3072:]
            accuracy.append((step, float(hits.float().mean())))
    return np.asarray(losses), accuracy


def watch(losses: np.ndarray, accuracy: list[tuple[int, float]]) -> list[Finding]:
    finite = np.isfinite(losses)
    steps = np.arange(len(losses), dtype=np.int64)
    found = []
    loss_watch = MetricWatch("train_loss", -1, DetectorConfig())
    for start in range(0, len(losses), 250):
        part = slice(start, start + 250)
        found += loss_watch.feed(steps[part][finite[part]], losses[part][finite[part]])
    acc_steps = np.array([step for step, _ in accuracy], dtype=np.int64)
    acc = np.array([value for _, value in accuracy])
    return found + MetricWatch("val_accuracy", 1, DetectorConfig()).feed(acc_steps, acc)


@pytest.mark.parametrize(("adam", "lr"), [(True, 1e-3), (False, 0.05)])
@pytest.mark.parametrize("seed", [0, 1])
def test_nothing_fires_on_real_healthy_runs(seed: int, adam: bool, lr: float) -> None:
    found = watch(*train(seed, steps=2500, lr=lr, adam=adam))
    assert found == [], [item.message for item in found]


@pytest.mark.parametrize("seed", [0, 1])
def test_a_mislabelled_batch_is_a_spike_at_its_step(seed: int) -> None:
    found = watch(*train(seed, steps=2000, lr=1e-3, adam=True, bad_batch=1500))
    assert [(item.kind.value, item.step) for item in found] == [("spike", 1500)]


def test_a_learning_rate_raised_forty_fold_is_divergence() -> None:
    found = watch(*train(0, steps=1300, lr=0.01, adam=False, boost_at=1000))
    divergence = [item for item in found if item.kind.value == "divergence"]
    assert len(divergence) == 1 and 1000 < divergence[0].step < 1100, found
