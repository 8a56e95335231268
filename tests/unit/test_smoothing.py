"""Smoothing: the EMA against a line-by-line port of TensorBoard's loop."""

from __future__ import annotations

import math
import time
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainvis.charts.smoothing import ema, gaussian, linear_scan, moving_average


def tensorboard_classic_smoothing(values: list[float], weight: float) -> list[float]:
    """``classicSmoothing`` of tensorboard/webapp/widgets/line_chart_v2/data_transformer.ts."""
    if values and all(v == values[0] for v in values):  # isConstant (see tensorboard#786)
        return list(values)
    last = 0.0 if values else math.nan
    num_accum = 0
    out = []
    for next_val in values:
        if not math.isfinite(next_val):
            out.append(next_val)
            continue
        last = last * weight + (1 - weight) * next_val
        num_accum += 1
        debias_weight = 1.0 if weight == 1 else 1 - math.pow(weight, num_accum)
        out.append(last / debias_weight)
    return out


def assert_same_as_tensorboard(values: np.ndarray, alpha: float, rtol: float = 1e-9) -> None:
    expected = np.array(tensorboard_classic_smoothing(values.tolist(), 1 - alpha))
    actual = ema(values, alpha)
    assert actual.shape == expected.shape
    # Non-finite values come back unchanged, in place.
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    bad = ~np.isfinite(expected)
    np.testing.assert_array_equal(
        actual[bad & ~np.isnan(expected)], expected[bad & ~np.isnan(expected)]
    )
    good = ~bad
    if good.any():
        scale = np.max(np.abs(expected[good]))
        np.testing.assert_allclose(actual[good], expected[good], rtol=rtol, atol=rtol * scale)


def random_series(rng: np.random.Generator, n: int, gap_rate: float) -> np.ndarray:
    values = rng.normal(size=n).cumsum() * 0.1 + rng.normal(size=n) + 5.0
    gaps = rng.random(n) < gap_rate
    values[gaps] = rng.choice([math.nan, math.inf, -math.inf], size=int(gaps.sum()))
    return values


@pytest.mark.parametrize("alpha", [1.0, 0.9, 0.6, 0.4, 0.1, 0.01, 1e-3, 1e-6, 1 - 1e-12])
@pytest.mark.parametrize("seed", range(4))
def test_ema_matches_tensorboard_on_random_data_with_nan_gaps(alpha: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = random_series(rng, int(rng.integers(1, 6000)), gap_rate=0.05 * seed)
    assert_same_as_tensorboard(values, alpha)


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(
        st.one_of(
            st.floats(min_value=-1e6, max_value=1e6),
            st.sampled_from([math.nan, math.inf, -math.inf]),
        ),
        max_size=300,
    ),
    alpha=st.floats(min_value=1e-6, max_value=1.0),
)
def test_ema_property_matches_tensorboard(values: list[float], alpha: float) -> None:
    assert_same_as_tensorboard(np.array(values, dtype=np.float64), alpha, rtol=1e-9)


def test_ema_debias_is_exact_for_tiny_alpha() -> None:
    # TensorBoard's ``1 - pow(w, n)`` cancels when w is within 1e-9 of 1 (its
    # result is off by ~eps / (n * alpha)); ours uses expm1 and stays exact.
    values = [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    alpha = 1e-9
    w = Fraction(1) - Fraction(alpha)
    last, exact = Fraction(0), []
    for n, value in enumerate(values, start=1):
        last = last * w + (1 - w) * Fraction(value)
        exact.append(float(last / (1 - w**n)))
    np.testing.assert_allclose(ema(values, alpha), exact, rtol=1e-13)


def test_ema_constant_series_stays_exactly_constant() -> None:
    values = np.full(10_000, 0.123456789)
    np.testing.assert_array_equal(ema(values, 0.4), values)


def test_ema_is_debiased_so_the_first_point_is_the_first_value() -> None:
    smoothed = ema([10.0, 0.0, 0.0], 0.1)
    assert smoothed[0] == pytest.approx(10.0)
    # Without debiasing the first point would be 1.0 (pulled toward zero).
    assert smoothed[1] == pytest.approx(10.0 * 0.9 * 0.1 / (1 - 0.9**2))


def test_ema_passes_nonfinite_through_without_poisoning_the_rest() -> None:
    values = np.array([1.0, math.nan, 3.0, math.inf, -math.inf, 5.0])
    smoothed = ema(values, 0.5)
    assert math.isnan(smoothed[1])
    assert smoothed[3] == math.inf and smoothed[4] == -math.inf
    finite_only = ema(np.array([1.0, 3.0, 5.0]), 0.5)
    np.testing.assert_allclose(smoothed[[0, 2, 5]], finite_only)


def test_ema_alpha_one_returns_the_values() -> None:
    values = np.array([3.0, 1.0, math.nan, 2.0])
    np.testing.assert_array_equal(ema(values, 1.0)[[0, 1, 3]], values[[0, 1, 3]])


@pytest.mark.parametrize("alpha", [0.0, -0.1, 1.5, math.nan])
def test_ema_rejects_alpha_outside_zero_one(alpha: float) -> None:
    with pytest.raises(ValueError):
        ema([1.0, 2.0], alpha)


def test_ema_edge_cases_empty_and_all_nonfinite() -> None:
    assert ema([], 0.4).size == 0
    np.testing.assert_array_equal(ema([math.inf, math.inf], 0.4), [math.inf, math.inf])
    assert np.isnan(ema([math.nan, math.nan], 0.4)).all()


def test_ema_does_not_modify_its_input() -> None:
    values = np.array([1.0, 2.0, 4.0])
    ema(values, 0.3)
    np.testing.assert_array_equal(values, [1.0, 2.0, 4.0])


def test_ema_of_a_million_points_is_vectorised() -> None:
    values = random_series(np.random.default_rng(7), 1_000_000, gap_rate=0.001)
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        ema(values, 0.4)
        best = min(best, time.perf_counter() - start)
    assert best < 0.25  # a Python loop takes about a second


@pytest.mark.parametrize("w", [0.0, 1e-200, 1e-20, 0.3, 0.6, 0.99, 0.999999, 1.0])
def test_linear_scan_matches_the_recurrence(w: float) -> None:
    u = np.random.default_rng(1).normal(size=5000)
    expected = np.empty_like(u)
    acc = 0.0
    for i, value in enumerate(u):
        acc = w * acc + value
        expected[i] = acc
    np.testing.assert_allclose(linear_scan(u, w), expected, rtol=1e-9, atol=1e-9)


def naive_moving_average(values: np.ndarray, window: int) -> np.ndarray:
    out = values.copy()
    finite = [i for i, v in enumerate(values) if math.isfinite(v)]
    for rank, i in enumerate(finite):
        chosen = finite[max(0, rank - window + 1) : rank + 1]
        out[i] = sum(values[j] for j in chosen) / len(chosen)
    return out


@pytest.mark.parametrize("window", [1, 2, 7, 50])
def test_moving_average_is_a_trailing_mean_over_finite_values(window: int) -> None:
    values = random_series(np.random.default_rng(window), 800, gap_rate=0.1)
    expected = naive_moving_average(values, window)
    actual = moving_average(values, window)
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    good = np.isfinite(expected)
    np.testing.assert_allclose(actual[good], expected[good], rtol=1e-9)


def test_moving_average_rejects_a_zero_window() -> None:
    with pytest.raises(ValueError):
        moving_average([1.0], 0)


def naive_gaussian(values: np.ndarray, sigma: float) -> np.ndarray:
    out = values.copy()
    finite_idx = np.flatnonzero(np.isfinite(values))
    xs = values[finite_idx]
    radius = math.ceil(4 * sigma)
    for rank in range(xs.size):
        lo, hi = max(0, rank - radius), min(xs.size, rank + radius + 1)
        offsets = np.arange(lo, hi) - rank
        weights = np.exp(-0.5 * (offsets / sigma) ** 2)
        out[finite_idx[rank]] = np.sum(weights * xs[lo:hi]) / np.sum(weights)
    return out


@pytest.mark.parametrize(("n", "sigma"), [(300, 0.5), (300, 3.0), (2000, 40.0), (50, 30.0)])
def test_gaussian_matches_a_direct_weighted_mean(n: int, sigma: float) -> None:
    values = random_series(np.random.default_rng(n), n, gap_rate=0.05)
    expected = naive_gaussian(values, sigma)
    actual = gaussian(values, sigma)
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    good = np.isfinite(expected)
    np.testing.assert_allclose(actual[good], expected[good], rtol=1e-9)


@pytest.mark.parametrize("sigma", [0.0, -1.0, math.inf, math.nan])
def test_gaussian_rejects_a_bad_sigma(sigma: float) -> None:
    with pytest.raises(ValueError):
        gaussian([1.0, 2.0], sigma)
