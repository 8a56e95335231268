"""A metric's points as arrays: what the store reads and the charts draw.

A core domain type, below every package: the store builds a :class:`Series`,
the chart builders (pure functions on arrays) consume it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Series:
    """One metric of one job, ordered by step. Arrays have equal length.

    ``values`` keeps NaN and ±Infinity. ``epochs`` is NaN where a row had no
    epoch; ``timestamps`` are Unix seconds.
    """

    metric: str
    steps: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    epochs: npt.NDArray[np.float64] | None = None
    timestamps: npt.NDArray[np.float64] | None = None

    def __len__(self) -> int:
        return int(self.steps.shape[0])


class Cells(NamedTuple):
    """Min/max tier entries of a series' finite values: per cell of ``2**shift``
    steps (``cell = step >> shift``), its count, minimum and maximum and the
    first step holding each. A cell split between blocks has one entry per part."""

    cells: npt.NDArray[np.int64]
    counts: npt.NDArray[np.int64]
    mins: npt.NDArray[np.float64]
    min_steps: npt.NDArray[np.int64]
    maxs: npt.NDArray[np.float64]
    max_steps: npt.NDArray[np.int64]


@dataclass(frozen=True)
class WindowCells:
    """A metric's min/max tier over a step range (``MetricStore.read_cells``): the
    tier entries (``cells``, of ``2**shift``
    steps, sorted by cell), the points of the range (``nonfinite`` of them
    NaN or infinite) and its first and last point ``(step, value)``."""

    cells: Cells
    shift: int
    points: int
    nonfinite: int
    first: tuple[int, float] | None
    last: tuple[int, float] | None


def run_starts(keys: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Start positions of the runs of equal ``keys`` (non-decreasing)."""
    change = np.empty(keys.size, dtype=bool)
    change[:1] = True
    np.not_equal(keys[1:], keys[:-1], out=change[1:])
    return np.flatnonzero(change).astype(np.int64)


class RunExtremes(NamedTuple):
    """Per run of equal keys (:func:`run_extremes`): its start and length, its
    least and greatest value, and the first position holding each."""

    starts: npt.NDArray[np.int64]
    counts: npt.NDArray[np.int64]
    mins: npt.NDArray[np.float64]
    maxs: npt.NDArray[np.float64]
    low: npt.NDArray[np.int64]
    high: npt.NDArray[np.int64]


def run_extremes(keys: npt.NDArray[np.int64], values: npt.NDArray[np.float64]) -> RunExtremes:
    """The extremes of ``values`` (finite, non-empty) per run of equal ``keys``
    (non-decreasing): what the stable-grid downsampling keeps of each bucket
    (``charts.downsample``) and a block's tier keeps of each cell (``store``)."""
    starts = run_starts(keys)
    counts = np.diff(np.append(starts, keys.size))
    mins = np.minimum.reduceat(values, starts)
    maxs = np.maximum.reduceat(values, starts)
    return RunExtremes(
        starts,
        counts,
        mins,
        maxs,
        _first_in_runs(values == np.repeat(mins, counts), starts),
        _first_in_runs(values == np.repeat(maxs, counts), starts),
    )


def _first_in_runs(
    hit: npt.NDArray[np.bool_], starts: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Per run (starting at ``starts``), the first position where ``hit`` holds (one does)."""
    positions = np.flatnonzero(hit).astype(np.int64)
    run = np.searchsorted(starts, positions, side="right")
    return positions[run_starts(run)]
