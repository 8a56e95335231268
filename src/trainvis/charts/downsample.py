"""Spike-preserving, deterministic downsampling of one metric series.

Input: the series' ``steps`` (sorted ascending, unique: the store's order) and
``values`` (NaN and ±Infinity allowed). Output: the sorted positions of the
points to draw, never more than ``max_points`` of them, always including the
first and last finite point and the global minimum and maximum of the finite
values, so a one-step spike in a million points survives.

Algorithms (``algorithm=``):

- ``minmaxlttb`` (default): MinMaxLTTB (Van Der Donckt et al., 2023,
  https://arxiv.org/abs/2305.00332) from the ``tsdownsample`` package: min/max
  preselection then Largest-Triangle-Three-Buckets; shape-faithful.
- ``m4``: first, last, min and max of equal-width buckets (``tsdownsample``).
- ``minmax``: the minimum and maximum of each bucket of a *stable grid*:
  bucket width a power of two in steps, aligned to multiples of the width, so
  buckets that are complete never change as a live run grows (only when the
  run doubles does the width double). ``band=True`` always uses this grid and
  returns, for every kept point, the min and max of its bucket.

Non-finite values: ``tsdownsample`` does not handle them reliably (version
0.1.5 returned a NaN position from ``MinMaxLTTBDownsampler``, and the ``NaN*``
variants select NaNs on purpose), so only finite points are handed to it. Each
run of consecutive non-finite values keeps its first point as a gap marker
(drawn as ``null``); when there are more runs than a quarter of ``max_points``
the markers are thinned to one per stable-grid bucket.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from tsdownsample import M4Downsampler, MinMaxLTTBDownsampler

from trainvis.series import Cells, run_extremes, run_starts

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
Algorithm = Literal["minmaxlttb", "m4", "minmax"]

ALGORITHMS: tuple[str, ...] = ("minmaxlttb", "m4", "minmax")
#: Smallest ``max_points`` accepted (tsdownsample needs a few output slots).
MIN_POINTS = 16
# Stateless and thread-safe; their constructors are untyped.
_M4 = M4Downsampler()  # type: ignore[no-untyped-call]
_MINMAXLTTB = MinMaxLTTBDownsampler()  # type: ignore[no-untyped-call]
# MinMaxLTTB keeps first and last itself; the four reserved slots let the
# global extremes be added without ever exceeding the budget.
_RESERVED = 4


@dataclass(frozen=True)
class Downsampled:
    """The result of :func:`downsample`.

    Attributes:
        indices: sorted positions into the input arrays of the points to keep.
        algorithm: the algorithm that selected them.
        downsampled: whether points were dropped.
        band_min, band_max: with ``band=True``, per kept point the min and max
            of the finite values of the bucket it stands for (a kept non-finite
            point, a gap marker, keeps its own value); ``None`` otherwise.
    """

    indices: IntArray
    algorithm: str
    downsampled: bool
    band_min: FloatArray | None = None
    band_max: FloatArray | None = None

    def __len__(self) -> int:
        return int(self.indices.shape[0])


def downsample(
    steps: npt.ArrayLike,
    values: npt.ArrayLike,
    max_points: int,
    *,
    algorithm: Algorithm = "minmaxlttb",
    band: bool = False,
) -> Downsampled:
    """Select at most ``max_points`` points of a series, keeping its extremes.

    Deterministic: the same input gives the same output. A series that fits
    is returned whole (``downsampled=False``; its band is the values).

    Args:
        steps: ascending, unique x positions (steps).
        values: the values; NaN and ±Infinity are kept as gap markers.
        max_points: the budget, at least :data:`MIN_POINTS`.
        algorithm: ``minmaxlttb``, ``m4`` or ``minmax`` (see the module doc).
        band: also return the min/max envelope (forces ``minmax``).

    Raises:
        ValueError: unknown algorithm, too small a budget, or arrays of
            different lengths.
    """
    x = np.ascontiguousarray(steps, dtype=np.int64).reshape(-1)
    y = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
    _check(x, y, max_points, algorithm)
    chosen = "minmax" if band else algorithm
    if y.size <= max_points:
        every = np.arange(y.size, dtype=np.int64)
        lo, hi = (y.copy(), y.copy()) if band else (None, None)
        return Downsampled(every, chosen, False, lo, hi)
    finite = np.isfinite(y)
    if bool(finite.all()):
        pos, lo, hi = _select(x, y, max_points, chosen)
        return Downsampled(pos, chosen, True, lo if band else None, hi if band else None)
    gaps = _gap_markers(x, finite, max_points // 4)
    fidx = np.flatnonzero(finite).astype(np.int64)
    budget = max_points - gaps.size
    if fidx.size <= budget:
        kept_f = fidx
        f_lo: FloatArray = y[finite]
        f_hi: FloatArray = f_lo
    else:
        pos, f_lo, f_hi = _select(x[finite], y[finite], budget, chosen)
        kept_f = fidx[pos]
    indices = np.union1d(kept_f, gaps).astype(np.int64)
    if not band:
        return Downsampled(indices, chosen, True)
    lo, hi = y[indices], y[indices]
    where = np.searchsorted(indices, kept_f)
    lo[where], hi[where] = f_lo, f_hi
    return Downsampled(indices, chosen, True, lo, hi)


def _check(x: IntArray, y: FloatArray, max_points: int, algorithm: str) -> None:
    if x.shape != y.shape:
        raise ValueError(f"steps and values differ in length ({x.size} != {y.size})")
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r} (one of {', '.join(ALGORITHMS)})")
    if max_points < MIN_POINTS:
        raise ValueError(f"max_points must be >= {MIN_POINTS}, got {max_points}")


def _select(
    x: IntArray, y: FloatArray, budget: int, algorithm: str
) -> tuple[IntArray, FloatArray, FloatArray]:
    """Positions (into the finite arrays) to keep, and their bucket min/max."""
    if algorithm == "minmax":
        return grid_minmax(x, y, (budget - 2) // 2)
    if algorithm == "m4":
        n_out = max(4, (budget - _RESERVED) // 4 * 4)
        picked = _M4.downsample(x, y, n_out=n_out)
    else:
        picked = _MINMAXLTTB.downsample(x, y, n_out=budget - _RESERVED)
    extremes = np.array([0, y.size - 1, int(np.argmin(y)), int(np.argmax(y))], dtype=np.int64)
    pos = np.union1d(np.asarray(picked, dtype=np.int64), extremes)
    return pos, y[pos], y[pos]


def grid_width(first: int, last: int, max_buckets: int) -> int:
    """The smallest power of two ``w`` with at most ``max_buckets`` aligned buckets.

    Buckets are ``[k*w, (k+1)*w)``; the count spanning ``first..last`` is
    ``last // w - first // w + 1``. Depends only on the step range, so it
    changes only when the run's range doubles.
    """
    max_buckets = max(1, max_buckets)
    width = 1
    span = max(0, last - first)
    while width < span // max_buckets:
        width *= 2
    while last // width - first // width + 1 > max_buckets:
        width *= 2
    return width


def grid_minmax(
    x: IntArray, y: FloatArray, max_buckets: int
) -> tuple[IntArray, FloatArray, FloatArray]:
    """Min and max point of each stable-grid bucket (finite values only).

    Returns the sorted kept positions (each bucket's first minimum and first
    maximum, plus the first and last point) and, per kept position, its
    bucket's min and max. At most ``2 * max_buckets + 2`` positions.
    """
    width = grid_width(int(x[0]), int(x[-1]), max_buckets)
    # width is a power of two: an arithmetic shift is floor division, faster.
    runs = run_extremes(x >> (width.bit_length() - 1), y)
    ends = np.array([0, x.size - 1], dtype=np.int64)
    pos = np.union1d(np.union1d(runs.low, runs.high), ends)
    bucket = np.searchsorted(runs.starts, pos, side="right") - 1
    return pos, runs.mins[bucket], runs.maxs[bucket]


def grid_minmax_cells(
    cells: Cells, shift: int, first: tuple[int, float], last: tuple[int, float], max_buckets: int
) -> tuple[IntArray, FloatArray, FloatArray, FloatArray] | None:
    """:func:`grid_minmax` of a window's finite points from their min/max tier:
    ``cells`` (entries of ``2**shift`` steps, sorted by cell, see
    :class:`~trainvis.series.Cells`), the window's ``first`` and ``last`` point.

    The grid's buckets are aligned powers of two in steps, so each is a union
    of whole cells: its min is the least of their mins, held first at the
    earliest of their first steps holding it (the same for the max). Returns
    the kept points' steps, values and bucket min/max, exactly what
    :func:`grid_minmax` keeps of the points themselves; None when the grid
    is finer than the cells.
    """
    width = grid_width(first[0], last[0], max_buckets)
    if width < 1 << shift:
        return None
    keys = cells.cells >> (width.bit_length() - 1 - shift)
    starts = run_starts(keys)
    counts = np.diff(np.append(starts, keys.size))
    bmin = np.minimum.reduceat(cells.mins, starts)
    bmax = np.maximum.reduceat(cells.maxs, starts)
    low = _first_entry(cells.mins == np.repeat(bmin, counts), cells.min_steps, starts, counts)
    high = _first_entry(cells.maxs == np.repeat(bmax, counts), cells.max_steps, starts, counts)
    steps = np.concatenate([cells.min_steps[low], cells.max_steps[high], [first[0], last[0]]])
    values = np.concatenate([cells.mins[low], cells.maxs[high], [first[1], last[1]]])
    kept, where = np.unique(steps, return_index=True)
    bucket = np.searchsorted(keys[starts], kept >> (width.bit_length() - 1), side="left")
    return kept, values[where], bmin[bucket], bmax[bucket]


def _first_entry(
    hit: npt.NDArray[np.bool_], at: IntArray, starts: IntArray, counts: IntArray
) -> IntArray:
    """Per bucket (entries ``starts``, ``counts``), the entry where ``hit`` holds
    with the earliest step ``at`` (one does; entries of a bucket hold disjoint steps)."""
    never = np.iinfo(np.int64).max
    earliest = np.minimum.reduceat(np.where(hit, at, never), starts)
    return np.flatnonzero(hit & (at == np.repeat(earliest, counts)))


def _gap_markers(x: IntArray, finite: npt.NDArray[np.bool_], cap: int) -> IntArray:
    """First position of each run of non-finite values, thinned to ``cap``."""
    bad = ~finite
    run_start = bad.copy()
    run_start[1:] &= finite[:-1]
    starts = np.flatnonzero(run_start).astype(np.int64)
    if starts.size <= cap:
        return starts
    width = grid_width(int(x[starts[0]]), int(x[starts[-1]]), cap)
    return starts[run_starts(x[starts] // width)]
