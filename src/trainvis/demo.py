"""``trainvis demo``: stream a simulated BERT fine-tuning run to a server.

The run looks like the real thing so that a new user sees the dashboard move
within seconds: loss that drops fast after a linear LR warm-up and then decays
with noise, one loss spike, evaluation (val loss, accuracy, F1) every N steps,
a cosine learning-rate schedule and two fake GPUs in ``gpus``. The spike is the one
thing the training-health detectors report on this run (tests/unit/test_detectors.py).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx

API_PREFIX = "/api/v1/visualization"
DEFAULT_URL = "http://127.0.0.1:8000"
PEAK_LR = 2e-5
EPOCHS = 3
MEMORY_TOTAL = 16_384.0


def learning_rate(step: int, total: int, *, warmup: float = 0.06) -> float:
    """Linear warm-up over the first ``warmup`` share of steps, then cosine decay to 0."""
    warm = max(1, int(total * warmup))
    if step < warm:
        return PEAK_LR * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return PEAK_LR * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def simulate(total_steps: int, *, eval_every: int = 100, seed: int = 0) -> Iterator[dict[str, Any]]:
    """The metric rows of a run of ``total_steps`` steps (steps 1..total), one per step.

    Deterministic for a given ``seed``. Every row has the training metrics and
    ``gpus``; every ``eval_every`` steps (and at the last step) a row also has
    ``val_loss``, ``accuracy`` and ``f1``.
    """
    rng = random.Random(seed)
    spike = max(2, int(total_steps * 0.45))
    per_epoch = max(1.0, total_steps / EPOCHS)
    for step in range(1, total_steps + 1):
        progress = step / total_steps
        lr = learning_rate(step, total_steps)
        loss = 0.12 + 0.6 * math.exp(-4.0 * progress) + 0.05 * math.exp(-40.0 * progress)
        loss *= 1.0 + rng.gauss(0.0, 0.06)
        if spike <= step < spike + 3:  # a bad batch: one sharp spike, decaying over 3 steps
            loss += 1.4 / (1 + 3 * (step - spike))
        evaluating = step % eval_every == 0 or step == total_steps
        row: dict[str, Any] = {
            "step": step,
            "epoch": round(step / per_epoch, 4),
            "train_loss": round(loss, 5),
            "learning_rate": lr,
            "gpus": [_gpu(rng, index, evaluating) for index in range(2)],
        }
        row["gpu_utilization"] = round(sum(g["utilization"] for g in row["gpus"]) / 2, 2)
        row["gpu_memory"] = round(sum(g["memory_used"] for g in row["gpus"]), 1)
        if evaluating:
            row.update(_evaluation(rng, progress))
        yield row


def _gpu(rng: random.Random, index: int, evaluating: bool) -> dict[str, Any]:
    busy = 62.0 if evaluating else 93.0 - 3.0 * index
    utilization = min(100.0, max(0.0, rng.gauss(busy, 3.0)))
    return {
        "index": index,
        "utilization": round(utilization, 1),
        "memory_used": round(10_240.0 + 512.0 * index + rng.gauss(0.0, 40.0), 1),
        "memory_total": MEMORY_TOTAL,
        "temperature": round(64.0 + 8.0 * utilization / 100.0 + rng.gauss(0.0, 0.8), 1),
        "power": round(90.0 + 170.0 * utilization / 100.0 + rng.gauss(0.0, 6.0), 1),
    }


def _evaluation(rng: random.Random, progress: float) -> dict[str, float]:
    overfit = 0.08 * max(0.0, progress - 0.7)  # val loss turns up late in training
    val_loss = 0.2 + 0.5 * math.exp(-3.5 * progress) + overfit + rng.gauss(0.0, 0.01)
    accuracy = 0.5 + 0.42 * (1.0 - math.exp(-5.0 * progress)) + rng.gauss(0.0, 0.006)
    f1 = accuracy - 0.02 + rng.gauss(0.0, 0.006)
    return {
        "val_loss": round(val_loss, 5),
        "accuracy": round(min(1.0, accuracy), 5),
        "f1": round(min(1.0, f1), 5),
    }


def run_demo(
    url: str,
    *,
    steps: int,
    speed: float,
    eval_every: int = 100,
    token: str | None = None,
    seed: int | None = None,
    out: Any = sys.stdout,
) -> str:
    """Create a job on the server at ``url`` and stream the simulated run into it.

    Posts about ``speed`` steps a second (batched into at most ~10 requests a
    second), marks the job ``running`` first and ``completed`` at the end
    (``cancelled`` on Ctrl-C). Returns the job id.

    Raises:
        httpx.HTTPError: the server is unreachable or rejects a request.
    """
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    base = url.rstrip("/") + API_PREFIX
    with httpx.Client(base_url=base, headers=headers, timeout=10.0) as client:
        job = _create_job(client, steps)
        job_id = job["id"]
        print(f"demo job {job_id}: {url.rstrip('/')}{API_PREFIX}/dashboard/job/{job_id}", file=out)
        _set_status(client, job_id, "running")
        try:
            _stream(client, job_id, steps, speed, eval_every, seed, out)
        except KeyboardInterrupt:
            _set_status(client, job_id, "cancelled", "interrupted by the user")
            print(f"demo job {job_id} cancelled", file=out)
            raise
        _set_status(client, job_id, "completed", "demo finished")
        print(f"demo job {job_id} completed ({steps} steps)", file=out)
        return str(job_id)


def _create_job(client: httpx.Client, steps: int) -> dict[str, Any]:
    spec = {
        "name": "BERT Fine-tuning (demo)",
        "model_name": "bert-base-uncased",
        "total_epochs": EPOCHS,
        "total_steps": steps,
        "config": {
            "task": "sst2",
            "optimizer": "AdamW",
            "learning_rate": PEAK_LR,
            "warmup_ratio": 0.06,
            "scheduler": "cosine",
            "batch_size": 32,
            "max_seq_length": 128,
            "weight_decay": 0.01,
            "fp16": True,
        },
        "tags": ["demo", "bert", "glue/sst2"],
    }
    response = client.post("/training/jobs", json=spec)
    response.raise_for_status()
    job: dict[str, Any] = response.json()["data"]
    return job


def _set_status(client: httpx.Client, job_id: str, status: str, message: str = "") -> None:
    body = {"status": status, "message": message or None}
    client.put(f"/training/jobs/{job_id}/status", json=body).raise_for_status()


def _stream(
    client: httpx.Client,
    job_id: str,
    steps: int,
    speed: float,
    eval_every: int,
    seed: int | None,
    out: Any,
) -> None:
    interval = 1.0 / speed
    batch_every = max(interval, 0.1)
    batch: list[dict[str, Any]] = []
    started = time.monotonic()
    next_flush = started + batch_every
    rng_seed = seed if seed is not None else random.randrange(1 << 30)
    for index, row in enumerate(simulate(steps, eval_every=eval_every, seed=rng_seed)):
        due = started + index * interval
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        batch.append(row)
        if time.monotonic() >= next_flush or index == steps - 1:
            client.post(f"/training/{job_id}/metrics", json=batch).raise_for_status()
            batch = []
            next_flush = time.monotonic() + batch_every
        if row["step"] % max(1, steps // 10) == 0:
            print(f"  step {row['step']}/{steps}  train_loss {row['train_loss']:.4f}", file=out)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` sub-command to the ``trainvis`` parser."""
    demo = sub.add_parser("demo", help="stream a simulated BERT fine-tuning run to a server")
    demo.add_argument(
        "--url",
        default=os.environ.get("TRAINVIS_URL", DEFAULT_URL),
        help=f"server root [TRAINVIS_URL, default {DEFAULT_URL}]",
    )
    demo.add_argument("--steps", type=int, default=3000, help="training steps (default 3000)")
    demo.add_argument("--speed", type=float, default=5.0, help="steps per second (default 5)")
    demo.add_argument("--eval-every", type=int, default=100, help="evaluate every N steps")
    demo.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    demo.add_argument(
        "--token",
        default=os.environ.get("TRAINVIS_API_TOKEN"),
        help="write token [TRAINVIS_API_TOKEN]",
    )
    demo.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    if args.steps < 1 or args.speed <= 0 or args.eval_every < 1:
        print("trainvis demo: --steps, --speed and --eval-every must be positive", file=sys.stderr)
        return 2
    try:
        run_demo(
            args.url,
            steps=args.steps,
            speed=args.speed,
            eval_every=args.eval_every,
            token=args.token,
            seed=args.seed,
        )
    except KeyboardInterrupt:
        return 130
    except httpx.HTTPError as exc:
        print(f"trainvis demo: {exc} (is `trainvis serve` running at {args.url}?)", file=sys.stderr)
        return 1
    return 0
