"""One metric series -> its Chart.js datasets (raw, smoothed, band, NaN markers).

The flow for each series (:func:`pick_window`, shared with the workspace's
compact series): smooth the *whole* full-resolution series, cut it to
``start_step``/``end_step``, downsample the raw values in that window (extremes
kept), take raw and smoothed values at the kept positions, map steps to the
chosen x; then write ``{x, y}`` points with ``null`` for NaN/±Infinity. A
smoothed value at a step therefore never depends on the window (DESIGN
"Smoothing never depends on the window").
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
from trainvis.charts.tiers import TieredSeries, tiers_apply
from trainvis.series import Series

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
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


def band_edges(color: str) -> list[tuple[str, str, dict[str, Any]]]:
    """A min/max band's two datasets as ``(role, label suffix, look)``: no line and no
    points, the max edge filled down to the min edge in ``color``'s shade, behind
    the lines."""
    shade = fade(color, BAND_ALPHA)
    look = {"borderColor": shade, "backgroundColor": shade, "borderWidth": 0, "pointRadius": 0}
    return [
        ("band_min", "min", {**look, "fill": False, "order": 2}),
        ("band_max", "max", {**look, "fill": "-1", "order": 2}),
    ]


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


@dataclass(frozen=True)
class Window:
    """The points of one series a chart draws (see :func:`pick_window`).

    Attributes:
        idx: positions in the *whole* series of the kept points, in x order
            (points whose x is unknown are left out).
        xs: their x positions.
        smoothed: the smoothed values at ``idx`` (computed on the whole
            series), or None without smoothing.
        band_min, band_max: per kept point the min/max of the bucket it stands
            for (``params.band``), else None.
        start, stop: the window as a slice of the whole series.
        downsampled: whether points of the window were dropped.
        points: the window's points where the series holds only those kept
            (a :class:`~trainvis.charts.tiers.TieredSeries`), else None.
    """

    idx: IntArray
    xs: npt.NDArray[Any]
    smoothed: FloatArray | None
    band_min: FloatArray | None
    band_max: FloatArray | None
    start: int
    stop: int
    downsampled: bool
    points: int | None = None

    @property
    def total(self) -> int:
        """Points of the series inside the window (before downsampling)."""
        return self.stop - self.start if self.points is None else self.points


def pick_window(
    series: Series,
    params: ChartParams,
    *,
    t0: float | None,
    start_step: int | None = None,
    end_step: int | None = None,
) -> Window:
    """Smooth the whole ``series``, cut it to a step range, downsample the range.

    ``start_step``/``end_step`` (inclusive; None: the request's
    ``params.start_step``/``params.end_step``, None there too: open) select the
    window; smoothing runs on every point first, so the smoothed value at a
    step is the same for every window. ``t0`` is the origin of
    ``x=relative_time``.

    Raises:
        ValueError: an x mode that needs times the series was read without.
    """
    first = params.start_step if start_step is None else start_step
    last = params.end_step if end_step is None else end_step
    if isinstance(series, TieredSeries):
        return _tiered_window(series, params, first, last)
    values = np.asarray(series.values, dtype=np.float64)
    smoothed = smooth_values(values, params) if params.smooth and values.size else None
    lo = 0 if first is None else int(np.searchsorted(series.steps, first, side="left"))
    hi = values.size if last is None else int(np.searchsorted(series.steps, last, side="right"))
    hi = max(hi, lo)
    picked = downsample(
        series.steps[lo:hi],
        values[lo:hi],
        params.max_points,
        algorithm=params.algorithm,
        band=params.band,
    )
    idx = picked.indices + lo
    xs = x_values(series, params.x, t0, idx)
    known = np.isfinite(xs) if xs.dtype.kind == "f" else np.ones(idx.size, dtype=bool)
    order = np.flatnonzero(known)
    if not bool(np.all(np.diff(xs[order]) >= 0)):
        # Chart.js with ``parsing: false`` needs x sorted (re-posted steps can
        # carry later timestamps): draw in x order.
        order = order[np.argsort(xs[order], kind="stable")]
    idx = idx[order]
    band = picked.band_min is not None and picked.band_max is not None
    return Window(
        idx=idx,
        xs=xs[order],
        smoothed=None if smoothed is None else smoothed[idx],
        band_min=picked.band_min[order] if band and picked.band_min is not None else None,
        band_max=picked.band_max[order] if band and picked.band_max is not None else None,
        start=lo,
        stop=hi,
        downsampled=picked.downsampled,
    )


def _tiered_window(
    series: TieredSeries, params: ChartParams, first: int | None, last: int | None
) -> Window:
    """The window of a series read as the points its band chart keeps."""
    if not tiers_apply(params) or (first, last) != (series.start_step, series.end_step):
        raise ValueError("a tiered series answers the band chart of steps it was read for only")
    return Window(
        idx=np.arange(len(series), dtype=np.int64),
        xs=series.steps,
        smoothed=None,
        band_min=series.band_min,
        band_max=series.band_max,
        start=0,
        stop=len(series),
        downsampled=True,
        points=series.points,
    )


def envelope_at(window: Window, low: FloatArray, high: FloatArray) -> tuple[FloatArray, FloatArray]:
    """The min of ``low`` and max of ``high`` over the steps each kept point stands for.

    ``low``/``high`` are per-step arrays aligned with the whole series (NaN
    where unknown). Every step of the window belongs to the kept point nearest
    to it (split at the midpoints between kept positions), so a value of any
    step, however short, stays inside the envelope.
    """
    if window.idx.size == 0:
        return np.empty(0), np.empty(0)
    kept = np.sort(window.idx)
    bounds = np.concatenate(([window.start], (kept[:-1] + kept[1:] + 1) // 2))
    with np.errstate(invalid="ignore"):
        lows = np.fmin.reduceat(low[window.start : window.stop], bounds - window.start)
        highs = np.fmax.reduceat(high[window.start : window.stop], bounds - window.start)
    where = np.searchsorted(kept, window.idx)  # back to the window's x order
    return lows[where], highs[where]


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
    label: str | None = None,
    line_role: str = "raw",
    envelope: tuple[FloatArray, FloatArray] | None = None,
) -> SeriesResult:
    """The datasets of one metric and its ``meta.series`` entry.

    ``series`` is the whole series: it is smoothed whole, then cut to the
    request's step range and downsampled (:func:`pick_window`). With
    ``envelope`` (per-step low and high arrays aligned with ``series``, e.g.
    the min and max across GPUs) the band datasets show it instead of the
    downsampling band, and the main line's role is ``line_role``.
    """
    label = label or label_for(metric)
    values = np.asarray(series.values, dtype=np.float64)
    window = pick_window(series, params, t0=t0)
    idx, xs = window.idx, window.xs
    sorted_x = bool(np.all(np.diff(xs) > 0))  # unique too: ``normalized`` holds
    style = _Style(label, config.color(index), axis, config.line_width, idx.size)
    datasets = [style.line(metric, line_role, xs, values[idx], faded=params.smooth)]
    if window.smoothed is not None:
        datasets.append(style.line(metric, "smoothed", xs, window.smoothed, faded=False))
    band = envelope_at(window, *envelope) if envelope is not None else None
    if band is None and window.band_min is not None and window.band_max is not None:
        band = (window.band_min, window.band_max)
    if band is not None:
        datasets.extend(style.band(metric, xs, band[0], band[1]))
    markers = _nonfinite_markers(values, idx)
    if markers is not None:
        datasets.append(style.markers(metric, xs[markers[0]], markers[1]))
    inside = slice(window.start, window.stop)
    meta = _series_meta(
        label, series.steps[inside], values[inside], window.total, idx.size, window.downsampled
    )
    return SeriesResult(datasets, meta, idx.size, window.total, window.downsampled, sorted_x)


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
    label: str, steps: IntArray, values: FloatArray, total: int, returned: int, downsampled: bool
) -> dict[str, Any]:
    """``meta.series`` of one metric: counts over the window's ``total`` points."""
    bad = np.flatnonzero(~np.isfinite(values))
    return {
        "label": label,
        "points_total": total,
        "points_returned": int(returned),
        "downsampled": downsampled,
        "nonfinite_count": int(bad.size),
        "first_nonfinite_step": int(steps[bad[0]]) if bad.size else None,
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
        label = self.label if role in ("raw", "mean") else f"{self.label} ({role})"
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
        return [
            {**self._base(metric, role, f"{self.label} ({suffix})", points(xs, ys)), **look}
            for (role, suffix, look), ys in zip(band_edges(self.color), (low, high), strict=True)
        ]

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
