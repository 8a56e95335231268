"""Vectorised building blocks of the detectors: a batched EMA and rolling robust statistics.

Pure numpy, no state: the detectors keep their state and call these on a batch.
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]

#: Block length of the batched EMA (a lower-triangular matrix of this size per α).
_BLOCK = 64
#: Below this many points a plain loop beats the matrix products.
_LOOP_BELOW = 8
#: Turns a median absolute deviation into a standard deviation (normal data).
MAD_TO_SIGMA = 1.4826


@functools.lru_cache(maxsize=16)
def _ema_kernel(alpha: float) -> tuple[Floats, Floats]:
    """``(weights, carry)``: ``e[i] = weights[i] @ x + carry[i] * e_before`` in a block."""
    index = np.arange(_BLOCK)
    lags = np.maximum(index[:, None] - index[None, :], 0)
    weights: Floats = np.tril(alpha * (1.0 - alpha) ** lags).astype(np.float64)
    carry: Floats = ((1.0 - alpha) ** (index + 1)).astype(np.float64)
    weights.setflags(write=False)
    carry.setflags(write=False)
    return weights, carry


def ema_path(start: float, values: Floats, alpha: float) -> Floats:
    """The EMA after each value: ``e[t] = e[t-1] + alpha * (values[t] - e[t-1])``.

    ``e[-1]`` is ``start``.
    Exact up to rounding (block matrix products with weights ≤ 1, so no
    cancellation, unlike a closed form with growing powers). Empty in, empty out.
    """
    count = len(values)
    out = np.empty(count)
    if count < _LOOP_BELOW:
        level = start
        for index in range(count):
            level += alpha * (float(values[index]) - level)
            out[index] = level
        return out
    weights, carry = _ema_kernel(alpha)
    level = start
    for begin in range(0, count, _BLOCK):
        block = values[begin : begin + _BLOCK]
        size = len(block)
        path = weights[:size, :size] @ block + carry[:size] * level
        out[begin : begin + size] = path
        level = float(path[-1])
    return out


def rolling_median_mad(
    history: Floats, fresh: Floats, window: int, at: npt.NDArray[np.int64]
) -> tuple[Floats, Floats]:
    """Median and median absolute deviation of the ``window`` values before ``fresh[at]``.

    ``history`` holds exactly ``window`` older values (oldest first); the window
    of ``fresh[t]`` is the last ``window`` values of ``history + fresh[:t]``.
    Only the positions in ``at`` are computed (the detectors refresh their band
    every few points, which keeps this cheap).
    """
    joined = np.concatenate((history, fresh))
    windows = np.lib.stride_tricks.sliding_window_view(joined, window)[at]
    median = _row_median(windows)
    return median, _row_median(np.abs(windows - median[:, None]))


def _row_median(rows: Floats) -> Floats:
    ordered = np.sort(rows, axis=1)
    middle = rows.shape[1] // 2
    if rows.shape[1] % 2:
        return ordered[:, middle]
    return 0.5 * (ordered[:, middle - 1] + ordered[:, middle])


def median_mad(values: list[float]) -> tuple[float, float]:
    """Median and median absolute deviation of a short list (the per-point path)."""
    ordered = sorted(values)
    median = _median_sorted(ordered)
    return median, _median_sorted(sorted(abs(value - median) for value in ordered))


def _median_sorted(ordered: list[float]) -> float:
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return 0.5 * (ordered[middle - 1] + ordered[middle])
