"""Seeded, healthy training runs for the health-detector tests.

Each run looks like a real one and has nothing wrong with it: a loss that
falls as a power law with multiplicative noise (and, in some runs, a step
learning-rate decay that makes it drop), evaluation every N steps (val loss
that flattens and may creep up slightly late, accuracy, F1), and GPUs that
are busy except for a short dip while evaluating. The detectors' defaults
must report nothing on any of them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

T0 = 1_700_000_000.0


def healthy_run(seed: int) -> list[dict[str, Any]]:
    """The metric rows (REST shape, with timestamps) of healthy run number ``seed``."""
    rng = np.random.default_rng(seed)
    steps = int(rng.integers(1500, 6000))
    every = int(rng.choice([1, 1, 2, 5]))
    eval_every = int(rng.choice([50, 100, 200]))
    floor, amplitude = rng.uniform(0.02, 0.6), rng.uniform(0.8, 3.0)
    tau, beta = rng.uniform(30, 300), rng.uniform(0.3, 0.8)
    noise = rng.uniform(0.02, 0.12)
    decay_at = int(steps * rng.uniform(0.5, 0.8)) if rng.random() < 0.5 else None
    seconds_per_step = rng.uniform(0.05, 1.0)
    rows: list[dict[str, Any]] = []
    for step in range(every, steps + 1, every):
        clean = floor + amplitude * (1 + step / tau) ** -beta
        if decay_at is not None and step >= decay_at:
            clean *= 0.85
        row: dict[str, Any] = {
            "step": step,
            "epoch": round(step / (steps / 3), 4),
            "timestamp": T0 + step * seconds_per_step,
            "train_loss": clean * math.exp(rng.normal(0, noise)),
            "learning_rate": 1e-3 * (0.1 if decay_at is not None and step >= decay_at else 1.0),
        }
        evaluating = step % eval_every < every
        busy = 60.0 if evaluating else 93.0
        row["gpu_utilization"] = float(np.clip(rng.normal(busy, 3.0), 0, 100))
        if evaluating:
            late = max(0.0, step / steps - 0.8)
            val = (clean * 1.1 + 0.05) * (1 + 0.1 * late) * math.exp(rng.normal(0, 0.01))
            accuracy = min(1.0, 0.98 - 0.25 * clean / (floor + amplitude) + rng.normal(0, 0.004))
            row.update(val_loss=val, accuracy=accuracy, f1=accuracy - 0.02)
        rows.append(row)
    return rows
