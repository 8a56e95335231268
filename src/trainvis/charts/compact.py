"""Compact series and per-metric statistics: plain arrays for the workspace panels.

:func:`compact_series` is the body of one metric of ``GET /training/{id}/series``:
smoothed over the *full* series first, then cut to ``start_step``/``end_step`` and
downsampled, so a smoothed value at a step never depends on the window (DESIGN
"Smoothing never depends on the window"). :func:`metric_summary` is one item of
``GET /training/{id}/metrics/summary``. Pure functions on :class:`Series`, no I/O.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from trainvis.charts.datasets import pick_window
from trainvis.charts.params import ChartParams
from trainvis.models import best_direction, encode_value
from trainvis.series import Series


def _nullable(values: npt.NDArray[np.float64]) -> list[float | None]:
    """Floats with ``None`` (JSON null) at non-finite values."""
    return [v if math.isfinite(v) else None for v in values.tolist()]


def compact_series(
    series: Series,
    params: ChartParams,
    *,
    start_step: int | None = None,
    end_step: int | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One metric as ``({"x", "y", "nonfinite_x"[, "smoothed"][, "min", "max"]}, meta)``.

    ``series`` is the whole series (every step): smoothing runs on all of it,
    then the points in ``[start_step, end_step]`` (None: the request's
    ``params.start_step``/``params.end_step``) are downsampled to
    ``params.max_points`` (:func:`~trainvis.charts.datasets.pick_window`, the
    same primitive as the Chart.js charts). ``y`` (and ``smoothed``) are null where the raw value
    is non-finite, and ``nonfinite_x`` lists the x of those returned points.
    With ``params.band`` the ``min``/``max`` of each kept point's bucket (equal
    to ``y`` where nothing was merged). Points whose x is unknown (``x=epoch``
    on rows without an epoch) are left out; the points are in x order.
    """
    values = np.asarray(series.values, dtype=np.float64)
    window = pick_window(series, params, t0=params.t0, start_step=start_step, end_step=end_step)
    idx, xs = window.idx, window.xs
    ys = values[idx]
    bad = ~np.isfinite(ys)
    body: dict[str, Any] = {
        "x": xs.tolist(),
        "y": _nullable(ys),
        "nonfinite_x": xs[bad].tolist(),
    }
    if window.smoothed is not None:
        kept = window.smoothed.copy()
        kept[bad] = np.nan
        body["smoothed"] = _nullable(kept)
    if window.band_min is not None and window.band_max is not None:
        body["min"] = _nullable(window.band_min)
        body["max"] = _nullable(window.band_max)
    inside = values[window.start : window.stop]
    meta = {
        "points_total": window.total,
        "points_returned": int(idx.size),
        "downsampled": window.downsampled,
        "nonfinite_count": int(np.count_nonzero(~np.isfinite(inside))),
    }
    return body, meta


def empty_series(params: ChartParams) -> dict[str, Any]:
    """The body of a metric the job does not have: empty arrays."""
    body: dict[str, Any] = {"x": [], "y": [], "nonfinite_x": []}
    if params.smooth:
        body["smoothed"] = []
    if params.band:
        body["min"], body["max"] = [], []
    return body


def metric_summary(series: Series) -> dict[str, Any]:
    """Statistics of one whole metric series (DESIGN "Per-metric statistics").

    ``count`` includes non-finite values (``nonfinite`` counts them); ``last``
    is written like history values (``"NaN"``, ``"Infinity"``); ``min``,
    ``max`` and ``best`` consider finite values only (the earliest step wins a
    tie) and are null, with ``best_step``, when there is none. ``best`` is the
    minimum for losses, the maximum for accuracy-like metrics, else null.
    """
    values = np.asarray(series.values, dtype=np.float64)
    steps = series.steps
    finite = np.flatnonzero(np.isfinite(values))
    item: dict[str, Any] = {
        "name": series.metric,
        "count": int(values.size),
        "first_step": int(steps[0]) if values.size else None,
        "last_step": int(steps[-1]) if values.size else None,
        "last": encode_value(float(values[-1])) if values.size else None,
        "min": None,
        "max": None,
        "best": None,
        "best_step": None,
        "nonfinite": int(values.size - finite.size),
    }
    if finite.size == 0:
        return item
    low = int(finite[np.argmin(values[finite])])  # argmin/argmax: first occurrence
    high = int(finite[np.argmax(values[finite])])
    item["min"], item["max"] = float(values[low]), float(values[high])
    direction = best_direction(series.metric)
    if direction is not None:
        at = low if direction == "min" else high
        item["best"], item["best_step"] = float(values[at]), int(steps[at])
    return item
