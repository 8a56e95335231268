"""Chart.js 4 configurations for the four charts: loss, GPU, metrics, learning rate.

Each builder takes the series to draw (``{metric: Series}``, as
``MetricStore.read_series`` returns them; :func:`~trainvis.charts.select.select_metrics`
says which to read) and the request's options, and returns ``(config, meta)``:

- ``config`` is a complete ``{type, data: {datasets}, options}`` that
  ``new Chart(ctx, config)`` renders as is (points ``{x, y}``, NaN/±Infinity as
  ``null`` gaps, ``parsing: false``);
- ``meta`` says ``points_total``, ``points_returned`` (over the raw series),
  ``downsampled``, ``algorithm``, the non-finite count and first step, and the
  same per series under ``series``.

Pure: no I/O. Bad options raise :class:`~trainvis.errors.InvalidArgument`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from trainvis.charts.aggregate import DeviceAggregate, aggregate_devices
from trainvis.charts.config import (
    ANIMATION_LIMIT,
    GPU_AXES,
    GPU_FIELD_LABELS,
    GPU_SECONDARY_FIELDS,
    LEGEND_SIDE_WIDTH,
    LEGEND_TOP_ENTRIES,
    NONFINITE_COLOR,
    X_TITLES,
    ChartConfig,
    ChartKind,
    GpuChartConfig,
    LearningRateChartConfig,
    LossChartConfig,
    MetricsChartConfig,
    default_config,
)
from trainvis.charts.datasets import SeriesResult, build_series
from trainvis.charts.params import ChartParams, ChartQuery, resolve_params
from trainvis.charts.select import gpu_axis_for, gpu_hosts
from trainvis.series import Series

ChartPair = tuple[dict[str, Any], dict[str, Any]]


def build_chart(
    kind: ChartKind,
    series: Mapping[str, Series],
    *,
    config: ChartConfig | None = None,
    query: ChartQuery | None = None,
    algorithm: str = "minmaxlttb",
    t0: float | None = None,
    aggregate: bool = False,
    **options: Any,
) -> ChartPair:
    """Build the Chart.js config and meta of a chart of ``kind``.

    Args:
        kind: ``loss``, ``gpu``, ``metrics`` or ``learning_rate``.
        series: metric name -> series, in display order (empty: an empty chart).
        config: presentation and defaults; the kind's default config if None.
        query: the request's options (:class:`~trainvis.charts.params.ChartQuery`:
            ``x``, ``smooth``, ``smooth_factor``, ``smooth_method``, ``window``,
            ``sigma``, ``max_points``, ``band``, ``log_scale``; unset ones take
            the config's defaults). ``**options`` are the same as keywords.
        algorithm: downsampler, ``minmaxlttb``, ``m4`` or ``minmax``.
        t0: the job's first timestamp for ``relative_time``; default: the
            earliest timestamp of the given series.
        aggregate: GPU chart only: instead of one line per device, one mean
            line per field (``role: "mean"``) with the devices' min and max
            as a band (``band_min``/``band_max``); see
            :func:`~trainvis.charts.aggregate.aggregate_devices`.

    Raises:
        InvalidArgument: an option out of range (``details`` name the query
            parameter).
        ValueError: ``x=epoch|time|relative_time`` with series read without
            times.
    """
    cfg = config if config is not None else default_config(kind)
    if query is None:
        query = ChartQuery.parse(options)
    elif options:
        raise TypeError("pass the chart options either as query= or as keywords, not both")
    params = resolve_params(cfg, query, algorithm=algorithm, t0=t0)
    origin = _time_origin(series, params)
    folded: list[DeviceAggregate] = []
    plain = list(series)
    if aggregate and kind == "gpu":
        folded, plain = aggregate_devices(series)
    results = [
        build_series(
            metric,
            series[metric],
            index=position,
            axis=gpu_axis_for(metric) if kind == "gpu" else "y",
            config=cfg,
            params=params,
            t0=origin,
        )
        for position, metric in enumerate(plain)
    ]
    results += [
        _aggregate_series(item, index=len(plain) + position, config=cfg, params=params, t0=origin)
        for position, item in enumerate(folded)
    ]
    metrics = plain + [item.mean.metric for item in folded]
    meta = _meta(kind, metrics, results, params, origin)
    if aggregate and kind == "gpu":
        meta["aggregate"] = {item.mean.metric: item.devices for item in folded}
    datasets = [dataset for result in results for dataset in result.datasets]
    options = _options(kind, cfg, params, datasets, results, meta)
    return {"type": "line", "data": {"datasets": datasets}, "options": options}, meta


def build_loss_chart(
    series: Mapping[str, Series],
    *,
    config: LossChartConfig | None = None,
    **options: Any,
) -> ChartPair:
    """The loss chart (train, val and other losses); options as :func:`build_chart`."""
    return build_chart("loss", series, config=config, **options)


def build_gpu_chart(
    series: Mapping[str, Series],
    *,
    config: GpuChartConfig | None = None,
    aggregate: bool = False,
    **options: Any,
) -> ChartPair:
    """The GPU chart: utilization (%) left, memory (MiB) right, per device;
    temperature (°C) and power (W) on their own right axes when present.
    ``aggregate=True``: one mean line per field with the devices' min/max band."""
    return build_chart("gpu", series, config=config, aggregate=aggregate, **options)


def build_metrics_chart(
    series: Mapping[str, Series],
    *,
    config: MetricsChartConfig | None = None,
    **options: Any,
) -> ChartPair:
    """The evaluation/custom metrics chart; options as :func:`build_chart`."""
    return build_chart("metrics", series, config=config, **options)


def build_learning_rate_chart(
    series: Mapping[str, Series],
    *,
    config: LearningRateChartConfig | None = None,
    **options: Any,
) -> ChartPair:
    """The learning-rate chart; ``log_scale=True`` gives a logarithmic y axis."""
    return build_chart("learning_rate", series, config=config, **options)


# --------------------------------------------------------------------------- helpers


def _aggregate_series(
    item: DeviceAggregate, *, index: int, config: ChartConfig, params: ChartParams, t0: float | None
) -> SeriesResult:
    """One GPU field across devices: the mean line and the devices' min/max band."""
    label, axis = GPU_FIELD_LABELS.get(item.field, (item.field, gpu_axis_for(item.field)))
    result = build_series(
        item.mean.metric,
        item.mean,
        index=index,
        axis=axis,
        config=config,
        params=params,
        t0=t0,
        label=f"GPU {label}, mean of {len(item.devices)}",
        line_role="mean",
        envelope=(item.low, item.high),
    )
    for dataset in result.datasets:
        dataset["devices"] = len(item.devices)
        if item.field in GPU_SECONDARY_FIELDS:
            dataset["hidden"] = True
    return result


def _time_origin(series: Mapping[str, Series], params: ChartParams) -> float | None:
    """``t0`` for relative time: given, or the earliest timestamp shown."""
    if params.x != "relative_time" or params.t0 is not None:
        return params.t0
    firsts = [
        float(np.nanmin(s.timestamps))
        for s in series.values()
        if s.timestamps is not None and bool(np.isfinite(s.timestamps).any())
    ]
    return min(firsts) if firsts else 0.0


def _meta(
    kind: ChartKind,
    metrics: list[str],
    results: list[SeriesResult],
    params: ChartParams,
    origin: float | None,
) -> dict[str, Any]:
    per_series = {metric: result.meta for metric, result in zip(metrics, results, strict=True)}
    firsts = [m["first_nonfinite_step"] for m in per_series.values()]
    first_steps = [step for step in firsts if step is not None]
    meta: dict[str, Any] = {
        "chart": kind,
        "x": params.x,
        "metrics": metrics,
        "points_total": sum(result.total for result in results),
        "points_returned": sum(result.returned for result in results),
        "downsampled": any(result.downsampled for result in results),
        "algorithm": "minmax" if params.band else params.algorithm,
        "max_points": params.max_points,
        "smoothing": params.smoothing_meta(),
        "band": "minmax" if params.band else None,
        "log_scale": params.log_scale and kind != "gpu",
        "nonfinite_count": sum(m["nonfinite_count"] for m in per_series.values()),
        "first_nonfinite_step": min(first_steps) if first_steps else None,
        "series": per_series,
    }
    if params.x == "relative_time":
        meta["t0"] = origin
    hosts = gpu_hosts(metrics) if kind == "gpu" else {}
    if hosts:  # a run on several nodes: its series by host (issue 17)
        meta["hosts"] = hosts
    return meta


def _options(
    kind: ChartKind,
    cfg: ChartConfig,
    params: ChartParams,
    datasets: list[dict[str, Any]],
    results: list[SeriesResult],
    meta: dict[str, Any],
) -> dict[str, Any]:
    hover = {"mode": "nearest", "axis": "x", "intersect": False}
    legend = _legend(len(datasets))
    meta["legend"] = {"entries": len(datasets), "position": legend["position"]}
    options: dict[str, Any] = {
        "responsive": True,
        "parsing": False,
        "spanGaps": False,
        "interaction": dict(hover),
        "plugins": {
            "title": {"display": True, "text": cfg.title},
            "subtitle": _subtitle(meta),
            "legend": legend,
            "tooltip": dict(hover),
        },
        "scales": {"x": _x_scale(params), **_y_scales(kind, cfg, params, datasets)},
    }
    if all(result.sorted_x for result in results):
        options["normalized"] = True
    if sum(len(dataset["data"]) for dataset in datasets) > ANIMATION_LIMIT:
        options["animation"] = False
    return options


def _legend(entries: int) -> dict[str, Any]:
    """On top for a few datasets; beyond :data:`LEGEND_TOP_ENTRIES` on the right
    with a bounded width, from the top down (entries that do not fit are cut at
    the canvas edge), so many series never squeeze the plot to a strip (issue
    16). ``meta.legend`` says which, for clients that lay out narrow screens."""
    labels = {"boxWidth": 12, "padding": 6, "font": {"size": 11}}
    if entries <= LEGEND_TOP_ENTRIES:
        return {"display": True, "position": "top", "labels": labels}
    return {
        "display": True,
        "position": "right",
        "align": "start",
        "maxWidth": LEGEND_SIDE_WIDTH,
        "labels": labels,
    }


def _subtitle(meta: dict[str, Any]) -> dict[str, Any]:
    """A visible note of NaN/Inf values (or of an empty chart)."""
    count = meta["nonfinite_count"]
    if count:
        plural = "s" if count > 1 else ""
        text = f"{count} NaN/Inf value{plural}, first at step {meta['first_nonfinite_step']}"
        return {"display": True, "text": text, "color": NONFINITE_COLOR}
    if not meta["points_total"]:
        return {"display": True, "text": "No data yet"}
    return {"display": False, "text": ""}


def _x_scale(params: ChartParams) -> dict[str, Any]:
    title = {"display": True, "text": X_TITLES[params.x]}
    if params.x == "time":
        return {"type": "time", "title": title}
    return {"type": "linear", "title": title}


def _y_scales(
    kind: ChartKind, cfg: ChartConfig, params: ChartParams, datasets: list[dict[str, Any]]
) -> dict[str, Any]:
    if kind != "gpu":
        scale_type = "logarithmic" if params.log_scale else "linear"
        scale: dict[str, Any] = {
            "type": scale_type,
            "title": {"display": True, "text": cfg.y_title},
        }
        if kind == "learning_rate":
            scale.update(_lr_bounds(params.log_scale, datasets))
        return {"y": scale}
    used = {dataset["yAxisID"] for dataset in datasets} | {"y", "y1"}
    scales = {}
    for axis_id, (title, position) in GPU_AXES.items():
        if axis_id not in used:
            continue
        text = cfg.y_title if axis_id == "y" else title
        scale = {
            "type": "linear",
            "position": position,
            "beginAtZero": True,
            "title": {"display": True, "text": text},
        }
        if axis_id == "y":
            scale.update(min=0, max=100)
        else:
            scale["grid"] = {"drawOnChartArea": False}
        scales[axis_id] = scale
    return scales


def _lr_bounds(log_scale: bool, datasets: list[dict[str, Any]]) -> dict[str, Any]:
    """Axis bounds that keep a learning-rate schedule readable (issue 16).

    Linear: from zero, so a constant or slowly decaying rate is a line at its
    height, not noise stretched over the whole axis. Logarithmic: whole
    decades around the positive values (``1e-5`` to ``1e-3``), so the axis
    always spans at least one decade and its ticks fall on round values;
    zeros and negatives (a warmup's first step) cannot be drawn on it and do
    not drag the axis down.
    """
    if not log_scale:
        return {"beginAtZero": True}
    values = [
        point["y"]
        for dataset in datasets
        if not dataset.get("hidden")
        for point in dataset["data"]
        if isinstance(point["y"], float | int) and point["y"] > 0
    ]
    if not values:
        return {}
    low = math.floor(math.log10(min(values)))
    high = max(math.ceil(math.log10(max(values))), low + 1)
    return {"min": 10.0**low, "max": 10.0**high}
