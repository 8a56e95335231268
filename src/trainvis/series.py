"""A metric's points as arrays: what the store reads and the charts draw.

A core domain type, below every package: the store builds a :class:`Series`,
the chart builders (pure functions on arrays) consume it.
"""

from __future__ import annotations

from dataclasses import dataclass

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
