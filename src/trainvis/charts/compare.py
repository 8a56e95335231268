"""The compare chart: one metric of several runs as one Chart.js config.

:func:`build_compare` draws each run with :func:`~trainvis.charts.compact.compact_series`
(smoothed over the run's full series, then cut to the window and downsampled,
so a smoothed value never depends on the window), one colour per run by its
position in the request, so a run keeps its colour on every metric. With
``group_by`` each group adds a mean line (and with ``band=minmax`` the runs'
min and max per bucket, see :mod:`trainvis.charts.groups`); with a
``baseline`` run, ``meta.jobs`` says how far each run's last and best values
are from the baseline's. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainvis.charts.compact import compact_series, empty_series
from trainvis.charts.config import (
    ANIMATION_LIMIT,
    POINT_DOT_LIMIT,
    RAW_ALPHA,
    X_TITLES,
    MetricsChartConfig,
)
from trainvis.charts.datasets import band_edges, fade, smooth_values, x_values
from trainvis.charts.groups import GroupLine, RunPoints, group_keys, group_mean
from trainvis.charts.params import ChartParams, ChartQuery, resolve_params
from trainvis.charts.select import label_for
from trainvis.models import TrainingJob, best_direction, encode_value
from trainvis.series import Series

Dataset = dict[str, Any]
#: Width of a group's mean line (runs are drawn thinner under it).
MEAN_WIDTH = 3.0


@dataclass(frozen=True)
class RunCompact:
    """A run's part of a compare answer that depends only on its points and the
    options: its compact arrays (:func:`~trainvis.charts.compact.compact_series`),
    their counts, and the run's last and best values. The same as long as the
    run's stored points are (a caller may keep it by the job's sequence number).
    """

    present: bool  # False: the run has no such metric
    body: dict[str, Any]
    info: dict[str, Any]
    last: float | str | None
    best: float | None

    @property
    def points(self) -> int:
        """Points held (the size a memo counts)."""
        return len(self.body["x"])


def compact_run(series: Series | None, query: ChartQuery, *, t0: float | None) -> RunCompact:
    """One run's :class:`RunCompact` (``series``: its whole series, None if it has none).

    Raises:
        InvalidArgument: an option out of range (names the query parameter).
    """
    params = resolve_params(MetricsChartConfig(), query, t0=t0)
    if series is None or len(series) == 0:
        return RunCompact(False, empty_series(params), _empty_meta(), None, None)
    body, info = compact_series(
        series, params, start_step=query.start_step, end_step=query.end_step
    )
    last, best = last_and_best(series)
    return RunCompact(True, body, info, last, best)


@dataclass(frozen=True)
class CompareRun:
    """A run to compare: the job, its compact part, and (for group means) its
    whole series of the metric."""

    job: TrainingJob
    compact: RunCompact
    series: Series | None = None

    @classmethod
    def of(cls, job: TrainingJob, series: Series | None, query: ChartQuery) -> CompareRun:
        """A run from its whole series (None: the job lacks the metric)."""
        return cls(job, compact_run(series, query, t0=job.first_timestamp), series)


def build_compare(
    metric: str,
    runs: Sequence[CompareRun],
    *,
    query: ChartQuery | None = None,
    group_by: str | None = None,
    baseline: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Chart.js config and meta comparing ``metric`` across ``runs``.

    Datasets, in order: per run its ``raw`` line (and ``smoothed`` with
    ``smooth``; with ``band`` and no ``group_by``, its ``band_min``/``band_max``),
    each carrying ``job_id``, ``metric`` and ``role``; then per group a
    ``mean`` line (and its ``band_min``/``band_max``) carrying ``group`` and
    ``runs``. A run without the metric has an empty ``raw`` line. ``x=relative_time``
    counts from each run's own first row, so runs started at different times line up.

    Args:
        baseline: a job id of ``runs`` whose last/best the others are measured against.

    Raises:
        InvalidArgument: an option out of range (names the query parameter).
        ValueError: ``x`` other than ``step`` with series read without times.
    """
    cfg = MetricsChartConfig()
    params = resolve_params(cfg, query or ChartQuery())
    query = query or ChartQuery()
    labels = run_labels([run.job for run in runs])
    datasets: list[Dataset] = []
    per_run: dict[str, Any] = {}
    for position, run in enumerate(runs):
        style = _Style(labels[position], cfg.color(position), cfg.line_width)
        per_run[run.job.id] = {"label": style.label, **run.compact.info}
        body = run.compact.body
        datasets.extend(
            style.run_datasets(run.job.id, metric, body, params, grouped=bool(group_by))
        )
    groups = _groups(runs, group_by) if group_by else []
    for position, (key, members) in enumerate(groups):
        line = group_mean([_run_points(run, params, query) for run in members], params.max_points)
        color = cfg.color(len(runs) + position)
        style = _Style(f"{group_by}={'(none)' if key is None else key}", color, MEAN_WIDTH)
        runs_ids = [run.job.id for run in members]
        datasets.extend(style.group_datasets(metric, key, runs_ids, line, band=params.band))
    meta = _meta(metric, runs, per_run, params, group_by, groups, baseline)
    options = _options(metric, params)
    if sum(len(dataset["data"]) for dataset in datasets) > ANIMATION_LIMIT:
        options["animation"] = False
    return {"type": "line", "data": {"datasets": datasets}, "options": options}, meta


def run_labels(jobs: Sequence[TrainingJob]) -> list[str]:
    """Each job's name, with `` (job-id)`` appended where names repeat."""
    counts = Counter(job.name for job in jobs)
    return [job.name if counts[job.name] == 1 else f"{job.name} ({job.id})" for job in jobs]


def delta_pct(value: float | None, base: float | None) -> float | None:
    """``(value - base) / |base| * 100``; None when either is missing or ``base`` is 0."""
    if value is None or base is None or base == 0:
        return None
    return (value - base) / abs(base) * 100.0


# --------------------------------------------------------------------------- helpers


def _empty_meta() -> dict[str, Any]:
    return {"points_total": 0, "points_returned": 0, "downsampled": False, "nonfinite_count": 0}


def _groups(runs: Sequence[CompareRun], group_by: str) -> list[tuple[str | None, list[CompareRun]]]:
    """Groups in order of first appearance; the runs of each in request order."""
    members: dict[str | None, list[CompareRun]] = {}
    for run in runs:
        for key in group_keys(run.job, group_by):
            members.setdefault(key, []).append(run)
    return list(members.items())


def _run_points(run: CompareRun, params: ChartParams, query: ChartQuery) -> RunPoints:
    """A run's values (smoothed with ``smooth``) in the window, full resolution."""
    series = run.series
    if series is None or len(series) == 0:
        return RunPoints(np.empty(0), np.empty(0))
    values = np.asarray(series.values, dtype=np.float64)
    if params.smooth:
        values = smooth_values(values, params)
    lo = 0 if query.start_step is None else int(np.searchsorted(series.steps, query.start_step))
    hi = len(series)
    if query.end_step is not None:
        hi = int(np.searchsorted(series.steps, query.end_step, side="right"))
    idx = np.arange(lo, max(lo, hi), dtype=np.int64)
    xs = np.asarray(x_values(series, params.x, run.job.first_timestamp, idx), dtype=np.float64)
    known = np.isfinite(xs)
    return RunPoints(xs[known], values[idx][known])


def last_and_best(series: Series | None) -> tuple[float | str | None, float | None]:
    """A run's last value (written like history values: ``"NaN"``) and best value.

    ``best`` follows the summary's rule (:func:`~trainvis.models.best_direction`:
    the minimum for losses, the maximum for accuracy-like metrics, else None)
    over finite values only. The same numbers as
    :func:`~trainvis.charts.compact.metric_summary`, without its other statistics.
    """
    if series is None or len(series) == 0:
        return None, None
    values = np.asarray(series.values, dtype=np.float64)
    last = encode_value(float(values[-1]))
    direction = best_direction(series.metric)
    if direction is None:
        return last, None
    fill = np.inf if direction == "min" else -np.inf
    finite = np.where(np.isfinite(values), values, fill)
    best = float(finite.min() if direction == "min" else finite.max())
    return last, best if math.isfinite(best) else None


def _jobs_meta(runs: Sequence[CompareRun], baseline: str | None) -> list[dict[str, Any]]:
    numbers = {run.job.id: (run.compact.last, run.compact.best) for run in runs}
    base_last, base_best = numbers.get(baseline or "", (None, None))
    result = []
    for run in runs:
        last, best = numbers[run.job.id]
        result.append(
            {
                "job_id": run.job.id,
                "last": last,
                "best": best,
                "delta_pct": {
                    "last": delta_pct(_finite(last), _finite(base_last)),
                    "best": delta_pct(best, base_best),
                },
            }
        )
    return result


def _finite(value: float | str | None) -> float | None:
    """A last value for arithmetic: None when missing or written as NaN/Infinity."""
    return value if isinstance(value, float) else None


def _meta(
    metric: str,
    runs: Sequence[CompareRun],
    per_run: dict[str, Any],
    params: ChartParams,
    group_by: str | None,
    groups: list[tuple[str | None, list[CompareRun]]],
    baseline: str | None,
) -> dict[str, Any]:
    return {
        "chart": "compare",
        "metric": metric,
        "x": params.x,
        "points_total": sum(item["points_total"] for item in per_run.values()),
        "points_returned": sum(item["points_returned"] for item in per_run.values()),
        "downsampled": any(item["downsampled"] for item in per_run.values()),
        "algorithm": "minmax" if params.band else params.algorithm,
        "max_points": params.max_points,
        "smoothing": params.smoothing_meta(),
        "band": "minmax" if params.band else None,
        "log_scale": params.log_scale,
        "missing": [run.job.id for run in runs if not run.compact.present],
        "group_by": group_by,
        "groups": [{"group": key, "runs": [r.job.id for r in members]} for key, members in groups],
        "baseline": baseline,
        "jobs": _jobs_meta(runs, baseline),
        "series": per_run,
    }


def _options(metric: str, params: ChartParams) -> dict[str, Any]:
    hover = {"mode": "nearest", "axis": "x", "intersect": False}
    x_title = {"display": True, "text": X_TITLES[params.x]}
    y_type = "logarithmic" if params.log_scale else "linear"
    return {
        "responsive": True,
        "parsing": False,
        "spanGaps": False,
        "interaction": dict(hover),
        "plugins": {
            "title": {"display": True, "text": label_for(metric)},
            "legend": {"display": True, "position": "top"},
            "tooltip": dict(hover),
        },
        "scales": {
            "x": {"type": "time" if params.x == "time" else "linear", "title": x_title},
            "y": {"type": y_type, "title": {"display": True, "text": label_for(metric)}},
        },
    }


def _points(xs: list[Any], ys: list[float | None]) -> list[dict[str, Any]]:
    return [{"x": x, "y": y} for x, y in zip(xs, ys, strict=True)]


def _nullable(values: np.ndarray[Any, np.dtype[np.float64]]) -> list[float | None]:
    return [v if np.isfinite(v) else None for v in values.tolist()]


@dataclass(frozen=True)
class _Style:
    """The look of one run's (or one group's) datasets."""

    label: str
    color: str
    width: float

    def _line(
        self, label: str, role: str, data: list[dict[str, Any]], *, faded: bool, **keys: Any
    ) -> Dataset:
        color = fade(self.color, RAW_ALPHA) if faded else self.color
        return {
            "label": label,
            **keys,
            "role": role,
            "data": data,
            "borderColor": color,
            "backgroundColor": color,
            "borderWidth": 1 if faded else self.width,
            "pointRadius": 0 if len(data) > POINT_DOT_LIMIT else 2,
            "pointHoverRadius": 4,
            "tension": 0,
            "spanGaps": False,
            "fill": False,
            "order": 1 if faded else 0,
        }

    def _band(
        self, xs: list[Any], low: list[float | None], high: list[float | None], **keys: Any
    ) -> list[Dataset]:
        return [
            {
                **self._line(
                    f"{self.label} ({suffix})", role, _points(xs, ys), faded=False, **keys
                ),
                **look,
            }
            for (role, suffix, look), ys in zip(band_edges(self.color), (low, high), strict=True)
        ]

    def run_datasets(
        self, job_id: str, metric: str, body: dict[str, Any], params: ChartParams, *, grouped: bool
    ) -> list[Dataset]:
        keys = {"job_id": job_id, "metric": metric}
        faded = params.smooth or grouped
        data = _points(body["x"], body["y"])
        result = [self._line(self.label, "raw", data, faded=faded, **keys)]
        if params.smooth:
            smoothed = _points(body["x"], body["smoothed"])
            result.append(
                self._line(f"{self.label} (smoothed)", "smoothed", smoothed, faded=grouped, **keys)
            )
        if params.band and not grouped:
            result.extend(self._band(body["x"], body["min"], body["max"], **keys))
        return result

    def group_datasets(
        self, metric: str, key: str | None, runs: list[str], line: GroupLine, *, band: bool
    ) -> list[Dataset]:
        keys = {"metric": metric, "group": key, "runs": runs}
        xs = line.xs.tolist()
        result = [
            self._line(
                f"{self.label} (mean)",
                "mean",
                _points(xs, _nullable(line.mean)),
                faded=False,
                **keys,
            )
        ]
        if band:
            result.extend(self._band(xs, _nullable(line.low), _nullable(line.high), **keys))
        return result
