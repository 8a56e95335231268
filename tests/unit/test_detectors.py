"""The health detectors on synthetic series with known anomalies, and on healthy runs.

Every anomaly must be reported at the step where it happens (and once), the
result must not depend on how the series is cut into batches (the vectorised
path and the per-point path agree), and the defaults must report nothing on
the simulated demo run (except its deliberate spike) nor on 20 healthy runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from tests.healthy_runs import healthy_run
from trainvis.demo import simulate
from trainvis.events import EventKind, Severity
from trainvis.health.detectors import (
    DetectorConfig,
    DivergenceDetector,
    Finding,
    MetricWatch,
    PlateauDetector,
    SpikeDetector,
)
from trainvis.health.gpu_idle import GpuIdleDetector
from trainvis.health.rolling import ema_path, median_mad, rolling_median_mad

CFG = DetectorConfig()
Feeder = Callable[[npt.NDArray[np.int64], npt.NDArray[np.float64]], list[Finding]]


def feed_in_batches(
    feed: Feeder, values: list[float], batch: int, first_step: int = 0
) -> list[Finding]:
    steps = np.arange(first_step, first_step + len(values), dtype=np.int64)
    array = np.asarray(values, dtype=np.float64)
    found: list[Finding] = []
    for start in range(0, len(values), batch):
        found += feed(steps[start : start + batch], array[start : start + batch])
    return found


def noisy_loss(count: int, *, seed: int = 0, noise: float = 0.05) -> list[float]:
    """A decaying loss with multiplicative noise."""
    rng = np.random.default_rng(seed)
    return [
        (0.2 + 2.0 * (1 + step / 100) ** -0.5) * math.exp(rng.normal(0, noise))
        for step in range(count)
    ]


def kinds(found: list[Finding]) -> list[tuple[str, str, int]]:
    return [(item.kind.value, item.metric, item.step) for item in found]


# ---------------------------------------------------------------------- building blocks


@pytest.mark.parametrize("count", [0, 1, 5, 63, 64, 65, 1000])
def test_ema_path_matches_the_recurrence(count: int) -> None:
    values = np.random.default_rng(count).normal(size=count)
    expected, level = [], 0.7
    for value in values:
        level += 0.1 * (value - level)
        expected.append(level)
    assert np.allclose(ema_path(0.7, values, 0.1), expected, rtol=0, atol=1e-12)


def test_rolling_median_mad_matches_numpy() -> None:
    rng = np.random.default_rng(1)
    history, fresh = rng.normal(size=32), rng.normal(size=100)
    at = np.arange(0, 100, 8)
    median, mad = rolling_median_mad(history, fresh, 32, at)
    joined = np.concatenate((history, fresh))
    for row, index in enumerate(at):
        window = joined[index : index + 32]
        assert median[row] == pytest.approx(np.median(window))
        assert mad[row] == pytest.approx(np.median(np.abs(window - np.median(window))))
        assert median_mad(window.tolist()) == pytest.approx((median[row], mad[row]))


# ---------------------------------------------------------------------- spikes


@pytest.mark.parametrize("batch", [1, 7, 100, 5000])
def test_a_loss_spike_is_reported_at_its_step_whatever_the_batching(batch: int) -> None:
    values = noisy_loss(2000)
    values[700] *= 4  # one bad batch
    found = feed_in_batches(SpikeDetector("loss", 1, CFG, log_scale=True).feed, values, batch)
    assert kinds(found) == [("spike", "loss", 700)]
    assert found[0].severity is Severity.WARNING and found[0].value == values[700]
    assert "spiked to" in found[0].message and "robust σ" in found[0].message


def test_a_spike_over_several_steps_reports_once_and_a_later_one_again() -> None:
    values = noisy_loss(1500, seed=2)
    for step, factor in ((500, 5.0), (501, 3.0), (502, 2.0), (1200, 6.0)):
        values[step] *= factor
    found = feed_in_batches(SpikeDetector("loss", 1, CFG, log_scale=True).feed, values, 64)
    assert [item.step for item in found] == [500, 1200]


def test_spikes_count_only_in_the_bad_direction() -> None:
    rng = np.random.default_rng(3)
    accuracy = [0.8 + rng.normal(0, 0.003) for _ in range(300)]
    accuracy[150] = 0.5  # a drop is bad
    accuracy[250] = 0.99  # a jump up is not
    found = feed_in_batches(SpikeDetector("accuracy", -1, CFG).feed, accuracy, 50)
    assert kinds(found) == [("spike", "accuracy", 150)]
    loss = noisy_loss(600, seed=4)
    loss[400] /= 5  # a sudden drop of a loss is no spike
    assert feed_in_batches(SpikeDetector("loss", 1, CFG, log_scale=True).feed, loss, 100) == []


def test_a_constant_series_does_not_fire_on_rounding_but_does_on_a_jump() -> None:
    values = [0.5] * 200 + [0.5 + 1e-9] + [0.5] * 100 + [0.9] + [0.5] * 50
    found = feed_in_batches(SpikeDetector("x", 1, CFG).feed, values, 37)
    assert kinds(found) == [("spike", "x", 301)]


def test_a_loss_of_zero_keeps_the_log_scale_and_a_negative_one_falls_back() -> None:
    values = noisy_loss(400, seed=5)
    values[100] = 0.0  # float32 underflow: a very good batch, not a spike
    values[300] *= 6
    detector = SpikeDetector("loss", 1, CFG, log_scale=True)
    assert [item.step for item in feed_in_batches(detector.feed, values, 50)] == [300]
    assert detector.log_scale
    negative = [-1.0 - 0.01 * math.sin(i) for i in range(200)] + [5.0]
    found = feed_in_batches(SpikeDetector("elbo_loss", 1, CFG, log_scale=True).feed, negative, 40)
    assert [item.step for item in found] == [200]


# ---------------------------------------------------------------------- divergence


def diverging(count: int, turn: int, *, seed: int = 6) -> list[float]:
    """Healthy until ``turn``, then the loss grows by 2 % a step (a learning rate too high)."""
    values = noisy_loss(count, seed=seed)
    for step in range(turn, count):
        values[step] = values[turn] * 1.02 ** (step - turn) * values[step] / values[turn - 1]
    return values


@pytest.mark.parametrize("batch", [1, 50, 3000])
def test_a_steadily_rising_loss_is_divergence_once(batch: int) -> None:
    found = feed_in_batches(DivergenceDetector("loss", CFG).feed, diverging(1500, 1000), batch)
    assert len(found) == 1, kinds(found)
    assert found[0].kind is EventKind.DIVERGENCE and found[0].severity is Severity.CRITICAL
    assert 1000 < found[0].step <= 1000 + 2 * CFG.divergence_window
    assert "is diverging" in found[0].message


def test_divergence_re_arms_after_the_loss_recovers() -> None:
    """Two blow-ups, each followed by a restart from a checkpoint: two reports."""
    values = noisy_loss(2000, seed=7)
    for step in range(2000):
        if 400 <= step < 500 or 1400 <= step < 1500:
            values[step] *= 1.02 ** (step % 100)
    found = feed_in_batches(DivergenceDetector("loss", CFG).feed, values, 100)
    assert len(found) == 2, kinds(found)
    assert 400 < found[0].step < 500 and 1400 < found[1].step < 1500


def test_a_spike_or_a_bumpy_loss_is_not_divergence() -> None:
    values = noisy_loss(2000, seed=9, noise=0.15)
    values[1000] *= 20
    assert feed_in_batches(DivergenceDetector("loss", CFG).feed, values, 200) == []


# ---------------------------------------------------------------------- plateau


@pytest.mark.parametrize("batch", [1, 333, 5000])
def test_a_loss_that_stops_improving_is_a_plateau_once(batch: int) -> None:
    rng = np.random.default_rng(10)
    improving = [2.0 * math.exp(-step / 100) + 0.3 for step in range(600)]
    flat = [0.3 * math.exp(rng.normal(0, 0.03)) for _ in range(2500)]
    found = feed_in_batches(PlateauDetector("loss", -1, CFG).feed, improving + flat, batch)
    assert len(found) == 1, kinds(found)
    assert found[0].kind is EventKind.PLATEAU and found[0].severity is Severity.INFO
    # The smoothed best keeps creeping down for a while after the curve flattens.
    assert 600 + CFG.plateau_window <= found[0].step <= 600 + CFG.plateau_window + 400
    assert "has not improved for 1000 points" in found[0].message


def test_a_plateau_re_arms_after_an_improvement() -> None:
    flat = [1.0] * 1500
    better = [0.5] * 1500
    found = feed_in_batches(PlateauDetector("loss", -1, CFG).feed, flat + better, 250)
    # The EMA needs ~140 points to settle on the new level (within plateau_min_delta).
    assert [item.step for item in found][0] == 1000
    assert len(found) == 2 and 2500 + 100 < found[1].step < 2500 + 160


def test_accuracy_plateaus_when_it_stops_rising() -> None:
    values = [min(0.9, 0.5 + step / 1000) for step in range(3000)]
    found = feed_in_batches(PlateauDetector("accuracy", 1, CFG).feed, values, 400)
    assert len(found) == 1 and 1400 <= found[0].step <= 1500


# ---------------------------------------------------------------------- GPU idle


def gpu_feed(
    detector: GpuIdleDetector,
    utilization: list[float],
    *,
    running: bool = True,
    batch: int = 60,
) -> list[Finding]:
    steps = np.arange(len(utilization), dtype=np.int64)
    times = 1000.0 + steps.astype(np.float64)  # one reading a second
    values = np.asarray(utilization, dtype=np.float64)
    found: list[Finding] = []
    for start in range(0, len(values), batch):
        part = slice(start, start + batch)
        found += detector.feed(steps[part], values[part], lambda p=part: times[p], lambda: running)
    return found


def test_an_idle_gpu_while_running_is_reported_once_per_stretch() -> None:
    busy, idle = [92.0] * 100, [1.5] * 400
    found = gpu_feed(GpuIdleDetector("gpu0.utilization", CFG), busy + idle + busy + idle)
    assert [item.step for item in found] == [100 + 300, 600 + 300]
    assert found[0].kind is EventKind.GPU_IDLE and found[0].timestamp == 1400.0
    assert "under 10% for 5.0 min" in found[0].message


def test_an_idle_gpu_of_a_job_that_is_not_running_is_not_reported() -> None:
    detector = GpuIdleDetector("gpu_utilization", CFG)
    assert gpu_feed(detector, [92.0] * 10 + [0.0] * 600, running=False) == []


def test_a_short_dip_is_not_idle() -> None:
    pattern = ([95.0] * 90 + [3.0] * 120) * 5  # evaluation pauses of two minutes
    assert gpu_feed(GpuIdleDetector("gpu_utilization", CFG), pattern) == []


# ---------------------------------------------------------------------- whole runs


def watch_run(rows: list[dict[str, object]], batch: int) -> list[Finding]:
    """Every detector over a run's rows, ``batch`` rows at a time (GPUs: always running)."""
    watches: dict[str, MetricWatch] = {}
    gpus: dict[str, GpuIdleDetector] = {}
    found: list[Finding] = []
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        names = {key for row in chunk for key in row} - {"step", "epoch", "timestamp", "gpus"}
        for name in sorted(names):
            present = [row for row in chunk if name in row]
            steps = np.array([row["step"] for row in present], dtype=np.int64)
            values = np.array([row[name] for row in present], dtype=np.float64)
            if name == "gpu_utilization":
                gpu = gpus.setdefault(name, GpuIdleDetector(name, CFG))
                stamps = np.array([row.get("timestamp", 0.0) for row in present], dtype=np.float64)
                found += gpu.feed(steps, values, lambda s=stamps: s, lambda: True)
            elif "loss" in name or name in ("accuracy", "f1"):
                direction = -1 if "loss" in name else 1
                found += watches.setdefault(name, MetricWatch(name, direction, CFG)).feed(
                    steps, values
                )
    return found


@pytest.mark.parametrize("seed", range(20))
def test_nothing_fires_on_healthy_runs(seed: int) -> None:
    rows = healthy_run(seed)
    assert watch_run(rows, 1000) == []
    if seed < 3:
        assert watch_run(rows, 1) == []  # the per-point path too


@pytest.mark.parametrize("steps", [300, 3000])
def test_only_the_deliberate_spike_fires_on_the_demo_run(steps: int) -> None:
    rows = list(simulate(steps, seed=11))
    for batch in (1, 250, 3000):
        assert kinds(watch_run(rows, batch)) == [("spike", "train_loss", int(steps * 0.45))]


def test_metric_watch_skips_replayed_steps() -> None:
    watch = MetricWatch("train_loss", -1, CFG)
    values = noisy_loss(300)
    values[200] *= 5
    first = feed_in_batches(watch.feed, values, 100)
    again = feed_in_batches(watch.feed, values, 100)  # a client retried everything
    assert kinds(first) == [("spike", "train_loss", 200)] and again == []
