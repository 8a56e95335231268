"""Downsampling: extremes survive, the budget holds, the grid is stable."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainvis.charts.downsample import (
    ALGORITHMS,
    MIN_POINTS,
    Downsampled,
    downsample,
    grid_width,
)

ALL_MODES = [(algorithm, False) for algorithm in ALGORITHMS] + [("minmax", True)]


@st.composite
def series(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    gaps = draw(st.lists(st.integers(1, 50), min_size=1, max_size=1500))
    start = draw(st.integers(0, 10_000))
    steps = start + np.cumsum(np.array(gaps, dtype=np.int64)) - gaps[0]
    values = draw(
        st.lists(
            st.one_of(
                st.floats(min_value=-1e9, max_value=1e9),
                st.sampled_from([math.nan, math.inf, -math.inf]),
            ),
            min_size=len(gaps),
            max_size=len(gaps),
        )
    )
    return steps, np.array(values, dtype=np.float64)


def nonfinite_run_starts(values: np.ndarray) -> np.ndarray:
    bad = ~np.isfinite(values)
    previous = np.concatenate(([False], bad[:-1]))
    return np.flatnonzero(bad & ~previous)


@settings(max_examples=200, deadline=None)
@given(data=series(), max_points=st.integers(MIN_POINTS, 300), mode=st.sampled_from(ALL_MODES))
def test_downsample_properties(
    data: tuple[np.ndarray, np.ndarray], max_points: int, mode: tuple[str, bool]
) -> None:
    steps, values = data
    algorithm, band = mode
    result = downsample(steps, values, max_points, algorithm=algorithm, band=band)
    kept = result.indices
    # Size bound (no slack) and sorted, unique, in-range positions.
    assert len(result) <= max_points
    assert np.all(np.diff(kept) > 0)
    assert kept.size == 0 or (kept[0] >= 0 and kept[-1] < values.size)
    assert np.all(np.diff(steps[kept]) > 0)
    if values.size <= max_points:
        np.testing.assert_array_equal(kept, np.arange(values.size))
        assert not result.downsampled
    finite = np.flatnonzero(np.isfinite(values))
    if finite.size:
        kept_set = set(kept.tolist())
        # First, last, global min and global max of the finite values survive.
        assert {int(finite[0]), int(finite[-1])} <= kept_set
        kept_finite = values[kept][np.isfinite(values[kept])]
        assert kept_finite.min() == values[finite].min()
        assert kept_finite.max() == values[finite].max()
    runs = nonfinite_run_starts(values)
    if runs.size <= max_points // 4:
        assert set(runs.tolist()) <= set(kept.tolist())
    if band:
        check_band(result, values)


def check_band(result: Downsampled, values: np.ndarray) -> None:
    assert result.band_min is not None and result.band_max is not None
    assert result.band_min.shape == result.band_max.shape == result.indices.shape
    kept_values = values[result.indices]
    finite = np.isfinite(kept_values)
    assert np.all(result.band_min[finite] <= kept_values[finite])
    assert np.all(kept_values[finite] <= result.band_max[finite])
    # A kept NaN/Inf point (a gap marker) has its own value as band: a gap too.
    assert not np.isfinite(result.band_min[~finite]).any()
    assert not np.isfinite(result.band_max[~finite]).any()
    if not result.downsampled:
        np.testing.assert_array_equal(result.band_min[finite], kept_values[finite])


@pytest.mark.parametrize(("algorithm", "band"), ALL_MODES)
def test_downsample_keeps_one_step_spike_and_dip_in_200k_steps(algorithm: str, band: bool) -> None:
    rng = np.random.default_rng(3)
    steps = np.arange(200_000, dtype=np.int64)
    values = 1.0 / (1.0 + steps / 1e4) + 0.01 * rng.normal(size=steps.size)
    values[123_457] = 25.0
    values[76_543] = -25.0
    result = downsample(steps, values, 2000, algorithm=algorithm, band=band)
    assert len(result) <= 2000
    assert {123_457, 76_543} <= set(result.indices.tolist())
    assert result.downsampled
    assert result.algorithm == ("minmax" if band else algorithm)


def test_downsample_is_deterministic() -> None:
    rng = np.random.default_rng(5)
    steps = np.arange(50_000, dtype=np.int64)
    values = rng.normal(size=steps.size)
    first = downsample(steps, values, 1000)
    second = downsample(steps.copy(), values.copy(), 1000)
    np.testing.assert_array_equal(first.indices, second.indices)


def test_minmax_grid_is_stable_as_a_live_run_grows() -> None:
    rng = np.random.default_rng(11)
    values = rng.normal(size=10_500)
    steps = np.arange(values.size, dtype=np.int64)
    before = downsample(steps[:10_000], values[:10_000], 2000, band=True)
    after = downsample(steps, values, 2000, band=True)
    width = grid_width(0, 9_999, (2000 - 2) // 2)
    assert width == grid_width(0, 10_499, (2000 - 2) // 2)
    complete = (10_000 // width) * width  # buckets before this step are complete
    for result in (before, after):
        assert result.band_min is not None
    # Everything in complete buckets stays, except the newest point itself
    # (always kept as "last") which a longer run no longer needs.
    old = (before.indices < complete) & (before.indices != 9_999)
    new = (after.indices < complete) & (after.indices != 9_999)
    np.testing.assert_array_equal(before.indices[old], after.indices[new])
    np.testing.assert_array_equal(before.band_min[old], after.band_min[new])
    np.testing.assert_array_equal(before.band_max[old], after.band_max[new])


@settings(max_examples=200, deadline=None)
@given(
    first=st.integers(0, 2**40),
    length=st.integers(0, 2**40),
    max_buckets=st.integers(1, 5000),
)
def test_grid_width_is_the_smallest_power_of_two_that_fits(
    first: int, length: int, max_buckets: int
) -> None:
    last = first + length
    width = grid_width(first, last, max_buckets)
    assert width & (width - 1) == 0
    assert last // width - first // width + 1 <= max_buckets
    if width > 1:
        half = width // 2
        assert last // half - first // half + 1 > max_buckets


def test_band_is_each_buckets_min_and_max() -> None:
    steps = np.arange(64, dtype=np.int64)
    values = np.arange(64, dtype=np.float64) % 8  # 0..7 in every run of 8 steps
    result = downsample(steps, values, MIN_POINTS + 2, band=True)  # 8 buckets of 8 steps
    assert result.band_min is not None and result.band_max is not None
    assert set(result.band_min.tolist()) == {0.0}
    assert set(result.band_max.tolist()) == {7.0}


def test_small_series_is_returned_whole_with_band_equal_to_values() -> None:
    values = np.array([1.0, math.nan, 3.0])
    result = downsample(np.arange(3), values, 2000, band=True)
    assert not result.downsampled
    np.testing.assert_array_equal(result.indices, [0, 1, 2])
    assert result.band_min is not None
    np.testing.assert_array_equal(result.band_min[[0, 2]], [1.0, 3.0])


def test_nonfinite_values_become_gap_markers_not_selected_points() -> None:
    # tsdownsample 0.1.5 can return the position of a NaN from MinMaxLTTB;
    # only each run's first non-finite point may be kept, as a gap marker.
    rng = np.random.default_rng(2)
    values = rng.normal(size=20_000)
    values[1000:1100] = math.nan
    values[5000] = math.inf
    values[7000:7003] = -math.inf
    result = downsample(np.arange(values.size), values, 500)
    bad = result.indices[~np.isfinite(values[result.indices])]
    assert bad.tolist() == [1000, 5000, 7000]


def test_many_nonfinite_runs_are_thinned_within_the_budget() -> None:
    values = np.ones(100_000)
    values[::3] = math.nan  # 33,334 separate runs
    values[50_001] = 9.0
    result = downsample(np.arange(values.size), values, 400)
    assert len(result) <= 400
    assert 50_001 in result.indices
    assert (~np.isfinite(values[result.indices])).sum() <= 100


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_points": MIN_POINTS - 1}, "max_points"),
        ({"algorithm": "stride"}, "algorithm"),
    ],
)
def test_downsample_rejects_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    options: dict[str, object] = {"max_points": 100, **kwargs}
    with pytest.raises(ValueError, match=message):
        downsample(np.arange(10), np.zeros(10), **options)


def test_downsample_rejects_arrays_of_different_length() -> None:
    with pytest.raises(ValueError, match="length"):
        downsample(np.arange(10), np.zeros(9), 100)


def test_downsample_of_a_million_points_is_fast() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=1_000_000)
    values[::1000] = math.nan
    steps = np.arange(values.size, dtype=np.int64)
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        downsample(steps, values, 2000)
        best = min(best, time.perf_counter() - start)
    assert best < 0.25
