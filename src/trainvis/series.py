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
