"""``trainvis demo``: the simulated run, and the command against a live server."""

from __future__ import annotations

import io
import math
import statistics

import httpx
import pytest

from tests.conftest import API, ServerProcess
from trainvis.cli import build_parser
from trainvis.demo import PEAK_LR, learning_rate, run_demo, simulate


def test_simulation_is_deterministic_per_seed() -> None:
    assert list(simulate(50, seed=3)) == list(simulate(50, seed=3))
    assert list(simulate(50, seed=3)) != list(simulate(50, seed=4))


def test_learning_rate_warms_up_then_decays_to_zero() -> None:
    total = 1000
    rates = [learning_rate(step, total) for step in range(total + 1)]
    peak = rates.index(max(rates))
    assert 50 <= peak <= 70  # 6 % warm-up
    assert max(rates) == pytest.approx(PEAK_LR)
    assert all(a <= b for a, b in zip(rates[:peak], rates[1 : peak + 1], strict=True))
    assert all(a >= b for a, b in zip(rates[peak:], rates[peak + 1 :], strict=False))
    assert rates[-1] == pytest.approx(0.0, abs=1e-12)


def test_loss_decays_with_noise_and_one_spike() -> None:
    rows = list(simulate(2000, eval_every=100, seed=1))
    loss = [row["train_loss"] for row in rows]
    assert statistics.mean(loss[:100]) > 2 * statistics.mean(loss[-100:])
    jumps = [b - a for a, b in zip(loss, loss[1:], strict=False)]
    assert sum(1 for jump in jumps if jump > 0.8) == 1  # exactly one spike
    assert statistics.pstdev(loss[-200:]) > 0  # noisy


def test_every_row_has_two_gpus_and_eval_runs_every_n_steps() -> None:
    rows = list(simulate(250, eval_every=100, seed=2))
    assert [row["step"] for row in rows] == list(range(1, 251))
    assert all([g["index"] for g in row["gpus"]] == [0, 1] for row in rows)
    assert all(0 <= g["utilization"] <= 100 for row in rows for g in row["gpus"])
    evaluated = [row["step"] for row in rows if "val_loss" in row]
    assert evaluated == [100, 200, 250]
    assert all({"accuracy", "f1"} <= row.keys() for row in rows if "val_loss" in row)
    assert math.isclose(rows[-1]["epoch"], 3.0)


def test_demo_command_is_registered() -> None:
    args = build_parser().parse_args(["demo", "--steps", "10", "--speed", "50"])
    assert args.steps == 10 and args.speed == 50 and args.url == "http://127.0.0.1:8000"


@pytest.mark.live
def test_demo_streams_a_run_to_a_live_server(live_server: ServerProcess) -> None:
    out = io.StringIO()
    job_id = run_demo(live_server.url, steps=40, speed=400, eval_every=10, seed=5, out=out)
    assert f"/dashboard/job/{job_id}" in out.getvalue()
    job = httpx.get(f"{live_server.url}{API}/training/jobs/{job_id}").json()["data"]
    assert job["status"] == "completed" and job["current_step"] == 40
    assert job["model_name"] == "bert-base-uncased" and "demo" in job["tags"]
    expected = {"train_loss", "val_loss", "learning_rate", "gpu0.utilization", "gpu1.memory_used"}
    assert expected <= set(job["metric_names"])
