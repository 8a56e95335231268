"""Band charts of long series from min/max tiers, without reading every point.

``band=minmax`` downsamples on a stable grid (:func:`~trainvis.charts.downsample.grid_minmax`):
aligned power-of-two buckets of steps. The store keeps each block's min/max
per ``2**shift``-step cell (``MetricStore.read_cells``), and a bucket of the
grid is a union of whole cells, so a 2,000-point band chart of a million
points is drawn from about 4,000 cell entries and the first and last blocks,
and is the same chart as the one drawn from every point
(:func:`~trainvis.charts.downsample.grid_minmax_cells`).

What the tiers cannot answer is drawn from the points as before: smoothing
(it needs every point), the default MinMaxLTTB (its buckets depend on the
window), x other than step, windows with a NaN or infinite value (their gap
markers need the points) and windows short enough that the grid is finer than
a cell. The chart endpoints use it, and so does a band compare over whole runs
without group means (a run's last and best value are among the kept points).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from trainvis.charts.downsample import grid_minmax_cells
from trainvis.charts.params import ChartParams
from trainvis.series import Series, WindowCells


@dataclass(frozen=True)
class TieredSeries(Series):
    """The points a band chart keeps of the window ``[start_step, end_step]``
    (None: open) of ``points`` points, with the min and max of the bucket each
    stands for (``band_min``/``band_max``). It answers that window only."""

    start_step: int | None = None
    end_step: int | None = None
    points: int = 0
    band_min: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    band_max: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0))


def tiers_apply(params: ChartParams) -> bool:
    """Whether a chart with these options can be drawn from tiers (see the module doc)."""
    return params.band and not params.smooth and params.x == "step"


def tiered_series(metric: str, cells: WindowCells, params: ChartParams) -> TieredSeries | None:
    """The band chart's points of ``metric`` from its tier over the window
    ``params.start_step``–``params.end_step``, or None when the tier cannot give
    the answer the points give (the caller reads them)."""
    if cells.nonfinite or cells.points <= params.max_points:
        return None
    if cells.first is None or cells.last is None:
        return None
    found = grid_minmax_cells(
        cells.cells, cells.shift, cells.first, cells.last, (params.max_points - 2) // 2
    )
    if found is None:
        return None
    steps, values, low, high = found
    return TieredSeries(
        metric,
        steps,
        values,
        start_step=params.start_step,
        end_step=params.end_step,
        points=cells.points,
        band_min=low,
        band_max=high,
    )
