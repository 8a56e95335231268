"""One metric series -> its Chart.js datasets (raw, smoothed, band, NaN markers).

The flow for each series: smooth on the full-resolution values, downsample the
raw values (extremes kept), take both at the kept positions, map steps to the
chosen x, and write ``{x, y}`` points with ``null`` for NaN/±Infinity.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from trainvis.charts.config import (
    BAND_ALPHA,
    NONFINITE_COLOR,
    POINT_DOT_LIMIT,
    RAW_ALPHA,
    ChartConfig,
    XMode,
)
from trainvis.charts.downsample import downsample
from trainvis.charts.params import ChartParams
from trainvis.charts.select import label_for
from trainvis.charts.smoothing import ema, gaussian, moving_average
from trainvis.series import Series

FloatArray = npt.NDArray[np.float64]
Dataset = dict[str, Any]
_HEX_RE = re.compile(r"^#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
_RGB_RE = re.compile(r"^rgb\(\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\)$")


@dataclass
class SeriesResult:
    """The datasets of one series and its entry of ``meta.series``."""

    datasets: list[Dataset]
    meta: dict[str, Any]
    returned: int
    total: int
    downsampled: bool
    sorted_x: bool


def fade(color: str, alpha: float) -> str:
    """``color`` with opacity ``alpha`` as ``rgba()``; other CSS colours unchanged."""
    rgb: tuple[int, ...] | None = None
    hex_match = _HEX_RE.match(color)
    if hex_match:
        digits = hex_match.group(1)
        if len(digits) == 3:
            digits = "".join(ch * 2 for ch in digits)
        rgb = tuple(int(digits[i : i + 2], 16) for i in (0, 2, 4))
    rgb_match = _RGB_RE.match(color)
    if rgb_match:
        rgb = tuple(int(part) for part in rgb_match.groups())
    if rgb is None:
        return color
    return f"rgba({rgb[0]}, {rgb[1]}, {rgb[2]}, {alpha:g})"


def smooth_values(values: FloatArray, params: ChartParams) -> FloatArray:
    """The smoothed series with the request's method (full resolution)."""
    if params.smooth_method == "moving_average":
        return moving_average(values, params.window)
    if params.smooth_method == "gaussian":
        return gaussian(values, params.sigma)
    return ema(values, params.smooth_factor)


def x_values(
    series: Series, mode: XMode, t0: float | None, idx: npt.NDArray[np.int64]
) -> npt.NDArray[Any]:
    """The x positions of the points at ``idx`` for an x mode (NaN where unknown).

    ``step``: steps; ``epoch``: epochs; ``time``: Unix milliseconds;
    ``relative_time``: seconds since ``t0``.

    Raises:
        ValueError: the mode needs ``epochs``/``timestamps`` the series lacks
            (read it with ``with_time=True``).
    """
    if mode == "step":
        return series.steps[idx]
    source = series.epochs if mode == "epoch" else series.timestamps
    if source is None:
        raise ValueError(f"x={mode} needs a Series read with with_time=True")
    picked = np.asarray(source, dtype=np.float64)[idx]
    if mode == "time":
        return picked * 1000.0
    if mode == "relative_time":
        return picked - (t0 or 0.0)
    return picked


def points(xs: npt.NDArray[Any], ys: FloatArray) -> list[dict[str, Any]]:
    """``[{x, y}]`` with ``None`` (JSON null, a gap) for non-finite y."""
    return [
        {"x": xv, "y": yv if math.isfinite(yv) else None}
        for xv, yv in zip(xs.tolist(), ys.tolist(), strict=True)
    ]


def build_series(
    metric: str,
    series: Series,
    *,
    index: int,
    axis: str,
    config: ChartConfig,
    params: ChartParams,
    t0: float | None,
) -> SeriesResult:
    """The datasets of one metric and its ``meta.series`` entry."""
    values = np.asarray(series.values, dtype=np.float64)
    picked = downsample(
        series.steps, values, params.max_points, algorithm=params.algorithm, band=params.band
    )
    idx = picked.indices
    xs = x_values(series, params.x, t0, idx)
    known = np.isfinite(xs) if xs.dtype.kind == "f" else np.ones(idx.size, dtype=bool)
    order = np.flatnonzero(known)
    if not bool(np.all(np.diff(xs[order]) >= 0)):
        # Chart.js with ``parsing: false`` needs x sorted (re-posted steps can
        # carry later timestamps): draw in x order.
        order = order[np.argsort(xs[order], kind="stable")]
    idx, xs = idx[order], xs[order]
    sorted_x = bool(np.all(np.diff(xs) > 0))  # unique too: ``normalized`` holds
    style = _Style(label_for(metric), config.color(index), axis, config.line_width, idx.size)
    datasets = [style.line(metric, "raw", xs, values[idx], faded=params.smooth)]
    if params.smooth:
        smoothed = smooth_values(values, params)[idx]
        datasets.append(style.line(metric, "smoothed", xs, smoothed, faded=False))
    if picked.band_min is not None and picked.band_max is not None:
        datasets.extend(style.band(metric, xs, picked.band_min[order], picked.band_max[order]))
    markers = _nonfinite_markers(values, idx)
    if markers is not None:
        datasets.append(style.markers(metric, xs[markers[0]], markers[1]))
    meta = _series_meta(metric, series, values, idx.size, picked.downsampled)
    return SeriesResult(datasets, meta, idx.size, len(series), picked.downsampled, sorted_x)


def _nonfinite_markers(values: FloatArray, idx: npt.NDArray[np.int64]) -> tuple[Any, Any] | None:
    """Kept non-finite positions and where to draw their markers.

    A marker sits at the last finite value before it (the first one after it
    at the start of the series), where the curve breaks off.
    """
    kept = values[idx]
    where = np.flatnonzero(~np.isfinite(kept))
    if where.size == 0:
        return None
    finite_pos = np.flatnonzero(np.isfinite(values))
    if finite_pos.size == 0:
        return None
    prev = np.searchsorted(finite_pos, idx[where]) - 1
    return where, values[finite_pos[np.maximum(prev, 0)]]


def _series_meta(
    metric: str, series: Series, values: FloatArray, returned: int, downsampled: bool
) -> dict[str, Any]:
    bad = np.flatnonzero(~np.isfinite(values))
    return {
        "label": label_for(metric),
        "points_total": len(series),
        "points_returned": int(returned),
        "downsampled": downsampled,
        "nonfinite_count": int(bad.size),
        "first_nonfinite_step": int(series.steps[bad[0]]) if bad.size else None,
    }


@dataclass(frozen=True)
class _Style:
    """Shared look of one metric's datasets."""

    label: str
    color: str
    axis: str
    width: float
    count: int

    def _base(self, metric: str, role: str, label: str, data: list[dict[str, Any]]) -> Dataset:
        return {
            "label": label,
            "metric": metric,
            "role": role,
            "data": data,
            "yAxisID": self.axis,
            "pointRadius": 0 if self.count > POINT_DOT_LIMIT else 2,
            "pointHoverRadius": 4,
            "tension": 0,
            "spanGaps": False,
        }

    def line(
        self, metric: str, role: str, xs: npt.NDArray[Any], ys: FloatArray, *, faded: bool
    ) -> Dataset:
        label = self.label if role == "raw" else f"{self.label} ({role})"
        color = fade(self.color, RAW_ALPHA) if faded else self.color
        dataset = self._base(metric, role, label, points(xs, ys))
        dataset.update(
            borderColor=color,
            backgroundColor=color,
            borderWidth=1 if faded else self.width,
            fill=False,
            order=1 if faded else 0,
        )
        return dataset

    def band(
        self, metric: str, xs: npt.NDArray[Any], low: FloatArray, high: FloatArray
    ) -> list[Dataset]:
        shade = fade(self.color, BAND_ALPHA)
        result = []
        for role, suffix, ys, fill in (
            ("band_min", "min", low, False),
            ("band_max", "max", high, "-1"),
        ):
            dataset = self._base(metric, role, f"{self.label} ({suffix})", points(xs, ys))
            dataset.update(
                borderColor=shade,
                backgroundColor=shade,
                borderWidth=0,
                pointRadius=0,
                fill=fill,
                order=2,
            )
            result.append(dataset)
        return result

    def markers(self, metric: str, xs: npt.NDArray[Any], ys: FloatArray) -> Dataset:
        dataset = self._base(metric, "nonfinite", f"{self.label} (NaN/Inf)", points(xs, ys))
        dataset.update(
            borderColor=NONFINITE_COLOR,
            backgroundColor=NONFINITE_COLOR,
            borderWidth=2,
            showLine=False,
            pointStyle="crossRot",
            pointRadius=6,
            pointHoverRadius=8,
            fill=False,
            order=0,
        )
        return dataset
